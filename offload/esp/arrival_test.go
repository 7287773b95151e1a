package esp

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"sync"
	"testing"
)

// The outer addresses of setup.config, by family: the outbound SA's local
// end (the peer of the inbound SA under test) and its remote end (our
// address), and two strangers.
var arrivalAddrs = map[int]struct{ peer, us, other, third string }{
	4: {"192.0.2.1", "198.51.100.2", "203.0.113.7", "203.0.113.8"},
	6: {"2001:db8::1", "2001:db8:1::2", "2001:db8:2::7", "2001:db8:2::8"},
}

// wrap puts the ESP packet esp in an outer IP header of family fam, raw or
// in UDP from port sport to 4500 (checksum 0: nothing checks it).
func wrap(fam int, src, dst string, udp bool, sport uint16, esp []byte) []byte {
	proto, payload := uint8(protoESP), esp
	if udp {
		proto = protoUDP
		payload = make([]byte, udpHeaderLen, udpHeaderLen+len(esp))
		binary.BigEndian.PutUint16(payload[0:2], sport)
		binary.BigEndian.PutUint16(payload[2:4], 4500)
		binary.BigEndian.PutUint16(payload[4:6], uint16(udpHeaderLen+len(esp)))
		payload = append(payload, esp...)
	}
	if fam == 6 {
		return ipv6(src, dst, proto, 0, payload)
	}
	return ipv4(src, dst, proto, 0, payload)
}

// sealN encrypts n packets with out and returns their ESP parts, sequence
// numbers 1 to n.
func sealN(t *testing.T, s setup, out *SA, n int) [][]byte {
	t.Helper()
	w := NewWorker()
	esps := make([][]byte, n)
	for i := range esps {
		p := newPacket(s.innerPkt(100, 0))
		if r := w.Encrypt(out, p); r != Accept {
			t.Fatalf("encrypt: %v", r)
		}
		espOff, _, n, ok := locate(p.Bytes())
		if !ok {
			t.Fatal("encrypt made an unparsable packet")
		}
		esps[i] = append([]byte(nil), p.Bytes()[espOff:n]...)
	}
	return esps
}

// TestArrivalChecks sends a valid packet in a form or between addresses it
// was not negotiated for: the copy is refused for that reason without
// moving the replay window, and the original is still accepted after it.
func TestArrivalChecks(t *testing.T) {
	for _, fam := range []int{4, 6} {
		a := arrivalAddrs[fam]
		for _, c := range []struct {
			name     string
			encap    bool // the SA's form
			udp      bool // the copy's form
			src, dst string
			want     Verdict
		}{
			{"raw sa, udp copy", false, true, a.peer, a.us, DropEncap},
			{"udp sa, raw copy", true, false, a.peer, a.us, DropEncap},
			{"raw sa, spoofed source", false, false, a.other, a.us, DropAddress},
			{"raw sa, other destination", false, false, a.peer, a.other, DropAddress},
			{"udp sa, other destination", true, true, a.peer, a.other, DropAddress},
			{"raw sa, own address as source", false, false, a.us, a.us, DropAddress},
		} {
			s := setup{algo: algos[0], mode: Tunnel, inner: 4, outer: fam, encap: c.encap}
			t.Run(s.String()+"/"+c.name, func(t *testing.T) {
				out, in := s.pair(t)
				esp := sealN(t, s, out, 1)[0]
				w := NewWorker()
				copied := wrap(fam, c.src, c.dst, c.udp, 4500, esp)
				if r := w.Decrypt(in, newPacket(copied)); r != c.want {
					t.Fatalf("copy: %v, want %v", r, c.want)
				}
				if st := in.Stats(); st.Drops[c.want] != 1 || st.PacketsIn != 0 {
					t.Fatalf("stats %+v", st)
				}
				if r := w.Decrypt(in, newPacket(wrap(fam, a.peer, a.us, c.encap, 4500, esp))); r != Accept {
					t.Fatalf("original after the copy: %v", r)
				}
			})
		}
	}
}

