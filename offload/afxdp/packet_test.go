package afxdp

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/xdpsec/xdpsec/offload"
)

// checksum is the Internet checksum of b, computed from scratch.
func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

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
	binary.BigEndian.PutUint16(b[10:12], checksum(b[:ipv4MinLen]))
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
			binary.BigEndian.PutUint16(b[10:12], checksum(b[:ipv4MinLen]))
			if !decTTL(b, false) {
				t.Fatalf("ttl %d: not forwarded", ttl)
			}
			if b[8] != uint8(ttl-1) {
				t.Fatalf("ttl %d: became %d", ttl, b[8])
			}
			if got := checksum(b[:ipv4MinLen]); got != 0 {
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

func TestSPDLookup(t *testing.T) {
	a, b, c := &outSA{spi: 1}, &outSA{spi: 2}, &outSA{spi: 3}
	mp := netip.MustParsePrefix
	tbl := buildSPD([]*spdEntry{
		{src: mp("10.1.0.0/24"), dst: mp("10.2.0.0/16"), out: a},
		{src: mp("10.1.0.0/24"), dst: mp("10.2.3.0/24"), proto: 6, out: b},
		{src: mp("2001:db8:1::/48"), dst: mp("2001:db8:2::/48"), out: c},
	})
	ma := netip.MustParseAddr
	var memo spdMemo
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
		// The memo runs through the cases in order and twice each: the
		// second answer comes from it, the first replaces the previous
		// case's (same destination, other source or protocol included).
		for i, e := range []*spdEntry{
			tbl.lookup(ma(tc.src), ma(tc.dst), tc.proto),
			tbl.lookupMemo(&memo, ma(tc.src), ma(tc.dst), tc.proto),
			tbl.lookupMemo(&memo, ma(tc.src), ma(tc.dst), tc.proto),
		} {
			if got := outOf(e); got != tc.want {
				t.Errorf("lookup %d %s -> %s proto %d = %v, want %v", i, tc.src, tc.dst, tc.proto, got, tc.want)
			}
		}
	}
	// A new table (policies changed) is looked up again, not answered
	// from the memo of the old one.
	moved := buildSPD([]*spdEntry{{src: mp("2001:db8:1::/48"), dst: mp("2001:db8:2::/48"), out: a}})
	if got := outOf(moved.lookupMemo(&memo, ma("2001:db8:9::10"), ma("2001:db8:2::10"), 58)); got != nil {
		t.Errorf("new table, unselected source: %v, want none", got)
	}
	if got := outOf(moved.lookupMemo(&memo, ma("2001:db8:1::10"), ma("2001:db8:2::10"), 58)); got != a {
		t.Errorf("new table: %v, want the moved policy's SA", got)
	}
	allocs := testing.AllocsPerRun(100, func() {
		tbl.lookup(ma("10.1.0.10"), ma("10.2.3.10"), 6)
	})
	if allocs != 0 {
		t.Errorf("lookup allocates %v times", allocs)
	}
}

func outOf(e *spdEntry) *outSA {
	if e == nil {
		return nil
	}
	return e.out
}

func validSA(dir offload.Direction) offload.SA {
	return offload.SA{
		SPI: 0x1000, Dir: dir, Encr: offload.EncrAESGCM16, KeyBits: 256,
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
	cbc.Encr, cbc.EncrKey, cbc.Integ, cbc.IntegKey = offload.EncrAESCBC, make(offload.Key, 32), offload.IntegHMACSHA256_128, make(offload.Key, 32)
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
		{"gcm with integrity", func(sa *offload.SA) { sa.Integ = offload.IntegHMACSHA256_128 }},
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
