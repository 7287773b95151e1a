// Package icmp builds the ICMP errors a forwarding gateway must send
// itself: IPv4 "fragmentation needed" (RFC 792, RFC 1191) and ICMPv6
// "packet too big" (RFC 4443), so that path MTU discovery works through a
// tunnel whose overhead shrinks the usable MTU. The AF_XDP data plane
// forwards without the kernel, so the kernel never sees the packet that
// was too big and cannot answer for us.
//
// The builders append to a caller's buffer and allocate nothing when it
// has room, so a worker can build an error in its packet buffer. They
// refuse to build an error that RFC 1122 (3.2.2) or RFC 4443 (2.4 e)
// forbids, with an error that matches ErrSuppressed; a Limiter bounds how
// many are sent.
package icmp

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// ErrSuppressed matches every error that means "this packet must not be
// answered with an ICMP error"; the caller just drops the packet.
var ErrSuppressed = errors.New("icmp: error message not allowed")

// The reasons an error is suppressed. Each matches ErrSuppressed.
var (
	ErrAboutError = error(suppressed("icmp: original is itself an icmp error"))
	ErrFragment   = error(suppressed("icmp: original is a non-first fragment"))
	ErrNotUnicast = error(suppressed("icmp: original source or destination is not a unicast host"))
)

// Errors about the arguments.
var (
	ErrMalformed = errors.New("icmp: malformed original packet")
	ErrBadSource = errors.New("icmp: source address of the wrong family")
	ErrBadMTU    = errors.New("icmp: mtu out of range")
)

// suppressed is a constant error type, so returning one never allocates.
type suppressed string

func (s suppressed) Error() string        { return string(s) }
func (s suppressed) Is(target error) bool { return target == ErrSuppressed }

const (
	ipv4HeaderLen = 20
	ipv6HeaderLen = 40
	icmpHeaderLen = 8
	// ttl is the TTL and hop limit of the messages built here.
	ttl = 64
	// tosInternetControl is precedence 6, which RFC 1812 (4.3.2.5) gives
	// to ICMP errors so they are not dropped with the traffic that
	// caused them.
	tosInternetControl = 0xc0
	// minMTU6 is the smallest message an IPv6 link must carry; RFC 4443
	// caps an error message to it.
	minMTU6 = 1280
	// quote4 is what RFC 792 asks to quote beyond the original header.
	quote4 = 8
)

const (
	protoICMP   = 1
	protoICMPv6 = 58
)

// grow appends n zero bytes to b and returns the whole slice and the new
// part.
func grow(b []byte, n int) ([]byte, []byte) {
	l := len(b)
	if cap(b)-l < n {
		nb := make([]byte, l, l+n)
		copy(nb, b)
		b = nb
	}
	b = b[:l+n]
	p := b[l:]
	clear(p)
	return b, p
}

