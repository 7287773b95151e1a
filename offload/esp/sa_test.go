package esp

import (
	"bytes"
	"encoding/binary"
	"math"
	"net/netip"
	"slices"
	"sync"
	"testing"
)

var gcmSetup = setup{algo: algos[1], mode: Tunnel, inner: 4, outer: 4}

// sealCustom builds an outer IPv4 ESP packet for the inbound AEAD SA sa,
// from its peer to its local address, around an ESP payload that the test
// chooses, trailer included, so that packets with a valid ICV and a bad
// inside can be made.
func sealCustom(sa *SA, seq uint64, payload []byte) []byte {
	esp := make([]byte, espHeaderLen+8, espHeaderLen+8+len(payload)+sa.t.icvLen)
	binary.BigEndian.PutUint32(esp[0:4], sa.spi)
	binary.BigEndian.PutUint32(esp[4:8], uint32(seq))
	binary.BigEndian.PutUint64(esp[8:16], seq)
	w := NewWorker()
	copy(w.nonce[:4], sa.t.salt[:])
	copy(w.nonce[4:], esp[8:16])
	esp = sa.t.aead.Seal(esp, w.nonce[:], payload, w.aadFor(sa, esp, seq))
	src, dst := netip.AddrFrom4([4]byte(sa.remote[:4])), netip.AddrFrom4([4]byte(sa.local[:4]))
	return ipv4(src.String(), dst.String(), protoESP, 0, esp)
}

func trailer(payload []byte, pad []byte, nh uint8) []byte {
	b := append(append([]byte(nil), payload...), pad...)
	return append(b, byte(len(pad)), nh)
}

