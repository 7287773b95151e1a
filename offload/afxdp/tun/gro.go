package tun

import (
	"encoding/binary"
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xdpsec/xdpsec/offload/afxdp/ipcsum"
)

// A Coalescer writes IP packets to a device with offloads the way a NIC
// driver hands them to the stack with GRO: consecutive TCP segments of one
// flow become one super-packet of up to 64 KiB with a virtio header that
// says how to cut it again (VIRTIO_NET_HDR_GSO_TCPV4/6, checksum left to
// the kernel), so that the stack forwards and delivers one skb where it
// would have handled dozens. The segments are not copied together: each
// super-packet is one writev(2) of the first segment and the payloads of
// the others where they lie, so they must stay in place until Flush.
//
// Segments merge as Linux's tcp_gro_receive merges them: same addresses,
// ports, TOS or traffic class, TTL or hop limit and (IPv6) flow label; an
// IPv4 header without options or fragmentation; the same TCP header
// (acknowledgement, window, options) but for the sequence number, which
// must continue the previous segment, and for PSH, which ends the merge;
// only ACK (and PSH) set; every payload the size of the first but the
// last, which may be shorter and ends the merge. Anything else is written
// as it is, in the order it came within its flow.
type Coalescer struct {
	dev   *Device
	items []groItem
	// bufs, iov and hdr are the writev scratch, the virtio header first.
	bufs [][]byte
	iov  []unix.Iovec
	hdr  [VnetHdrLen]byte
	// writeTo replaces the device in tests.
	writeTo func(bufs [][]byte) error
	// merged counts the segments written as part of a super-packet.
	merged atomic.Uint64
}

// Merged returns how many segments went out inside super-packets; safe
// to call from any goroutine.
func (c *Coalescer) Merged() uint64 { return c.merged.Load() }

// maxGroSegments bounds one super-packet's segments: at the 64 KiB limit
// of a super-packet that allows 1 KiB segments.
const maxGroSegments = 64

// groItem is one packet to write, or the first segment of a super-packet
// and the payloads that follow it.
type groItem struct {
	pkt    []byte   // the first (or only) packet
	more   [][]byte // payloads of the merged segments
	total  int      // bytes of the super-packet
	l4     int      // offset of the TCP header
	hdrLen int      // offset of the payload
	mss    int      // payload of the first segment
	v6     bool
	open   bool // may take another segment
	psh    bool // a merged segment had PSH
}

// NewCoalescer returns a Coalescer for dev, which must have offloads.
func NewCoalescer(dev *Device) (*Coalescer, error) {
	if !dev.Offload() {
		return nil, fmt.Errorf("tun: %s has no offloads to coalesce into", dev.Name())
	}
	return &Coalescer{dev: dev}, nil
}

// Add queues the IP packet pkt, merging it into an earlier TCP segment of
// its flow where it continues it.
func (c *Coalescer) Add(pkt []byte) {
	seg, ok := tcpSegment(pkt)
	c.add(pkt, seg, ok)
}

// AddTCP is Add for the packets that belong in a Coalescer: a TCP
// segment that carries data, or FIN or RST, which must not overtake the
// data before it. It reports whether it took pkt. Other packets (UDP,
// ICMP, pure ACKs, SYNs) are never merged, and one write per packet costs
// a system call each: a caller with a batched path for them sends them
// there. The packet is parsed once for both.
func (c *Coalescer) AddTCP(pkt []byte) bool {
	seg, ok := tcpSegment(pkt)
	if !ok || (len(pkt) == seg.hdrLen && seg.flags&(tcpFlagFIN|tcpFlagRST) == 0) {
		return false
	}
	c.add(pkt, seg, true)
	return true
}

// add queues pkt, parsed as seg when it is a TCP segment (ok).
func (c *Coalescer) add(pkt []byte, seg tcpInfo, ok bool) {
	if ok {
		for i := len(c.items) - 1; i >= 0; i-- {
			it := &c.items[i]
			if !it.open || !sameFlow(it.pkt, pkt, seg.v6) {
				continue
			}
			if it.extend(pkt, seg) {
				return
			}
			it.open = false
			break
		}
	}
	it := groItem{pkt: pkt, total: len(pkt)}
	if ok {
		it.l4, it.hdrLen, it.mss, it.v6 = seg.l4, seg.hdrLen, len(pkt)-seg.hdrLen, seg.v6
		it.psh = seg.flags&tcpFlagPSH != 0
		it.open = seg.mergeable && it.mss > 0 && !it.psh
	}
	c.items = append(c.items, it)
}