// FragNeeded appends to dst an IPv4 packet from src to orig's source that
// carries ICMP destination unreachable, code 4 ("fragmentation needed and
// DF set"), announcing mtu as the next-hop MTU (RFC 1191). It quotes orig's
// IP header and the first 8 bytes of its payload. The IPv4 header has
// TTL 64, DF set and ID 0 (an atomic datagram, RFC 6864).
//
// orig is the packet that was too big, from its IP header on; it may be
// truncated after the bytes quoted. Errors matching ErrSuppressed mean no
// ICMP error may be sent for orig.
func FragNeeded(dst []byte, orig []byte, src netip.Addr, mtu int) ([]byte, error) {
	src = src.Unmap()
	if !src.Is4() {
		return dst, ErrBadSource
	}
	// 68 is the smallest MTU an IPv4 link may have (RFC 791).
	if mtu < 68 || mtu > 0xffff {
		return dst, ErrBadMTU
	}
	if len(orig) < ipv4HeaderLen || orig[0]>>4 != 4 {
		return dst, ErrMalformed
	}
	ihl := int(orig[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(orig[2:4]))
	if ihl < ipv4HeaderLen || len(orig) < ihl || total < ihl {
		return dst, ErrMalformed
	}
	if err := check4(orig, ihl, total); err != nil {
		return dst, err
	}

	// The quote is the header plus 8 bytes, less if the packet (by its
	// own length or by what the caller has of it) is shorter.
	quote := min(ihl+quote4, total, len(orig))
	n := ipv4HeaderLen + icmpHeaderLen + quote
	out, p := grow(dst, n)

	ip := p[:ipv4HeaderLen]
	ip[0] = 0x45
	ip[1] = tosInternetControl
	binary.BigEndian.PutUint16(ip[2:4], uint16(n))
	ip[6] = 0x40 // DF
	ip[8] = ttl
	ip[9] = protoICMP
	s4 := src.As4()
	copy(ip[12:16], s4[:])
	copy(ip[16:20], orig[12:16])
	binary.BigEndian.PutUint16(ip[10:12], ^fold(sum(0, ip)))

	m := p[ipv4HeaderLen:]
	m[0] = 3 // destination unreachable
	m[1] = 4 // fragmentation needed and DF set
	binary.BigEndian.PutUint16(m[6:8], uint16(mtu))
	copy(m[icmpHeaderLen:], orig[:quote])
	binary.BigEndian.PutUint16(m[2:4], ^fold(sum(0, m)))
	return out, nil
}

// check4 applies RFC 1122 3.2.2: no ICMP error about an ICMP error, about
// a fragment other than the first, or about a datagram whose source is not
// one host or whose destination is broadcast or multicast.
func check4(orig []byte, ihl, total int) error {
	if binary.BigEndian.Uint16(orig[6:8])&0x1fff != 0 {
		return ErrFragment
	}
	s := netip.AddrFrom4([4]byte(orig[12:16]))
	d := netip.AddrFrom4([4]byte(orig[16:20]))
	if !unicast4(s) || d.IsMulticast() || d == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return ErrNotUnicast
	}
	if orig[9] == protoICMP {
		if len(orig) <= ihl || total <= ihl {
			// The type is not there to tell; an ICMP packet this short
			// is broken anyway.
			return ErrMalformed
		}
		if isICMPv4Error(orig[ihl]) {
			return ErrAboutError
		}
	}
	return nil
}

// unicast4 reports whether a can be the source of a single host: not
// "this network" (0/8), loopback, multicast, reserved (240/4, which
// includes the limited broadcast).
func unicast4(a netip.Addr) bool {
	b := a.As4()
	return b[0] != 0 && b[0] != 127 && b[0] < 224
}

// isICMPv4Error reports whether an ICMP type is an error message (RFC 1122
// 3.2.2): destination unreachable, source quench, redirect, time exceeded
// and parameter problem.
func isICMPv4Error(t byte) bool {
	switch t {
	case 3, 4, 5, 11, 12:
		return true
	}
	return false
}

