package icmp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
)

// refChecksum is RFC 1071's algorithm written the slow, obvious way, to
// check the package's own.
func refChecksum(parts ...[]byte) uint16 {
	var all []byte
	for _, p := range parts {
		all = append(all, p...)
	}
	if len(all)%2 == 1 {
		all = append(all, 0)
	}
	var s uint64
	for i := 0; i < len(all); i += 2 {
		s += uint64(all[i])<<8 | uint64(all[i+1])
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

type v4opts struct {
	src, dst string
	proto    byte
	fragWord uint16 // flags and offset
	options  int    // bytes of IP options (multiple of 4)
	payload  []byte
	total    int // total length field; 0 = real length
}

func pkt4(o v4opts) []byte {
	ihl := 20 + o.options
	b := make([]byte, ihl+len(o.payload))
	b[0] = 0x40 | byte(ihl/4)
	total := len(b)
	if o.total != 0 {
		total = o.total
	}
	binary.BigEndian.PutUint16(b[2:4], uint16(total))
	binary.BigEndian.PutUint16(b[4:6], 0x1234)
	binary.BigEndian.PutUint16(b[6:8], o.fragWord)
	b[8] = 17
	b[9] = o.proto
	s, d := netip.MustParseAddr(o.src).As4(), netip.MustParseAddr(o.dst).As4()
	copy(b[12:16], s[:])
	copy(b[16:20], d[:])
	for i := 20; i < ihl; i++ {
		b[i] = 1 // NOP options
	}
	copy(b[ihl:], o.payload)
	binary.BigEndian.PutUint16(b[10:12], refChecksum(b[:ihl]))
	return b
}

func seq(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + 3)
	}
	return b
}

