// Package ipcsum is the Internet checksum (RFC 1071) for the AF_XDP data
// plane's packet code: one's-complement sums, and the completion of TCP
// and UDP checksums that a sender with TX checksum offload left partial.
package ipcsum

import (
	"encoding/binary"
	"math/bits"
)

const (
	protoTCP = 6
	protoUDP = 17
)

// Sum adds b, as big-endian 16-bit words, to the one's-complement
// accumulator acc; an odd last byte is padded with zero. Only the last
// piece of a summed region may have an odd length.
func Sum(b []byte, acc uint64) uint64 {
	if len(b) >= 32 {
		n := len(b) &^ 31
		acc += sumWords(b[:n])
		b = b[n:]
	}
	for len(b) >= 8 {
		acc += uint64(binary.BigEndian.Uint32(b)) + uint64(binary.BigEndian.Uint32(b[4:]))
		b = b[8:]
	}
	for len(b) >= 2 {
		acc += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint64(b[0]) << 8
	}
	return acc
}

// sumWords is the one's-complement sum of b, whose length is a multiple
// of 32, as Sum counts it, folded to 16 bits. It adds 64-bit words in the
// machine's order with end-around carry, four at a time, and swaps the
// folded result into network order at the end: RFC 1071 (section 2.B)
// shows the sum does not depend on the byte order it is taken in.
func sumWords(b []byte) uint64 {
	var s, c uint64
	for len(b) >= 32 {
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[8:]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[16:]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[24:]), c)
		b = b[32:]
	}
	s, c = bits.Add64(s, 0, c)
	s += c
	// Fold 64 -> 16 bits of little-endian words, then into big-endian.
	f := Fold(s&0xffffffff + s>>32)
	return uint64(bits.ReverseBytes16(f))
}

// Fold reduces acc to 16 bits with end-around carry; the checksum is its
// complement, and data with a correct checksum folds to 0xffff.
func Fold(acc uint64) uint16 {
	for acc > 0xffff {
		acc = acc>>16 + acc&0xffff
	}
	return uint16(acc)
}

// l4 locates the TCP or UDP header of the IPv4 or IPv6 packet pkt: its
// offset, length, protocol and the sum of its pseudo header. It refuses
// fragments (the checksum covers the whole datagram), IPv6 packets with
// extension headers, and anything truncated.
func l4(pkt []byte) (off, n int, proto uint8, pseudo uint64, ok bool) {
	if len(pkt) < 1 {
		return 0, 0, 0, 0, false
	}
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < 20 {
			return 0, 0, 0, 0, false
		}
		off = int(pkt[0]&0x0f) * 4
		tot := int(binary.BigEndian.Uint16(pkt[2:4]))
		if off < 20 || tot < off || tot > len(pkt) || binary.BigEndian.Uint16(pkt[6:8])&0x3fff != 0 {
			return 0, 0, 0, 0, false
		}
		proto, n = pkt[9], tot-off
		pseudo = Sum(pkt[12:20], uint64(proto)+uint64(n))
	case 6:
		if len(pkt) < 40 {
			return 0, 0, 0, 0, false
		}
		off, n, proto = 40, int(binary.BigEndian.Uint16(pkt[4:6])), pkt[6]
		if off+n > len(pkt) {
			return 0, 0, 0, 0, false
		}
		pseudo = Sum(pkt[8:40], uint64(proto)+uint64(n))
	default:
		return 0, 0, 0, 0, false
	}
	return off, n, proto, pseudo, true
}

// CompletePartial finishes the TCP or UDP checksum of the IP packet pkt if
// its sender left it partial, and reports whether it did. A sender with TX
// checksum offload (CHECKSUM_PARTIAL: a veth's default, so every container
// on a host) puts only the folded pseudo-header sum into the field and
// leaves the rest to the device; AF_XDP hands the packet over in that
// state, and a data plane that forwards it as it is sends a checksum that
// no receiver accepts. A field equal to the pseudo-header sum whose
// checksum does not verify is taken for partial: the one test possible on
// the bytes alone, as a packet carries no flag. It costs one pass over
// the segment only for such packets; others pay for the pseudo header.
func CompletePartial(pkt []byte) bool {
	off, n, proto, pseudo, ok := l4(pkt)
	if !ok {
		return false
	}
	at := off
	switch {
	case proto == protoTCP && n >= 20:
		at += 16
	case proto == protoUDP && n >= 8:
		at += 6
	default:
		return false
	}
	if binary.BigEndian.Uint16(pkt[at:]) != Fold(pseudo) {
		return false
	}
	seg := pkt[off : off+n]
	if Fold(Sum(seg, pseudo)) == 0xffff {
		return false // a finished checksum that equals the pseudo sum
	}
	// The field holds the pseudo-header sum already: the segment's sum
	// over it is the whole sum.
	c := ^Fold(Sum(seg, 0))
	if c == 0 && proto == protoUDP {
		c = 0xffff // RFC 768: zero means no checksum
	}
	binary.BigEndian.PutUint16(pkt[at:], c)
	return true
}
