package ike

import (
	"bytes"
	"context"
	"encoding/binary"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xdpsec/xdpsec/ike/message"
	"github.com/xdpsec/xdpsec/internal/netlab"
)

// fragmentsOf seals inner (first payload type next) into an INFORMATIONAL
// request of message ID id, cut into total SKF fragments.
func (p *authenticPeer) fragmentsOf(t testing.TB, id uint32, next message.PayloadType, inner []byte, total int) [][]byte {
	t.Helper()
	var out [][]byte
	size := (len(inner) + total - 1) / total
	for k := range total {
		chunk := inner[min(k*size, len(inner)):min((k+1)*size, len(inner))]
		out = append(out, p.fragment(t, id, next, k+1, total, chunk))
	}
	return out
}

// fragment seals one SKF fragment number of total carrying chunk.
func (p *authenticPeer) fragment(t testing.TB, id uint32, next message.PayloadType, number, total int, chunk []byte) []byte {
	t.Helper()
	f := &message.SKF{Number: 1, Total: 1}
	if number == 1 {
		f.NextPayload = next
	}
	m := &message.Message{
		Header:   message.Header{SPIi: p.spii, SPIr: p.spir, Exchange: message.ExchangeInformational, Flags: message.FlagInitiator, MessageID: id},
		Payloads: []message.Payload{f},
	}
	buf, err := m.AppendSKPrefix(nil, p.seal.SealedLen(len(chunk)))
	if err != nil {
		t.Fatal(err)
	}
	// Numbers the encoder would refuse go in by hand, before the ICV
	// covers them: the SKF payload follows the 28-byte header.
	binary.BigEndian.PutUint16(buf[32:], uint16(number))
	binary.BigEndian.PutUint16(buf[34:], uint16(total))
	b, err := p.seal.Seal(buf, buf, chunk)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// bigNotify is an INFORMATIONAL's inner payloads worth fragmenting: a
// status notification we do not act on, with size bytes of data.
func bigNotify(t testing.TB, size int) (message.PayloadType, []byte) {
	return encodeInner(t, []message.Payload{&message.Notify{NotifyType: 40000, Data: bytes.Repeat([]byte{0xab}, size)}})
}

// fragmentingPeer is an authentic peer whose IKE SA negotiated RFC 7383,
// and the message ID its next request takes.
func fragmentingPeer(t testing.TB, c *Conn) (*authenticPeer, uint32) {
	p := newAuthenticPeer(t, c)
	p.sa.mu.Lock()
	defer p.sa.mu.Unlock()
	p.sa.fragOK = true
	return p, p.sa.expectReqID
}

func (p *authenticPeer) answered() uint64 {
	return p.e.Stats().Exchanges[ExchangeKey{"INFORMATIONAL", "responder", ResultOK}]
}

// TestReassembly: fragments complete a message in any order, once; what is
// duplicated, stale, out of bounds or too old is dropped and counted, and
// a retransmitted fragmented request is answered once from the cache.
func TestReassembly(t *testing.T) {
	c := authenticConn(t)
	cases := []struct {
		name    string
		send    func(t *testing.T, p *authenticPeer, id uint32, frags [][]byte)
		answers uint64
		drops   map[DropReason]uint64
	}{
		{name: "in-order", answers: 1, send: func(t *testing.T, p *authenticPeer, id uint32, fs [][]byte) {
			for _, f := range fs {
				p.e.handlePacket(f, p.from, p.to, false)
			}
		}},
		{name: "held-back-reversed", answers: 1, send: func(t *testing.T, p *authenticPeer, id uint32, fs [][]byte) {
			for i := len(fs) - 1; i >= 0; i-- {
				if p.answered() != 0 {
					t.Fatalf("answered before fragment %d arrived", i+1)
				}
				p.e.handlePacket(fs[i], p.from, p.to, false)
			}
		}},
		{name: "duplicate-and-overlapping", answers: 1, drops: map[DropReason]uint64{DropFragmentDuplicate: 2},
			send: func(t *testing.T, p *authenticPeer, id uint32, fs [][]byte) {
				p.e.handlePacket(fs[0], p.from, p.to, false)
				p.e.handlePacket(fs[0], p.from, p.to, false)
				// Fragment 1 again with other content: the first copy wins.
				next, inner := bigNotify(t, 10)
				p.e.handlePacket(p.fragment(t, id, next, 1, len(fs), inner), p.from, p.to, false)
				for _, f := range fs[1:] {
					p.e.handlePacket(f, p.from, p.to, false)
				}
			}},
		{name: "stale-smaller-total", answers: 1, drops: map[DropReason]uint64{DropFragmentStale: 1},
			send: func(t *testing.T, p *authenticPeer, id uint32, fs [][]byte) {
				p.e.handlePacket(fs[0], p.from, p.to, false)
				p.e.handlePacket(p.fragment(t, id, 0, 2, len(fs)-1, []byte{1, 2, 3}), p.from, p.to, false)
				for _, f := range fs[1:] {
					p.e.handlePacket(f, p.from, p.to, false)
				}
			}},
		{name: "refragmented-larger-total", answers: 1, send: func(t *testing.T, p *authenticPeer, id uint32, fs [][]byte) {
			next, inner := bigNotify(t, 1500)
			small := p.fragmentsOf(t, id, next, inner, 2)
			p.e.handlePacket(small[0], p.from, p.to, false)
			for _, f := range fs { // the same message in more pieces
				p.e.handlePacket(f, p.from, p.to, false)
			}
		}},
		{name: "forged-fragment", answers: 1, drops: map[DropReason]uint64{DropIntegrity: 1},
			send: func(t *testing.T, p *authenticPeer, id uint32, fs [][]byte) {
				forged := append([]byte(nil), fs[1]...)
				forged[len(forged)-1] ^= 1
				p.e.handlePacket(forged, p.from, p.to, false)
				for _, f := range fs {
					p.e.handlePacket(f, p.from, p.to, false)
				}
			}},
		{name: "too-many-fragments", drops: map[DropReason]uint64{DropFragmentInvalid: 1, DropMalformed: 1},
			send: func(t *testing.T, p *authenticPeer, id uint32, fs [][]byte) {
				next, _ := bigNotify(t, 1)
				p.e.handlePacket(p.fragment(t, id, next, 1, maxFragments+1, []byte{1}), p.from, p.to, false)
				p.e.handlePacket(p.fragment(t, id, next, 3, 2, []byte{1}), p.from, p.to, false)
			}},
		{name: "oversized", drops: map[DropReason]uint64{DropFragmentTooLarge: 1},
			send: func(t *testing.T, p *authenticPeer, id uint32, fs [][]byte) {
				next, inner := bigNotify(t, maxReassembled/2)
				p.e.handlePacket(p.fragment(t, id, next, 1, 3, inner), p.from, p.to, false)
				p.e.handlePacket(p.fragment(t, id, next, 2, 3, inner), p.from, p.to, false)
			}},
		{name: "timed-out-set", answers: 1, drops: map[DropReason]uint64{DropFragmentTimeout: 1},
			send: func(t *testing.T, p *authenticPeer, id uint32, fs [][]byte) {
				p.e.handlePacket(fs[0], p.from, p.to, false)
				p.sa.mu.Lock()
				p.sa.fragIn[0].started = time.Now().Add(-2 * fragmentTimeout)
				p.sa.mu.Unlock()
				for _, f := range fs { // the peer's retransmission
					p.e.handlePacket(f, p.from, p.to, false)
				}
			}},
		{name: "retransmitted-set-answered-once", answers: 1, send: func(t *testing.T, p *authenticPeer, id uint32, fs [][]byte) {
			for range 2 {
				for _, f := range fs {
					p.e.handlePacket(f, p.from, p.to, false)
				}
			}
			if n := p.e.Stats().CachedResponses; n != 1 {
				t.Errorf("%d cached responses for one retransmitted set, want 1", n)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, id := fragmentingPeer(t, &c)
			defer p.close()
			next, inner := bigNotify(t, 1500)
			tc.send(t, p, id, p.fragmentsOf(t, id, next, inner, 4))
			st := p.e.Stats()
			if got := p.answered(); got != tc.answers {
				t.Errorf("%d answers, want %d", got, tc.answers)
			}
			for _, r := range []DropReason{DropFragmentInvalid, DropFragmentStale, DropFragmentTooLarge, DropFragmentTimeout,
				DropFragmentDuplicate, DropIntegrity, DropMalformed} {
				if st.Dropped[r] != tc.drops[r] {
					t.Errorf("dropped %s: %d, want %d", r, st.Dropped[r], tc.drops[r])
				}
			}
			if st.Reassembled != tc.answers {
				t.Errorf("reassembled %d, want %d", st.Reassembled, tc.answers)
			}
		})
	}
}

// FuzzReassembly feeds an established SA that accepts fragments with
// authentic fragments of arbitrary numbers, totals and contents: nothing
// panics, and what is held stays within the bounds.
func FuzzReassembly(f *testing.F) {
	c := authenticConn(f)
	f.Add([]byte{1, 2, 0, 10, 2, 2, 0, 10})
	f.Add([]byte{2, 2, 0, 10, 1, 2, 5, 3, 1, 2, 0, 1})
	f.Add([]byte{1, 64, 255, 255, 1, 65, 0, 0, 0, 1, 0, 0})
	f.Fuzz(func(t *testing.T, script []byte) {
		p, id := fragmentingPeer(t, &c)
		defer p.close()
		next, inner := bigNotify(t, 300)
		// Each 4 bytes: fragment number, total, length of the chunk (two
		// bytes, cut to 4 KiB) taken from a valid message's bytes.
		for i := 0; i+4 <= len(script) && i < 4*200; i += 4 {
			n := int(script[i+2])<<8 | int(script[i+3])
			chunk := bytes.Repeat(inner, 1+(n%4096)/len(inner))[:n%4096]
			p.e.handlePacket(p.fragment(t, id, next, int(script[i]), int(script[i+1]), chunk), p.from, p.to, false)
		}
		p.sa.mu.Lock()
		defer p.sa.mu.Unlock()
		for _, r := range p.sa.fragIn {
			if r != nil && (len(r.parts) > maxFragments || r.size > maxReassembled || r.have > int(r.total)) {
				t.Fatalf("reassembly beyond its bounds: %d parts, %d bytes, %d of %d", len(r.parts), r.size, r.have, r.total)
			}
		}
	})
}

// fragOpts are fastOpts with IKE messages fragmented above size bytes.
func fragOpts(size int) Options {
	o := fastOpts()
	o.FragmentSize = size
	return o
}

// TestFragmentedExchanges: two engines with a small fragment size run
// IKE_AUTH and a CHILD rekey with PFS in fragments both ways; when the
// responder loses the first fragment of the initiator's IKE_AUTH, the
// retransmission sends every fragment again.
func TestFragmentedExchanges(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	ca, cb := siteConns(t, lab.V4, "aes256gcm16-prfsha256-x25519", "aes256gcm16-x25519")
	w := newWire(0x1000, 0x2000)
	oa, ob := fragOpts(200), fragOpts(200)
	oa.Installer, ob.Installer = w.ends[0], w.ends[1]
	var lost atomic.Bool
	a := startEngine(t, lab.GwA, "gwA", oa, 0)
	b := startEngine(t, lab.GwB, "gwB", ob, 0, func(e *Engine) {
		e.dropHook = func(h message.Header) bool {
			return h.Exchange == message.ExchangeIKEAuth && !h.IsResponse() && lost.CompareAndSwap(false, true)
		}
	})
	a.e.SetConns([]Conn{ca})
	b.e.SetConns([]Conn{cb})
	initiate(t, a)
	settled(t, a, b, w)
	w.clearFaults() // IKE_AUTH's first packets may race its answer (lifecycle.md)
	if !lost.Load() || a.e.Stats().Retransmits == 0 {
		t.Error("the first IKE_AUTH fragment was not lost and retransmitted")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.e.Rekey(ctx, "s2s", "net"); err != nil {
		t.Fatalf("rekey: %v", err)
	}
	settled(t, a, b, w)
	for _, s := range []*side{a, b} {
		st := s.e.Stats()
		if st.Fragmented < 2 || st.Reassembled < 2 {
			t.Errorf("fragmented %d, reassembled %d: want IKE_AUTH and CREATE_CHILD_SA in fragments each way", st.Fragmented, st.Reassembled)
		}
	}
	noFaults(t, w)
}
