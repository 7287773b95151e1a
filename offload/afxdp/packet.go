package afxdp

import (
	"encoding/binary"
	"net/netip"
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
	ipv6MinMTU   = 1280 // RFC 8200: ICMPv6 errors quote at most this
	tcpIPv4Extra = 40   // IPv4 + TCP header, for the MSS clamp
	tcpIPv6Extra = 60   // IPv6 + TCP header
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
