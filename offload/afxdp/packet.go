package afxdp

import (
	"encoding/binary"
	"net/netip"
	"time"
)

// Header sizes and field values the workers parse and write. Only untagged
// Ethernet II frames are handled: the LAN and WAN ports of a gateway are
// access ports, and a tagged frame that reaches a worker is counted as
// malformed rather than guessed at.
const (
	ethLen       = 14
	ethTypeIPv4  = 0x0800
	ethTypeIPv6  = 0x86dd
	ipv4MinLen   = 20
	ipv6Len      = 40
	protoICMP    = 1
	protoICMPv6  = 58
	icmpHdrLen   = 8
	ipv4MinMTU   = 576  // RFC 791/1812: ICMP errors fit in this
	ipv6MinMTU   = 1280 // RFC 8200: ICMPv6 errors fit in this
	icmpTTL      = 64
	icmpv6Hops   = 255
	tcpIPv4Extra = 40 // IPv4 + TCP header, for the MSS clamp
	tcpIPv6Extra = 60 // IPv6 + TCP header
)

// ipInfo is what a worker needs from an IP header.
type ipInfo struct {
	v6       bool
	src, dst netip.Addr
	proto    uint8
	totalLen int // the IP packet's length; Ethernet padding excluded
	df       bool
}

// parseIP reads the IPv4 or IPv6 header at the start of b. It accepts only
// packets whose header fits and whose length field is within b, so later
// slicing by totalLen cannot go out of bounds.
func parseIP(b []byte) (ipInfo, bool) {
	if len(b) < 1 {
		return ipInfo{}, false
	}
	switch b[0] >> 4 {
	case 4:
		if len(b) < ipv4MinLen {
			return ipInfo{}, false
		}
		hl := int(b[0]&0x0f) * 4
		n := int(binary.BigEndian.Uint16(b[2:4]))
		if hl < ipv4MinLen || n < hl || n > len(b) {
			return ipInfo{}, false
		}
		return ipInfo{
			src:      netip.AddrFrom4([4]byte(b[12:16])),
			dst:      netip.AddrFrom4([4]byte(b[16:20])),
			proto:    b[9],
			totalLen: n,
			df:       b[6]&0x40 != 0,
		}, true
	case 6:
		if len(b) < ipv6Len {
			return ipInfo{}, false
		}
		n := ipv6Len + int(binary.BigEndian.Uint16(b[4:6]))
		if n > len(b) {
			return ipInfo{}, false
		}
		return ipInfo{
			v6:       true,
			src:      netip.AddrFrom16([16]byte(b[8:24])),
			dst:      netip.AddrFrom16([16]byte(b[24:40])),
			proto:    b[6],
			totalLen: n,
			// IPv6 routers never fragment: every packet is "DF".
			df: true,
		}, true
	}
	return ipInfo{}, false
}

// decTTL decrements the IPv4 TTL or IPv6 hop limit of a packet being
// forwarded and reports false when it must not be forwarded (the TTL would
// reach 0). The IPv4 checksum is updated incrementally (RFC 1624), as the
// kernel's ip_decrease_ttl does: the TTL is the high byte of its 16-bit
// word, so the one's-complement sum rises by 0x0100.
func decTTL(b []byte, v6 bool) bool {
	if v6 {
		if b[7] <= 1 {
			return false
		}
		b[7]--
		return true
	}
	if b[8] <= 1 {
		return false
	}
	b[8]--
	sum := uint32(binary.BigEndian.Uint16(b[10:12])) + 0x0100
	if sum >= 0xffff {
		sum++
	}
	binary.BigEndian.PutUint16(b[10:12], uint16(sum))
	return true
}

// putEth writes an Ethernet II header at the start of b.
func putEth(b []byte, dst, src [6]byte, v6 bool) {
	copy(b[0:6], dst[:])
	copy(b[6:12], src[:])
	et := uint16(ethTypeIPv4)
	if v6 {
		et = ethTypeIPv6
	}
	binary.BigEndian.PutUint16(b[12:14], et)
}

// csumAdd adds b to a one's-complement running sum.
func csumAdd(sum uint32, b []byte) uint32 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