// Flush writes what Add queued, super-packets with their headers fixed,
// and returns how many packets (merged segments counted one by one) it
// wrote; the rest failed with err.
func (c *Coalescer) Flush() (int, error) {
	defer func() {
		clear(c.items)
		c.items = c.items[:0]
	}()
	done := 0
	for i := range c.items {
		it := &c.items[i]
		n := 1 + len(it.more)
		if err := c.write(it); err != nil {
			return done, err
		}
		if n > 1 {
			c.merged.Add(uint64(n))
		}
		done += n
	}
	return done, nil
}

// write writes one item: a super-packet when segments were merged into
// it, else the packet as it is.
func (c *Coalescer) write(it *groItem) error {
	clear(c.hdr[:])
	c.bufs = append(c.bufs[:0], c.hdr[:], it.pkt)
	if len(it.more) > 0 {
		it.fixHeaders()
		gt := byte(gsoTCPv4)
		if it.v6 {
			gt = gsoTCPv6
		}
		c.hdr[0], c.hdr[1] = vnetNeedsCsum, gt
		binary.NativeEndian.PutUint16(c.hdr[2:4], uint16(it.hdrLen))
		binary.NativeEndian.PutUint16(c.hdr[4:6], uint16(it.mss))
		binary.NativeEndian.PutUint16(c.hdr[6:8], uint16(it.l4))
		binary.NativeEndian.PutUint16(c.hdr[8:10], 16)
		c.bufs = append(c.bufs, it.more...)
	}
	if c.writeTo != nil {
		return c.writeTo(c.bufs)
	}
	c.iov = c.iov[:0]
	for _, b := range c.bufs {
		v := unix.Iovec{Base: &b[0]}
		v.SetLen(len(b))
		c.iov = append(c.iov, v)
	}
	c.dev.mu.RLock()
	defer c.dev.mu.RUnlock()
	for {
		if c.dev.closed.Load() {
			return fmt.Errorf("tun: write: %w", os.ErrClosed)
		}
		_, _, e := unix.Syscall(unix.SYS_WRITEV, uintptr(c.dev.fd), uintptr(unsafe.Pointer(&c.iov[0])), uintptr(len(c.iov)))
		var err error
		if e != 0 {
			err = e
		}
		switch err {
		case nil:
			return nil
		case unix.EINTR:
		case unix.EAGAIN:
			if err := c.dev.wait(unix.POLLOUT); err != nil {
				return err
			}
		default:
			return fmt.Errorf("tun: write: %w", err)
		}
	}
}

// extend merges the segment pkt (parsed as seg) into it, or reports that
// it does not continue it.
func (it *groItem) extend(pkt []byte, seg tcpInfo) bool {
	first := it.pkt
	payload := len(pkt) - seg.hdrLen
	if !seg.mergeable || seg.hdrLen != it.hdrLen || payload == 0 || payload > it.mss ||
		!sameIPFields(first, pkt, seg.v6) ||
		it.total+payload > 65535 || len(it.more)+1 >= maxGroSegments {
		return false
	}
	// The TCP header but for the sequence number, the checksum and PSH.
	th, th2 := first[it.l4:it.hdrLen], pkt[seg.l4:seg.hdrLen]
	if binary.BigEndian.Uint32(th2[4:8]) != binary.BigEndian.Uint32(th[4:8])+uint32(it.total-it.hdrLen) ||
		[4]byte(th[8:12]) != [4]byte(th2[8:12]) || th[12] != th2[12] ||
		(th[13]^th2[13])&^tcpFlagPSH != 0 || [2]byte(th[14:16]) != [2]byte(th2[14:16]) ||
		[2]byte(th[18:20]) != [2]byte(th2[18:20]) || string(th[20:]) != string(th2[20:]) {
		return false
	}
	it.more = append(it.more, pkt[seg.hdrLen:])
	it.total += payload
	if seg.flags&tcpFlagPSH != 0 {
		it.psh = true
	}
	// A shorter segment or PSH ends the super-packet, as in GRO.
	it.open = payload == it.mss && !it.psh
	return true
}