func TestFragNeeded(t *testing.T) {
	icmpEcho := append([]byte{8, 0, 0, 0}, seq(1472)...)
	icmpUnreach := append([]byte{3, 1, 0, 0}, seq(100)...)
	tests := []struct {
		name    string
		orig    []byte
		mtu     int
		wantErr error
		quote   int // bytes of orig quoted when no error
	}{
		{"udp", pkt4(v4opts{src: "10.1.0.10", dst: "10.2.0.10", proto: 17, fragWord: 0x4000, payload: seq(1480)}), 1400, nil, 28},
		{"ip options quoted whole", pkt4(v4opts{src: "10.1.0.10", dst: "10.2.0.10", proto: 6, fragWord: 0x4000, options: 8, payload: seq(1000)}), 576, nil, 36},
		{"icmp echo is answered", pkt4(v4opts{src: "10.1.0.10", dst: "10.2.0.10", proto: 1, fragWord: 0x4000, payload: icmpEcho}), 1400, nil, 28},
		{"first fragment", pkt4(v4opts{src: "10.1.0.10", dst: "10.2.0.10", proto: 17, fragWord: 0x2000, payload: seq(1480)}), 1400, nil, 28},
		{"caller holds only the head", pkt4(v4opts{src: "10.1.0.10", dst: "10.2.0.10", proto: 17, fragWord: 0x4000, payload: seq(4), total: 1500}), 1400, nil, 24},
		{"total length shorter than buffer", pkt4(v4opts{src: "10.1.0.10", dst: "10.2.0.10", proto: 17, payload: seq(60), total: 25}), 1400, nil, 25},
		{"icmp error", pkt4(v4opts{src: "10.1.0.10", dst: "10.2.0.10", proto: 1, payload: icmpUnreach}), 1400, ErrAboutError, 0},
		{"non-first fragment", pkt4(v4opts{src: "10.1.0.10", dst: "10.2.0.10", proto: 17, fragWord: 0x00b9, payload: seq(1000)}), 1400, ErrFragment, 0},
		{"non-first fragment of icmp", pkt4(v4opts{src: "10.1.0.10", dst: "10.2.0.10", proto: 1, fragWord: 0x0001, payload: seq(1000)}), 1400, ErrFragment, 0},
		{"multicast source", pkt4(v4opts{src: "224.0.0.5", dst: "10.2.0.10", proto: 17, payload: seq(100)}), 1400, ErrNotUnicast, 0},
		{"zero source", pkt4(v4opts{src: "0.0.0.0", dst: "10.2.0.10", proto: 17, payload: seq(100)}), 1400, ErrNotUnicast, 0},
		{"loopback source", pkt4(v4opts{src: "127.0.0.1", dst: "10.2.0.10", proto: 17, payload: seq(100)}), 1400, ErrNotUnicast, 0},
		{"broadcast source", pkt4(v4opts{src: "255.255.255.255", dst: "10.2.0.10", proto: 17, payload: seq(100)}), 1400, ErrNotUnicast, 0},
		{"broadcast destination", pkt4(v4opts{src: "10.1.0.10", dst: "255.255.255.255", proto: 17, payload: seq(100)}), 1400, ErrNotUnicast, 0},
		{"multicast destination", pkt4(v4opts{src: "10.1.0.10", dst: "239.1.2.3", proto: 17, payload: seq(100)}), 1400, ErrNotUnicast, 0},
		{"icmp without type", pkt4(v4opts{src: "10.1.0.10", dst: "10.2.0.10", proto: 1}), 1400, ErrMalformed, 0},
		{"too short", seq(19), 1400, ErrMalformed, 0},
		{"ipv6 packet", append([]byte{0x60}, seq(59)...), 1400, ErrMalformed, 0},
		{"ihl below 5", func() []byte {
			b := pkt4(v4opts{src: "10.1.0.10", dst: "10.2.0.10", proto: 17, payload: seq(40)})
			b[0] = 0x44
			return b
		}(), 1400, ErrMalformed, 0},
		{"mtu too small", pkt4(v4opts{src: "10.1.0.10", dst: "10.2.0.10", proto: 17, payload: seq(100)}), 67, ErrBadMTU, 0},
		{"mtu too large", pkt4(v4opts{src: "10.1.0.10", dst: "10.2.0.10", proto: 17, payload: seq(100)}), 65536, ErrBadMTU, 0},
	}
	src := netip.MustParseAddr("10.1.0.1")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte{0xde, 0xad}
			out, err := FragNeeded(append([]byte(nil), prefix...), tt.orig, src, tt.mtu)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if isSup := errors.Is(err, ErrSuppressed); isSup != (tt.wantErr == ErrAboutError || tt.wantErr == ErrFragment || tt.wantErr == ErrNotUnicast) {
					t.Fatalf("errors.Is(%v, ErrSuppressed) = %v", err, isSup)
				}
				if !bytes.Equal(out, prefix) {
					t.Fatalf("dst changed on error: %x", out)
				}
				return
			}
			if err != nil {
				t.Fatalf("FragNeeded: %v", err)
			}
			if !bytes.Equal(out[:2], prefix) {
				t.Fatalf("dst's existing bytes overwritten: %x", out[:2])
			}
			p := out[2:]
			if want := 20 + 8 + tt.quote; len(p) != want {
				t.Fatalf("length %d, want %d", len(p), want)
			}
			// IPv4 header.
			checks := []struct {
				what      string
				got, want int
			}{
				{"version/ihl", int(p[0]), 0x45},
				{"total length", int(binary.BigEndian.Uint16(p[2:4])), len(p)},
				{"flags/offset (DF)", int(binary.BigEndian.Uint16(p[6:8])), 0x4000},
				{"ttl", int(p[8]), 64},
				{"protocol", int(p[9]), 1},
				{"header checksum", int(refChecksum(p[:20])), 0},
				{"icmp type", int(p[20]), 3},
				{"icmp code", int(p[21]), 4},
				{"unused", int(binary.BigEndian.Uint16(p[24:26])), 0},
				{"next-hop mtu", int(binary.BigEndian.Uint16(p[26:28])), tt.mtu},
				{"icmp checksum", int(refChecksum(p[20:])), 0},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s = %#x, want %#x", c.what, c.got, c.want)
				}
			}
			if got := netip.AddrFrom4([4]byte(p[12:16])); got != src {
				t.Errorf("source %v, want %v", got, src)
			}
			if !bytes.Equal(p[16:20], tt.orig[12:16]) {
				t.Errorf("destination %v, want the original's source %v", p[16:20], tt.orig[12:16])
			}
			if !bytes.Equal(p[28:], tt.orig[:tt.quote]) {
				t.Errorf("quote %x, want %x", p[28:], tt.orig[:tt.quote])
			}
		})
	}
}

func TestFragNeededBadSource(t *testing.T) {
	orig := pkt4(v4opts{src: "10.1.0.10", dst: "10.2.0.10", proto: 17, payload: seq(100)})
	for _, s := range []netip.Addr{{}, netip.MustParseAddr("2001:db8::1")} {
		if _, err := FragNeeded(nil, orig, s, 1400); !errors.Is(err, ErrBadSource) {
			t.Errorf("source %v: err = %v, want ErrBadSource", s, err)
		}
	}
	if _, err := FragNeeded(nil, orig, netip.MustParseAddr("::ffff:10.1.0.1"), 1400); err != nil {
		t.Errorf("v4-mapped source: %v", err)
	}
}

type v6opts struct {
	src, dst string
	next     byte
	payload  []byte // from the first extension header or upper layer on
	plen     int    // payload length field; -1 = real length
}