func TestDecryptPayloadChecks(t *testing.T) {
	inner := ipv4("10.2.0.10", "10.1.0.10", protoUDP, 0, udpPayload(1, 2, 12)) // 40 bytes: aligned with 2 pad bytes
	for _, c := range []struct {
		name    string
		payload []byte
		want    Verdict
		wantLen int
	}{
		{"good", trailer(inner, []byte{1, 2}, protoIPv4), Accept, len(inner)},
		{"tfc padding", trailer(append(inner, 0, 0, 0, 0, 0, 0, 0, 0), []byte{1, 2}, protoIPv4), Accept, len(inner)},
		{"long padding", trailer(inner, []byte{1, 2, 3, 4, 5, 6}, protoIPv4), Accept, len(inner)},
		{"bad pad byte", trailer(inner, []byte{1, 3}, protoIPv4), DropPad, 0},
		{"zero pad bytes", trailer(inner, []byte{0, 0}, protoIPv4), DropPad, 0},
		{"pad longer than payload", []byte{1, 2, 200, protoIPv4}, DropPad, 0},
		{"dummy", trailer([]byte{0xde, 0xad}, nil, protoNoNext), DropDummy, 0},
		{"wrong next header", trailer(inner, []byte{1, 2}, protoUDP), DropMalformed, 0},
		{"next header says IPv6", trailer(inner, []byte{1, 2}, protoIPv6), DropMalformed, 0},
		{"truncated inner", trailer(inner[:32], []byte{1, 2}, protoIPv4), DropMalformed, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, in := gcmSetup.pair(t)
			p := newPacket(sealCustom(in, 1, c.payload))
			if r := NewWorker().Decrypt(in, p); r != c.want {
				t.Fatalf("got %v, want %v", r, c.want)
			}
			st := in.Stats()
			if c.want == Accept {
				if p.Len != c.wantLen || !bytes.Equal(p.Bytes(), inner) {
					t.Fatalf("inner %x", p.Bytes())
				}
				if st.PacketsIn != 1 || st.BytesIn != uint64(len(inner)) {
					t.Fatalf("stats %+v", st)
				}
				return
			}
			if st.Drops[c.want] != 1 || st.PacketsIn != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestDecryptMalformed(t *testing.T) {
	out, in := gcmSetup.pair(t)
	w := NewWorker()
	p := newPacket(gcmSetup.innerPkt(100, 0))
	if r := w.Encrypt(out, p); r != Accept {
		t.Fatal(r)
	}
	good := append([]byte(nil), p.Bytes()...)
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	for _, c := range []struct {
		name string
		pkt  []byte
		want Verdict
	}{
		{"empty", nil, DropMalformed},
		{"version 5", mod(func(b []byte) []byte { b[0] = 0x55; return b }), DropMalformed},
		{"short header", good[:19], DropMalformed},
		{"total length beyond buffer", good[:len(good)-1], DropMalformed},
		{"fragment", mod(func(b []byte) []byte { b[6] |= 0x20; setIPv4Checksum(b[:20]); return b }), DropMalformed},
		{"not ESP", mod(func(b []byte) []byte { b[9] = protoTCP; setIPv4Checksum(b[:20]); return b }), DropMalformed},
		{"bad header checksum", mod(func(b []byte) []byte { b[8]--; return b }), DropMalformed},
		{"other SPI", mod(func(b []byte) []byte { b[20] ^= 1; return b }), DropUnknownSPI},
		{"ciphertext not aligned", mod(func(b []byte) []byte {
			b = b[:len(b)-1]
			binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
			setIPv4Checksum(b[:20])
			return b
		}), DropMalformed},
		{"only header", mod(func(b []byte) []byte {
			b = b[:20+8+8+16]
			binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
			setIPv4Checksum(b[:20])
			return b
		}), DropMalformed},
	} {
		if r := w.Decrypt(in, newPacket(c.pkt)); r != c.want {
			t.Errorf("%s: got %v, want %v", c.name, r, c.want)
		}
	}
	// Link-layer padding behind the packet is ignored.
	if r := w.Decrypt(in, newPacket(append(good, 0, 0, 0, 0))); r != Accept {
		t.Fatalf("padded frame: %v", r)
	}
}

func TestEncryptRefuses(t *testing.T) {
	w := NewWorker()
	out, _ := gcmSetup.pair(t)
	plain := gcmSetup.innerPkt(100, 0)
	for _, c := range []struct {
		name string
		p    *Packet
	}{
		{"no headroom", &Packet{Buf: append(append([]byte(nil), plain...), make([]byte, MaxTailroom)...), Len: len(plain)}},
		{"no tailroom", &Packet{Buf: append(make([]byte, MaxHeadroom), plain...), Off: MaxHeadroom, Len: len(plain)}},
		{"empty", &Packet{Buf: make([]byte, 200), Off: MaxHeadroom}},
		{"not IP", newPacket([]byte{0x12, 0x34})},
		{"out of bounds", &Packet{Buf: make([]byte, 10), Off: 5, Len: 10}},
	} {
		if r := w.Encrypt(out, c.p); r != DropMalformed {
			t.Errorf("%s: got %v", c.name, r)
		}
	}
	// Exactly Headroom and Tailroom are enough.
	buf := make([]byte, out.Headroom()+len(plain)+out.Tailroom())
	copy(buf[out.Headroom():], plain)
	p := &Packet{Buf: buf, Off: out.Headroom(), Len: len(plain)}
	if r := w.Encrypt(out, p); r != Accept || p.Off != 0 {
		t.Fatalf("exact room: %v, off %d", r, p.Off)
	}
}

func TestTransportRefusesFragmentsAndRoutingHeaders(t *testing.T) {
	w := NewWorker()
	s4 := setup{algo: algos[0], mode: Transport, inner: 4, outer: 4}
	out4, _ := s4.pair(t)
	frag := ipv4("10.1.0.10", "10.2.0.10", protoUDP, 0, udpPayload(1, 2, 20))
	frag[6] |= 0x20
	if r := w.Encrypt(out4, newPacket(frag)); r != DropMalformed {
		t.Errorf("fragment: %v", r)
	}
	s6 := setup{algo: algos[0], mode: Transport, inner: 6, outer: 6}
	out6, _ := s6.pair(t)
	for _, nh := range []uint8{protoHopByHop, protoRouting, protoFragment} {
		if r := w.Encrypt(out6, newPacket(ipv6("fd00::1", "fd00::2", nh, 0, make([]byte, 16)))); r != DropMalformed {
			t.Errorf("next header %d: %v", nh, r)
		}
	}
}

func TestSeqOverflow(t *testing.T) {
	for _, esn := range []bool{false, true} {
		var events []Event
		s := gcmSetup
		s.esn = esn
		out, in := s.pair(t)
		out.notify = func(e Event) { events = append(events, e) }
		out.seqOut.Store(math.MaxUint32 - 1)
		w := NewWorker()
		var last Verdict
		for range 3 {
			p := newPacket(s.innerPkt(60, 0))
			if last = w.Encrypt(out, p); last == Accept && !esn {
				in.replay.top.Store(math.MaxUint32 - 2)
				if r := w.Decrypt(in, p); r != Accept {
					t.Fatalf("decrypt of last number: %v", r)
				}
			}
		}
		if esn {
			if last != Accept || len(events) != 0 || out.Expired() {
				t.Fatalf("esn: %v %v", last, events)
			}
			continue
		}
		if last != DropExpired || !out.Expired() || len(events) != 1 || events[0] != (Event{SPI: out.spi, Kind: EventSeqOverflow}) {
			t.Fatalf("overflow: %v %v", last, events)
		}
		if st := out.Stats(); st.PacketsOut != 1 || st.Drops[DropExpired] != 2 {
			t.Fatalf("stats %+v", st)
		}
		// Batches stop too.
		v := make([]Verdict, 2)
		w.EncryptBatch(out, []Packet{*newPacket(s.innerPkt(60, 0)), *newPacket(s.innerPkt(60, 0))}, v)
		if v[0] != DropExpired || v[1] != DropExpired || len(events) != 1 {
			t.Fatalf("batch %v, events %v", v, events)
		}
	}
}

func TestLifetimes(t *testing.T) {
	for _, c := range []struct {
		name       string
		life       Lifetime
		softAt     int // packet after which the soft event is raised, 0 never
		hardAt     int
		pktLen     int
		sendPacket int
	}{
		{"packets", Lifetime{SoftPackets: 3, HardPackets: 5}, 3, 5, 100, 7},
		{"bytes", Lifetime{SoftBytes: 250, HardBytes: 450}, 3, 5, 100, 7},
		{"soft only", Lifetime{SoftPackets: 2}, 2, 0, 100, 7},
		{"none", Lifetime{}, 0, 0, 100, 7},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, dir := range []string{"out", "in"} {
				var events []EventKind
				out, in := gcmSetup.pair(t)
				sa := out
				if dir == "in" {
					sa = in
				}
				sa.life = c.life
				sa.notify = func(e Event) { events = append(events, e.Kind) }
				w := NewWorker()
				for i := 1; i <= c.sendPacket; i++ {
					p := newPacket(gcmSetup.innerPkt(c.pktLen, 0))
					r := w.Encrypt(out, p)
					if r == Accept {
						r = w.Decrypt(in, p)
					}
					wantOK := c.hardAt == 0 || i <= c.hardAt
					if (r == Accept) != wantOK || !wantOK && r != DropExpired {
						t.Fatalf("%s packet %d: %v", dir, i, r)
					}
					// Every case has its soft limit before its hard one.
					var want []EventKind
					if c.softAt != 0 && i >= c.softAt {
						want = append(want, EventSoft)
					}
					if c.hardAt != 0 && i >= c.hardAt {
						want = append(want, EventHard)
					}
					if !slices.Equal(events, want) {
						t.Fatalf("%s packet %d: events %v, want %v", dir, i, events, want)
					}
				}
			}
		})
	}
}

func TestSelectors(t *testing.T) {
	local := []Selector{PrefixSelector(netip.MustParsePrefix("10.1.0.0/24"))}
	remote := []Selector{
		{Start: netip.MustParseAddr("10.2.0.5"), End: netip.MustParseAddr("10.2.0.20"), Proto: protoUDP, StartPort: 1000, EndPort: 2000},
		PrefixSelector(netip.MustParsePrefix("fd00:2::/64")),
	}
	frag := ipv4("10.2.0.10", "10.1.0.10", protoUDP, 0, udpPayload(1500, 53, 8))
	binary.BigEndian.PutUint16(frag[6:8], 100) // a later fragment: ports unknown
	setIPv4Checksum(frag[:20])
	for _, c := range []struct {
		name  string
		inner []byte
		want  Verdict
	}{
		{"inside", ipv4("10.2.0.10", "10.1.0.10", protoUDP, 0, udpPayload(1500, 53, 8)), Accept},
		{"first address", ipv4("10.2.0.5", "10.1.0.255", protoUDP, 0, udpPayload(1000, 53, 8)), Accept},
		{"last address and port", ipv4("10.2.0.20", "10.1.0.0", protoUDP, 0, udpPayload(2000, 53, 8)), Accept},
		{"source below range", ipv4("10.2.0.4", "10.1.0.10", protoUDP, 0, udpPayload(1500, 53, 8)), DropSelector},
		{"source above range", ipv4("10.2.0.21", "10.1.0.10", protoUDP, 0, udpPayload(1500, 53, 8)), DropSelector},
		{"destination outside", ipv4("10.2.0.10", "10.1.1.10", protoUDP, 0, udpPayload(1500, 53, 8)), DropSelector},
		{"port outside", ipv4("10.2.0.10", "10.1.0.10", protoUDP, 0, udpPayload(999, 53, 8)), DropSelector},
		{"protocol outside", ipv4("10.2.0.10", "10.1.0.10", protoTCP, 0, udpPayload(1500, 53, 8)), DropSelector},
		{"later fragment has no ports", frag, DropSelector},
		{"IPv6 source, IPv4 destination list", ipv6("fd00:2::1", "fd00:1::1", protoUDP, 0, udpPayload(1, 2, 8)), DropSelector},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, in := gcmSetup.pair(t)
			var err error
			if in.localTS, err = compileSelectors(local); err != nil {
				t.Fatal(err)
			}
			if in.remoteTS, err = compileSelectors(remote); err != nil {
				t.Fatal(err)
			}
			in.deepTS = deep(in.localTS, in.remoteTS)
			w := NewWorker()
			p := newPacket(c.inner)
			if r := w.Encrypt(out, p); r != Accept {
				t.Fatal(r)
			}
			if r := w.Decrypt(in, p); r != c.want {
				t.Fatalf("got %v, want %v", r, c.want)
			}
		})
	}
	// Address-only selectors take the shallow path.
	out, in := gcmSetup.pair(t)
	rules, err := compileSelectors([]Selector{PrefixSelector(netip.MustParsePrefix("10.9.0.0/16"))})
	if err != nil {
		t.Fatal(err)
	}
	in.localTS = rules
	if in.deepTS = deep(in.localTS, in.remoteTS); in.deepTS {
		t.Fatal("prefix selectors need no ports")
	}
	w := NewWorker()
	p := newPacket(gcmSetup.innerPkt(60, 0))
	w.Encrypt(out, p)
	if r := w.Decrypt(in, p); r != DropSelector {
		t.Fatalf("shallow selectors: %v", r)
	}
	// An empty list selects nothing.
	out, in = gcmSetup.pair(t)
	in.localTS = nil
	p = newPacket(gcmSetup.innerPkt(60, 0))
	w.Encrypt(out, p)
	if r := w.Decrypt(in, p); r != DropSelector {
		t.Fatalf("empty selectors: %v", r)
	}
}

