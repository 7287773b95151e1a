package streams

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/xdpsec/xdpsec/internal/netlab"
)

// TCPOptions configures a paced TCP stream.
type TCPOptions struct {
	From, To *netlab.NS
	Dst      netip.Addr
	// Port defaults to 5302.
	Port int
	// Rate is bytes per second (default 500 kB/s, 4 Mbit/s). The stream
	// is paced, not flat out: on a two-CPU machine a saturating TCP flow
	// would fill the data plane's rings and make the UDP stream next to
	// it lose datagrams for reasons that have nothing to do with rekeys.
	Rate int
	// DialTimeout bounds the connect through the tunnel (default 10 s).
	DialTimeout time.Duration
}

// patternPeriod is prime, so no whole number of MSS-sized segments
// (or of the sender's chunks) lines up with it: a lost, repeated or
// misplaced segment changes what the receiver sees at that offset.
const patternPeriod = 251

func patternByte(off uint64) byte { return byte(off % patternPeriod) }

// TCPResult is the account of a TCP stream.
type TCPResult struct {
	Sent, Received uint64
	// MaxStall is the longest time the receiver waited for data while
	// the sender was sending: how long the tunnel held TCP up.
	MaxStall time.Duration
	// SendErr and RecvErr are the first errors of either side: a reset,
	// a timeout, or (RecvErr) a byte that differs from what was sent.
	SendErr, RecvErr error
}

// Err is the first error of the stream, or an error for a byte count
// that differs; nil means every byte arrived intact.
func (r TCPResult) Err() error {
	switch {
	case r.SendErr != nil:
		return fmt.Errorf("sender: %w", r.SendErr)
	case r.RecvErr != nil:
		return fmt.Errorf("receiver: %w", r.RecvErr)
	case r.Sent != r.Received:
		return fmt.Errorf("sent %d bytes, received %d", r.Sent, r.Received)
	}
	return nil
}

func (r TCPResult) String() string {
	return fmt.Sprintf("sent %d bytes, received %d, longest stall %s", r.Sent, r.Received, r.MaxStall.Round(time.Millisecond))
}

// TCP is a running TCP stream.
type TCP struct {
	ln       net.Listener
	conn     *net.TCPConn // sender side
	rconn    net.Conn     // receiver side
	rate     int
	stop     chan struct{}
	sendDone chan struct{}
	recvDone chan struct{}

	mu  sync.Mutex
	res TCPResult
}

// StartTCP listens in To, connects from From through the tunnel and
// starts sending.
func StartTCP(opts TCPOptions) (*TCP, error) {
	if opts.Port == 0 {
		opts.Port = 5302
	}
	if opts.Rate <= 0 {
		opts.Rate = 500_000
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 10 * time.Second
	}
	s := &TCP{rate: opts.Rate, stop: make(chan struct{}), sendDone: make(chan struct{}), recvDone: make(chan struct{})}
	addr := netip.AddrPortFrom(opts.Dst, uint16(opts.Port)).String()
	if err := opts.To.Do(func() (err error) {
		s.ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		return nil, fmt.Errorf("streams: TCP listener in %s: %w", opts.To.Name, err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := s.ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	var c net.Conn
	if err := opts.From.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", addr, opts.DialTimeout)
		return err
	}); err != nil {
		s.ln.Close()
		return nil, fmt.Errorf("streams: TCP connect from %s to %s: %w", opts.From.Name, addr, err)
	}
	s.conn = c.(*net.TCPConn)
	var rc net.Conn
	select {
	case rc = <-accepted:
	case <-time.After(opts.DialTimeout):
	}
	if rc == nil {
		s.conn.Close()
		s.ln.Close()
		return nil, fmt.Errorf("streams: TCP listener in %s accepted nothing", opts.To.Name)
	}
	s.rconn = rc
	go s.receive(rc)
	go s.transmit()
	return s, nil
}

// transmit writes the pattern in chunks every 20 ms, rate/50 bytes each.
func (s *TCP) transmit() {
	defer close(s.sendDone)
	chunk := max(s.rate/50, 1)
	buf := make([]byte, chunk)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var off uint64
	for {
		select {
		case <-s.stop:
			_ = s.conn.CloseWrite()
			return
		case <-tick.C:
		}
		for i := range buf {
			buf[i] = patternByte(off + uint64(i))
		}
		// A tunnel that is down for longer than this has broken the
		// stream as far as any application is concerned.
		_ = s.conn.SetWriteDeadline(time.Now().Add(15 * time.Second))
		n, err := s.conn.Write(buf)
		off += uint64(n)
		s.mu.Lock()
		s.res.Sent = off
		if err != nil && s.res.SendErr == nil {
			s.res.SendErr = err
		}
		s.mu.Unlock()
		if err != nil {
			_ = s.conn.Close()
			return
		}
	}
}

func (s *TCP) receive(c net.Conn) {
	defer close(s.recvDone)
	defer c.Close()
	buf := make([]byte, 64<<10)
	var off uint64
	last := time.Now()
	for {
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		n, err := c.Read(buf)
		now := time.Now()
		for i := 0; i < n; i++ {
			if buf[i] != patternByte(off+uint64(i)) {
				err = fmt.Errorf("byte %d is %d, sent %d", off+uint64(i), buf[i], patternByte(off+uint64(i)))
				n = i
				break
			}
		}
		off += uint64(n)
		s.mu.Lock()
		s.res.Received = off
		select {
		case <-s.sendDone:
		default:
			if stall := now.Sub(last); stall > s.res.MaxStall {
				s.res.MaxStall = stall
			}
		}
		if err != nil && !errors.Is(err, io.EOF) && s.res.RecvErr == nil {
			s.res.RecvErr = err
		}
		s.mu.Unlock()
		last = now
		if err != nil {
			return
		}
	}
}

// Snapshot returns the account so far.
func (s *TCP) Snapshot() TCPResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.res
}

// Stop ends the stream (FIN after the last byte), waits up to timeout
// for the receiver to read everything, and returns the account. Safe to
// call more than once.
func (s *TCP) Stop(timeout time.Duration) TCPResult {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.sendDone
	select {
	case <-s.recvDone:
	case <-time.After(timeout):
		s.mu.Lock()
		if s.res.RecvErr == nil {
			s.res.RecvErr = fmt.Errorf("not all data arrived within %s of the end", timeout)
		}
		s.mu.Unlock()
	}
	s.conn.Close()
	s.rconn.Close()
	s.ln.Close()
	<-s.recvDone
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.res
}