func pkt6(o v6opts) []byte {
	b := make([]byte, 40+len(o.payload))
	b[0] = 0x60
	pl := len(o.payload)
	if o.plen >= 0 {
		pl = o.plen
	}
	binary.BigEndian.PutUint16(b[4:6], uint16(pl))
	b[6] = o.next
	b[7] = 63
	s, d := netip.MustParseAddr(o.src).As16(), netip.MustParseAddr(o.dst).As16()
	copy(b[8:24], s[:])
	copy(b[24:40], d[:])
	copy(b[40:], o.payload)
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestPacketTooBig(t *testing.T) {
	const a, b = "fd00:1::10", "fd00:2::10"
	echo := cat([]byte{128, 0, 0, 0}, seq(1452))
	unreach := cat([]byte{1, 3, 0, 0}, seq(200))
	hbh := func(next byte) []byte { return cat([]byte{next, 0}, make([]byte, 6)) }
	frag := func(next byte, offMF uint16) []byte {
		h := []byte{next, 0, 0, 0, 0, 0, 0, 1}
		binary.BigEndian.PutUint16(h[2:4], offMF)
		return h
	}
	tests := []struct {
		name    string
		orig    []byte
		mtu     int
		wantErr error
		quote   int
	}{
		{"udp capped to 1280", pkt6(v6opts{src: a, dst: b, next: 17, payload: seq(1460), plen: -1}), 1400, nil, 1232},
		{"small packet quoted whole", pkt6(v6opts{src: a, dst: b, next: 17, payload: seq(100), plen: -1}), 1280, nil, 140},
		{"payload length bounds the quote", pkt6(v6opts{src: a, dst: b, next: 17, payload: seq(300), plen: 60}), 1400, nil, 100},
		{"icmpv6 echo answered", pkt6(v6opts{src: a, dst: b, next: 58, payload: echo, plen: -1}), 1400, nil, 1232},
		{"multicast destination answered", pkt6(v6opts{src: a, dst: "ff0e::1", next: 17, payload: seq(1460), plen: -1}), 1400, nil, 1232},
		{"first fragment", pkt6(v6opts{src: a, dst: b, next: 44, payload: cat(frag(17, 1), seq(1400)), plen: -1}), 1400, nil, 1232},
		{"icmpv6 error", pkt6(v6opts{src: a, dst: b, next: 58, payload: unreach, plen: -1}), 1400, ErrAboutError, 0},
		{"icmpv6 error behind hop-by-hop", pkt6(v6opts{src: a, dst: b, next: 0, payload: cat(hbh(58), unreach), plen: -1}), 1400, ErrAboutError, 0},
		{"icmpv6 error in first fragment", pkt6(v6opts{src: a, dst: b, next: 44, payload: cat(frag(58, 1), unreach), plen: -1}), 1400, ErrAboutError, 0},
		{"non-first fragment", pkt6(v6opts{src: a, dst: b, next: 44, payload: cat(frag(17, 1448), seq(1400)), plen: -1}), 1400, ErrFragment, 0},
		{"multicast source", pkt6(v6opts{src: "ff02::1", dst: b, next: 17, payload: seq(100), plen: -1}), 1400, ErrNotUnicast, 0},
		{"unspecified source", pkt6(v6opts{src: "::", dst: b, next: 17, payload: seq(100), plen: -1}), 1400, ErrNotUnicast, 0},
		{"truncated extension header", pkt6(v6opts{src: a, dst: b, next: 0, payload: []byte{17, 0, 0}, plen: -1}), 1400, ErrMalformed, 0},
		{"ipv4 packet", pkt4(v4opts{src: "10.1.0.10", dst: "10.2.0.10", proto: 17, payload: seq(100)}), 1400, ErrMalformed, 0},
		{"mtu below 1280", pkt6(v6opts{src: a, dst: b, next: 17, payload: seq(1460), plen: -1}), 1279, ErrBadMTU, 0},
	}
	src := netip.MustParseAddr("fd00:1::1")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte{0xbe, 0xef, 0x01}
			out, err := PacketTooBig(append([]byte(nil), prefix...), tt.orig, src, tt.mtu)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if !bytes.Equal(out, prefix) {
					t.Fatalf("dst changed on error: %x", out)
				}
				return
			}
			if err != nil {
				t.Fatalf("PacketTooBig: %v", err)
			}
			if !bytes.Equal(out[:3], prefix) {
				t.Fatalf("dst's existing bytes overwritten: %x", out[:3])
			}
			p := out[3:]
			if want := 40 + 8 + tt.quote; len(p) != want {
				t.Fatalf("length %d, want %d", len(p), want)
			}
			if len(p) > 1280 {
				t.Fatalf("message of %d bytes exceeds 1280", len(p))
			}
			plen := len(p) - 40
			pseudo := make([]byte, 40)
			copy(pseudo[0:32], p[8:40])
			binary.BigEndian.PutUint32(pseudo[32:36], uint32(plen))
			pseudo[39] = 58
			checks := []struct {
				what      string
				got, want int
			}{
				{"version", int(p[0] >> 4), 6},
				{"payload length", int(binary.BigEndian.Uint16(p[4:6])), plen},
				{"next header", int(p[6]), 58},
				{"hop limit", int(p[7]), 64},
				{"type", int(p[40]), 2},
				{"code", int(p[41]), 0},
				{"mtu", int(binary.BigEndian.Uint32(p[44:48])), tt.mtu},
				{"checksum with pseudo-header", int(refChecksum(pseudo, p[40:])), 0},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s = %#x, want %#x", c.what, c.got, c.want)
				}
			}
			if got := netip.AddrFrom16([16]byte(p[8:24])); got != src {
				t.Errorf("source %v, want %v", got, src)
			}
			if !bytes.Equal(p[24:40], tt.orig[8:24]) {
				t.Errorf("destination is not the original's source")
			}
			if !bytes.Equal(p[48:], tt.orig[:tt.quote]) {
				t.Errorf("quote differs from the original's first %d bytes", tt.quote)
			}
		})
	}
}

