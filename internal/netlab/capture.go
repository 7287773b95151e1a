package netlab

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Capture counts the IPv4 and IPv6 packets a link of a namespace sends
// that match a filter, from an AF_PACKET socket: what leaves an interface
// in clear can be counted without tcpdump. Packets are seen after XDP and
// after the kernel's routing, as they are handed to the driver.
type Capture struct {
	fd      int
	matched atomic.Int64
	// stop asks the reader to end, done says it has.
	stop, done chan struct{}
	once       sync.Once
}

// CaptureOut starts counting the packets link sends whose source lies in
// src and destination in dst, with IP protocol proto (0: any).
func (n *NS) CaptureOut(link string, src, dst netip.Prefix, proto uint8) (*Capture, error) {
	return n.CaptureOutFunc(link, func(pkt []byte) bool {
		s, d, p, ok := ipHeader(pkt)
		return ok && src.Contains(s) && dst.Contains(d) && (proto == 0 || p == proto)
	})
}

// CaptureOutFunc starts counting the IP packets link sends for which
// match, given the packet from its IP header on, reports true.
func (n *NS) CaptureOutFunc(link string, match func(pkt []byte) bool) (*Capture, error) {
	l, err := n.nl.LinkByName(link)
	if err != nil {
		return nil, fmt.Errorf("netlab: %s: link %s: %w", n.Name, link, err)
	}
	c := &Capture{fd: -1, stop: make(chan struct{}), done: make(chan struct{})}
	err = n.Do(func() error {
		// SOCK_DGRAM: the kernel strips the link-layer header.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		c.fd = fd
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: l.Attrs().Index})
	})
	if err != nil {
		if c.fd >= 0 {
			unix.Close(c.fd)
		}
		return nil, fmt.Errorf("netlab: %s: capture on %s: %w", n.Name, link, err)
	}
	// A receive timeout lets the reader notice Stop.
	tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(c.fd)
		return nil, fmt.Errorf("netlab: %s: capture timeout: %w", n.Name, err)
	}
	go c.read(match)
	return c, nil
}

func (c *Capture) read(match func(pkt []byte) bool) {
	defer close(c.done)
	buf := make([]byte, 65536)
	for !c.stopped() {
		nr, from, err := unix.Recvfrom(c.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return
		}
		ll, ok := from.(*unix.SockaddrLinklayer)
		if !ok || ll.Pkttype != unix.PACKET_OUTGOING {
			continue
		}
		if match(buf[:nr]) {
			c.matched.Add(1)
		}
	}
}

// stopped polls Stop's request between receive timeouts.
func (c *Capture) stopped() bool {
	select {
	case <-c.stop:
		return true
	default:
		return false
	}
}

// Count returns how many matching packets were seen so far.
func (c *Capture) Count() int64 { return c.matched.Load() }

// Stop ends the capture and returns the final count.
func (c *Capture) Stop() int64 {
	c.once.Do(func() { close(c.stop) })
	<-c.done
	unix.Close(c.fd)
	return c.matched.Load()
}

// ipHeader returns the addresses and protocol of an IPv4 or IPv6 packet.
func ipHeader(b []byte) (src, dst netip.Addr, proto uint8, ok bool) {
	if len(b) < 1 {
		return
	}
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return
		}
		src, _ = netip.AddrFromSlice(b[12:16])
		dst, _ = netip.AddrFromSlice(b[16:20])
		return src, dst, b[9], true
	case 6:
		if len(b) < 40 {
			return
		}
		src, _ = netip.AddrFromSlice(b[8:24])
		dst, _ = netip.AddrFromSlice(b[24:40])
		return src, dst, b[6], true
	}
	return
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
