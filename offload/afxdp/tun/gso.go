package tun

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/xdpsec/xdpsec/offload/afxdp/ipcsum"
)

// VnetHdrLen is the size of the virtio_net_hdr that precedes every packet
// on a device created with Options.Offload; Write then needs an offset of
// at least this much, since the header goes in front of the packet.
const VnetHdrLen = 10

// virtio_net_hdr fields (linux/virtio_net.h). The legacy header that TUN
// uses without TUNSETVNETLE is in the host's byte order.
const (
	vnetNeedsCsum = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM

	gsoNone  = 0 // VIRTIO_NET_HDR_GSO_NONE
	gsoTCPv4 = 1 // VIRTIO_NET_HDR_GSO_TCPV4
	gsoTCPv6 = 4 // VIRTIO_NET_HDR_GSO_TCPV6
	gsoUDPL4 = 5 // VIRTIO_NET_HDR_GSO_UDP_L4
	gsoECN   = 0x80

	protoTCP = 6
	protoUDP = 17

	tcpFlagFIN = 0x01
	tcpFlagRST = 0x04
	tcpFlagPSH = 0x08
	tcpFlagCWR = 0x80
)

// maxPacket is the largest read a device with offloads may return: a
// 64 KiB super-packet and its virtio header.
const maxPacket = VnetHdrLen + 65535

var errBadGSO = errors.New("tun: malformed offload packet")

type vnetHdr struct {
	flags, gsoType uint8
	gsoSize        uint16
	csumStart      uint16
	csumOffset     uint16
}

func parseVnetHdr(b []byte) vnetHdr {
	return vnetHdr{
		flags:      b[0],
		gsoType:    b[1],
		gsoSize:    binary.NativeEndian.Uint16(b[4:6]),
		csumStart:  binary.NativeEndian.Uint16(b[6:8]),
		csumOffset: binary.NativeEndian.Uint16(b[8:10]),
	}
}

// gsoPacket walks the packets that one read from the device stands for:
// a packet whose checksum the kernel left to us, or a GSO super-packet cut
// into segments of gsoSize payload bytes with their headers fixed up, as
// the kernel's own segmentation would have sent them.
type gsoPacket struct {
	pkt []byte
	h   vnetHdr
	// l4 is where the TCP or UDP header starts, hdrLen where the payload
	// does; seg is the next segment and segs their number.
	l4, hdrLen int
	seg, segs  int
	v6         bool
	proto      uint8
}

// reset prepares g for pkt (the read without its virtio header).
func (g *gsoPacket) reset(pkt []byte, h vnetHdr) error {
	*g = gsoPacket{pkt: pkt, h: h, segs: 1}
	gt := h.gsoType &^ gsoECN
	if gt == gsoNone {
		if h.flags&vnetNeedsCsum != 0 {
			if int(h.csumStart)+int(h.csumOffset)+2 > len(pkt) {
				return errBadGSO
			}
		}
		return nil
	}
	if len(pkt) < 1 {
		return errBadGSO
	}
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < 20 || gt == gsoTCPv6 || int(pkt[0]&0x0f)*4 < 20 || int(pkt[0]&0x0f)*4 > int(h.csumStart) {
			return errBadGSO
		}
	case 6:
		if len(pkt) < 40 || gt == gsoTCPv4 {
			return errBadGSO
		}
		g.v6 = true
	default:
		return errBadGSO
	}
	g.l4 = int(h.csumStart)
	switch gt {
	case gsoTCPv4, gsoTCPv6:
		g.proto = protoTCP
		if g.l4+20 > len(pkt) {
			return errBadGSO
		}
		thl := int(pkt[g.l4+12]>>4) * 4
		if thl < 20 {
			return errBadGSO
		}
		g.hdrLen = g.l4 + thl
	case gsoUDPL4:
		g.proto = protoUDP
		g.hdrLen = g.l4 + 8
	default:
		return errBadGSO
	}
	minL4 := 20
	if g.v6 {
		minL4 = 40
	}
	if g.l4 < minL4 || g.hdrLen > len(pkt) || h.gsoSize == 0 {
		return errBadGSO
	}
	payload := len(pkt) - g.hdrLen
	g.segs = max(1, (payload+int(h.gsoSize)-1)/int(h.gsoSize))
	return nil
}

// done reports whether every packet has been emitted.
func (g *gsoPacket) done() bool { return g.seg >= g.segs }

// next writes the next packet into out and returns its length.
func (g *gsoPacket) next(out []byte) (int, error) {
	if g.h.gsoType&^gsoECN == gsoNone {
		if len(out) < len(g.pkt) {
			return 0, fmt.Errorf("tun: read: %d-byte packet for a %d-byte buffer", len(g.pkt), len(out))
		}
		n := copy(out, g.pkt)
		if g.h.flags&vnetNeedsCsum != 0 {
			// The field holds the pseudo-header sum; the checksum covers
			// it and everything from csumStart on.
			at := int(g.h.csumStart) + int(g.h.csumOffset)
			c := ^ipcsum.Fold(ipcsum.Sum(out[g.h.csumStart:n], 0))
			binary.BigEndian.PutUint16(out[at:], c)
		}
		g.seg++
		return n, nil
	}
	k := g.seg
	size := int(g.h.gsoSize)
	start := g.hdrLen + k*size
	end := min(start+size, len(g.pkt))
	n := g.hdrLen + end - start
	if len(out) < n {
		return 0, fmt.Errorf("tun: read: %d-byte segment for a %d-byte buffer", n, len(out))
	}
	copy(out, g.pkt[:g.hdrLen])
	copy(out[g.hdrLen:], g.pkt[start:end])
	last := k == g.segs-1

	l4Len := n - g.l4
	var srcDst []byte
	if g.v6 {
		binary.BigEndian.PutUint16(out[4:6], uint16(n-40))
		srcDst = out[8:40]
	} else {
		binary.BigEndian.PutUint16(out[2:4], uint16(n))
		// Consecutive IDs, as the kernel's segmentation gives them.
		id := binary.BigEndian.Uint16(out[4:6]) + uint16(k)
		binary.BigEndian.PutUint16(out[4:6], id)
		out[10], out[11] = 0, 0
		ihl := int(out[0]&0x0f) * 4
		binary.BigEndian.PutUint16(out[10:12], ^ipcsum.Fold(ipcsum.Sum(out[:ihl], 0)))
		srcDst = out[12:20]
	}
	l4 := out[g.l4:n]
	var csumAt int
	if g.proto == protoTCP {
		seq := binary.BigEndian.Uint32(l4[4:8]) + uint32(k*size)
		binary.BigEndian.PutUint32(l4[4:8], seq)
		if !last {
			l4[13] &^= tcpFlagFIN | tcpFlagPSH
		}
		if k > 0 {
			l4[13] &^= tcpFlagCWR
		}
		csumAt = 16
	} else {
		binary.BigEndian.PutUint16(l4[4:6], uint16(l4Len))
		csumAt = 6
	}
	l4[csumAt], l4[csumAt+1] = 0, 0
	s := ipcsum.Sum(srcDst, uint64(g.proto)+uint64(l4Len))
	c := ^ipcsum.Fold(ipcsum.Sum(l4, s))
	if c == 0 && g.proto == protoUDP {
		c = 0xffff // RFC 768: zero means no checksum
	}
	binary.BigEndian.PutUint16(l4[csumAt:], c)
	g.seg++
	return n, nil
}