func TestPacketTooBigBadSource(t *testing.T) {
	orig := pkt6(v6opts{src: "fd00:1::10", dst: "fd00:2::10", next: 17, payload: seq(100), plen: -1})
	for _, s := range []netip.Addr{{}, netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("::ffff:10.1.0.1")} {
		if _, err := PacketTooBig(nil, orig, s, 1400); !errors.Is(err, ErrBadSource) {
			t.Errorf("source %v: err = %v, want ErrBadSource", s, err)
		}
	}
}

func TestBuildersDoNotAllocate(t *testing.T) {
	buf := make([]byte, 0, 2048)
	o4 := pkt4(v4opts{src: "10.1.0.10", dst: "10.2.0.10", proto: 17, payload: seq(1480)})
	o6 := pkt6(v6opts{src: "fd00:1::10", dst: "fd00:2::10", next: 17, payload: seq(1460), plen: -1})
	frag := pkt4(v4opts{src: "10.1.0.10", dst: "10.2.0.10", proto: 17, fragWord: 0x0010, payload: seq(100)})
	s4, s6 := netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("fd00:1::1")
	tests := []struct {
		name string
		fn   func()
	}{
		{"FragNeeded", func() { FragNeeded(buf[:0], o4, s4, 1400) }},
		{"PacketTooBig", func() { PacketTooBig(buf[:0], o6, s6, 1400) }},
		{"FragNeeded suppressed", func() { FragNeeded(buf[:0], frag, s4, 1400) }},
	}
	for _, tt := range tests {
		if n := testing.AllocsPerRun(100, tt.fn); n != 0 {
			t.Errorf("%s allocates %v times", tt.name, n)
		}
	}
}

func TestChecksumOddLength(t *testing.T) {
	for n := range 40 {
		b := seq(n)
		if got, want := ^fold(sum(0, b)), refChecksum(b); got != want {
			t.Fatalf("length %d: checksum %#x, want %#x", n, got, want)
		}
	}
}

func FuzzBuilders(f *testing.F) {
	f.Add(pkt4(v4opts{src: "10.1.0.10", dst: "10.2.0.10", proto: 17, payload: seq(100)}), 1400)
	f.Add(pkt6(v6opts{src: "fd00:1::10", dst: "fd00:2::10", next: 0, payload: cat([]byte{44, 0}, make([]byte, 6), []byte{58, 0, 0, 0, 0, 0, 0, 0}), plen: -1}), 1400)
	s4, s6 := netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("fd00:1::1")
	f.Fuzz(func(t *testing.T, orig []byte, mtu int) {
		if out, err := FragNeeded(nil, orig, s4, mtu); err == nil {
			if refChecksum(out[:20]) != 0 || refChecksum(out[20:]) != 0 {
				t.Fatalf("bad checksum for %x", orig)
			}
		}
		if out, err := PacketTooBig(nil, orig, s6, mtu); err == nil && len(out) > 1280 {
			t.Fatalf("%d-byte message", len(out))
		}
	})
}

func BenchmarkPacketTooBig(b *testing.B) {
	buf := make([]byte, 0, 2048)
	o6 := pkt6(v6opts{src: "fd00:1::10", dst: "fd00:2::10", next: 17, payload: seq(1460), plen: -1})
	s6 := netip.MustParseAddr("fd00:1::1")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := PacketTooBig(buf[:0], o6, s6, 1400); err != nil {
			b.Fatal(err)
		}
	}
}
