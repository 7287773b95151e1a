package esp

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Selector is one traffic selector (RFC 7296 section 3.13.1): an inclusive
// address range, an IP protocol (0 for any) and an inclusive port range. For
// ICMP and ICMPv6 the "port" is the type in the high and the code in the low
// byte, as IKEv2 encodes it.
type Selector struct {
	Start, End         netip.Addr
	Proto              uint8
	StartPort, EndPort uint16
}

// PrefixSelector selects every packet of any protocol to or from p.
func PrefixSelector(p netip.Prefix) Selector {
	p = p.Masked()
	end := p.Addr().AsSlice()
	bits := p.Bits()
	for i := range end {
		for b := 0; b < 8; b++ {
			if i*8+b >= bits {
				end[i] |= 0x80 >> b
			}
		}
	}
	last, _ := netip.AddrFromSlice(end)
	return Selector{Start: p.Addr(), End: last, EndPort: 0xffff}
}

// AllTraffic is a selector list that matches every IPv4 and IPv6 packet.
func AllTraffic() []Selector {
	return []Selector{
		PrefixSelector(netip.MustParsePrefix("0.0.0.0/0")),
		PrefixSelector(netip.MustParsePrefix("::/0")),
	}
}

// addr128 is an address as a number: IPv4 in the low 32 bits, so that
// comparing is two integer compares instead of netip.Addr.Compare.
type addr128 struct{ hi, lo uint64 }

func (a addr128) less(b addr128) bool { return a.hi < b.hi || a.hi == b.hi && a.lo < b.lo }

func toAddr128(a netip.Addr) addr128 {
	b := a.As16()
	if a.Is4() {
		return addr128{lo: uint64(binary.BigEndian.Uint32(b[12:16]))}
	}
	return addr128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// rule is a Selector compiled for the per-packet check.
type rule struct {
	v6                 bool
	start, end         addr128
	proto              uint8
	anyPort            bool
	startPort, endPort uint16
}

func compileSelectors(sel []Selector) ([]rule, error) {
	rules := make([]rule, 0, len(sel))
	for i, s := range sel {
		if !s.Start.IsValid() || !s.End.IsValid() || s.Start.Is4() != s.End.Is4() ||
			s.Start.Is4In6() || s.End.Is4In6() || s.End.Less(s.Start) || s.EndPort < s.StartPort {
			return nil, fmt.Errorf("selector %d: bad range %v-%v ports %d-%d", i, s.Start, s.End, s.StartPort, s.EndPort)
		}
		rules = append(rules, rule{
			v6:        s.Start.Is6(),
			start:     toAddr128(s.Start),
			end:       toAddr128(s.End),
			proto:     s.Proto,
			anyPort:   s.StartPort == 0 && s.EndPort == 0xffff,
			startPort: s.StartPort,
			endPort:   s.EndPort,
		})
	}
	return rules, nil
}

// flow is what selectors look at in a packet. Ports are known only for the
// first fragment of protocols that have them (RFC 4301 4.4.1.1 "OPAQUE").
type flow struct {
	v6           bool
	src, dst     addr128
	proto        uint8
	sport, dport uint16
	ports        bool
}

// deep reports whether any rule looks past the addresses.
func deep(rules ...[]rule) bool {
	for _, rs := range rules {
		for _, r := range rs {
			if r.proto != 0 || !r.anyPort {
				return true
			}
		}
	}
	return false
}

// parse reads the selector fields of an IP packet whose header has been
// validated: addresses, the protocol past IPv6 extension headers, and the
// ports.
func (f *flow) parse(pkt []byte) {
	var l4 []byte
	first := true
	if pkt[0]>>4 == 4 {
		f.src.lo = uint64(binary.BigEndian.Uint32(pkt[12:16]))
		f.dst.lo = uint64(binary.BigEndian.Uint32(pkt[16:20]))
		f.proto = pkt[9]
		first = binary.BigEndian.Uint16(pkt[6:8])&0x1fff == 0
		l4 = pkt[int(pkt[0]&0x0f)*4:]
	} else {
		f.v6 = true
		f.src = addr128{binary.BigEndian.Uint64(pkt[8:16]), binary.BigEndian.Uint64(pkt[16:24])}
		f.dst = addr128{binary.BigEndian.Uint64(pkt[24:32]), binary.BigEndian.Uint64(pkt[32:40])}
		f.proto = pkt[6]
		l4 = pkt[ipv6HeaderLen:]
	walk:
		for range 8 {
			switch f.proto {
			case protoHopByHop, protoRouting, 60: // 60: destination options
				if len(l4) < 8 {
					return
				}
				f.proto = l4[0]
				n := (int(l4[1]) + 1) * 8
				if len(l4) < n {
					return
				}
				l4 = l4[n:]
			case protoFragment:
				if len(l4) < 8 {
					return
				}
				f.proto = l4[0]
				first = binary.BigEndian.Uint16(l4[2:4])&0xfff8 == 0
				l4 = l4[8:]
			default:
				break walk
			}
		}
	}
	if !first {
		return
	}
	switch f.proto {
	case protoTCP, protoUDP, protoSCTP, protoUDPLite:
		if len(l4) >= 4 {
			f.sport = binary.BigEndian.Uint16(l4[0:2])
			f.dport = binary.BigEndian.Uint16(l4[2:4])
			f.ports = true
		}
	case protoICMP, protoICMPv6:
		if len(l4) >= 2 {
			f.sport = binary.BigEndian.Uint16(l4[0:2])
			f.dport = f.sport
			f.ports = true
		}
	}
}

// match checks the destination side of f if dst is set, else the source.
func (r *rule) match(f *flow, dst bool) bool {
	a, port := f.src, f.sport
	if dst {
		a, port = f.dst, f.dport
	}
	if r.v6 != f.v6 || a.less(r.start) || r.end.less(a) {
		return false
	}
	if r.proto != 0 && r.proto != f.proto {
		return false
	}
	return r.anyPort || f.ports && port >= r.startPort && port <= r.endPort
}

// inRange is matchAny for rules that look only at addresses.
func inRange(rules []rule, v6 bool, a addr128) bool {
	for i := range rules {
		r := &rules[i]
		if r.v6 == v6 && !a.less(r.start) && !r.end.less(a) {
			return true
		}
	}
	return false
}

// selected reports whether a decrypted packet, its IP header validated, is
// inside the SA's selectors: from RemoteTS to LocalTS.
func (sa *SA) selected(pkt []byte) bool {
	if !sa.deepTS {
		// Address-only selectors, the usual tunnel case: no flow needed.
		if pkt[0]>>4 == 4 {
			src := addr128{lo: uint64(binary.BigEndian.Uint32(pkt[12:16]))}
			dst := addr128{lo: uint64(binary.BigEndian.Uint32(pkt[16:20]))}
			return inRange(sa.remoteTS, false, src) && inRange(sa.localTS, false, dst)
		}
		src := addr128{binary.BigEndian.Uint64(pkt[8:16]), binary.BigEndian.Uint64(pkt[16:24])}
		dst := addr128{binary.BigEndian.Uint64(pkt[24:32]), binary.BigEndian.Uint64(pkt[32:40])}
		return inRange(sa.remoteTS, true, src) && inRange(sa.localTS, true, dst)
	}
	var f flow
	f.parse(pkt)
	return matchAny(sa.remoteTS, &f, false) && matchAny(sa.localTS, &f, true)
}

func matchAny(rules []rule, f *flow, dst bool) bool {
	for i := range rules {
		if rules[i].match(f, dst) {
			return true
		}
	}
	return false
}
