package message

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Selector lengths fixed by section 3.13.1.
const (
	tsHeaderLen = 4
	tsIPv4Len   = 16
	tsIPv6Len   = 40
)

// TS is the Traffic Selector payload, TSi or TSr (section 3.13).
type TS struct {
	// Responder selects TSr; false means TSi.
	Responder bool
	Selectors []TrafficSelector
}

// TrafficSelector is one traffic selector (section 3.13.1): an address
// range, an IP protocol (0 = any) and a port range. StartPort 0 and
// EndPort 65535 mean any port; for ICMP the ports carry type and code.
type TrafficSelector struct {
	Type               TSType
	IPProtocol         uint8
	StartPort, EndPort uint16
	StartAddr, EndAddr netip.Addr
	// Opaque is the body (after type, protocol and length) of a selector
	// of a type this package does not parse, such as TS_SECLABEL from
	// RFC 9478; it is kept so such payloads survive decoding and policy
	// can reject them. Empty for the two address range types.
	Opaque []byte
}

func (p *TS) Type() PayloadType {
	if p.Responder {
		return PayloadTSr
	}
	return PayloadTSi
}

func (p *TS) DecodeBody(b []byte) error {
	if len(b) < 4 {
		return syntaxErr("ts body of %d bytes, need 4", len(b))
	}
	n := int(b[0])
	rest := b[4:]
	if n == 0 {
		return syntaxErr("ts payload without selectors")
	}
	// Every selector takes at least 4 bytes; the count cannot size the
	// slice beyond what the payload holds.
	p.Selectors = make([]TrafficSelector, 0, min(n, len(rest)/tsHeaderLen))
	for i := 1; i <= n; i++ {
		if len(rest) < tsHeaderLen {
			return syntaxErr("selector %d of %d: %d bytes left, header truncated", i, n, len(rest))
		}
		slen := int(binary.BigEndian.Uint16(rest[2:4]))
		if slen < tsHeaderLen || slen > len(rest) {
			return syntaxErr("selector %d of %d: length %d with %d bytes left", i, n, slen, len(rest))
		}
		var ts TrafficSelector
		if err := ts.decode(rest[:slen]); err != nil {
			return within(err, "selector %d", i)
		}
		p.Selectors = append(p.Selectors, ts)
		rest = rest[slen:]
	}
	if len(rest) != 0 {
		return syntaxErr("%d bytes after the %d announced selectors", len(rest), n)
	}
	return nil
}

func (ts *TrafficSelector) decode(b []byte) error {
	ts.Type = TSType(b[0])
	ts.IPProtocol = b[1]
	switch ts.Type {
	case TSIPv4AddrRange:
		if len(b) != tsIPv4Len {
			return syntaxErr("%s of %d bytes", ts.Type, len(b))
		}
		ts.StartAddr = netip.AddrFrom4([4]byte(b[8:12]))
		ts.EndAddr = netip.AddrFrom4([4]byte(b[12:16]))
	case TSIPv6AddrRange:
		if len(b) != tsIPv6Len {
			return syntaxErr("%s of %d bytes", ts.Type, len(b))
		}
		ts.StartAddr = netip.AddrFrom16([16]byte(b[8:24]))
		ts.EndAddr = netip.AddrFrom16([16]byte(b[24:40]))
	default:
		ts.Opaque = b[tsHeaderLen:]
		return nil
	}
	ts.StartPort = binary.BigEndian.Uint16(b[4:6])
	ts.EndPort = binary.BigEndian.Uint16(b[6:8])
	return nil
}

func (p *TS) AppendBody(dst []byte) ([]byte, error) {
	if len(p.Selectors) == 0 || len(p.Selectors) > 0xff {
		return dst, syntaxErr("ts payload with %d selectors", len(p.Selectors))
	}
	dst = append(dst, byte(len(p.Selectors)), 0, 0, 0)
	for i := range p.Selectors {
		var err error
		if dst, err = p.Selectors[i].append(dst); err != nil {
			return dst, fmt.Errorf("selector %d: %w", i+1, err)
		}
	}
	return dst, nil
}