// PacketTooBig appends to dst an IPv6 packet from src to orig's source that
// carries ICMPv6 packet too big (type 2, RFC 4443 3.2) with mtu, quoting as
// much of orig as keeps the whole message within 1280 bytes. Its hop limit
// is 64.
//
// Per RFC 4443 2.4 (e), packets to multicast destinations are answered
// (that is the exception that lets PMTU discovery work for multicast), but
// not ICMPv6 errors or packets from an address that is not one host's. Like
// for IPv4, non-first fragments are not answered: the first fragment is at
// least as large as the others, so its error reaches the source anyway, and
// only it shows whether the packet is an ICMPv6 error.
func PacketTooBig(dst []byte, orig []byte, src netip.Addr, mtu int) ([]byte, error) {
	if !src.Is6() || src.Is4In6() {
		return dst, ErrBadSource
	}
	// An MTU below the IPv6 minimum is never announced (RFC 8200 5).
	if mtu < minMTU6 || int64(mtu) > 0xffffffff {
		return dst, ErrBadMTU
	}
	if len(orig) < ipv6HeaderLen || orig[0]>>4 != 6 {
		return dst, ErrMalformed
	}
	if err := check6(orig); err != nil {
		return dst, err
	}

	quote := min(len(orig), minMTU6-ipv6HeaderLen-icmpHeaderLen)
	// The payload length field bounds what is really the packet; zero
	// there means a jumbogram (RFC 2675), whose length is elsewhere.
	if pl := int(binary.BigEndian.Uint16(orig[4:6])); pl != 0 && ipv6HeaderLen+pl < quote {
		quote = ipv6HeaderLen + pl
	}
	plen := icmpHeaderLen + quote
	out, p := grow(dst, ipv6HeaderLen+plen)

	ip := p[:ipv6HeaderLen]
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:6], uint16(plen))
	ip[6] = protoICMPv6
	ip[7] = ttl
	s16 := src.As16()
	copy(ip[8:24], s16[:])
	copy(ip[24:40], orig[8:24])

	m := p[ipv6HeaderLen:]
	m[0] = 2 // packet too big
	binary.BigEndian.PutUint32(m[4:8], uint32(mtu))
	copy(m[icmpHeaderLen:], orig[:quote])
	binary.BigEndian.PutUint16(m[2:4], ^fold(sum(pseudo6(ip[8:24], ip[24:40], plen), m)))
	return out, nil
}

// check6 applies RFC 4443 2.4 (e) for packet too big, walking extension
// headers as far as the packet goes to find fragments and ICMPv6.
func check6(orig []byte) error {
	s := netip.AddrFrom16([16]byte(orig[8:24]))
	if s.IsUnspecified() || s.IsMulticast() || s.IsLoopback() {
		return ErrNotUnicast
	}
	next, off := orig[6], ipv6HeaderLen
	for {
		switch next {
		case 0, 43, 60: // hop-by-hop, routing, destination options
			if len(orig) < off+8 {
				return ErrMalformed
			}
			next, off = orig[off], off+(int(orig[off+1])+1)*8
		case 44: // fragment
			if len(orig) < off+8 {
				return ErrMalformed
			}
			if binary.BigEndian.Uint16(orig[off+2:off+4])&0xfff8 != 0 {
				return ErrFragment
			}
			next, off = orig[off], off+8
		case 51: // authentication header, length in 4-byte units
			if len(orig) < off+8 {
				return ErrMalformed
			}
			next, off = orig[off], off+(int(orig[off+1])+2)*4
		case protoICMPv6:
			if len(orig) <= off {
				return ErrMalformed
			}
			// Types 0 to 127 are errors (RFC 4443 2.1).
			if orig[off] < 128 {
				return ErrAboutError
			}
			return nil
		default:
			return nil
		}
	}
}

// pseudo6 sums the IPv6 pseudo-header (RFC 8200 8.1) for ICMPv6.
func pseudo6(src, dst []byte, length int) uint32 {
	s := sum(0, src)
	s = sum(s, dst)
	s += uint32(length>>16) + uint32(length&0xffff)
	s += protoICMPv6
	return s
}

// sum adds b as big-endian 16-bit words to s, the first step of the
// Internet checksum (RFC 1071). An odd last byte is padded with zero.
func sum(s uint32, b []byte) uint32 {
	for len(b) >= 8 {
		s += uint32(binary.BigEndian.Uint16(b[0:2])) + uint32(binary.BigEndian.Uint16(b[2:4])) +
			uint32(binary.BigEndian.Uint16(b[4:6])) + uint32(binary.BigEndian.Uint16(b[6:8]))
		b = b[8:]
	}
	for len(b) >= 2 {
		s += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

// fold reduces a 32-bit sum to 16 bits with end-around carry.
func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}
