// Package tun is the TUN port of the afxdp data plane: a layer-3 device
// through which the gateway's own IP stack hands packets to userspace and
// receives packets back, the way host-originated traffic reaches the ESP
// engine without passing the LAN NIC.
//
// The device carries IP packets (IFF_TUN|IFF_NO_PI), one per read or
// write system call. With Options.Offload it also has IFF_VNET_HDR and
// checksum and segmentation offloads (TUN_F_CSUM, TSO4/6 and, where the
// kernel has them, USO4/6): the host's stack then skips checksums and
// segmentation and one read returns up to 64 KiB, which Read completes
// and cuts into MTU-sized TCP or UDP packets itself (sequence numbers, IP
// IDs and lengths, checksums), so callers always see ordinary packets.
// Reads and writes use buffers the caller owns and allocate nothing.
//
// The file descriptor is non-blocking: Read waits in poll(2) on it and on
// an eventfd that Close signals, so Close unblocks a reader; TryRead and
// FD let an existing poll loop (an afxdp worker) take packets without a
// goroutine of its own.
package tun

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ip6AddrGenModeNone is IN6_ADDR_GEN_MODE_NONE (linux/if_link.h).
const ip6AddrGenModeNone = 1

// Options configure Create.
type Options struct {
	// TxQueueLen is the device's transmit queue length (packets the host
	// stack may queue for the reader); 0 keeps the kernel's default.
	TxQueueLen int
	// Offload turns on the virtio header and the offloads. The host's
	// TCP and UDP then cost one read per up to 64 KiB instead of one per
	// packet; Write needs an offset of at least VnetHdrLen.
	Offload bool
}

// Device is an open TUN device. Its methods are safe for concurrent use.
type Device struct {
	fd     int
	wakeFD int
	name   string
	index  int
	mtu    int

	// mu is held shared by every Read, TryRead and Write and exclusively
	// by Close, so the descriptors are not closed (and their numbers
	// reused) under a system call that still uses them.
	mu     sync.RWMutex
	closed atomic.Bool

	// offload is Options.Offload. Readers then share scratch, which
	// holds the last read, and pend, the packets it still has to give;
	// rmu serializes them. badRead remembers a malformed read met after
	// a batch had packets, for the next call to report.
	offload bool
	rmu     sync.Mutex
	scratch []byte
	pend    gsoPacket
	badRead bool
}

// Create opens a TUN device named name (a kernel pattern such as "tun%d"
// is allowed; Name reports the result) in the calling thread's network
// namespace, sets its MTU and sets it up. A caller that is not in the
// process's namespace must have its OS thread locked. Closing the device
// deletes the interface.
func Create(name string, mtu int, opts Options) (_ *Device, err error) {
	if mtu < 68 || mtu > 65535 {
		return nil, fmt.Errorf("tun: mtu %d out of range", mtu)
	}
	if opts.TxQueueLen < 0 {
		return nil, fmt.Errorf("tun: negative tx queue length %d", opts.TxQueueLen)
	}
	d := &Device{fd: -1, wakeFD: -1, mtu: mtu, offload: opts.Offload}
	defer func() {
		if err != nil {
			d.closeFDs()
		}
	}()
	if d.fd, err = unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0); err != nil {
		return nil, fmt.Errorf("tun: open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return nil, fmt.Errorf("tun: name %q: %w", name, err)
	}
	flags := uint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if opts.Offload {
		flags |= unix.IFF_VNET_HDR
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(d.fd, unix.TUNSETIFF, ifr); err != nil {
		return nil, fmt.Errorf("tun: create %s: %w", name, err)
	}
	d.name = ifr.Name()
	if opts.Offload {
		d.scratch = make([]byte, maxPacket)
		// USO arrived in Linux 6.2; an older kernel refuses the flags
		// and gets TCP segmentation only.
		off := unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6
		err := unix.IoctlSetInt(d.fd, unix.TUNSETOFFLOAD, off|unix.TUN_F_USO4|unix.TUN_F_USO6)
		if errors.Is(err, unix.EINVAL) {
			err = unix.IoctlSetInt(d.fd, unix.TUNSETOFFLOAD, off)
		}
		if err != nil {
			return nil, fmt.Errorf("tun: set %s offloads: %w", d.name, err)
		}
	}
	if d.wakeFD, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		return nil, fmt.Errorf("tun: eventfd: %w", err)
	}

	// A handle bound to the namespace explicitly rather than netlink's
	// package handle, so the link is looked up where it was created.
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("tun: current namespace: %w", err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("tun: netlink: %w", err)
	}
	defer h.Close()
	link, err := h.LinkByName(d.name)
	if err != nil {
		return nil, fmt.Errorf("tun: link %s: %w", d.name, err)
	}
	d.index = link.Attrs().Index
	if err := h.LinkSetMTU(link, mtu); err != nil {
		return nil, fmt.Errorf("tun: set %s mtu %d: %w", d.name, mtu, err)
	}
	if opts.TxQueueLen > 0 {
		if err := h.LinkSetTxQLen(link, opts.TxQueueLen); err != nil {
			return nil, fmt.Errorf("tun: set %s txqueuelen: %w", d.name, err)
		}
	}
	// A point-to-point port for routed traffic needs no IPv6 link-local
	// address; without one the kernel sends it no router solicitations
	// or MLD reports, which the reader would have to skip. Best effort: a
	// kernel without IPv6 refuses the mode and needs none.
	_ = h.LinkSetIP6AddrGenMode(link, ip6AddrGenModeNone)
	if err := h.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("tun: set %s up: %w", d.name, err)
	}
	return d, nil
}