// TestArrivalFamily gives an SA of one outer family a valid packet in the
// other: its addresses cannot be the SA's, not even IPv6 ones whose first
// bytes are the SA's IPv4 addresses.
func TestArrivalFamily(t *testing.T) {
	for _, c := range []struct {
		sa, pkt  int // outer families
		src, dst string
	}{
		{4, 6, arrivalAddrs[6].peer, arrivalAddrs[6].us},
		{4, 6, "c000:201::", "c633:6402::"}, // 192.0.2.1, 198.51.100.2, zero-padded
		{6, 4, arrivalAddrs[4].peer, arrivalAddrs[4].us},
	} {
		s := setup{algo: algos[0], mode: Tunnel, inner: 4, outer: c.sa}
		out, in := s.pair(t)
		esp := sealN(t, s, out, 1)[0]
		if r := NewWorker().Decrypt(in, newPacket(wrap(c.pkt, c.src, c.dst, false, 0, esp))); r != DropAddress {
			t.Errorf("outer %d sa, %s -> %s: %v, want address", c.sa, c.src, c.dst, r)
		}
	}
}

// TestTransportAddresses: a transport-mode SA checks the outer addresses
// when it has them and none when it has not.
func TestTransportAddresses(t *testing.T) {
	s := setup{algo: algos[0], mode: Transport, inner: 4, outer: 4}
	for _, c := range []struct {
		name     string
		addrs    bool
		src, dst string
		want     Verdict
	}{
		{"addresses, from the peer", true, "10.1.0.10", "10.2.0.10", Accept},
		{"addresses, spoofed source", true, "10.9.0.10", "10.2.0.10", DropAddress},
		{"addresses, other destination", true, "10.1.0.10", "10.9.0.10", DropAddress},
		{"no addresses, any source", false, "10.9.0.10", "10.9.0.11", Accept},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := s.config()
			if c.addrs {
				cfg.Local, cfg.Remote = netip.MustParseAddr("10.1.0.10"), netip.MustParseAddr("10.2.0.10")
			}
			out, in := mustSA(t, cfg), mustSA(t, inbound(cfg))
			esp := sealN(t, s, out, 1)[0]
			if r := NewWorker().Decrypt(in, newPacket(wrap(4, c.src, c.dst, false, 0, esp))); r != c.want {
				t.Fatalf("%v, want %v", r, c.want)
			}
		})
	}
}

// peerStep is one packet of TestPeerMoved: the ESP packet with sequence
// number seq from src:sport, forged if its ICV is broken, and what must
// follow.
type peerStep struct {
	name   string
	seq    int
	src    string
	sport  uint16
	forged bool
	want   Verdict
	peer   string // Peer() afterwards
	moved  bool   // exactly one EventPeerMoved to peer; none otherwise
}

// TestPeerMoved follows a UDP-encapsulated SA's peer through NAT
// rebinding: only an authenticated packet, and the newest one, moves it,
// and each move is reported once. The peer's NAT maps 4500 to 4501, so
// the inbound SA's EncapDstPort is 4501.
func TestPeerMoved(t *testing.T) {
	for _, fam := range []int{4, 6} {
		a := arrivalAddrs[fam]
		ap := func(addr string, port uint16) string {
			return netip.AddrPortFrom(netip.MustParseAddr(addr), port).String()
		}
		steps := []peerStep{
			{"negotiated source", 1, a.peer, 4501, false, Accept, ap(a.peer, 4501), false},
			{"new address and port", 3, a.other, 30000, false, Accept, ap(a.other, 30000), true},
			{"same new source", 4, a.other, 30000, false, Accept, ap(a.other, 30000), false},
			{"forgery from a third source", 5, a.third, 31000, true, DropAuth, ap(a.other, 30000), false},
			{"late packet from the old source", 2, a.peer, 4501, false, Accept, ap(a.other, 30000), false},
			{"replay from a third source", 4, a.third, 31000, false, DropReplay, ap(a.other, 30000), false},
			{"new port only", 6, a.other, 30001, false, Accept, ap(a.other, 30001), true},
		}
		s := setup{algo: algos[0], mode: Tunnel, inner: 4, outer: fam, encap: true}
		t.Run(s.String(), func(t *testing.T) { runPeerSteps(t, s, steps) })
	}
}