func TestParseFlowIPv6Extensions(t *testing.T) {
	// Hop-by-hop, then a first fragment, then UDP.
	ext := []byte{protoFragment, 0, 1, 4, 0, 0, 0, 0}
	fragHdr := []byte{protoUDP, 0, 0, 0, 0, 0, 0, 1}
	pkt := ipv6("fd00::1", "fd00::2", protoHopByHop, 0, append(append(ext, fragHdr...), udpPayload(7, 9, 4)...))
	var f flow
	f.parse(pkt)
	if f.proto != protoUDP || !f.ports || f.sport != 7 || f.dport != 9 {
		t.Fatalf("first fragment: %+v", f)
	}
	binary.BigEndian.PutUint16(pkt[40+8+2:], 8) // offset 1: a later fragment
	f = flow{}
	if f.parse(pkt); f.proto != protoUDP || f.ports {
		t.Fatalf("later fragment: %+v", f)
	}
	icmp := ipv6("fd00::1", "fd00::2", protoICMPv6, 0, []byte{128, 0, 0, 0})
	f = flow{}
	if f.parse(icmp); !f.ports || f.sport != 128<<8 {
		t.Fatalf("icmpv6: %+v", f)
	}
}

func TestECN(t *testing.T) {
	// RFC 6040 Figure 4, inner rows by outer columns (Not-ECT, ECT(1),
	// ECT(0), CE in codepoint order); 0xff is drop.
	table := [4][4]uint8{
		ecnNotECT: {ecnNotECT, ecnNotECT, ecnNotECT, 0xff},
		ecnECT1:   {ecnECT1, ecnECT1, ecnECT1, ecnCE},
		ecnECT0:   {ecnECT0, ecnECT1, ecnECT0, ecnCE},
		ecnCE:     {ecnCE, ecnCE, ecnCE, ecnCE},
	}
	for inner := range uint8(4) {
		for outer := range uint8(4) {
			want := table[inner][outer]
			got, ok := decapECN(inner, outer)
			if want == 0xff && ok || want != 0xff && (!ok || got != want) {
				t.Errorf("inner %d outer %d: got %d %v, want %d", inner, outer, got, ok, want)
			}
		}
	}
	// Through the engine: outer marked CE in transit.
	for _, fam := range []int{4, 6} {
		for inner := range uint8(4) {
			s := setup{algo: algos[1], mode: Tunnel, inner: fam, outer: 4}
			out, in := s.pair(t)
			w := NewWorker()
			tos := uint8(0xb8) | inner // DSCP EF
			p := newPacket(s.innerPkt(80, tos))
			w.Encrypt(out, p)
			b := p.Bytes()
			setECNv4(b, ecnCE)
			if checksumFold(checksumAdd(0, b[:20])) != 0 {
				t.Fatal("setECNv4 broke the checksum")
			}
			r := w.Decrypt(in, p)
			if inner == ecnNotECT {
				if r != DropECN {
					t.Fatalf("IPv%d not-ECT under CE: %v", fam, r)
				}
				continue
			}
			if r != Accept || trafficClass(p.Bytes()) != 0xb8|ecnCE {
				t.Fatalf("IPv%d inner %d: %v tc %#x", fam, inner, r, trafficClass(p.Bytes()))
			}
			if fam == 4 && checksumFold(checksumAdd(0, p.Bytes()[:20])) != 0 {
				t.Fatal("inner checksum not updated")
			}
		}
	}
}