// Name returns the interface name.
func (d *Device) Name() string { return d.name }

// Index returns the interface index.
func (d *Device) Index() int { return d.index }

// MTU returns the MTU set by Create.
func (d *Device) MTU() int { return d.mtu }

// Offload reports whether the device was created with Options.Offload.
func (d *Device) Offload() bool { return d.offload }

// FD returns the non-blocking descriptor, for a caller's own poll set:
// POLLIN means TryRead has packets. It stays valid until Close.
func (d *Device) FD() int { return d.fd }

// Read reads up to len(bufs) packets, waiting until there is at least one:
// packet i lands in bufs[i][offset:] and its length in sizes[i]. A packet
// longer than its buffer is truncated by the kernel; buffers of MTU bytes
// past offset avoid that. It returns os.ErrClosed once the device is
// closed, including when Close ends the wait.
func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	for {
		if d.closed.Load() {
			return 0, fmt.Errorf("tun: read: %w", os.ErrClosed)
		}
		n, err := d.readBatch(bufs, sizes, offset)
		if n > 0 || err != nil {
			return n, err
		}
		if err := d.wait(unix.POLLIN); err != nil {
			return 0, err
		}
	}
}

// TryRead is Read without the wait: it returns 0 and no error when no
// packet is queued.
func (d *Device) TryRead(bufs [][]byte, sizes []int, offset int) (int, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed.Load() {
		return 0, fmt.Errorf("tun: read: %w", os.ErrClosed)
	}
	return d.readBatch(bufs, sizes, offset)
}

// readBatch reads packets until the queue is empty or bufs are full. An
// error after the first packet is left for the next call, which meets it
// again, so the packets already read are not lost.
func (d *Device) readBatch(bufs [][]byte, sizes []int, offset int) (int, error) {
	if len(sizes) < len(bufs) {
		return 0, fmt.Errorf("tun: read: %d sizes for %d buffers", len(sizes), len(bufs))
	}
	if d.offload {
		return d.readOffload(bufs, sizes, offset)
	}
	for i := 0; i < len(bufs); {
		n, err := unix.Read(d.fd, bufs[i][offset:])
		switch {
		case err == nil:
			sizes[i] = n
			i++
		case err == unix.EINTR:
		case err == unix.EAGAIN, i > 0:
			return i, nil
		default:
			return 0, fmt.Errorf("tun: read: %w", err)
		}
	}
	return len(bufs), nil
}

