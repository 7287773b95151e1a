package esp

import (
	"encoding/binary"
	"math/bits"
)

// IP protocol numbers the transforms care about.
const (
	protoHopByHop = 0
	protoICMP     = 1
	protoIPv4     = 4
	protoTCP      = 6
	protoUDP      = 17
	protoIPv6     = 41
	protoRouting  = 43
	protoFragment = 44
	protoESP      = 50
	protoICMPv6   = 58
	protoNoNext   = 59
	protoSCTP     = 132
	protoUDPLite  = 136
)

const (
	ipv4HeaderLen = 20
	ipv6HeaderLen = 40
	udpHeaderLen  = 8
	espHeaderLen  = 8
)

// ECN codepoints (RFC 3168).
const (
	ecnNotECT = 0
	ecnECT1   = 1
	ecnECT0   = 2
	ecnCE     = 3
)

// checksumAdd adds b to the ones'-complement sum s, eight bytes at a time.
func checksumAdd(s uint64, b []byte) uint64 {
	var carry uint64
	for len(b) >= 32 {
		s, carry = bits.Add64(s, binary.BigEndian.Uint64(b), 0)
		s, carry = bits.Add64(s, binary.BigEndian.Uint64(b[8:]), carry)
		s, carry = bits.Add64(s, binary.BigEndian.Uint64(b[16:]), carry)
		s, carry = bits.Add64(s, binary.BigEndian.Uint64(b[24:]), carry)
		s += carry
		b = b[32:]
	}
	for len(b) >= 8 {
		s, carry = bits.Add64(s, binary.BigEndian.Uint64(b), 0)
		s += carry
		b = b[8:]
	}
	for len(b) >= 2 {
		s, carry = bits.Add64(s, uint64(binary.BigEndian.Uint16(b)), 0)
		s += carry
		b = b[2:]
	}
	if len(b) == 1 {
		s, carry = bits.Add64(s, uint64(b[0])<<8, 0)
		s += carry
	}
	return s
}

// checksumFold folds a 64-bit sum to the 16-bit ones'-complement checksum.
func checksumFold(s uint64) uint16 {
	s = (s >> 32) + (s & 0xffffffff)
	s = (s >> 32) + (s & 0xffffffff)
	s = (s >> 16) + (s & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	return ^uint16(s)
}

// ipv4HeaderSum is the ones'-complement sum of the IPv4 header h, with a
// loop-free path for the common header without options.
func ipv4HeaderSum(h []byte) uint64 {
	if len(h) != ipv4HeaderLen {
		return checksumAdd(0, h)
	}
	return uint64(binary.BigEndian.Uint32(h[0:4])) + uint64(binary.BigEndian.Uint32(h[4:8])) +
		uint64(binary.BigEndian.Uint32(h[8:12])) + uint64(binary.BigEndian.Uint32(h[12:16])) +
		uint64(binary.BigEndian.Uint32(h[16:20]))
}

// setIPv4Checksum recomputes the header checksum of the IPv4 header h.
func setIPv4Checksum(h []byte) {
	h[10], h[11] = 0, 0
	binary.BigEndian.PutUint16(h[10:], checksumFold(ipv4HeaderSum(h)))
}

// setECNv4 changes the ECN field of an IPv4 header and patches the checksum
// incrementally (RFC 1624) so that options need not be summed again.
func setECNv4(h []byte, ecn uint8) {
	old := binary.BigEndian.Uint16(h[0:2])
	h[1] = h[1]&^3 | ecn
	new := binary.BigEndian.Uint16(h[0:2])
	sum := uint32(^binary.BigEndian.Uint16(h[10:12])) + uint32(^old) + uint32(new)
	sum = (sum >> 16) + (sum & 0xffff)
	sum = (sum >> 16) + (sum & 0xffff)
	binary.BigEndian.PutUint16(h[10:12], ^uint16(sum))
}

// trafficClass returns the DS field and ECN of an IPv4 or IPv6 header.
func trafficClass(h []byte) uint8 {
	if h[0]>>4 == 4 {
		return h[1]
	}
	return h[0]<<4 | h[1]>>4
}

func setTrafficClassV6(h []byte, tc uint8) {
	h[0] = 6<<4 | tc>>4
	h[1] = tc<<4 | h[1]&0x0f
}

// decapECN is the RFC 6040 decapsulation table (section 4.2): the ECN field
// of the packet that leaves the tunnel, or false if it must be dropped.
func decapECN(inner, outer uint8) (uint8, bool) {
	switch {
	case outer == ecnCE && inner == ecnNotECT:
		return 0, false
	case outer == ecnCE:
		return ecnCE, true
	case outer == ecnECT1 && inner == ecnECT0:
		return ecnECT1, true
	}
	return inner, true
}

// pseudoSum is the ones'-complement sum of the IPv6 pseudo header (RFC 8200
// section 8.1) without the upper-layer length and next header.
func pseudoSumV6(h []byte) uint64 { return checksumAdd(0, h[8:40]) }