func TestNewSAValidation(t *testing.T) {
	ok := Config{
		SPI: 0x100, Cipher: AESGCM16, EncKey: make([]byte, 36), Mode: Tunnel,
		Local: netip.MustParseAddr("192.0.2.1"), Remote: netip.MustParseAddr("192.0.2.2"),
	}
	if _, err := NewSA(ok); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		mod  func(c *Config)
	}{
		{"reserved spi", func(c *Config) { c.SPI = 255 }},
		{"gcm key 24+4", func(c *Config) { c.EncKey = make([]byte, 28) }},
		{"gcm without salt", func(c *Config) { c.EncKey = make([]byte, 32) }},
		{"gcm with integrity", func(c *Config) { c.Integrity = HMACSHA256128 }},
		{"gcm with auth key", func(c *Config) { c.AuthKey = make([]byte, 32) }},
		{"chacha key", func(c *Config) { c.Cipher = ChaCha20Poly1305; c.EncKey = make([]byte, 20) }},
		{"cbc without integrity", func(c *Config) { c.Cipher = AESCBC; c.EncKey = make([]byte, 32) }},
		{"cbc bad auth key", func(c *Config) {
			c.Cipher, c.Integrity, c.EncKey, c.AuthKey = AESCBC, HMACSHA384192, make([]byte, 32), make([]byte, 32)
		}},
		{"cbc bad key", func(c *Config) {
			c.Cipher, c.Integrity, c.EncKey, c.AuthKey = AESCBC, HMACSHA256128, make([]byte, 24), make([]byte, 32)
		}},
		{"unknown cipher", func(c *Config) { c.Cipher = 0 }},
		{"unknown mode", func(c *Config) { c.Mode = 0 }},
		{"one encap port", func(c *Config) { c.EncapSrcPort = 4500 }},
		{"window too big", func(c *Config) { c.ReplayWindow = MaxReplayWindow + 1 }},
		{"negative window", func(c *Config) { c.ReplayWindow = -1 }},
		{"tunnel without addresses", func(c *Config) { c.Local = netip.Addr{} }},
		{"mixed families", func(c *Config) { c.Remote = netip.MustParseAddr("2001:db8::1") }},
		{"selector end before start", func(c *Config) {
			c.LocalTS = []Selector{{Start: netip.MustParseAddr("10.0.0.2"), End: netip.MustParseAddr("10.0.0.1"), EndPort: 0xffff}}
		}},
		{"selector mixed families", func(c *Config) {
			c.RemoteTS = []Selector{{Start: netip.MustParseAddr("10.0.0.1"), End: netip.MustParseAddr("::1"), EndPort: 0xffff}}
		}},
		{"selector ports reversed", func(c *Config) {
			c.RemoteTS = []Selector{{Start: netip.MustParseAddr("::1"), End: netip.MustParseAddr("::2"), StartPort: 9, EndPort: 8}}
		}},
		{"selector without addresses", func(c *Config) { c.RemoteTS = []Selector{{EndPort: 0xffff}} }},
	} {
		c2 := ok
		c.mod(&c2)
		if _, err := NewSA(c2); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
}

