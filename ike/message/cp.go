package message

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// CP is the Configuration payload (section 3.15).
type CP struct {
	CFGType    CFGType
	Attributes []CPAttribute
}

// CPAttribute is a configuration attribute (section 3.15.1). An empty Value
// in a CFG_REQUEST asks for any value of that type.
type CPAttribute struct {
	Type  CPAttrType // without the reserved top bit
	Value []byte
}

func (*CP) Type() PayloadType { return PayloadCP }

func (p *CP) DecodeBody(b []byte) error {
	if len(b) < 4 {
		return syntaxErr("cp body of %d bytes, need 4", len(b))
	}
	p.CFGType = CFGType(b[0])
	rest := b[4:]
	p.Attributes = nil
	for i := 1; len(rest) > 0; i++ {
		if len(rest) < 4 {
			return syntaxErr("attribute %d: %d bytes left, header truncated", i, len(rest))
		}
		// The top bit is reserved and must be ignored on receipt.
		t := CPAttrType(binary.BigEndian.Uint16(rest[0:2]) & 0x7fff)
		n := int(binary.BigEndian.Uint16(rest[2:4]))
		if 4+n > len(rest) {
			return syntaxErr("attribute %d (%s): value of %d bytes overruns the payload", i, t, n)
		}
		p.Attributes = append(p.Attributes, CPAttribute{Type: t, Value: rest[4 : 4+n]})
		rest = rest[4+n:]
	}
	return nil
}

func (p *CP) AppendBody(dst []byte) ([]byte, error) {
	dst = append(dst, byte(p.CFGType), 0, 0, 0)
	for i, a := range p.Attributes {
		if a.Type > 0x7fff || len(a.Value) > 0xffff {
			return dst, fmt.Errorf("attribute %d: %w", i+1, syntaxErr("type %d with %d-byte value", a.Type, len(a.Value)))
		}
		dst = binary.BigEndian.AppendUint16(dst, uint16(a.Type))
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(a.Value)))
		dst = append(dst, a.Value...)
	}
	return dst, nil
}

// CPAddrAttribute returns an address attribute: 4 bytes for IPv4 types,
// 16 for INTERNAL_IP6_DNS/DHCP, and address plus prefix length (17 bytes,
// section 3.15.1) for INTERNAL_IP6_ADDRESS and INTERNAL_IP6_SUBNET. For
// INTERNAL_IP4_SUBNET the value is address and netmask (8 bytes).
func CPAddrAttribute(t CPAttrType, p netip.Prefix) (CPAttribute, error) {
	a := p.Addr().Unmap()
	switch t {
	case CPAttrInternalIP4Address, CPAttrInternalIP4Netmask, CPAttrInternalIP4DNS,
		CPAttrInternalIP4NBNS, CPAttrInternalIP4DHCP:
		if !a.Is4() {
			return CPAttribute{}, fmt.Errorf("%s needs an ipv4 address, not %v", t, a)
		}
		return CPAttribute{Type: t, Value: a.AsSlice()}, nil
	case CPAttrInternalIP4Subnet:
		if !a.Is4() || p.Bits() < 0 {
			return CPAttribute{}, fmt.Errorf("%s needs an ipv4 prefix, not %v", t, p)
		}
		mask := netip.PrefixFrom(netip.AddrFrom4([4]byte{}), p.Bits())
		m := lastAddr(mask).As4()
		for i := range m {
			m[i] = ^m[i]
		}
		return CPAttribute{Type: t, Value: append(p.Masked().Addr().AsSlice(), m[:]...)}, nil
	case CPAttrInternalIP6DNS, CPAttrInternalIP6DHCP:
		if !a.Is6() {
			return CPAttribute{}, fmt.Errorf("%s needs an ipv6 address, not %v", t, a)
		}
		return CPAttribute{Type: t, Value: a.WithZone("").AsSlice()}, nil
	case CPAttrInternalIP6Address, CPAttrInternalIP6Subnet:
		if !a.Is6() || p.Bits() < 0 {
			return CPAttribute{}, fmt.Errorf("%s needs an ipv6 prefix, not %v", t, p)
		}
		return CPAttribute{Type: t, Value: append(a.WithZone("").AsSlice(), byte(p.Bits()))}, nil
	}
	return CPAttribute{}, fmt.Errorf("%s is not an address attribute", t)
}

// Prefix decodes an address attribute built as CPAddrAttribute describes.
// A plain address comes back as a full-length prefix. ok is false for an
// empty (requesting) or malformed value.
func (a CPAttribute) Prefix() (netip.Prefix, bool) {
	v := a.Value
	switch {
	case len(v) == 4:
		return netip.PrefixFrom(netip.AddrFrom4([4]byte(v)), 32), true
	case len(v) == 8 && a.Type == CPAttrInternalIP4Subnet:
		m := binary.BigEndian.Uint32(v[4:])
		ones := 0
		for m&0x80000000 != 0 {
			ones++
			m <<= 1
		}
		if m != 0 {
			return netip.Prefix{}, false // netmask with holes
		}
		return netip.PrefixFrom(netip.AddrFrom4([4]byte(v[:4])), ones), true
	case len(v) == 16:
		return netip.PrefixFrom(netip.AddrFrom16([16]byte(v)), 128), true
	case len(v) == 17 && v[16] <= 128:
		return netip.PrefixFrom(netip.AddrFrom16([16]byte(v[:16])), int(v[16])), true
	}
	return netip.Prefix{}, false
}
