package xsk

import (
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// RXHeadroom is where a received packet starts in its frame: the
// kernel's XDP_PACKET_HEADROOM, which the Wire leaves as well.
const RXHeadroom = 256

// Ring layout of a memory socket: the two indices and the flags each on
// their own pair of cache lines, as the kernel lays out struct xdp_ring
// (____cacheline_aligned, with padding lines against the adjacent-line
// prefetcher), so that producer and consumer do not share a line.
const (
	memProducer = 0
	memConsumer = 128
	memFlags    = 256
	memDescs    = 384
)

// Wire is the kernel's end of a memory socket (NewMemory): it does what
// the kernel does for a socket in copy mode, in Go and in the caller's
// goroutine, so that code written against a Socket runs in tests and
// benchmarks without a NIC, root or syscalls on the data path. Deliver is
// a driver's RX path into the socket, Drain its TX path out of it.
//
// Deliver and Drain each touch their own two rings (fill and RX, TX and
// completion), so each may run on its own goroutine while the socket's
// owner runs on another, as the kernel's RX and TX paths do; neither may
// run concurrently with itself, with Close or after it (they then do
// nothing).
type Wire struct {
	umem      []byte
	frameSize uint32
	// The kernel's side of the socket's rings: it consumes the fill and
	// TX rings and produces into RX and completion. The copies share
	// the socket's ring memory but not its cached indices.
	fill, tx, rx, comp ring

	// kick ends a Poll: Deliver and Wake send on it without blocking.
	kick   chan struct{}
	closed atomic.Bool

	rxDropped, rxInvalid, txInvalid, rxFull, fillEmpty atomic.Uint64
}

// NewMemory returns a socket whose UMEM and rings are anonymous memory of
// this process, with no kernel socket behind them (FD is -1, Mode is
// ModeCopy, Ifindex and Queue are 0), and the Wire that plays the
// kernel's part. The socket's methods behave as for a socket from Open
// except that none makes a syscall: Transmit and Flush never kick (the
// Wire never asks for a wake-up), Poll waits for Deliver or Wake, and
// Stats reports the Wire's counters. cfg is as for Open; ModeZeroCopy is
// refused, since the Wire copies.
func NewMemory(cfg Config) (*Socket, *Wire, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, nil, fmt.Errorf("xsk config: %w", err)
	}
	if cfg.Mode == ModeZeroCopy {
		return nil, nil, fmt.Errorf("xsk memory socket: zero-copy needs a driver")
	}
	s := &Socket{fd: -1, efd: -1, mode: ModeCopy, cfg: cfg}
	if err := s.openMemory(); err != nil {
		s.Close()
		return nil, nil, fmt.Errorf("xsk memory socket: %w", err)
	}
	return s, s.wire, nil
}

