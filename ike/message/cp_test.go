package message

import (
	"net/netip"
	"testing"
)

func TestCPAddrAttribute(t *testing.T) {
	tests := []struct {
		typ    CPAttrType
		prefix string
		value  []byte
		back   string
	}{
		{CPAttrInternalIP4Address, "10.3.0.7/32", []byte{10, 3, 0, 7}, "10.3.0.7/32"},
		{CPAttrInternalIP4DNS, "192.0.2.53/32", []byte{192, 0, 2, 53}, "192.0.2.53/32"},
		{CPAttrInternalIP4Subnet, "10.2.0.0/16", []byte{10, 2, 0, 0, 255, 255, 0, 0}, "10.2.0.0/16"},
		{CPAttrInternalIP6DNS, "2001:db8::53/128", netip.MustParseAddr("2001:db8::53").AsSlice(), "2001:db8::53/128"},
		{CPAttrInternalIP6Address, "2001:db8::7/64", append(netip.MustParseAddr("2001:db8::7").AsSlice(), 64), "2001:db8::7/64"},
	}
	for _, tt := range tests {
		a, err := CPAddrAttribute(tt.typ, netip.MustParsePrefix(tt.prefix))
		if err != nil {
			t.Fatal(err)
		}
		if a.Type != tt.typ || string(a.Value) != string(tt.value) {
			t.Errorf("%s %s: value %x, want %x", tt.typ, tt.prefix, a.Value, tt.value)
		}
		if p, ok := a.Prefix(); !ok || p.String() != tt.back {
			t.Errorf("%s: Prefix() = %v, %v, want %s", tt.typ, p, ok, tt.back)
		}
	}
	if _, err := CPAddrAttribute(CPAttrInternalIP4Address, netip.MustParsePrefix("::1/128")); err == nil {
		t.Error("ipv6 address accepted for an ipv4 attribute")
	}
	if _, err := CPAddrAttribute(CPAttrApplicationVersion, netip.MustParsePrefix("10.0.0.1/32")); err == nil {
		t.Error("address accepted for APPLICATION_VERSION")
	}
	if _, ok := (CPAttribute{Type: CPAttrInternalIP4Subnet, Value: []byte{10, 0, 0, 0, 255, 0, 255, 0}}).Prefix(); ok {
		t.Error("netmask with holes accepted")
	}
	if _, ok := (CPAttribute{Type: CPAttrInternalIP4Address}).Prefix(); ok {
		t.Error("empty request value gave a prefix")
	}
}
