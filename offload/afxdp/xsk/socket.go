package xsk

import (
	"errors"
	"fmt"
	"math/bits"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Mode is how a socket moves packets between the driver and the UMEM.
type Mode int

const (
	// ModeAuto lets the kernel pick: zero-copy where the driver offers it,
	// copy otherwise. Socket.Mode reports the outcome.
	ModeAuto Mode = iota
	// ModeCopy forces copy mode (XDP_COPY), which every driver supports.
	ModeCopy
	// ModeZeroCopy requires zero-copy (XDP_ZEROCOPY); Open fails where
	// the driver lacks it.
	ModeZeroCopy
)

func (m Mode) String() string {
	switch m {
	case ModeAuto:
		return "auto"
	case ModeCopy:
		return "copy"
	case ModeZeroCopy:
		return "zero-copy"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// Defaults for zero Config fields.
const (
	DefaultFrameSize = 2048
	DefaultNumFrames = 4096
	DefaultRingSize  = 2048
)

// Config sizes a socket. The zero value is usable.
type Config struct {
	// FrameSize is the size of each UMEM frame: 2048 or 4096 (0 means
	// DefaultFrameSize). In RX, the kernel leaves 256 bytes of headroom
	// (XDP_PACKET_HEADROOM) in front of each packet.
	FrameSize uint32
	// NumFrames is the number of frames in the UMEM (0 means
	// DefaultNumFrames).
	NumFrames uint32
	// RingSize is the number of entries of each of the four rings, a
	// power of two (0 means DefaultRingSize).
	RingSize uint32
	// FillFrames is how many frames are kept on the fill ring (or in the
	// kernel) for RX; the rest are free for TX. 0 means half of
	// NumFrames, at most RingSize.
	FillFrames uint32
	// Mode selects copy or zero-copy.
	Mode Mode
}

func (c Config) withDefaults() (Config, error) {
	if c.FrameSize == 0 {
		c.FrameSize = DefaultFrameSize
	}
	if c.NumFrames == 0 {
		c.NumFrames = DefaultNumFrames
	}
	if c.RingSize == 0 {
		c.RingSize = DefaultRingSize
	}
	if c.FillFrames == 0 {
		c.FillFrames = min(c.NumFrames/2, c.RingSize)
	}
	switch {
	case c.FrameSize != 2048 && c.FrameSize != 4096:
		return c, fmt.Errorf("frame size %d: must be 2048 or 4096", c.FrameSize)
	case bits.OnesCount32(c.RingSize) != 1:
		return c, fmt.Errorf("ring size %d: not a power of two", c.RingSize)
	case c.NumFrames < 2:
		return c, fmt.Errorf("%d frames: need at least 2", c.NumFrames)
	case c.FillFrames > c.RingSize:
		return c, fmt.Errorf("fill frames %d: more than ring size %d", c.FillFrames, c.RingSize)
	case c.FillFrames > c.NumFrames:
		return c, fmt.Errorf("fill frames %d: more than frames %d", c.FillFrames, c.NumFrames)
	case uint64(c.NumFrames)*uint64(c.FrameSize) > 1<<40:
		return c, fmt.Errorf("umem of %d frames: too large", c.NumFrames)
	case c.Mode < ModeAuto || c.Mode > ModeZeroCopy:
		return c, fmt.Errorf("%v: unknown mode", c.Mode)
	}
	return c, nil
}

// Desc is one frame handed between the caller and the socket: its offset
// in the UMEM and the packet length.
type Desc struct {
	Addr uint64
	Len  uint32
}

// Socket is an AF_XDP socket with its own UMEM. See the package
// documentation for the data path and the concurrency rules.
type Socket struct {
	fd      int
	efd     int // eventfd that Wake uses to end a Poll
	ifindex int
	queue   int
	mode    Mode
	cfg     Config

	umem      []byte
	frameMask uint64 // FrameSize-1: turns an address into its frame's base
	fill      ring
	comp      ring
	rx        ring
	tx        ring

	// free is a stack of frame base addresses with capacity NumFrames, so
	// pushing never allocates.
	free    []uint64
	fillOut uint32 // frames on the fill ring or held by the kernel for RX
	txOut   uint32 // frames on the TX ring or in flight, not completed
	user    uint32 // frames held by the caller

	pfd    [2]unix.PollFd
	ts     unix.Timespec
	efdBuf [8]byte

	// wire is the kernel's part for a memory socket (NewMemory), which
	// has no fd; nil for a real one. timer bounds its Polls.
	wire  *Wire
	timer *time.Timer
}

// Open creates a socket bound to queue of the interface with index
// ifindex. The interface is looked up in the network namespace of the
// calling thread, so a caller working in another namespace must run Open
// on a thread inside it (runtime.LockOSThread and setns, or netlab's Do).
func Open(ifindex, queue int, cfg Config) (*Socket, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("xsk config: %w", err)
	}
	if ifindex <= 0 || queue < 0 {
		return nil, fmt.Errorf("xsk open ifindex %d queue %d: invalid", ifindex, queue)
	}
	s := &Socket{fd: -1, efd: -1, ifindex: ifindex, queue: queue, cfg: cfg}
	if err := s.open(); err != nil {
		s.Close()
		return nil, fmt.Errorf("xsk open ifindex %d queue %d: %w", ifindex, queue, err)
	}
	return s, nil
}

func (s *Socket) open() error {
	cfg := s.cfg
	var err error
	s.fd, err = unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	if err := s.mapUMEM(); err != nil {
		return err
	}
	reg := unix.XDPUmemReg{
		Addr: uint64(uintptr(unsafe.Pointer(unsafe.SliceData(s.umem)))),
		Len:  uint64(len(s.umem)),
		Size: cfg.FrameSize,
	}
	if err := setsockopt(s.fd, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); err != nil {
		return fmt.Errorf("umem reg: %w", err)
	}
	for _, opt := range []struct {
		name int
		what string
	}{
		{unix.XDP_UMEM_FILL_RING, "fill ring"},
		{unix.XDP_UMEM_COMPLETION_RING, "completion ring"},
		{unix.XDP_RX_RING, "rx ring"},
		{unix.XDP_TX_RING, "tx ring"},
	} {
		if err := unix.SetsockoptInt(s.fd, unix.SOL_XDP, opt.name, int(cfg.RingSize)); err != nil {
			return fmt.Errorf("%s size: %w", opt.what, err)
		}
	}
	var off unix.XDPMmapOffsets
	n, err := getsockopt(s.fd, unix.XDP_MMAP_OFFSETS, unsafe.Pointer(&off), unsafe.Sizeof(off))
	if err != nil {
		return fmt.Errorf("mmap offsets: %w", err)
	}
	if n != unsafe.Sizeof(off) {
		// Kernels before 5.4 have no flags field, hence no need-wakeup.
		return fmt.Errorf("mmap offsets: kernel returned %d bytes, want %d", n, unsafe.Sizeof(off))
	}
	if s.fill, err = s.mapRing(off.Fr, unix.XDP_UMEM_PGOFF_FILL_RING, 8); err != nil {
		return fmt.Errorf("mmap fill ring: %w", err)
	}
	if s.comp, err = s.mapRing(off.Cr, unix.XDP_UMEM_PGOFF_COMPLETION_RING, 8); err != nil {
		return fmt.Errorf("mmap completion ring: %w", err)
	}
	if s.rx, err = s.mapRing(off.Rx, unix.XDP_PGOFF_RX_RING, unsafe.Sizeof(xdpDesc{})); err != nil {
		return fmt.Errorf("mmap rx ring: %w", err)
	}
	if s.tx, err = s.mapRing(off.Tx, unix.XDP_PGOFF_TX_RING, unsafe.Sizeof(xdpDesc{})); err != nil {
		return fmt.Errorf("mmap tx ring: %w", err)
	}
	flags := uint16(unix.XDP_USE_NEED_WAKEUP)
	switch cfg.Mode {
	case ModeCopy:
		flags |= unix.XDP_COPY
	case ModeZeroCopy:
		flags |= unix.XDP_ZEROCOPY
	}
	sa := unix.SockaddrXDP{Flags: flags, Ifindex: uint32(s.ifindex), QueueID: uint32(s.queue)}
	if err := bind(s.fd, &sa); err != nil {
		if cfg.Mode == ModeZeroCopy && errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("bind: zero-copy not supported by driver: %w", err)
		}
		return fmt.Errorf("bind: %w", err)
	}
	// With neither XDP_COPY nor XDP_ZEROCOPY the kernel tries zero-copy
	// and silently falls back to copy; XDP_OPTIONS tells which it chose.
	var opts uint32
	if _, err := getsockopt(s.fd, unix.XDP_OPTIONS, unsafe.Pointer(&opts), unsafe.Sizeof(opts)); err != nil {
		return fmt.Errorf("xdp options: %w", err)
	}
	s.mode = ModeCopy
	if opts&unix.XDP_OPTIONS_ZEROCOPY != 0 {
		s.mode = ModeZeroCopy
	}
	if s.mode == ModeCopy {
		// In copy mode each kick transmits at most a budget of frames
		// (32 by default) and then returns EAGAIN; raising it to the
		// ring size lets one kick drain a full batch. Kernels before
		// 6.17 lack the option and keep the default, which is correct
		// but costs more kicks, so failure is not an error.
		budget := cfg.RingSize
		_ = setsockopt(s.fd, unix.XDP_MAX_TX_SKB_BUDGET, unsafe.Pointer(&budget), unsafe.Sizeof(budget))
	}
	s.efd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("eventfd: %w", err)
	}

	s.start()
	return nil
}