func TestSADB(t *testing.T) {
	db := NewSADB()
	s := gcmSetup
	out, in := s.pair(t)
	if err := db.Add(in); err != nil {
		t.Fatal(err)
	}
	if err := db.Add(in); err == nil {
		t.Fatal("duplicate spi accepted")
	}
	if db.Lookup(in.spi) != in || db.Lookup(in.spi+1) != nil || db.Len() != 1 {
		t.Fatal("lookup")
	}
	w := NewWorker()
	pkts := make([]Packet, 4)
	for i := range pkts {
		pkts[i] = *newPacket(s.innerPkt(100+i, 0))
		if r := w.Encrypt(out, &pkts[i]); r != Accept {
			t.Fatal(r)
		}
	}
	binary.BigEndian.PutUint32(pkts[2].Bytes()[20:], 0x9999) // unknown SPI
	pkts[3].Bytes()[0] = 0                                   // malformed
	res := make([]Result, 4)
	w.DecryptBatch(db, pkts, res)
	want := []Result{{SA: in, Verdict: Accept}, {SA: in, Verdict: Accept}, {Verdict: DropUnknownSPI}, {Verdict: DropMalformed}}
	for i := range res {
		if res[i].SA != want[i].SA || res[i].Verdict != want[i].Verdict {
			t.Errorf("packet %d: %+v, want %+v", i, res[i], want[i])
		}
	}
	if d := db.Drops(); d[DropUnknownSPI] != 1 || d[DropMalformed] != 1 {
		t.Fatalf("db drops %v", d)
	}
	if db.Remove(in.spi) != in || db.Remove(in.spi) != nil || db.Lookup(in.spi) != nil {
		t.Fatal("remove")
	}
}