func runPeerSteps(t *testing.T, s setup, steps []peerStep) {
	cfg := s.config()
	cfg.EncapSrcPort = 4501
	var events []Event
	ic := inbound(cfg)
	ic.Notify = func(e Event) { events = append(events, e) }
	out, in := mustSA(t, cfg), mustSA(t, ic)
	if got, want := in.Peer(), netip.AddrPortFrom(cfg.Local, 4501); got != want {
		t.Fatalf("initial peer %v, want %v", got, want)
	}
	esps := sealN(t, s, out, 6)
	us := arrivalAddrs[s.outer].us
	w := NewWorker()
	for _, st := range steps {
		esp := append([]byte(nil), esps[st.seq-1]...)
		if st.forged {
			esp[len(esp)-1] ^= 1
		}
		events = events[:0]
		r := w.Decrypt(in, newPacket(wrap(s.outer, st.src, us, true, st.sport, esp)))
		peer := netip.MustParseAddrPort(st.peer)
		var want []Event
		if st.moved {
			want = []Event{{SPI: in.spi, Kind: EventPeerMoved, Peer: peer}}
		}
		if r != st.want || in.Peer() != peer || !slices.Equal(events, want) {
			t.Fatalf("%s: %v, peer %v, events %+v; want %v, %v, %+v", st.name, r, in.Peer(), events, st.want, peer, want)
		}
	}
}

// TestPeerMovedConcurrent has workers accept packets from one new source
// at once: the move is reported exactly once.
func TestPeerMovedConcurrent(t *testing.T) {
	const workers, per = 4, 50
	s := setup{algo: algos[0], mode: Tunnel, inner: 4, outer: 4, encap: true}
	cfg := s.config()
	var mu sync.Mutex
	var events []Event
	ic := inbound(cfg)
	ic.Notify = func(e Event) { mu.Lock(); events = append(events, e); mu.Unlock() }
	out, in := mustSA(t, cfg), mustSA(t, ic)
	esps := sealN(t, s, out, workers*per)
	a := arrivalAddrs[4]
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			w := NewWorker()
			for j := i; j < len(esps); j += workers {
				if r := w.Decrypt(in, newPacket(wrap(4, a.other, a.us, true, 30000, esps[j]))); r != Accept {
					t.Errorf("packet %d: %v", j, r)
				}
			}
		})
	}
	wg.Wait()
	peer := netip.AddrPortFrom(netip.MustParseAddr(a.other), 30000)
	if len(events) != 1 || events[0].Peer != peer || in.Peer() != peer {
		t.Fatalf("peer %v, events %+v", in.Peer(), events)
	}
}

// TestPeerNotLearnt: a raw SA's peer is its remote address without a port
// and a UDP SA without addresses has none; accepted packets move neither.
func TestPeerNotLearnt(t *testing.T) {
	for _, c := range []struct {
		s    setup
		want netip.AddrPort
	}{
		{setup{algo: algos[0], mode: Tunnel, inner: 4, outer: 4}, netip.MustParseAddrPort(arrivalAddrs[4].peer + ":0")},
		{setup{algo: algos[0], mode: Transport, inner: 4, outer: 4, encap: true}, netip.AddrPort{}},
	} {
		t.Run(c.s.String(), func(t *testing.T) {
			cfg := c.s.config()
			var events []Event
			ic := inbound(cfg)
			ic.Notify = func(e Event) { events = append(events, e) }
			out, in := mustSA(t, cfg), mustSA(t, ic)
			w := NewWorker()
			p := newPacket(c.s.innerPkt(100, 0))
			if r := w.Encrypt(out, p); r != Accept {
				t.Fatal(r)
			}
			if r := w.Decrypt(in, p); r != Accept || in.Peer() != c.want || len(events) != 0 {
				t.Fatalf("%v, peer %v, events %+v; want peer %v", r, in.Peer(), events, c.want)
			}
		})
	}
}

// TestTransportAddressValidation: a transport-mode SA has both outer
// addresses, of one family, or neither.
func TestTransportAddressValidation(t *testing.T) {
	v4, v4b, v6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("2001:db8::1")
	for _, c := range []struct {
		name          string
		local, remote netip.Addr
		ok            bool
	}{
		{"neither", netip.Addr{}, netip.Addr{}, true},
		{"both", v4, v4b, true},
		{"local only", v4, netip.Addr{}, false},
		{"remote only", netip.Addr{}, v4b, false},
		{"mixed families", v4, v6, false},
	} {
		_, err := NewSA(Config{
			SPI: 0x100, Cipher: AESGCM16, EncKey: make([]byte, 36), Mode: Transport,
			Local: c.local, Remote: c.remote,
		})
		if (err == nil) != c.ok {
			t.Errorf("%s: error %v", c.name, err)
		}
	}
}