// mapUMEM maps the UMEM. MAP_POPULATE faults it in now rather than on
// the first packets; the kernel pins the pages at XDP_UMEM_REG anyway.
func (s *Socket) mapUMEM() error {
	var err error
	s.umem, err = unix.Mmap(-1, 0, int(s.cfg.NumFrames)*int(s.cfg.FrameSize),
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("mmap umem: %w", err)
	}
	s.frameMask = uint64(s.cfg.FrameSize) - 1
	return nil
}

// start takes this side's view of the mapped rings, puts every frame on
// the free stack and fills the fill ring.
func (s *Socket) start() {
	s.fill.initProducer()
	s.tx.initProducer()
	s.rx.initConsumer()
	s.comp.initConsumer()
	s.free = make([]uint64, s.cfg.NumFrames)
	for i := range s.free {
		// Lowest addresses on top of the stack: the first frames used
		// are the first pages of the UMEM.
		s.free[i] = uint64(s.cfg.NumFrames-1-uint32(i)) * uint64(s.cfg.FrameSize)
	}
	s.refill()
}

// bindBusyWait bounds how long bind retries on EBUSY. The kernel releases
// the buffer pool of a closed socket from a workqueue, so its queue stays
// taken for a moment after Close; a daemon that reopens its sockets (a
// reload, a test) would otherwise fail at random.
const bindBusyWait = time.Second