// csumFold folds a running sum into the 16-bit Internet checksum.
func csumFold(sum uint32) uint16 {
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// isICMPError reports whether the IP packet b carries an ICMP error, to
// which no ICMP error may be sent (RFC 1122 3.2.2, RFC 4443 2.4(e)).
func isICMPError(b []byte, ip ipInfo) bool {
	if ip.v6 {
		return ip.proto == protoICMPv6 && len(b) > ipv6Len && b[ipv6Len] < 128
	}
	hl := int(b[0]&0x0f) * 4
	if ip.proto != protoICMP || len(b) <= hl {
		return false
	}
	switch b[hl] {
	case 0, 8, 13, 14, 15, 16, 17, 18: // echo, timestamp, info, mask
		return false
	}
	return true
}

// buildTooBig writes into out an Ethernet frame with an ICMP
// "fragmentation needed" (IPv4, RFC 1191) or ICMPv6 "packet too big"
// (RFC 4443) for the packet orig, which arrived from the host with MAC
// hostMAC through our port with MAC ourMAC. src is the gateway address the
// error comes from. It returns the frame length, 0 when out is too small.
// orig must not overlap out.
func buildTooBig(out, orig []byte, ip ipInfo, mtu int, src netip.Addr, ourMAC, hostMAC [6]byte) int {
	if ip.v6 {
		quote := min(len(orig), ipv6MinMTU-ipv6Len-icmpHdrLen)
		n := ethLen + ipv6Len + icmpHdrLen + quote
		if len(out) < n {
			return 0
		}
		putEth(out, hostMAC, ourMAC, true)
		h := out[ethLen:]
		plen := icmpHdrLen + quote
		binary.BigEndian.PutUint32(h[0:4], 6<<28)
		binary.BigEndian.PutUint16(h[4:6], uint16(plen))
		h[6] = protoICMPv6
		h[7] = icmpv6Hops
		s16, d16 := src.As16(), ip.src.As16()
		copy(h[8:24], s16[:])
		copy(h[24:40], d16[:])
		m := h[ipv6Len:]
		m[0], m[1] = 2, 0 // packet too big
		m[2], m[3] = 0, 0
		binary.BigEndian.PutUint32(m[4:8], uint32(mtu))
		copy(m[icmpHdrLen:], orig[:quote])
		// Pseudo-header: addresses, upper-layer length, next header.
		sum := csumAdd(0, h[8:40])
		sum += uint32(plen) + protoICMPv6
		sum = csumAdd(sum, m[:plen])
		binary.BigEndian.PutUint16(m[2:4], csumFold(sum))
		return n
	}
	quote := min(len(orig), ipv4MinMTU-ipv4MinLen-icmpHdrLen)
	n := ethLen + ipv4MinLen + icmpHdrLen + quote
	if len(out) < n {
		return 0
	}
	putEth(out, hostMAC, ourMAC, false)
	h := out[ethLen:]
	h[0], h[1] = 0x45, 0xc0 // internetwork control, like the kernel's ICMP
	binary.BigEndian.PutUint16(h[2:4], uint16(ipv4MinLen+icmpHdrLen+quote))
	binary.BigEndian.PutUint32(h[4:8], 0)
	h[8], h[9] = icmpTTL, protoICMP
	h[10], h[11] = 0, 0
	s4, d4 := src.As4(), ip.src.As4()
	copy(h[12:16], s4[:])
	copy(h[16:20], d4[:])
	binary.BigEndian.PutUint16(h[10:12], csumFold(csumAdd(0, h[:ipv4MinLen])))
	m := h[ipv4MinLen:]
	m[0], m[1] = 3, 4 // destination unreachable, fragmentation needed
	m[2], m[3], m[4], m[5] = 0, 0, 0, 0
	binary.BigEndian.PutUint16(m[6:8], uint16(mtu))
	copy(m[icmpHdrLen:], orig[:quote])
	binary.BigEndian.PutUint16(m[2:4], csumFold(csumAdd(0, m[:icmpHdrLen+quote])))
	return n
}

// limiter is a token bucket for ICMP errors (RFC 1812 4.3.2.8, RFC 4443
// 2.4(f)): an attacker sending big packets must not turn the gateway into
// an ICMP cannon. One per worker, so it needs no lock.
type limiter struct {
	perSec, burst float64
	tokens        float64
	last          time.Time
}

func newLimiter(perSec, burst float64) limiter {
	return limiter{perSec: perSec, burst: burst, tokens: burst}
}

// allow takes a token if one is there.
func (l *limiter) allow(now time.Time) bool {
	if !l.last.IsZero() {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.perSec)
	}
	l.last = now
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}