// fixHeaders turns the first segment's headers into the super-packet's:
// the lengths, the IPv4 checksum, PSH if a merged segment had it, and the
// TCP checksum field holding the pseudo-header sum that
// VIRTIO_NET_HDR_F_NEEDS_CSUM asks for.
func (it *groItem) fixHeaders() {
	p := it.pkt
	var srcDst []byte
	if it.v6 {
		binary.BigEndian.PutUint16(p[4:6], uint16(it.total-40))
		srcDst = p[8:40]
	} else {
		binary.BigEndian.PutUint16(p[2:4], uint16(it.total))
		p[10], p[11] = 0, 0
		binary.BigEndian.PutUint16(p[10:12], ^ipcsum.Fold(ipcsum.Sum(p[:20], 0)))
		srcDst = p[12:20]
	}
	if it.psh {
		p[it.l4+13] |= tcpFlagPSH
	}
	pseudo := ipcsum.Fold(ipcsum.Sum(srcDst, uint64(protoTCP)+uint64(it.total-it.l4)))
	binary.BigEndian.PutUint16(p[it.l4+16:], pseudo)
}

// tcpInfo is what tcpSegment found in a TCP packet.
type tcpInfo struct {
	l4, hdrLen int
	flags      byte
	v6         bool
	// mergeable: only ACK and PSH set, no IPv4 options or fragment,
	// lengths consistent.
	mergeable bool
}

// tcpSegment parses pkt as a TCP segment in IPv4 or IPv6 (no extension
// headers).
func tcpSegment(pkt []byte) (tcpInfo, bool) {
	var s tcpInfo
	if len(pkt) < 20 {
		return s, false
	}
	switch pkt[0] >> 4 {
	case 4:
		if pkt[0]&0x0f != 5 || pkt[9] != protoTCP || int(binary.BigEndian.Uint16(pkt[2:4])) != len(pkt) {
			return s, false
		}
		s.l4 = 20
		s.mergeable = binary.BigEndian.Uint16(pkt[6:8])&0x3fff == 0 // no MF, no offset
	case 6:
		if len(pkt) < 40 || pkt[6] != protoTCP || int(binary.BigEndian.Uint16(pkt[4:6]))+40 != len(pkt) {
			return s, false
		}
		s.l4, s.v6, s.mergeable = 40, true, true
	default:
		return s, false
	}
	if len(pkt) < s.l4+20 {
		return s, false
	}
	thl := int(pkt[s.l4+12]>>4) * 4
	if thl < 20 || s.l4+thl > len(pkt) {
		return s, false
	}
	s.hdrLen = s.l4 + thl
	s.flags = pkt[s.l4+13]
	const ack = 0x10
	// As GRO does, merge only segments whose checksum holds: the merged
	// one gets a new checksum, which would hide a bad segment.
	s.mergeable = s.mergeable && s.flags&^tcpFlagPSH == ack && tcpChecksumOK(pkt, s.l4, s.v6)
	return s, true
}

// tcpChecksumOK reports whether the TCP checksum of pkt, whose TCP header
// is at l4, is right.
func tcpChecksumOK(pkt []byte, l4 int, v6 bool) bool {
	srcDst := pkt[12:20]
	if v6 {
		srcDst = pkt[8:40]
	}
	pseudo := ipcsum.Sum(srcDst, uint64(protoTCP)+uint64(len(pkt)-l4))
	return ipcsum.Fold(ipcsum.Sum(pkt[l4:], pseudo)) == 0xffff
}

// sameFlow reports whether the TCP packets a and b (IPv6 when v6) belong
// to one flow: addresses and ports.
func sameFlow(a, b []byte, v6 bool) bool {
	if v6 {
		return a[0]>>4 == 6 && string(a[8:40]) == string(b[8:40]) && [4]byte(a[40:44]) == [4]byte(b[40:44])
	}
	return a[0]>>4 == 4 && [8]byte(a[12:20]) == [8]byte(b[12:20]) && [4]byte(a[20:24]) == [4]byte(b[20:24])
}

// sameIPFields reports whether the packets a and b of one flow agree in
// the IP header fields that GRO compares: a segment of the flow that
// differs (an ECN mark, another TTL) ends the super-packet before it.
func sameIPFields(a, b []byte, v6 bool) bool {
	if v6 {
		// Traffic class and flow label; next header and hop limit.
		return [4]byte(a[0:4]) == [4]byte(b[0:4]) && a[6] == b[6] && a[7] == b[7]
	}
	// TOS, DF, TTL, protocol.
	return a[1] == b[1] && a[6] == b[6] && a[8] == b[8] && a[9] == b[9]
}