func bind(fd int, sa *unix.SockaddrXDP) error {
	end := time.Now().Add(bindBusyWait)
	for {
		err := unix.Bind(fd, sa)
		if err != unix.EBUSY || time.Now().After(end) {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *Socket) mapRing(off unix.XDPRingOffset, pgoff int64, descSize uintptr) (ring, error) {
	size := int(off.Desc) + int(s.cfg.RingSize)*int(descSize)
	mem, err := unix.Mmap(s.fd, pgoff, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return ring{}, err
	}
	return newRing(mem, off.Producer, off.Consumer, off.Desc, off.Flags, s.cfg.RingSize), nil
}

// FD returns the socket's file descriptor, for an XSKMAP entry; -1 for a
// memory socket.
func (s *Socket) FD() int { return s.fd }

// Ifindex returns the index of the interface the socket is bound to.
func (s *Socket) Ifindex() int { return s.ifindex }

// Queue returns the queue id the socket is bound to.
func (s *Socket) Queue() int { return s.queue }

// Mode returns ModeCopy or ModeZeroCopy: what the kernel bound.
func (s *Socket) Mode() Mode { return s.mode }

// FrameSize returns the size of a UMEM frame.
func (s *Socket) FrameSize() int { return int(s.cfg.FrameSize) }

// Frame returns the bytes of d inside the UMEM, without copying. Its
// capacity reaches to the end of d's frame, so a caller may grow a packet
// at the end (d.Len is only a length). To prepend headers in place, move
// d back into the headroom the kernel leaves in front of a received
// packet (Headroom), as Desc{Addr: d.Addr - k, Len: d.Len + k}: Frame and
// Transmit accept any range inside one frame. The slice is valid while the
// caller owns d.
func (s *Socket) Frame(d Desc) []byte {
	end := (d.Addr &^ s.frameMask) + uint64(s.cfg.FrameSize)
	return s.umem[d.Addr : d.Addr+uint64(d.Len) : end]
}

// Headroom returns how many bytes of d's frame lie in front of d.
func (s *Socket) Headroom(d Desc) int { return int(d.Addr & s.frameMask) }

// Receive fills descs with up to len(descs) received packets and returns
// how many. The caller owns them until Release or Transmit.
func (s *Socket) Receive(descs []Desc) int {
	s.refill()
	n := s.rx.avail(uint32(min(len(descs), int(s.cfg.RingSize))))
	if n == 0 {
		// A zero-copy driver that found the fill ring empty stops
		// until it is told that frames are back.
		if s.fill.needWakeup() {
			wakeRX(s.fd)
		}
		return 0
	}
	cons := s.rx.cachedCons
	for i := range n {
		d := s.rx.desc(cons + i)
		descs[i] = Desc{Addr: d.Addr, Len: d.Len}
	}
	s.rx.release(n)
	s.fillOut -= n
	s.user += n
	return int(n)
}

// Release gives frames from Receive or Alloc back to the socket; they go to
// the fill ring as far as RX needs them, and to the free stack otherwise.
// Releasing a frame the caller does not own corrupts the frame accounting;
// releasing more frames than the caller holds panics.
func (s *Socket) Release(descs []Desc) {
	if uint64(len(descs)) > uint64(s.user) {
		panic(fmt.Sprintf("xsk: release of %d frames, caller holds %d", len(descs), s.user))
	}
	for _, d := range descs {
		s.free = append(s.free, d.Addr&^s.frameMask)
	}
	s.user -= uint32(len(descs))
	s.refill()
}

// refill moves free frames to the fill ring until FillFrames are there.
func (s *Socket) refill() {
	want := s.cfg.FillFrames - s.fillOut
	if want == 0 || len(s.free) == 0 {
		return
	}
	n := s.fill.free(min(want, uint32(len(s.free))))
	if n == 0 {
		return
	}
	prod := s.fill.cachedProd
	top := len(s.free)
	for i := range n {
		*s.fill.addr(prod + i) = s.free[top-1-int(i)]
	}
	s.free = s.free[:top-int(n)]
	s.fill.submit(n)
	s.fillOut += n
}

// Alloc fills descs with up to len(descs) free frames for sending, each
// with Len set to the frame size, and returns how many. Write the packet
// into Frame(d), set d.Len to its length, then Transmit (or Release).
func (s *Socket) Alloc(descs []Desc) int {
	if len(s.free) < len(descs) {
		s.Complete()
	}
	n := min(len(descs), len(s.free))
	top := len(s.free)
	for i := range n {
		descs[i] = Desc{Addr: s.free[top-1-i], Len: s.cfg.FrameSize}
	}
	s.free = s.free[:top-n]
	s.user += uint32(n)
	return n
}

// Transmit puts descs on the TX ring in order and returns how many it
// took: fewer than len(descs) when the ring is full, and the caller still
// owns the rest. The frames may come from Alloc or Receive. When the kernel
// asks for it (need-wakeup), Transmit kicks it with a non-blocking sendto;
// transient kick failures (EAGAIN, EBUSY, ENOBUFS, ENETDOWN) leave the
// frames queued for the next kick and are not reported.
func (s *Socket) Transmit(descs []Desc) (int, error) {
	if uint64(len(descs)) > uint64(s.user) {
		panic(fmt.Sprintf("xsk: transmit of %d frames, caller holds %d", len(descs), s.user))
	}
	s.Complete()
	n := s.tx.free(uint32(len(descs)))
	prod := s.tx.cachedProd
	for i := range n {
		d := &descs[i]
		*s.tx.desc(prod + i) = xdpDesc{Addr: d.Addr, Len: d.Len}
	}
	if n > 0 {
		s.tx.submit(n)
		s.user -= n
		s.txOut += n
	}
	return int(n), s.Flush()
}

// Flush kicks the kernel if frames wait on the TX ring and the kernel
// wants a kick. Transmit calls it; a caller needs it only to push out
// frames a kick left behind, e.g. after a transient failure.
func (s *Socket) Flush() error {
	if s.tx.pending() == 0 || !s.tx.needWakeup() {
		return nil
	}
	switch e := kick(s.fd); e {
	case 0, unix.EAGAIN, unix.EBUSY, unix.ENOBUFS, unix.ENETDOWN:
		return nil
	default:
		return fmt.Errorf("xsk kick: %w", e)
	}
}

// Complete moves frames the kernel has finished sending back to the free
// stack and returns how many.
func (s *Socket) Complete() int {
	n := s.comp.avail(s.cfg.RingSize)
	if n == 0 {
		return 0
	}
	cons := s.comp.cachedCons
	for i := range n {
		s.free = append(s.free, *s.comp.addr(cons + i)&^s.frameMask)
	}
	s.comp.release(n)
	s.txOut -= n
	return int(n)
}

// Poll blocks until packets wait on the RX ring, Wake is called, or
// timeout passes (a negative timeout waits without limit), and reports
// whether packets wait. It refills the fill ring first, so a worker that
// has released its frames can sleep here without starving the kernel.
func (s *Socket) Poll(timeout time.Duration) (bool, error) {
	s.refill()
	if s.rx.avail(1) > 0 {
		return true, nil
	}
	if s.wire != nil {
		return s.wire.poll(s, timeout), nil
	}
	s.pfd[0] = unix.PollFd{Fd: int32(s.fd), Events: unix.POLLIN}
	s.pfd[1] = unix.PollFd{Fd: int32(s.efd), Events: unix.POLLIN}
	// ppoll with a Timespec kept in the socket: unix.Poll would allocate
	// one per call on some architectures.
	ts := &s.ts
	if timeout < 0 {
		ts = nil
	} else {
		s.ts = unix.NsecToTimespec(int64(timeout))
	}
	_, err := unix.Ppoll(s.pfd[:], ts, nil)
	if err != nil {
		if err == unix.EINTR {
			return false, nil
		}
		return false, fmt.Errorf("xsk poll: %w", err)
	}
	if s.pfd[1].Revents&unix.POLLIN != 0 {
		// Consume the wake-up, so the next Poll blocks again.
		_, _ = unix.Read(s.efd, s.efdBuf[:])
	}
	if s.pfd[0].Revents&(unix.POLLERR|unix.POLLNVAL) != 0 {
		return false, fmt.Errorf("xsk poll: socket error (revents %#x)", s.pfd[0].Revents)
	}
	return s.pfd[0].Revents&unix.POLLIN != 0, nil
}

// Wake makes a Poll that is blocked in another goroutine (or the next
// one) return. It may be called from any goroutine, but not concurrently
// with or after Close.
func (s *Socket) Wake() error {
	if s.wire != nil {
		s.wire.wake()
		return nil
	}
	one := [8]byte{1}
	if _, err := unix.Write(s.efd, one[:]); err != nil && err != unix.EAGAIN {
		return fmt.Errorf("xsk wake: %w", err)
	}
	return nil
}

// Close closes the socket and unmaps its rings and UMEM. Frames the caller
// still holds become invalid. Close may be called more than once; it must
// not run concurrently with any other method.
func (s *Socket) Close() error {
	var errs []error
	if s.wire != nil {
		// The wire keeps its own view of the rings and the UMEM, which
		// are about to go away.
		s.wire.closed.Store(true)
	}
	// Closing the fd first unbinds the socket (and drops any XSKMAP
	// entry holding it), so the kernel stops writing to the UMEM before
	// it goes away; the ring mappings keep their pages alive until they
	// are unmapped below.
	if s.fd >= 0 {
		if err := unix.Close(s.fd); err != nil {
			errs = append(errs, fmt.Errorf("close socket: %w", err))
		}
		s.fd = -1
	}
	for _, r := range []*ring{&s.fill, &s.comp, &s.rx, &s.tx} {
		if r.mem != nil {
			if err := unix.Munmap(r.mem); err != nil {
				errs = append(errs, fmt.Errorf("munmap ring: %w", err))
			}
			*r = ring{}
		}
	}
	if s.umem != nil {
		if err := unix.Munmap(s.umem); err != nil {
			errs = append(errs, fmt.Errorf("munmap umem: %w", err))
		}
		s.umem = nil
	}
	if s.efd >= 0 {
		if err := unix.Close(s.efd); err != nil {
			errs = append(errs, fmt.Errorf("close eventfd: %w", err))
		}
		s.efd = -1
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("xsk close: %w", err)
	}
	return nil
}