// TestConcurrentWorkers runs several workers on one outbound and one
// inbound SA and checks that every sequence number is used once and every
// packet is accepted once.
func TestConcurrentWorkers(t *testing.T) {
	const workers, batches, batch = 4, 50, 16
	for _, a := range []algo{algos[1], algos[4]} {
		s := setup{algo: a, mode: Tunnel, inner: 4, outer: 4}
		out, in := s.pair(t)
		in.replay = newReplayWindow(MaxReplayWindow)
		db := NewSADB()
		if err := db.Add(in); err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		seen := map[uint32]bool{}
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w := NewWorker()
				pkts := make([]Packet, batch)
				verdicts := make([]Verdict, batch)
				res := make([]Result, batch)
				for range batches {
					for i := range pkts {
						pkts[i] = *newPacket(s.innerPkt(200, 0))
					}
					w.EncryptBatch(out, pkts, verdicts)
					mu.Lock()
					for i := range pkts {
						seq := binary.BigEndian.Uint32(pkts[i].Bytes()[24:28])
						if verdicts[i] != Accept || seen[seq] {
							t.Errorf("encrypt: %v, seq %d seen %v", verdicts[i], seq, seen[seq])
						}
						seen[seq] = true
					}
					mu.Unlock()
					dup := pkts[0]
					dup.Buf = append([]byte(nil), dup.Buf...)
					w.DecryptBatch(db, pkts, res)
					for i := range res {
						if res[i].Verdict != Accept {
							t.Errorf("decrypt: %v", res[i].Verdict)
						}
					}
					w.DecryptBatch(db, []Packet{dup}, res[:1])
					if res[0].Verdict != DropReplay {
						t.Errorf("duplicate: %v", res[0].Verdict)
					}
				}
			}()
		}
		wg.Wait()
		const n = workers * batches * batch
		if st := in.Stats(); st.PacketsIn != n || st.Drops[DropReplay] != workers*batches || len(seen) != n {
			t.Fatalf("%s: stats %+v, %d sequence numbers", a.name, st, len(seen))
		}
	}
}

