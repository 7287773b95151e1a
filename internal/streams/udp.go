package streams

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/xdpsec/xdpsec/internal/netlab"
)

// UDPOptions configures a sequence-numbered UDP stream.
type UDPOptions struct {
	// From sends, To receives on Dst:Port (Dst is an address of To).
	From, To *netlab.NS
	Dst      netip.Addr
	// Port defaults to 5301.
	Port int
	// Rate is datagrams per second (default 500): slow enough that the
	// lab never drops for want of capacity, fast enough that a 2 ms hole
	// in the tunnel loses a datagram.
	Rate int
	// Size is the UDP payload size (default 64, at least 16).
	Size int
}

// header: 8 bytes of stream id (so stray datagrams on the port are not
// counted) then the 8-byte big-endian sequence number.
const udpHeader = 16

// UDP is a running stream. The sockets are opened inside the namespaces
// (NS.Do on a locked thread) and then used from ordinary goroutines: a
// socket keeps the namespace it was created in.
type UDP struct {
	opts UDPOptions
	id   uint64
	send *net.UDPConn
	recv *net.UDPConn

	stop     chan struct{}
	sendDone chan struct{}
	recvDone chan struct{}

	mu         sync.Mutex
	counter    Counter
	sent       uint64
	sendErrs   uint64
	lastErr    error
	lastArrive time.Time
	stopped    bool
	final      Result
}

// StartUDP opens the receiver, then the sender, and starts sending.
func StartUDP(opts UDPOptions) (*UDP, error) {
	if opts.Port == 0 {
		opts.Port = 5301
	}
	if opts.Rate <= 0 {
		opts.Rate = 500
	}
	if opts.Size == 0 {
		opts.Size = 64
	}
	if opts.Size < udpHeader {
		return nil, fmt.Errorf("streams: UDP payload of %d bytes cannot hold the %d-byte header", opts.Size, udpHeader)
	}
	u := &UDP{opts: opts, stop: make(chan struct{}), sendDone: make(chan struct{}), recvDone: make(chan struct{})}
	var idb [8]byte
	_, _ = rand.Read(idb[:])
	u.id = binary.BigEndian.Uint64(idb[:])
	dst := &net.UDPAddr{IP: opts.Dst.AsSlice(), Port: opts.Port}
	if err := opts.To.Do(func() (err error) {
		u.recv, err = net.ListenUDP("udp", dst)
		return err
	}); err != nil {
		return nil, fmt.Errorf("streams: UDP receiver in %s: %w", opts.To.Name, err)
	}
	// A burst of late datagrams after a stall must not overflow the
	// socket: that would be loss the tunnel did not cause.
	_ = u.recv.SetReadBuffer(4 << 20)
	if err := opts.From.Do(func() (err error) {
		u.send, err = net.DialUDP("udp", nil, dst)
		return err
	}); err != nil {
		u.recv.Close()
		return nil, fmt.Errorf("streams: UDP sender in %s: %w", opts.From.Name, err)
	}
	go u.receive()
	go u.transmit()
	return u, nil
}

func (u *UDP) receive() {
	defer close(u.recvDone)
	buf := make([]byte, 65536)
	for {
		n, err := u.recv.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if n < udpHeader || binary.BigEndian.Uint64(buf) != u.id {
			continue
		}
		seq := binary.BigEndian.Uint64(buf[8:])
		u.mu.Lock()
		u.counter.Add(seq)
		u.lastArrive = time.Now()
		u.mu.Unlock()
	}
}

// transmit sends at the configured rate. It wakes every interval but
// sends as many datagrams as are due since the start, so a late wake-up
// (two busy CPUs) catches up instead of lowering the rate.
func (u *UDP) transmit() {
	defer close(u.sendDone)
	dgram := make([]byte, u.opts.Size)
	binary.BigEndian.PutUint64(dgram, u.id)
	interval := time.Second / time.Duration(u.opts.Rate)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	start := time.Now()
	var seq uint64
	for {
		due := uint64(time.Since(start) * time.Duration(u.opts.Rate) / time.Second)
		for ; seq < due; seq++ {
			binary.BigEndian.PutUint64(dgram[8:], seq)
			_, err := u.send.Write(dgram)
			u.mu.Lock()
			u.sent = seq + 1
			if err != nil {
				u.sendErrs++
				u.lastErr = err
			}
			u.mu.Unlock()
		}
		select {
		case <-u.stop:
			return
		case <-tick.C:
		}
	}
}

// Snapshot accounts for what was sent so far. Datagrams still in flight
// show as missing; use it for progress, Stop for the verdict.
func (u *UDP) Snapshot() Result {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.stopped {
		return u.final
	}
	r := u.counter.Result(u.sent)
	r.SendErrors = u.sendErrs
	return r
}

// Sent is the number of datagrams sent so far.
func (u *UDP) Sent() uint64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.sent
}

// LastSendError is the most recent write error, if any.
func (u *UDP) LastSendError() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.lastErr
}

// Stop stops sending, waits until every sent datagram arrived or none
// arrived for drain, closes the sockets and returns the final account.
// It may be called more than once (a t.Cleanup after the test's own
// Stop); later calls return the first result.
func (u *UDP) Stop(drain time.Duration) Result {
	u.mu.Lock()
	if u.stopped {
		defer u.mu.Unlock()
		return u.final
	}
	u.mu.Unlock()
	close(u.stop)
	<-u.sendDone
	stopAt := time.Now()
	for {
		u.mu.Lock()
		sent := u.sent
		complete := u.counter.Result(sent).Missing == u.sendErrs
		last := u.lastArrive
		u.mu.Unlock()
		if last.Before(stopAt) {
			last = stopAt
		}
		if complete || time.Since(last) > drain {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	u.send.Close()
	u.recv.Close()
	<-u.recvDone
	u.mu.Lock()
	defer u.mu.Unlock()
	u.final = u.counter.Result(u.sent)
	u.final.SendErrors = u.sendErrs
	u.stopped = true
	return u.final
}
