package bpf

import (
	"encoding/binary"
	"net/netip"
)

// Packet builders for the fixtures. Each returns the bytes of one header
// followed by its payload, so a fixture reads outside-in:
// ether(ipv4(udp(...))). Checksums are filled where the programs read or
// rewrite them (TCP); elsewhere XDP never looks at them.

const (
	etherIPv4 = 0x0800
	etherIPv6 = 0x86dd
	etherARP  = 0x0806
	etherVLAN = 0x8100
	etherQinQ = 0x88a8

	protoHop     = 0
	protoTCP     = 6
	protoUDP     = 17
	protoRouting = 43
	protoFrag    = 44
	protoESP     = 50
	protoICMPv6  = 58
	protoDstOpts = 60

	tcpSYN = 0x02
	tcpACK = 0x10
)

// ether frames payload; with tags, the outer tag comes first and uses the
// QinQ TPID when there are two, as 802.1ad prescribes.
func ether(typ uint16, payload []byte, tags ...uint16) []byte {
	b := []byte{0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02} // dst, src MAC
	for i, tag := range tags {
		tpid := uint16(etherVLAN)
		if len(tags) == 2 && i == 0 {
			tpid = etherQinQ
		}
		b = binary.BigEndian.AppendUint16(b, tpid)
		b = binary.BigEndian.AppendUint16(b, tag)
	}
	b = binary.BigEndian.AppendUint16(b, typ)
	return append(b, payload...)
}

// pad adds Ethernet padding up to the 60-byte minimum frame, as a NIC
// delivers short frames: the programs must use header lengths, not the
// frame's.
func pad(frame []byte) []byte {
	for len(frame) < 60 {
		frame = append(frame, 0)
	}
	return frame
}

type ip4Opts struct {
	options []byte // multiple of 4 bytes
	frag    uint16 // flags and offset field as on the wire
	id      uint16 // identification
	totLen  int    // override of the total length; 0 = computed
}

func ipv4(proto byte, src, dst string, payload []byte) []byte {
	return ipv4x(proto, src, dst, payload, ip4Opts{})
}

func ipv4x(proto byte, src, dst string, payload []byte, o ip4Opts) []byte {
	hl := 20 + len(o.options)
	tot := hl + len(payload)
	if o.totLen != 0 {
		tot = o.totLen
	}
	b := make([]byte, 20, hl+len(payload))
	b[0] = 0x40 | byte(hl/4)
	binary.BigEndian.PutUint16(b[2:], uint16(tot))
	binary.BigEndian.PutUint16(b[4:], o.id)
	binary.BigEndian.PutUint16(b[6:], o.frag)
	b[8] = 64
	b[9] = proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	b = append(b, o.options...)
	binary.BigEndian.PutUint16(b[10:], ^onesSum(0, b[:hl]))
	return append(b, payload...)
}

func ipv6(next byte, src, dst string, payload []byte) []byte {
	b := make([]byte, 40, 40+len(payload))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(payload)))
	b[6] = next
	b[7] = 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	return append(b, payload...)
}

// ext6 is an 8-byte hop-by-hop, routing or destination options header
// (padding options only).
func ext6(next byte, payload []byte) []byte {
	b := []byte{next, 0, 1, 4, 0, 0, 0, 0}
	return append(b, payload...)
}

// frag6 is an IPv6 fragment header; off counts 8-byte units.
func frag6(next byte, off uint16, more bool, payload []byte) []byte {
	v := off << 3
	if more {
		v |= 1
	}
	b := []byte{next, 0, 0, 0, 0, 0, 0x12, 0x34}
	binary.BigEndian.PutUint16(b[2:], v)
	return append(b, payload...)
}

func udp(sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(payload)))
	return append(b, payload...)
}

// tcp builds a segment with a valid checksum over the pseudo-header of
// src and dst (either family).
func tcp(src, dst string, sport, dport uint16, flags byte, options []byte, payload []byte) []byte {
	hl := 20 + len(options)
	b := make([]byte, 20, hl+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], 1000)
	b[12] = byte(hl/4) << 4
	b[13] = flags
	binary.BigEndian.PutUint16(b[14:], 65535)
	b = append(b, options...)
	b = append(b, payload...)
	binary.BigEndian.PutUint16(b[16:], ^tcpSum(src, dst, b))
	return b
}

// tcpSum is the one's complement sum of the TCP pseudo-header and seg;
// a segment with a correct checksum sums to 0xffff.
func tcpSum(src, dst string, seg []byte) uint16 {
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	var ph []byte
	if s.Is4() {
		a, b := s.As4(), d.As4()
		ph = append(append(ph, a[:]...), b[:]...)
		ph = append(ph, 0, protoTCP)
		ph = binary.BigEndian.AppendUint16(ph, uint16(len(seg)))
	} else {
		a, b := s.As16(), d.As16()
		ph = append(append(ph, a[:]...), b[:]...)
		ph = binary.BigEndian.AppendUint32(ph, uint32(len(seg)))
		ph = append(ph, 0, 0, 0, protoTCP)
	}
	return onesSum(uint32(onesSum(0, ph)), seg)
}

func onesSum(sum uint32, b []byte) uint16 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// mssOpt is the TCP MSS option.
func mssOpt(mss uint16) []byte {
	return binary.BigEndian.AppendUint16([]byte{2, 4}, mss)
}

func esp(spi, seq uint32, body int) []byte {
	b := binary.BigEndian.AppendUint32(nil, spi)
	b = binary.BigEndian.AppendUint32(b, seq)
	return append(b, make([]byte, body)...)
}

// nonESP prefixes an IKE message with the RFC 3948 non-ESP marker.
func nonESP(msg []byte) []byte {
	return append([]byte{0, 0, 0, 0}, msg...)
}

// ikeMsg is an IKE header (RFC 7296 3.1) with some payload bytes.
func ikeMsg(exchange, flags byte) []byte {
	b := make([]byte, 28, 60)
	copy(b, []byte{1, 2, 3, 4, 5, 6, 7, 8}) // SPIi; SPIr stays zero
	b[16] = 33                              // next payload: SA
	b[17] = 0x20                            // version 2.0
	b[18] = exchange
	b[19] = flags
	binary.BigEndian.PutUint32(b[24:], 60)
	return append(b, make([]byte, 32)...)
}

const (
	ikeSAInit    = 34
	ikeAuth      = 35
	ikeInitiator = 0x08
	ikeResponse  = 0x20
)
