package message

import (
	"net/netip"
	"slices"
	"testing"
)

func TestSelectorPrefixes(t *testing.T) {
	a := netip.MustParseAddr
	tests := []struct {
		start, end string
		want       []string
	}{
		{"10.1.0.0", "10.1.0.255", []string{"10.1.0.0/24"}},
		{"0.0.0.0", "255.255.255.255", []string{"0.0.0.0/0"}},
		{"192.0.2.7", "192.0.2.7", []string{"192.0.2.7/32"}},
		{"10.0.0.1", "10.0.0.6", []string{"10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"}},
		{"255.255.255.254", "255.255.255.255", []string{"255.255.255.254/31"}},
		{"::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", []string{"::/0"}},
		{"2001:db8::", "2001:db8::1:ffff", []string{"2001:db8::/111"}},
		{"2001:db8::ffff", "2001:db8::1:0", []string{"2001:db8::ffff/128", "2001:db8::1:0/128"}},
	}
	for _, tt := range tests {
		ts, err := SelectorFromRange(a(tt.start), a(tt.end))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range ts.Prefixes() {
			got = append(got, p.String())
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s-%s: %v, want %v", tt.start, tt.end, got, tt.want)
		}
		p, ok := ts.Prefix()
		if ok != (len(tt.want) == 1) || ok && p.String() != tt.want[0] {
			t.Errorf("%s-%s: Prefix() = %v, %v", tt.start, tt.end, p, ok)
		}
	}
}

func TestSelectorFromPrefix(t *testing.T) {
	ts := SelectorFromPrefix(netip.MustParsePrefix("10.1.2.3/16"))
	if ts.Type != TSIPv4AddrRange || ts.StartAddr != netip.MustParseAddr("10.1.0.0") ||
		ts.EndAddr != netip.MustParseAddr("10.1.255.255") || !ts.IsAnyPort() || ts.IPProtocol != 0 {
		t.Errorf("selector %+v", ts)
	}
	ts = SelectorFromPrefix(netip.MustParsePrefix("::ffff:10.0.0.0/104"))
	if ts.Type != TSIPv4AddrRange || ts.StartAddr != netip.MustParseAddr("10.0.0.0") || ts.EndAddr != netip.MustParseAddr("10.255.255.255") {
		t.Errorf("mapped selector %+v", ts)
	}
	ts = SelectorFromPrefix(netip.MustParsePrefix("2001:db8::/32"))
	if ts.Type != TSIPv6AddrRange || ts.EndAddr != netip.MustParseAddr("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff") {
		t.Errorf("ipv6 selector %+v", ts)
	}
}

func TestSelectorFromRangeErrors(t *testing.T) {
	a := netip.MustParseAddr
	if _, err := SelectorFromRange(a("10.0.0.2"), a("10.0.0.1")); err == nil {
		t.Error("reversed range accepted")
	}
	if _, err := SelectorFromRange(a("10.0.0.1"), a("::1")); err == nil {
		t.Error("mixed families accepted")
	}
	if _, err := SelectorFromRange(netip.Addr{}, netip.Addr{}); err == nil {
		t.Error("invalid addresses accepted")
	}
	if ps := (TrafficSelector{StartAddr: a("10.0.0.2"), EndAddr: a("10.0.0.1")}).Prefixes(); ps != nil {
		t.Errorf("reversed range gave %v", ps)
	}
}