// readOffload is readBatch for a device with offloads: each read may
// stand for many packets, handed out over as many calls as the buffers
// need.
func (d *Device) readOffload(bufs [][]byte, sizes []int, offset int) (int, error) {
	d.rmu.Lock()
	defer d.rmu.Unlock()
	if d.badRead {
		d.badRead = false
		return 0, fmt.Errorf("tun: read: %w", errBadGSO)
	}
	i := 0
	for i < len(bufs) {
		if !d.pend.done() {
			n, err := d.pend.next(bufs[i][offset:])
			if err != nil {
				if i > 0 {
					return i, nil // met again by the next call
				}
				d.pend = gsoPacket{}
				return 0, err
			}
			sizes[i] = n
			i++
			continue
		}
		n, err := unix.Read(d.fd, d.scratch)
		switch {
		case err == nil:
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN, i > 0:
			return i, nil
		default:
			return 0, fmt.Errorf("tun: read: %w", err)
		}
		if n < VnetHdrLen {
			err = errBadGSO
		} else {
			err = d.pend.reset(d.scratch[VnetHdrLen:n], parseVnetHdr(d.scratch))
		}
		if err != nil {
			d.pend = gsoPacket{}
			if i > 0 {
				d.badRead = true
				return i, nil
			}
			return 0, fmt.Errorf("tun: read: %w", err)
		}
	}
	return i, nil
}

// Write writes each of bufs[i][offset:] as one IP packet into the host's
// stack and returns how many it wrote; on an error the rest are not
// written. A full queue is waited out, not dropped. With offloads the
// virtio header is written into bufs[i][offset-VnetHdrLen:offset]: the
// packets carry complete checksums and go without offload requests.
func (d *Device) Write(bufs [][]byte, offset int) (int, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.offload {
		if offset < VnetHdrLen {
			return 0, fmt.Errorf("tun: write: offset %d leaves no room for the virtio header", offset)
		}
		offset -= VnetHdrLen
	}
	for i := 0; i < len(bufs); {
		if d.closed.Load() {
			return i, fmt.Errorf("tun: write: %w", os.ErrClosed)
		}
		if d.offload {
			clear(bufs[i][offset : offset+VnetHdrLen])
		}
		_, err := unix.Write(d.fd, bufs[i][offset:])
		switch err {
		case nil:
			i++
		case unix.EINTR:
		case unix.EAGAIN:
			if err := d.wait(unix.POLLOUT); err != nil {
				return i, err
			}
		default:
			return i, fmt.Errorf("tun: write: %w", err)
		}
	}
	return len(bufs), nil
}

// wait polls the device for events and the wake eventfd; it returns
// os.ErrClosed when Close woke it. Called with mu held shared.
func (d *Device) wait(events int16) error {
	pfd := [2]unix.PollFd{
		{Fd: int32(d.fd), Events: events},
		{Fd: int32(d.wakeFD), Events: unix.POLLIN},
	}
	for {
		_, err := unix.Poll(pfd[:], -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("tun: poll: %w", err)
		}
		// The eventfd is never drained: once Close signals it, every
		// waiter, present and future, wakes.
		if pfd[1].Revents != 0 || d.closed.Load() {
			return fmt.Errorf("tun: %w", os.ErrClosed)
		}
		if pfd[0].Revents&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0 && pfd[0].Revents&events == 0 {
			return fmt.Errorf("tun: poll: device error (revents %#x)", pfd[0].Revents)
		}
		return nil
	}
}

// Close wakes blocked readers and writers, waits for them to return and
// closes the device, which deletes the interface with its addresses and
// routes. Closing twice is a no-op.
func (d *Device) Close() error {
	if d.closed.Swap(true) {
		return nil
	}
	one := [8]byte{1}
	if _, err := unix.Write(d.wakeFD, one[:]); err != nil {
		return fmt.Errorf("tun: wake: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closeFDs()
}

func (d *Device) closeFDs() error {
	var errs []error
	for _, fd := range []*int{&d.fd, &d.wakeFD} {
		if *fd >= 0 {
			if err := unix.Close(*fd); err != nil {
				errs = append(errs, fmt.Errorf("tun: close: %w", err))
			}
			*fd = -1
		}
	}
	return errors.Join(errs...)
}