func TestVerdictNames(t *testing.T) {
	want := []string{"unknown_spi", "replay", "auth", "selector", "malformed", "pad", "dummy", "ecn", "expired", "encap", "address"}
	v := Verdicts()
	if len(v) != len(want) {
		t.Fatalf("%v", v)
	}
	for i := range v {
		if v[i].String() != want[i] {
			t.Errorf("%d: %q, want %q", i, v[i], want[i])
		}
	}
}

// TestConcurrentDuplicates has workers race to decrypt copies of the same
// packets: each packet must be accepted exactly once, whichever worker wins.
func TestConcurrentDuplicates(t *testing.T) {
	const workers, packets = 4, 300
	out, in := gcmSetup.pair(t)
	w := NewWorker()
	wire := make([][]byte, packets)
	for i := range wire {
		p := newPacket(gcmSetup.innerPkt(60, 0))
		if w.Encrypt(out, p) != Accept {
			t.Fatal("encrypt")
		}
		wire[i] = append([]byte(nil), p.Bytes()...)
	}
	accepted := make([][workers]bool, packets)
	var wg sync.WaitGroup
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := NewWorker()
			for i := range wire {
				r := w.Decrypt(in, newPacket(wire[i]))
				accepted[i][g] = r == Accept
				if r != Accept && r != DropReplay {
					t.Errorf("packet %d: %v", i, r)
				}
			}
		}()
	}
	wg.Wait()
	for i := range accepted {
		n := 0
		for _, a := range accepted[i] {
			if a {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("packet %d accepted %d times", i, n)
		}
	}
}

// TestIPv4Options round-trips IPv4 packets with a 40-byte header, as long
// as an IPv6 header, in both modes.
func TestIPv4Options(t *testing.T) {
	pkt := ipv4("10.1.0.10", "10.2.0.10", protoUDP, 0, udpPayload(5, 6, 30))
	opts := bytes.Repeat([]byte{1}, 20) // NOPs
	pkt = append(append(append([]byte(nil), pkt[:20]...), opts...), pkt[20:]...)
	pkt[0] = 0x4a
	binary.BigEndian.PutUint16(pkt[2:4], uint16(len(pkt)))
	setIPv4Checksum(pkt[:40])
	w := NewWorker()
	for _, mode := range []Mode{Tunnel, Transport} {
		for _, encap := range []bool{false, true} {
			s := setup{algo: algos[0], mode: mode, inner: 4, outer: 4, encap: encap}
			out, in := s.pair(t)
			p := newPacket(pkt)
			if r := w.Encrypt(out, p); r != Accept {
				t.Fatalf("%v: encrypt %v", s, r)
			}
			checkOuter(t, s, out, p.Bytes(), pkt)
			if r := w.Decrypt(in, p); r != Accept || !bytes.Equal(p.Bytes(), pkt) {
				t.Fatalf("%v: decrypt %v %x", s, r, p.Bytes())
			}
		}
	}
}
