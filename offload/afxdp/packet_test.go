package afxdp

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/xdpsec/xdpsec/offload"
)

func ipv4Packet(ttl uint8, payload int, df bool) []byte {
	b := make([]byte, ipv4MinLen+payload)
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:6], 0x1234)
	if df {
		b[6] = 0x40
	}
	b[8], b[9] = ttl, 17
	copy(b[12:16], []byte{10, 1, 0, 10})
	copy(b[16:20], []byte{10, 2, 0, 10})
	binary.BigEndian.PutUint16(b[10:12], csumFold(csumAdd(0, b[:ipv4MinLen])))
	return b
}

func ipv6Packet(hops uint8, payload int) []byte {
	b := make([]byte, ipv6Len+payload)
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:6], uint16(payload))
	b[6], b[7] = 17, hops
	s := netip.MustParseAddr("2001:db8:1::10").As16()
	d := netip.MustParseAddr("2001:db8:2::10").As16()
	copy(b[8:24], s[:])
	copy(b[24:40], d[:])
	return b
}

func TestDecTTLChecksum(t *testing.T) {
	for ttl := 2; ttl <= 255; ttl++ {
		for _, id := range []uint16{0, 0x1234, 0xfeff, 0xffff} {
			b := ipv4Packet(uint8(ttl), 8, false)
			binary.BigEndian.PutUint16(b[4:6], id)
			b[10], b[11] = 0, 0
			binary.BigEndian.PutUint16(b[10:12], csumFold(csumAdd(0, b[:ipv4MinLen])))
			if !decTTL(b, false) {
				t.Fatalf("ttl %d: not forwarded", ttl)
			}
			if b[8] != uint8(ttl-1) {
				t.Fatalf("ttl %d: became %d", ttl, b[8])
			}
			if got := csumFold(csumAdd(0, b[:ipv4MinLen])); got != 0 {
				t.Fatalf("ttl %d id %#x: header checksum does not verify (%#x)", ttl, id, got)
			}
		}
	}
	for _, ttl := range []uint8{0, 1} {
		if decTTL(ipv4Packet(ttl, 8, false), false) {
			t.Errorf("ipv4 ttl %d forwarded", ttl)
		}
		if decTTL(ipv6Packet(ttl, 8), true) {
			t.Errorf("ipv6 hop limit %d forwarded", ttl)
		}
	}
	b := ipv6Packet(64, 8)
	if !decTTL(b, true) || b[7] != 63 {
		t.Fatalf("ipv6 hop limit 64 became %d", b[7])
	}
}