func (s *Socket) openMemory() error {
	if err := s.mapUMEM(); err != nil {
		return err
	}
	for _, r := range []struct {
		ring *ring
		size uintptr
	}{{&s.fill, 8}, {&s.comp, 8}, {&s.rx, unsafe.Sizeof(xdpDesc{})}, {&s.tx, unsafe.Sizeof(xdpDesc{})}} {
		mem, err := unix.Mmap(-1, 0, memDescs+int(s.cfg.RingSize)*int(r.size),
			unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
		if err != nil {
			return fmt.Errorf("mmap ring: %w", err)
		}
		*r.ring = newRing(mem, memProducer, memConsumer, memDescs, memFlags, s.cfg.RingSize)
	}
	w := &Wire{umem: s.umem, frameSize: s.cfg.FrameSize, kick: make(chan struct{}, 1)}
	for _, r := range []struct{ dst, src *ring }{{&w.fill, &s.fill}, {&w.tx, &s.tx}, {&w.rx, &s.rx}, {&w.comp, &s.comp}} {
		*r.dst = *r.src
		r.dst.mem = nil // Close unmaps the socket's copy only
	}
	w.fill.initConsumer()
	w.tx.initConsumer()
	w.rx.initProducer()
	w.comp.initProducer()
	s.wire = w
	s.start()
	return nil
}

// Deliver receives frames, whole Ethernet frames without FCS, as a driver
// would: each is copied into a frame taken from the fill ring, RXHeadroom
// bytes in, and posted on the RX ring, in order, with one publication for
// the batch. It returns how many it delivered. Like the kernel it drops,
// and counts in Stats, a frame that does not fit behind the headroom
// (RxDropped), one that finds the RX ring full (RxRingFull) and one that
// finds the fill ring empty (RxFillRingEmptyDescs and RxDropped); a fill
// entry outside the UMEM is skipped (RxInvalidDescs).
func (w *Wire) Deliver(frames [][]byte) int {
	if w.closed.Load() || len(frames) == 0 {
		return 0
	}
	room := w.rx.free(uint32(min(len(frames), int(w.rx.size))))
	// Load-acquire of the producer: the addresses the socket wrote
	// before publishing them are visible.
	fillProd := atomic.LoadUint32(w.fill.producer)
	n, taken := uint32(0), uint32(0)
	for _, f := range frames {
		switch {
		case len(f) > int(w.frameSize)-RXHeadroom:
			w.rxDropped.Add(1)
			continue
		case n == room:
			// Never, for a socket that keeps no more frames on the fill
			// and RX rings than a ring holds; counted as the kernel does.
			w.rxFull.Add(1)
			continue
		}
		addr, ok := w.takeFill(fillProd, &taken)
		if !ok {
			w.fillEmpty.Add(1)
			w.rxDropped.Add(1)
			continue
		}
		copy(w.umem[addr+RXHeadroom:], f)
		*w.rx.desc(w.rx.cachedProd + n) = xdpDesc{Addr: addr + RXHeadroom, Len: uint32(len(f))}
		n++
	}
	if taken > 0 {
		w.fill.release(taken)
	}
	if n > 0 {
		w.rx.submit(n)
		w.wake()
	}
	return int(n)
}

// takeFill takes the next valid frame address from the fill ring, whose
// producer index was fillProd, counting entries taken (valid or not) in
// *taken.
func (w *Wire) takeFill(fillProd uint32, taken *uint32) (uint64, bool) {
	for w.fill.cachedCons+*taken != fillProd {
		addr := *w.fill.addr(w.fill.cachedCons + *taken)
		*taken++
		if addr < uint64(len(w.umem)) {
			return addr &^ uint64(w.frameSize-1), true
		}
		w.rxInvalid.Add(1)
	}
	return 0, false
}

// Drain sends what the socket put on its TX ring, in order: it passes each
// frame's bytes to fn (nil discards them), valid only during the call,
// and puts the frame on the completion ring, as copy mode completes a
// frame once it has copied it out. It takes no more than the completion
// ring has room for, and returns how many frames it completed. A
// descriptor outside the UMEM or across a frame boundary is consumed,
// counted (TxInvalidDescs) and not completed, as by the kernel.
func (w *Wire) Drain(fn func(frame []byte)) int {
	if w.closed.Load() {
		return 0
	}
	// Load-acquire: the descriptors the socket wrote are visible.
	n := atomic.LoadUint32(w.tx.producer) - w.tx.cachedCons
	if n == 0 {
		return 0
	}
	n = w.comp.free(n)
	done := uint32(0)
	for i := range n {
		d := *w.tx.desc(w.tx.cachedCons + i)
		end := d.Addr + uint64(d.Len)
		if end > uint64(len(w.umem)) || end < d.Addr ||
			(d.Len > 0 && d.Addr/uint64(w.frameSize) != (end-1)/uint64(w.frameSize)) {
			w.txInvalid.Add(1)
			continue
		}
		if fn != nil {
			fn(w.umem[d.Addr:end:end])
		}
		*w.comp.addr(w.comp.cachedProd + done) = d.Addr
		done++
	}
	w.tx.release(n)
	if done > 0 {
		w.comp.submit(done)
	}
	return int(done)
}

// wake ends a Poll in progress, or the next one.
func (w *Wire) wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// poll is Poll for s, a memory socket: it waits for Deliver or Wake, or
// for timeout (a negative one waits without limit), and reports whether
// packets wait. The timer is the socket's, made once.
func (w *Wire) poll(s *Socket, timeout time.Duration) bool {
	switch {
	case timeout < 0:
		<-w.kick
	case timeout > 0:
		if s.timer == nil {
			s.timer = time.NewTimer(timeout)
		} else {
			s.timer.Reset(timeout)
		}
		select {
		case <-w.kick:
			s.timer.Stop()
		case <-s.timer.C:
		}
	}
	return s.rx.avail(1) > 0
}

func (w *Wire) stats() Stats {
	return Stats{
		RxDropped:            w.rxDropped.Load(),
		RxInvalidDescs:       w.rxInvalid.Load(),
		TxInvalidDescs:       w.txInvalid.Load(),
		RxRingFull:           w.rxFull.Load(),
		RxFillRingEmptyDescs: w.fillEmpty.Load(),
	}
}
