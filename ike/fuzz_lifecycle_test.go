package ike

import (
	"net/netip"
	"testing"
	"time"

	"github.com/xdpsec/xdpsec/ike/crypto"
	"github.com/xdpsec/xdpsec/ike/message"
)

// authenticPeer is an established responder IKE SA inside an engine
// without sockets, and the peer's half of its keys, so that a fuzz input
// can reach the exchanges behind authentication: CREATE_CHILD_SA and
// INFORMATIONAL with arbitrary inner payloads.
type authenticPeer struct {
	e          *Engine
	sa         *ikeSA
	seal       crypto.SKCipher // the peer's (initiator's)
	from, to   netip.AddrPort
	spii, spir uint64
}

func newAuthenticPeer(t testing.TB, c *Conn) *authenticPeer {
	t.Helper()
	e := newEngine(Options{Installer: newFakeInstaller(0x4000), RekeyGrace: time.Millisecond})
	e.SetConns([]Conn{*c})
	c = e.conn(c.Name)
	prop := chosen{encr: uint16(message.EncrAESGCM16), keyBits: 256, prf: 5, ke: uint16(message.GroupCurve25519)}
	p := &authenticPeer{e: e, from: netip.MustParseAddrPort("192.0.2.1:500"), to: netip.MustParseAddrPort("192.0.2.2:500"),
		spii: 0x1111111111111111, spir: 0x2222222222222222}
	var si, sr [8]byte
	putSPI(si[:], p.spii)
	putSPI(sr[:], p.spir)
	ni, nr := make([]byte, 32), make([]byte, 32)
	keys, err := crypto.DeriveIKEKeys(prop.suite(), make([]byte, 32), ni, nr, si[:], sr[:])
	if err != nil {
		t.Fatal(err)
	}
	seal, open, err := keys.SKCiphers(prop.suite(), false)
	if err != nil {
		t.Fatal(err)
	}
	if p.seal, _, err = keys.SKCiphers(prop.suite(), true); err != nil {
		t.Fatal(err)
	}
	prf, _ := crypto.NewPRF(prop.prf)
	sa := &ikeSA{
		e: e, conn: c, spii: p.spii, spir: p.spir, local: p.to, remote: p.from, initFrom: p.from,
		ni: ni, nr: nr, ikeProp: prop, prf: prf, keys: keys, seal: seal, open: open,
		expectReqID: 2, nextReqID: 0, created: time.Now(), pendingCreate: map[string]bool{},
	}
	e.mu.Lock()
	e.sas[p.spir] = sa
	e.mu.Unlock()
	sa.mu.Lock()
	sa.setEstablished()
	ch := &c.Children[0]
	if _, err := sa.installChild(ch, chosen{encr: uint16(message.EncrAESGCM16), keyBits: 256, spi: spiBytes(0x9000)}, 0x4001, 0x9000,
		ModeTunnel, selectors(ch.LocalTS), selectors(ch.RemoteTS)); err != nil {
		t.Fatal(err)
	}
	sa.mu.Unlock()
	p.sa = sa
	return p
}

