package ike

import (
	"context"
	"net/netip"
	"os"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/xdpsec/xdpsec/ike/crypto"
	"github.com/xdpsec/xdpsec/ike/message"
	"github.com/xdpsec/xdpsec/internal/netlab"
)

// FuzzHandlePacket feeds arbitrary datagrams to a responder's packet handler
// on both ports. Nothing may panic, and the half-open cap must hold.
func FuzzHandlePacket(f *testing.F) {
	peer := netip.MustParseAddrPort("192.0.2.1:500")
	local := netip.MustParseAddrPort("192.0.2.2:500")
	c := Conn{
		Name: "fz", RemoteAddr: peer.Addr(), PSK: []byte(testPSK),
		IKEProposals: mustIKE(f, "aes256gcm16-prfsha256-x25519", "aes128-sha256-modp2048"),
		Children: []Child{{Name: "net", LocalTS: []netip.Prefix{pfx("10.2.0.0/24")}, RemoteTS: []netip.Prefix{pfx("10.1.0.0/24")},
			ESPProposals: mustESP(f, "aes256gcm16")}},
	}
	kex, err := crypto.NewKeyExchange(crypto.GroupCurve25519)
	if err != nil {
		f.Fatal(err)
	}
	init := &message.Message{
		Header: message.Header{SPIi: 0x0102030405060708, Exchange: message.ExchangeIKESAInit, Flags: message.FlagInitiator},
		Payloads: []message.Payload{
			&message.SA{Proposals: toWire(c.IKEProposals, message.ProtocolIKE, nil)},
			&message.KE{Group: message.GroupCurve25519, Data: kex.PublicKey()},
			&message.Nonce{Data: make([]byte, 32)},
			&message.Notify{NotifyType: message.NotifyNATDetectionSourceIP, Data: make([]byte, 20)},
			&message.Notify{NotifyType: message.NotifyNATDetectionDestinationIP, Data: make([]byte, 20)},
		},
	}
	seed, err := init.Encode()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed, false)
	f.Add(append([]byte{0, 0, 0, 0}, seed...), true)
	auth := &message.Message{
		Header:   message.Header{SPIi: 0x0102030405060708, SPIr: 1, Exchange: message.ExchangeIKEAuth, Flags: message.FlagInitiator, MessageID: 1},
		Payloads: []message.Payload{&message.SK{NextPayload: message.PayloadIDi, Body: make([]byte, 64)}},
	}
	if b, err := auth.Encode(); err == nil {
		f.Add(b, false)
	}
	f.Add([]byte{0xff}, true)
	e := newEngine(Options{CookieThreshold: 8, HalfOpenLimit: 16, HalfOpenTimeout: time.Minute})
	defer e.cancel()
	e.SetConns([]Conn{c})
	f.Fuzz(func(t *testing.T, b []byte, natt bool) {
		lp := local
		if natt {
			lp = netip.AddrPortFrom(local.Addr(), DefaultNATPort)
		}
		e.handlePacket(b, peer, lp, natt)
		if st := e.Stats(); st.HalfOpen > 16 {
			t.Fatalf("half-open %d beyond the cap", st.HalfOpen)
		}
	})
}

// BenchmarkIKEHandshake measures complete IKE_SA_INIT + IKE_AUTH exchanges
// (PSK, X25519, AES-GCM, one CHILD SA) between two engines over loopback.
func BenchmarkIKEHandshake(b *testing.B) {
	var ns *netlab.NS
	port := 20000 + int(time.Now().UnixNano()%20000)
	if os.Geteuid() == 0 {
		// A namespace of its own keeps the ports private.
		ns = netlab.NewTestNS(b, netlab.RandomPrefix("xb"), "bench")
		port = 1500
	}
	la, lb := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	opts := func(l netip.Addr) Options {
		// No logging: the benchmark measures the protocol, not zap.
		return Options{Listen: []netip.Addr{l}, Port: port, NATPort: port + 1, CookieThreshold: 1 << 20, Logger: zap.NewNop()}
	}
	mk := func(l, r netip.Addr, lid, rid string) Conn {
		return Conn{
			Name: "bench", LocalAddr: l, RemoteAddr: r, LocalID: mustID(b, "fqdn", lid), RemoteID: mustID(b, "fqdn", rid),
			PSK: []byte(testPSK), IKEProposals: mustIKE(b, "aes256gcm16-prfsha256-x25519"),
			Children: []Child{{Name: "net", LocalTS: []netip.Prefix{pfx("10.1.0.0/24")}, RemoteTS: []netip.Prefix{pfx("10.2.0.0/24")},
				ESPProposals: mustESP(b, "aes256gcm16")}},
		}
	}
	a := startEngine(b, ns, "a", opts(la), 0x1000)
	c := startEngine(b, ns, "b", opts(lb), 0x2000)
	ca, cc := mk(la, lb, "a.bench", "b.bench"), mk(lb, la, "b.bench", "a.bench")
	cc.Children[0].LocalTS, cc.Children[0].RemoteTS = ca.Children[0].RemoteTS, ca.Children[0].LocalTS
	a.e.SetConns([]Conn{ca})
	c.e.SetConns([]Conn{cc})
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			if err := a.e.Initiate(ctx, "bench"); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := a.e.Initiate(ctx, "bench"); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
	})
}