func TestParseIP(t *testing.T) {
	p := append(ipv4Packet(64, 30, true), make([]byte, 10)...) // Ethernet padding
	ip, ok := parseIP(p)
	if !ok || ip.totalLen != 50 || !ip.df || ip.v6 || ip.proto != 17 ||
		ip.src != netip.MustParseAddr("10.1.0.10") || ip.dst != netip.MustParseAddr("10.2.0.10") {
		t.Fatalf("parseIP ipv4 = %+v, %v", ip, ok)
	}
	ip, ok = parseIP(ipv6Packet(64, 12))
	if !ok || !ip.v6 || ip.totalLen != 52 || ip.dst != netip.MustParseAddr("2001:db8:2::10") {
		t.Fatalf("parseIP ipv6 = %+v, %v", ip, ok)
	}
	for name, b := range map[string][]byte{
		"empty":         nil,
		"short v4":      ipv4Packet(64, 0, false)[:19],
		"length beyond": ipv4Packet(64, 10, false)[:25],
		"ihl 4":         func() []byte { b := ipv4Packet(64, 10, false); b[0] = 0x44; return b }(),
		"short v6":      ipv6Packet(64, 0)[:39],
		"v6 beyond":     ipv6Packet(64, 20)[:50],
		"version 5":     func() []byte { b := ipv4Packet(64, 10, false); b[0] = 0x55; return b }(),
	} {
		if _, ok := parseIP(b); ok {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestBuildTooBig(t *testing.T) {
	our := [6]byte{2, 0, 0, 0, 0, 1}
	host := [6]byte{2, 0, 0, 0, 0, 2}
	t.Run("ipv4", func(t *testing.T) {
		orig := ipv4Packet(64, 1480, true)
		ip, _ := parseIP(orig)
		out := make([]byte, 2048)
		src := netip.MustParseAddr("10.1.0.1")
		n := buildTooBig(out, orig, ip, 1443, src, our, host)
		if n != ethLen+ipv4MinMTU {
			t.Fatalf("length %d, want %d", n, ethLen+ipv4MinMTU)
		}
		if [6]byte(out[0:6]) != host || [6]byte(out[6:12]) != our || etherType(out) != ethTypeIPv4 {
			t.Fatalf("ethernet header % x", out[:14])
		}
		h := out[ethLen:n]
		rip, ok := parseIP(h)
		if !ok || rip.src != src || rip.dst != ip.src || rip.proto != protoICMP || rip.totalLen != len(h) {
			t.Fatalf("ip header %+v %v", rip, ok)
		}
		if csumFold(csumAdd(0, h[:ipv4MinLen])) != 0 {
			t.Fatal("ip checksum")
		}
		m := h[ipv4MinLen:]
		if m[0] != 3 || m[1] != 4 || binary.BigEndian.Uint16(m[6:8]) != 1443 {
			t.Fatalf("icmp header % x", m[:8])
		}
		if csumFold(csumAdd(0, m)) != 0 {
			t.Fatal("icmp checksum")
		}
		if string(m[8:28]) != string(orig[:20]) {
			t.Fatal("quoted header differs")
		}
		if !isICMPError(h, rip) {
			t.Fatal("our own error is not recognised as an ICMP error")
		}
	})
	t.Run("ipv6", func(t *testing.T) {
		orig := ipv6Packet(64, 1460)
		ip, _ := parseIP(orig)
		out := make([]byte, 2048)
		src := netip.MustParseAddr("2001:db8:1::1")
		n := buildTooBig(out, orig, ip, 1423, src, our, host)
		if n != ethLen+ipv6MinMTU {
			t.Fatalf("length %d, want %d", n, ethLen+ipv6MinMTU)
		}
		h := out[ethLen:n]
		rip, ok := parseIP(h)
		if !ok || rip.src != src || rip.dst != ip.src || rip.proto != protoICMPv6 || h[7] != 255 {
			t.Fatalf("ip header %+v %v", rip, ok)
		}
		m := h[ipv6Len:]
		if m[0] != 2 || binary.BigEndian.Uint32(m[4:8]) != 1423 {
			t.Fatalf("icmpv6 header % x", m[:8])
		}
		sum := csumAdd(0, h[8:40]) + uint32(len(m)) + protoICMPv6
		if csumFold(csumAdd(sum, m)) != 0 {
			t.Fatal("icmpv6 checksum")
		}
		if !isICMPError(h, rip) {
			t.Fatal("our own error is not recognised as an ICMP error")
		}
	})
	t.Run("no room", func(t *testing.T) {
		orig := ipv4Packet(64, 1000, true)
		ip, _ := parseIP(orig)
		if n := buildTooBig(make([]byte, 100), orig, ip, 1000, netip.MustParseAddr("10.1.0.1"), our, host); n != 0 {
			t.Fatalf("wrote %d bytes into 100", n)
		}
	})
}

func TestIsICMPError(t *testing.T) {
	echo := ipv4Packet(64, 8, false)
	echo[9], echo[20] = protoICMP, 8
	ip, _ := parseIP(echo)
	if isICMPError(echo, ip) {
		t.Error("echo request taken for an error")
	}
	echo[20] = 11
	if !isICMPError(echo, ip) {
		t.Error("time exceeded not taken for an error")
	}
	udp := ipv4Packet(64, 8, false)
	ip, _ = parseIP(udp)
	if isICMPError(udp, ip) {
		t.Error("udp taken for an ICMP error")
	}
}

func TestLimiter(t *testing.T) {
	l := newLimiter(10, 3)
	now := time.Unix(1000, 0)
	got := 0
	for range 10 {
		if l.allow(now) {
			got++
		}
	}
	if got != 3 {
		t.Fatalf("burst gave %d, want 3", got)
	}
	if !l.allow(now.Add(100 * time.Millisecond)) {
		t.Fatal("no token after 1/rate")
	}
	if l.allow(now.Add(100 * time.Millisecond)) {
		t.Fatal("second token in the same instant")
	}
}

func TestSPDLookup(t *testing.T) {
	a, b, c := &outSA{spi: 1}, &outSA{spi: 2}, &outSA{spi: 3}
	mp := netip.MustParsePrefix
	tbl := buildSPD([]*spdEntry{
		{src: mp("10.1.0.0/24"), dst: mp("10.2.0.0/16"), out: a},
		{src: mp("10.1.0.0/24"), dst: mp("10.2.3.0/24"), proto: 6, out: b},
		{src: mp("2001:db8:1::/48"), dst: mp("2001:db8:2::/48"), out: c},
	})
	ma := netip.MustParseAddr
	for _, tc := range []struct {
		src, dst string
		proto    uint8
		want     *outSA
	}{
		{"10.1.0.10", "10.2.0.10", 1, a},
		{"10.1.0.10", "10.2.3.10", 6, b},
		// The longest prefix decides alone, as in xdp_lan.
		{"10.1.0.10", "10.2.3.10", 17, nil},
		{"10.9.0.10", "10.2.0.10", 1, nil},
		{"10.1.0.10", "10.3.0.10", 1, nil},
		{"2001:db8:1::10", "2001:db8:2::10", 58, c},
		{"2001:db8:9::10", "2001:db8:2::10", 58, nil},
	} {
		e := tbl.lookup(ma(tc.src), ma(tc.dst), tc.proto)
		var got *outSA
		if e != nil {
			got = e.out
		}
		if got != tc.want {
			t.Errorf("lookup %s -> %s proto %d = %v, want %v", tc.src, tc.dst, tc.proto, got, tc.want)
		}
	}
	allocs := testing.AllocsPerRun(100, func() {
		tbl.lookup(ma("10.1.0.10"), ma("10.2.3.10"), 6)
	})
	if allocs != 0 {
		t.Errorf("lookup allocates %v times", allocs)
	}
}

func validSA(dir offload.Direction) offload.SA {
	return offload.SA{
		SPI: 0x1000, Dir: dir, Encr: encrAESGCM16, KeyBits: 256,
		EncrKey: make(offload.Key, 36), Mode: offload.Tunnel,
		Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"),
		LocalTS:  []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24")},
		RemoteTS: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/24")},
	}
}

func TestESPConfig(t *testing.T) {
	c, err := espConfig(validSA(offload.In))
	if err != nil {
		t.Fatal(err)
	}
	if c.Local != netip.MustParseAddr("192.0.2.2") || c.Remote != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("inbound sa: local %s remote %s, want them swapped", c.Local, c.Remote)
	}
	out := validSA(offload.Out)
	out.Encap = &offload.Encap{SrcPort: 4500, DstPort: 4501}
	if c, err = espConfig(out); err != nil || c.EncapSrcPort != 4500 || c.EncapDstPort != 4501 {
		t.Errorf("outbound encap: %+v %v", c, err)
	}
	cbc := validSA(offload.Out)
	cbc.Encr, cbc.EncrKey, cbc.Integ, cbc.IntegKey = encrAESCBC, make(offload.Key, 32), authSHA256_128, make(offload.Key, 32)
	if _, err := espConfig(cbc); err != nil {
		t.Errorf("aes-cbc: %v", err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*offload.SA)
	}{
		{"reserved spi", func(sa *offload.SA) { sa.SPI = 255 }},
		{"no direction", func(sa *offload.SA) { sa.Dir = 0 }},
		{"transport", func(sa *offload.SA) { sa.Mode = offload.Transport }},
		{"short key", func(sa *offload.SA) { sa.EncrKey = make(offload.Key, 32) }},
		{"gcm with integrity", func(sa *offload.SA) { sa.Integ = authSHA256_128 }},
		{"3des", func(sa *offload.SA) { sa.Encr = 3 }},
		{"mixed families", func(sa *offload.SA) { sa.Dst = netip.MustParseAddr("2001:db8::2") }},
		{"no selectors", func(sa *offload.SA) { sa.LocalTS = nil }},
		{"half encap", func(sa *offload.SA) { sa.Encap = &offload.Encap{SrcPort: 4500} }},
	} {
		sa := validSA(offload.In)
		tc.mutate(&sa)
		if _, err := espConfig(sa); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

func TestAllocSPI(t *testing.T) {
	d := &Dataplane{reserved: map[uint32]struct{}{}, sas: map[saKey]*saEntry{}}
	ctx := t.Context()
	seen := map[uint32]bool{}
	for range 1000 {
		spi, err := d.AllocSPI(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if spi < 256 || seen[spi] {
			t.Fatalf("spi %08x reserved range or duplicate", spi)
		}
		seen[spi] = true
	}
	for spi := range seen {
		if err := d.ReleaseSPI(ctx, spi); err != nil {
			t.Fatal(err)
		}
		if err := d.ReleaseSPI(ctx, spi); !errors.Is(err, offload.ErrNotFound) {
			t.Fatalf("second release: %v, want ErrNotFound", err)
		}
		break
	}
}
