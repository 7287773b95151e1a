package loadgen

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Namespace runs fn with the calling thread in a network namespace, so
// the sockets fn opens live there (netlab.NS does this).
type Namespace interface {
	Do(fn func() error) error
}

// probe is the header of every datagram: a tag that tells this trial's
// datagrams from strays, the sequence number and the send time. 18 bytes,
// exactly the UDP payload of a 64-byte frame.
const (
	probeLen  = 18
	seqOff    = 2
	stampOff  = 10
	batchSize = 64
)

// Pair is a connected sender socket and a bound receiver socket, possibly
// in two namespaces.
type Pair struct {
	send, recv int
	closeOnce  sync.Once
}

// Open opens the receiver on dst inside recvNS and a sender connected to
// it inside sendNS. The receiver's buffer is made large (32 MiB) so that
// loss is the path's, not the receiving socket's.
func Open(sendNS, recvNS Namespace, dst netip.AddrPort) (*Pair, error) {
	if !dst.Addr().Is4() {
		return nil, fmt.Errorf("loadgen: %s: IPv4 only", dst)
	}
	sa := &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}
	p := &Pair{send: -1, recv: -1}
	err := recvNS.Do(func() error {
		fd, err := udpSocket()
		if err != nil {
			return err
		}
		p.recv = fd
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20); err != nil {
			// Without CAP_NET_ADMIN: as large as rmem_max allows.
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 32<<20)
		}
		// A bounded wait, so the receiver sees the end of a trial.
		tv := unix.NsecToTimeval(int64(20 * time.Millisecond))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return fmt.Errorf("receive timeout: %w", err)
		}
		if err := unix.Bind(fd, sa); err != nil {
			return fmt.Errorf("bind %s: %w", dst, err)
		}
		return nil
	})
	if err == nil {
		err = sendNS.Do(func() error {
			fd, err := udpSocket()
			if err != nil {
				return err
			}
			p.send = fd
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4<<20)
			if err := unix.Connect(fd, sa); err != nil {
				return fmt.Errorf("connect %s: %w", dst, err)
			}
			return nil
		})
	}
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	return p, nil
}

func udpSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("udp socket: %w", err)
	}
	return fd, nil
}

// Close closes both sockets.
func (p *Pair) Close() error {
	p.closeOnce.Do(func() {
		for _, fd := range []int{p.send, p.recv} {
			if fd >= 0 {
				unix.Close(fd)
			}
		}
	})
	return nil
}

// Trial is one fixed-rate transfer.
type Trial struct {
	Profile Profile
	// PPS is the offered frame rate; 0 sends as fast as the sender can.
	PPS float64
	// Duration of sending; Drain how long the receiver waits after the
	// last send for late datagrams (RFC 2544 asks for 2 s; shorter suits
	// a lab whose queues hold milliseconds).
	Duration time.Duration
	Drain    time.Duration
}

// Result is what a trial sent and what arrived.
type Result struct {
	Profile     string  `json:"profile"`
	OfferedPPS  float64 `json:"offered_pps"`
	Sent        uint64  `json:"sent"`
	Received    uint64  `json:"received"`
	Lost        uint64  `json:"lost"`
	Duplicates  uint64  `json:"duplicates,omitempty"`
	Reordered   uint64  `json:"reordered,omitempty"`
	SentPPS     float64 `json:"sent_pps"`
	ReceivedPPS float64 `json:"received_pps"`
	// LossPercent is Lost over Sent.
	LossPercent float64 `json:"loss_percent"`
	Latency     Latency `json:"latency"`
}

// Run makes one trial on the pair. Trials on one pair must not overlap;
// each tags its datagrams so that late ones of an earlier trial are not
// counted.
func (p *Pair) Run(ctx context.Context, t Trial) (Result, error) {
	if err := t.Profile.validate(); err != nil {
		return Result{}, err
	}
	if t.Duration <= 0 {
		return Result{}, errors.New("loadgen: trial needs a duration")
	}
	tag := uint16(time.Now().UnixNano()>>10) | 1
	base := time.Now()
	rx := newReceiver(tag, base)
	done := make(chan error, 1)
	stop := make(chan struct{})
	go func() { done <- rx.run(p.recv, stop) }()

	sent, elapsed, serr := p.sendFor(ctx, t, tag, base)
	select {
	case <-time.After(t.Drain):
	case <-ctx.Done():
	}
	close(stop)
	rerr := <-done
	if err := errors.Join(serr, rerr); err != nil {
		return Result{}, fmt.Errorf("loadgen: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	return rx.result(t, sent, elapsed), nil
}

// sendFor paces datagrams for t.Duration and returns how many it handed
// to the kernel and how long that took.
func (p *Pair) sendFor(ctx context.Context, t Trial, tag uint16, base time.Time) (uint64, time.Duration, error) {
	b := newBatch(t.Profile, tag)
	var sent uint64
	start := time.Now()
	for {
		now := time.Since(start)
		if now >= t.Duration || ctx.Err() != nil {
			return sent, now, nil
		}
		n := batchSize
		if t.PPS > 0 {
			due := uint64(t.PPS * now.Seconds())
			if due <= sent {
				// Sleep until the next datagram is due; Go's timers wake
				// within tens of microseconds, which keeps bursts short.
				wait := time.Duration(float64(sent+1)/t.PPS*float64(time.Second)) - now
				time.Sleep(max(wait, 20*time.Microsecond))
				continue
			}
			n = int(min(due-sent, batchSize))
		}
		k, err := b.send(p.send, sent, n, time.Since(base))
		sent += uint64(k)
		if err != nil {
			return sent, time.Since(start), err
		}
	}
}

// batch is the sender's datagrams of one sendmmsg call.
type batch struct {
	prof Profile
	tag  uint16
	bufs [][]byte
	iov  []unix.Iovec
	msgs []unix.Mmsghdr
}

func newBatch(prof Profile, tag uint16) *batch {
	b := &batch{prof: prof, tag: tag,
		bufs: make([][]byte, batchSize), iov: make([]unix.Iovec, batchSize), msgs: make([]unix.Mmsghdr, batchSize)}
	for i := range batchSize {
		b.bufs[i] = make([]byte, prof.MaxPayload())
		b.msgs[i].Hdr.Iov = &b.iov[i]
		b.msgs[i].Hdr.SetIovlen(1)
	}
	return b
}

// send writes datagrams seq0 .. seq0+n-1 in one sendmmsg. The kernel
// drops nothing here: a full queue further on is the path's loss.
func (b *batch) send(fd int, seq0 uint64, n int, stamp time.Duration) (int, error) {
	for i := range n {
		seq := seq0 + uint64(i)
		buf := b.bufs[i][:payloadLen(b.prof.Frames[seq%uint64(len(b.prof.Frames))])]
		binary.BigEndian.PutUint16(buf, b.tag)
		binary.BigEndian.PutUint64(buf[seqOff:], seq)
		binary.BigEndian.PutUint64(buf[stampOff:], uint64(stamp))
		b.iov[i].Base = &buf[0]
		b.iov[i].SetLen(len(buf))
	}
	for {
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.msgs[0])), uintptr(n), 0, 0, 0)
		switch e {
		case 0:
			return int(r), nil
		case unix.EINTR:
			continue
		case unix.ENOBUFS, unix.EAGAIN:
			// The sender's own queue is full: nothing left, retry later.
			return 0, nil
		}
		return 0, fmt.Errorf("sendmmsg: %w", e)
	}
}