func (ts *TrafficSelector) append(dst []byte) ([]byte, error) {
	switch ts.Type {
	case TSIPv4AddrRange:
		if !ts.StartAddr.Is4() || !ts.EndAddr.Is4() {
			return dst, syntaxErr("%s with addresses %v-%v", ts.Type, ts.StartAddr, ts.EndAddr)
		}
	case TSIPv6AddrRange:
		if !ts.StartAddr.Is6() || !ts.EndAddr.Is6() || ts.StartAddr.Zone() != "" || ts.EndAddr.Zone() != "" {
			return dst, syntaxErr("%s with addresses %v-%v", ts.Type, ts.StartAddr, ts.EndAddr)
		}
	default:
		if len(ts.Opaque) > 0xffff-tsHeaderLen {
			return dst, syntaxErr("selector of %d bytes", len(ts.Opaque))
		}
		dst = append(dst, byte(ts.Type), ts.IPProtocol)
		dst = binary.BigEndian.AppendUint16(dst, uint16(tsHeaderLen+len(ts.Opaque)))
		return append(dst, ts.Opaque...), nil
	}
	if len(ts.Opaque) != 0 {
		return dst, syntaxErr("%s with opaque data", ts.Type)
	}
	n := tsIPv4Len
	if ts.Type == TSIPv6AddrRange {
		n = tsIPv6Len
	}
	dst = append(dst, byte(ts.Type), ts.IPProtocol)
	dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	dst = binary.BigEndian.AppendUint16(dst, ts.StartPort)
	dst = binary.BigEndian.AppendUint16(dst, ts.EndPort)
	dst = append(dst, ts.StartAddr.AsSlice()...)
	return append(dst, ts.EndAddr.AsSlice()...), nil
}

// SelectorFromPrefix returns a selector covering prefix p, every protocol
// and every port. An IPv4-mapped IPv6 prefix becomes an IPv4 selector.
func SelectorFromPrefix(p netip.Prefix) TrafficSelector {
	p = p.Masked()
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	ts, _ := SelectorFromRange(p.Addr(), lastAddr(p))
	return ts
}

// SelectorFromRange returns a selector for the addresses start..end
// (inclusive), every protocol and every port.
func SelectorFromRange(start, end netip.Addr) (TrafficSelector, error) {
	start, end = start.WithZone(""), end.WithZone("")
	if start.Is4In6() && end.Is4In6() {
		start, end = start.Unmap(), end.Unmap()
	}
	ts := TrafficSelector{StartPort: 0, EndPort: 0xffff, StartAddr: start, EndAddr: end}
	switch {
	case start.Is4() && end.Is4():
		ts.Type = TSIPv4AddrRange
	case start.Is6() && end.Is6():
		ts.Type = TSIPv6AddrRange
	default:
		return TrafficSelector{}, fmt.Errorf("address range %v-%v mixes or lacks families", start, end)
	}
	if end.Less(start) {
		return TrafficSelector{}, fmt.Errorf("address range %v-%v ends before it starts", start, end)
	}
	return ts, nil
}

// Prefixes returns the fewest prefixes that together cover exactly the
// selector's address range; nil for an empty range or an opaque selector.
// Peers rarely send ranges that are not one prefix, but the kernel and the
// data plane's policy tables only take prefixes.
func (ts TrafficSelector) Prefixes() []netip.Prefix {
	start, end := ts.StartAddr, ts.EndAddr
	if !start.IsValid() || !end.IsValid() || start.BitLen() != end.BitLen() || end.Less(start) {
		return nil
	}
	var ps []netip.Prefix
	for {
		// The largest aligned block starting at start that stays within
		// the range; bits only grow, so this ends within BitLen steps.
		var p netip.Prefix
		for bits := 0; bits <= start.BitLen(); bits++ {
			p = netip.PrefixFrom(start, bits).Masked()
			if p.Addr() == start && !end.Less(lastAddr(p)) {
				break
			}
		}
		ps = append(ps, p)
		last := lastAddr(p)
		if last == end {
			return ps
		}
		start = last.Next()
	}
}

// Prefix returns the selector's address range as one prefix, when it is one.
func (ts TrafficSelector) Prefix() (netip.Prefix, bool) {
	ps := ts.Prefixes()
	if len(ps) != 1 {
		return netip.Prefix{}, false
	}
	return ps[0], true
}

// IsAnyPort reports whether the selector covers every port.
func (ts TrafficSelector) IsAnyPort() bool { return ts.StartPort == 0 && ts.EndPort == 0xffff }

// lastAddr returns the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr()
	if a.Is4() {
		b := a.As4()
		setHostBits(b[:], p.Bits())
		return netip.AddrFrom4(b)
	}
	b := a.As16()
	setHostBits(b[:], p.Bits())
	return netip.AddrFrom16(b)
}

func setHostBits(b []byte, bits int) {
	for i := range b {
		switch {
		case bits >= 8*(i+1):
		case bits <= 8*i:
			b[i] = 0xff
		default:
			b[i] |= 0xff >> (bits - 8*i)
		}
	}
}