// request seals inner (payload bytes, first payload type next) into a
// request of exchange exch with the SA's expected message ID.
func (p *authenticPeer) request(t testing.TB, exch message.ExchangeType, next message.PayloadType, inner []byte) []byte {
	p.sa.mu.Lock()
	id := p.sa.expectReqID
	p.sa.mu.Unlock()
	m := &message.Message{
		Header:   message.Header{SPIi: p.spii, SPIr: p.spir, Exchange: exch, Flags: message.FlagInitiator, MessageID: id},
		Payloads: []message.Payload{&message.SK{NextPayload: next}},
	}
	buf, err := m.AppendSKPrefix(nil, p.seal.SealedLen(len(inner)))
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.seal.Seal(buf, buf, inner)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// authenticSeed is one request with what it must do to the SA.
type authenticSeed struct {
	name  string
	exch  message.ExchangeType
	inner []message.Payload
	check func(t *testing.T, p *authenticPeer)
}

func authenticConn(t testing.TB) Conn {
	return Conn{
		Name: "fz", RemoteAddr: netip.MustParseAddr("192.0.2.1"), PSK: []byte(testPSK),
		IKEProposals: mustIKE(t, "aes256gcm16-prfsha256-x25519"),
		Children: []Child{{Name: "net", LocalTS: []netip.Prefix{pfx("10.2.0.0/24")}, RemoteTS: []netip.Prefix{pfx("10.1.0.0/24")},
			ESPProposals: mustESP(t, "aes256gcm16", "aes256gcm16-x25519"), Lifetime: time.Hour}},
	}
}

// authenticSeeds are a CHILD rekey with and without PFS, a new child, an
// IKE rekey, a CHILD delete, an IKE delete and a liveness check.
func authenticSeeds(t testing.TB, c Conn) []authenticSeed {
	kex, err := crypto.NewKeyExchange(crypto.GroupCurve25519)
	if err != nil {
		t.Fatal(err)
	}
	childSA := &message.SA{Proposals: toWireChild(c.Children[0].ESPProposals, spiBytes(0x9100))}
	tsi := &message.TS{Selectors: selectors(c.Children[0].RemoteTS)}
	tsr := &message.TS{Responder: true, Selectors: selectors(c.Children[0].LocalTS)}
	nonce := &message.Nonce{Data: make([]byte, 32)}
	rekeySA := &message.Notify{Protocol: message.ProtocolESP, SPI: spiBytes(0x9000), NotifyType: message.NotifyRekeySA}
	children := func(p *authenticPeer) []ChildInfo {
		if sas := p.e.SAs(); len(sas) > 0 {
			return sas[0].Children
		}
		return nil
	}
	return []authenticSeed{
		{"child rekey", message.ExchangeCreateChildSA, []message.Payload{rekeySA, childSA, nonce, tsi, tsr},
			func(t *testing.T, p *authenticPeer) {
				// Make-before-break: the new SA decrypts, the old one
				// still sends until the peer deletes it.
				if cs := children(p); len(cs) != 2 || cs[0].State != "INSTALLED" || cs[1].State != "INBOUND" {
					t.Errorf("children after a rekey request: %+v", cs)
				}
			}},
		{"child rekey pfs", message.ExchangeCreateChildSA, []message.Payload{rekeySA,
			&message.SA{Proposals: toWireChild(mustESP(t, "aes256gcm16-x25519"), spiBytes(0x9101))}, nonce,
			&message.KE{Group: message.GroupCurve25519, Data: kex.PublicKey()}, tsi, tsr},
			func(t *testing.T, p *authenticPeer) {
				if cs := children(p); len(cs) != 2 || cs[1].Proposal != "AES_GCM_16_256/CURVE_25519" {
					t.Errorf("children after a PFS rekey request: %+v", cs)
				}
			}},
		{"new child", message.ExchangeCreateChildSA, []message.Payload{childSA, nonce, tsi, tsr},
			func(t *testing.T, p *authenticPeer) {
				if cs := children(p); len(cs) != 2 || cs[1].State != "INSTALLED" {
					t.Errorf("children after a new-child request: %+v", cs)
				}
			}},
		{"ike rekey", message.ExchangeCreateChildSA, []message.Payload{
			&message.SA{Proposals: toWire(c.IKEProposals, message.ProtocolIKE, []byte{1, 2, 3, 4, 5, 6, 7, 8})},
			nonce, &message.KE{Group: message.GroupCurve25519, Data: kex.PublicKey()}},
			func(t *testing.T, p *authenticPeer) {
				sas := p.e.SAs()
				if p.e.Stats().IKERekeys != 1 || len(sas) != 2 {
					t.Fatalf("after an IKE rekey request: %+v", sas)
				}
				for _, sa := range sas {
					if sa.SPIi == 0x0102030405060708 && (len(sa.Children) != 1 || sa.State != "ESTABLISHED") {
						t.Errorf("the new IKE SA %+v, want it established with the child", sa)
					}
				}
			}},
		{"child delete", message.ExchangeInformational, []message.Payload{&message.Delete{Protocol: message.ProtocolESP, SPIs: []uint32{0x9000}}},
			func(t *testing.T, p *authenticPeer) {
				if cs := children(p); len(cs) != 0 {
					t.Errorf("children after the peer's delete: %+v", cs)
				}
			}},
		{"ike delete", message.ExchangeInformational, []message.Payload{&message.Delete{Protocol: message.ProtocolIKE}},
			func(t *testing.T, p *authenticPeer) {
				if sas := p.e.SAs(); len(sas) != 0 {
					t.Errorf("SAs after the peer's IKE delete: %+v", sas)
				}
			}},
		{"liveness", message.ExchangeInformational, nil, func(t *testing.T, p *authenticPeer) {
			if cs := children(p); len(cs) != 1 {
				t.Errorf("children after a liveness check: %+v", cs)
			}
		}},
	}
}

func encodeInner(t testing.TB, ps []message.Payload) (message.PayloadType, []byte) {
	if len(ps) == 0 {
		return message.PayloadNone, nil
	}
	b, err := message.AppendPayloads(nil, ps)
	if err != nil {
		t.Fatal(err)
	}
	return ps[0].Type(), b
}

// close ends the peer's engine without the Delete exchanges a real
// shutdown waits for.
func (p *authenticPeer) close() {
	p.e.mu.Lock()
	p.e.closed = true
	all := make([]*ikeSA, 0, len(p.e.sas))
	for _, sa := range p.e.sas {
		all = append(all, sa)
	}
	p.e.mu.Unlock()
	for _, sa := range all {
		sa.mu.Lock()
		sa.remove(ErrClosed)
		sa.mu.Unlock()
	}
	p.e.cancel()
}

// TestAuthenticRequests: each seed request does what the responder should
// do with it.
func TestAuthenticRequests(t *testing.T) {
	c := authenticConn(t)
	for _, sd := range authenticSeeds(t, c) {
		t.Run(sd.name, func(t *testing.T) {
			p := newAuthenticPeer(t, &c)
			defer p.close()
			next, inner := encodeInner(t, sd.inner)
			p.e.handlePacket(p.request(t, sd.exch, next, inner), p.from, p.to, false)
			sd.check(t, p)
		})
	}
}

// FuzzAuthenticRequests sends authentic CREATE_CHILD_SA and INFORMATIONAL
// requests with arbitrary inner payloads to an established SA: new
// children, rekeys of CHILD and IKE SAs, deletes, and whatever the fuzzer
// makes of them. Nothing may panic or hang, and the SA must stay usable
// or be gone cleanly.
func FuzzAuthenticRequests(f *testing.F) {
	c := authenticConn(f)
	for _, sd := range authenticSeeds(f, c) {
		next, inner := encodeInner(f, sd.inner)
		f.Add(uint8(sd.exch), uint8(next), inner)
	}
	f.Fuzz(func(t *testing.T, exch, next uint8, inner []byte) {
		p := newAuthenticPeer(t, &c)
		defer p.close()
		x := message.ExchangeCreateChildSA
		if exch == uint8(message.ExchangeInformational) {
			x = message.ExchangeInformational
		}
		p.e.handlePacket(p.request(t, x, message.PayloadType(next), inner), p.from, p.to, false)
		p.sa.mu.Lock()
		state, gone := p.sa.state, p.sa.gone
		p.sa.mu.Unlock()
		if !gone && state != stateEstablished && state != stateRekeyed {
			t.Fatalf("SA left in state %s", state)
		}
	})
}
