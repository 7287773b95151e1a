// Package afxdp is xdpsec's userspace data plane: the XDP programs (package
// loader) steer ESP of installed SAs from the WAN port and protected
// plaintext from the LAN port into AF_XDP sockets (package xsk), and Go
// workers, one per CPU, decrypt and encrypt with the esp engine and send
// the result out of the other port, with next hops from package fib.
//
// Every RX queue of both ports gets a socket (xdp_wan and xdp_lan drop what
// they cannot redirect: fail closed), and queue q of both ports belongs to
// worker q mod workers, which alone receives on them and sends on its LAN
// sockets. WAN sockets also carry the packets of the outbound SAs whose
// home they are, from whichever worker encrypted them, under a lock per
// socket (see wanPort).
//
// Drops are counted by reason. Besides the esp engine's verdicts the
// workers count malformed (not untagged Ethernet with IP), no_route (no
// route, a next hop out of the wrong port, or one that was not resolved
// while a few packets waited for it in the worker's neighbour queue: see
// neigh.go; without a TUN port this includes traffic for the gateway's own
// addresses), mtu (too big
// for the tunnel or the LAN), ttl (TTL or hop limit exhausted), no_sa
// (steered by xdp_lan or routed into the TUN port, but no policy with an
// SA selects it), expired (hard time limit), tx_full (no free TX frame or
// ring slot), tun_error (TUN port reads or writes that failed) and
// tx_error (failed TX kicks).
//
// Besides drops the workers count two events: csum_completed, LAN packets
// whose TCP or UDP checksum the sender left partial (TX checksum offload,
// as on a veth: containers on the gateway host), which they complete
// before encrypting, since nothing after them could; and decrypt_shared,
// WAN packets decrypted for another worker's batch (see WorkerEvents).
//
// With Options.TUN the gateway's own traffic is protected too: the host
// stack routes packets for the destinations of outbound protect policies
// into a TUN device, worker 0 reads it and encrypts them on the LAN's
// path, and decrypted packets for the gateway's addresses are written
// into it instead of being dropped.
//
// Limits: tunnel mode only (transport mode is refused); packets too big
// for the tunnel are dropped, with an ICMP error to DF senders on the LAN
// (the TUN port's MTU keeps the host's own within the tunnel), since
// fragmentation is out of scope; no ICMP time exceeded; the host's
// traffic for a trap policy is dropped without an Acquire event. An
// outbound SA whose traffic arrives on several queues is encrypted by
// several workers, one run of its packets at a time (its sequence
// numbers are taken in order under a per-SA lock, so its crypto is not
// parallel), and all of its packets leave in sequence order through one
// WAN queue, its home, chosen by SPI; an inbound SA's packets are
// decrypted by the workers of the queues they arrive on, and each of
// those shares its big batches with the other workers (spread.go), so
// one SA on one queue still decrypts on every core, and leaves in the
// order it came.
package afxdp

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/xdpsec/xdpsec/loader"
	"github.com/xdpsec/xdpsec/offload"
	"github.com/xdpsec/xdpsec/offload/afxdp/fib"
	"github.com/xdpsec/xdpsec/offload/afxdp/icmp"
	"github.com/xdpsec/xdpsec/offload/afxdp/tun"
	"github.com/xdpsec/xdpsec/offload/afxdp/xsk"
	"github.com/xdpsec/xdpsec/offload/esp"
)

// Options configure New.
type Options struct {
	// WAN is the ciphertext port, LAN the plaintext port.
	WAN, LAN string
	// Workers is the number of worker goroutines; 0 means one per CPU.
	// There are never more than the ports have RX queues, since a
	// worker owns whole queues.
	Workers int
	// XDPMode is auto, native or generic ("" means auto).
	XDPMode string
	// Instance names the bpffs pin directory of this data plane.
	Instance string
	// PinRoot is the bpffs directory above the instances; "" means
	// loader.DefaultPinRoot.
	PinRoot string
	// Logger receives setup and teardown messages; nil discards them.
	Logger *zap.Logger
	// Socket sizes the AF_XDP sockets; the zero value uses xsk's
	// defaults.
	Socket xsk.Config
	// TUN, when set, names the TUN port New creates for the gateway's
	// own traffic (a kernel pattern such as "xdpsec%d" is allowed; the
	// TUN method reports the name). For every outbound protect policy a
	// route to its destination through the TUN port is added to the main
	// table and to the kill switch's (killswitch.Table, ahead of its
	// blackhole), so the host's packets there are encrypted like the LAN's;
	// decrypted packets for the gateway's own addresses are written to
	// it. Close deletes the device and its routes.
	TUN string
	// TUNMTU is the TUN port's MTU; 0 means the WAN port's MTU less the
	// largest ESP overhead (esp.MaxHeadroom + esp.MaxTailroom).
	TUNMTU int
	// DecryptSharing says whether workers share the decryption of big
	// WAN batches (spread.go); "" means SharingAuto.
	DecryptSharing Sharing
	// LANOutput is where decrypted packets for the LAN leave (lanout.go);
	// "" means LANOutputAuto.
	LANOutput LANOutput
}

// eventQueue is how many events wait for the control plane before new
// ones are counted as lost.
const eventQueue = 64

// Dataplane is the afxdp data plane. Its methods are safe for concurrent
// use.
type Dataplane struct {
	log    *zap.Logger
	ld     *loader.Loader
	fib    *fib.FIB
	nl     *netlink.Handle
	ns     netns.NsHandle
	wanIf  int
	lanIf  int
	wanMTU int
	sadb   *esp.SADB
	spd    atomic.Pointer[spdTable]
	// icmpLim bounds the ICMP errors of all workers (Linux's defaults:
	// per source and global token buckets).
	icmpLim *icmp.Limiter

	// tun is the TUN port (nil without one), read by one worker and
	// written by all; locals are the gateway's addresses, whose
	// decrypted packets go to it. hostRoutes are the TUN routes per
	// outbound protect policy in the main table, fenceRoutes their twins
	// in the kill switch's table (under mu).
	tun     *tun.Device
	tunName string
	// lanOut is where decrypted packets for the LAN leave; tunV6, with
	// LANOutputTUN, whether IPv6 ones do too (the stack forwards IPv6).
	lanOut      LANOutput
	tunV6       bool
	locals      atomic.Pointer[localAddrs]
	addrDone    chan struct{}
	addrWG      sync.WaitGroup
	hostRoutes  map[offload.PolicyKey]*netlink.Route
	fenceRoutes map[offload.PolicyKey]*netlink.Route

	socks []*xsk.Socket
	// wanPorts are the WAN sockets, by queue, shared by the workers to
	// send on (see wanPort).
	wanPorts []*wanPort
	workers  []*worker
	// sealHook, when set (by tests; nil otherwise), is called as a worker
	// starts (start true) and ends the lock-free encryption of a run of
	// o's packets, so that a test can delay it and see runs of one SA
	// encrypted at once.
	sealHook func(o *outSA, start bool)
	// csumNoted is set once a worker has logged that LAN hosts send
	// partial checksums (see worker.csumCompleted).
	csumNoted atomic.Bool
	stop      atomic.Bool
	wg        sync.WaitGroup

	traps   *loader.EventReader[loader.TrapEvent]
	trapsWG sync.WaitGroup

	events *offload.EventQueue

	mu       sync.Mutex
	closed   bool
	reserved map[uint32]struct{}
	sas      map[saKey]*saEntry
	policies map[offload.PolicyKey]*policyEntry
	polIDs   map[string]uint32 // loader policy ID per destination prefix
	byID     map[uint32]offload.Policy
	nextID   uint32
	// retired keeps the drop counts of deleted SAs, so Stats never goes
	// backwards; lineage keeps their traffic per conn/child/direction.
	retired esp.DropCounts
	lineage offload.Lineage
}

var _ offload.Dataplane = (*Dataplane)(nil)

// check refuses options that New cannot build from.
func (opts Options) check() error {
	if opts.WAN == "" || opts.LAN == "" || opts.WAN == opts.LAN {
		return fmt.Errorf("afxdp: need two distinct ports, got wan %q lan %q", opts.WAN, opts.LAN)
	}
	if opts.Workers < 0 {
		return fmt.Errorf("afxdp: negative worker count %d", opts.Workers)
	}
	switch opts.DecryptSharing {
	case "", SharingAuto, SharingOn, SharingOff:
	default:
		return fmt.Errorf("afxdp: decrypt sharing %q: want auto, on or off", opts.DecryptSharing)
	}
	if opts.TUNMTU != 0 && opts.TUN == "" {
		return fmt.Errorf("afxdp: tun mtu %d without a tun port", opts.TUNMTU)
	}
	return nil
}

// New builds the data plane on opts.WAN and opts.LAN. It must run on a
// thread locked inside the gateway's network namespace (the daemon runs in
// it; tests call New inside netlab's NS.Do): interfaces, sockets and the
// FIB's netlink subscriptions are bound to the caller's namespace. ctx
// bounds the FIB's background resolution; Close is the clean stop.
func New(ctx context.Context, opts Options) (_ *Dataplane, err error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	d := &Dataplane{
		log:      log,
		sadb:     esp.NewSADB(),
		icmpLim:  icmp.NewLimiter(icmp.LimiterConfig{}),
		events:   offload.NewEventQueue(eventQueue),
		reserved: make(map[uint32]struct{}),
		sas:      make(map[saKey]*saEntry),
		policies: make(map[offload.PolicyKey]*policyEntry),
		polIDs:   make(map[string]uint32),
		byID:     make(map[uint32]offload.Policy),
		lineage:  make(offload.Lineage),
		ns:       netns.None(),

		hostRoutes:  make(map[offload.PolicyKey]*netlink.Route),
		fenceRoutes: make(map[offload.PolicyKey]*netlink.Route),
	}
	d.spd.Store(buildSPD(nil))
	d.locals.Store(&localAddrs{})
	defer func() {
		if err != nil {
			d.teardown()
		}
	}()

	if d.ns, err = netns.Get(); err != nil {
		return nil, fmt.Errorf("afxdp: current namespace: %w", err)
	}
	if d.nl, err = netlink.NewHandleAt(d.ns, unix.NETLINK_ROUTE); err != nil {
		return nil, fmt.Errorf("afxdp: netlink: %w", err)
	}
	wan, err := d.nl.LinkByName(opts.WAN)
	if err != nil {
		return nil, fmt.Errorf("afxdp: wan port %s: %w", opts.WAN, err)
	}
	lan, err := d.nl.LinkByName(opts.LAN)
	if err != nil {
		return nil, fmt.Errorf("afxdp: lan port %s: %w", opts.LAN, err)
	}
	d.wanIf, d.lanIf, d.wanMTU = wan.Attrs().Index, lan.Attrs().Index, wan.Attrs().MTU

	d.ld, err = loader.Open(loader.Options{
		Instance: opts.Instance, PinRoot: opts.PinRoot,
		WAN: opts.WAN, LAN: opts.LAN, Mode: loader.Mode(opts.XDPMode),
		Logger: log.Named("loader"),
	})
	if err != nil {
		return nil, fmt.Errorf("afxdp: %w", err)
	}
	if d.traps, err = d.ld.TrapEvents(); err != nil {
		return nil, fmt.Errorf("afxdp: %w", err)
	}
	d.trapsWG.Add(1)
	go func() {
		defer d.trapsWG.Done()
		d.readTraps()
	}()
	if d.fib, err = fib.New(ctx, d.nl, d.ns, log.Named("fib")); err != nil {
		return nil, fmt.Errorf("afxdp: %w", err)
	}

	if opts.TUN != "" {
		if err := d.openTUN(opts.TUN, opts.TUNMTU); err != nil {
			return nil, err
		}
		d.tunName = d.tun.Name()
	}
	if d.lanOut, err = d.chooseLANOutput(opts.LANOutput, opts.LAN); err != nil {
		return nil, err
	}

	wanSocks, err := xsk.OpenAll(d.wanIf, opts.Socket)
	if err != nil {
		return nil, fmt.Errorf("afxdp: wan sockets: %w", err)
	}
	d.socks = append(d.socks, wanSocks...)
	lanSocks, err := xsk.OpenAll(d.lanIf, opts.Socket)
	if err != nil {
		return nil, fmt.Errorf("afxdp: lan sockets: %w", err)
	}
	d.socks = append(d.socks, lanSocks...)
	for _, r := range []struct {
		side  loader.Side
		socks []*xsk.Socket
	}{{loader.WAN, wanSocks}, {loader.LAN, lanSocks}} {
		for _, s := range r.socks {
			if err := d.ld.RegisterXSK(r.side, uint32(s.Queue()), s.FD()); err != nil {
				return nil, fmt.Errorf("afxdp: %w", err)
			}
		}
	}

	if err := d.startWorkers(opts.Workers, opts.DecryptSharing, wanSocks, lanSocks); err != nil {
		return nil, err
	}
	log.Info("afxdp data plane up",
		zap.String("wan", opts.WAN), zap.Int("wan_queues", len(wanSocks)),
		zap.String("tun", d.tunName),
		zap.String("lan", opts.LAN), zap.Int("lan_queues", len(lanSocks)),
		zap.Int("workers", len(d.workers)), zap.Bool("decrypt_sharing", len(d.workers) > 0 && d.workers[0].peers != nil),
		zap.String("lan_output", string(d.lanOut)),
		zap.Stringer("xsk_mode", wanSocks[0].Mode()))
	return d, nil
}

// Pins returns the bpffs directory of the data plane's maps and links and
// whether that bpffs outlives this process (see loader.Loader.Durable):
// then a restarted daemon finds them and the XDP programs stay attached
// while none runs.
func (d *Dataplane) Pins() (dir string, durable bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ld == nil {
		return "", false
	}
	return d.ld.PinDir(), d.ld.Durable()
}

// Name implements offload.Dataplane.
func (d *Dataplane) Name() string { return "afxdp" }

// Events implements offload.Dataplane.
func (d *Dataplane) Events() <-chan offload.Event { return d.events.C() }

// emit hands an event to the control plane without blocking the data
// path; when nobody reads, the event is counted as lost.
func (d *Dataplane) emit(ev offload.Event) {
	d.events.Emit(ev)
}

// Close implements offload.Dataplane: it stops the workers, detaches the
// programs and removes their pins, closes the sockets and the FIB.
func (d *Dataplane) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	for _, e := range d.sas {
		e.stopTimers()
	}
	d.mu.Unlock()
	err := d.teardown()
	d.log.Info("afxdp data plane closed", zap.Error(err))
	return err
}

// teardown releases whatever New set up, in reverse order: workers first,
// so nothing touches a socket or map that is going away.
func (d *Dataplane) teardown() error {
	var errs []error
	d.stop.Store(true)
	one := [8]byte{1}
	for _, w := range d.workers {
		if w.wakeFD >= 0 {
			_, _ = unix.Write(w.wakeFD, one[:])
		}
	}
	d.wg.Wait()
	for _, w := range d.workers {
		if w.wakeFD >= 0 {
			unix.Close(w.wakeFD)
		}
	}
	d.workers = nil
	if err := d.closeTUN(); err != nil {
		errs = append(errs, err)
	}
	if d.traps != nil {
		d.traps.Close()
		d.trapsWG.Wait()
		d.traps = nil
	}
	if d.ld != nil {
		if err := d.ld.Detach(); err != nil {
			errs = append(errs, fmt.Errorf("afxdp: %w", err))
		}
		d.ld = nil
	}
	if err := xsk.CloseAll(d.socks); err != nil {
		errs = append(errs, fmt.Errorf("afxdp: %w", err))
	}
	d.socks = nil
	if d.fib != nil {
		if err := d.fib.Close(); err != nil {
			errs = append(errs, fmt.Errorf("afxdp: %w", err))
		}
	}
	if d.nl != nil {
		d.nl.Close()
	}
	if d.ns.IsOpen() {
		d.ns.Close()
	}
	d.events.Close()
	return errors.Join(errs...)
}

// readTraps turns xdp_lan's trap events (traffic that hit a protect
// policy without an SA) into Acquire events. It ends when the reader is
// closed.
func (d *Dataplane) readTraps() {
	for {
		tev, err := d.traps.Read()
		if errors.Is(err, ringbuf.ErrClosed) {
			return
		}
		if err != nil {
			// A bad record costs one event; the pause keeps a reader
			// that keeps failing from spinning.
			d.log.Warn("trap event", zap.Error(err))
			time.Sleep(100 * time.Millisecond)
			continue
		}
		d.mu.Lock()
		p, ok := d.byID[tev.PolicyID]
		d.mu.Unlock()
		if !ok {
			continue // the policy went away since
		}
		d.emit(offload.Event{
			Kind: offload.Acquire, Conn: p.Conn, Child: p.Child, Dir: offload.Out,
			Src: tev.Src.Addr(), Dst: tev.Dst.Addr(),
		})
	}
}

// WorkerPackets returns how many packets each worker has received from
// both ports, for the per-worker metrics.
func (d *Dataplane) WorkerPackets() []uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	out := make([]uint64, len(d.workers))
	for i, w := range d.workers {
		out[i] = w.packets.Load()
	}
	return out
}

// WorkerEvents returns what the workers did to packets besides moving or
// dropping them, for metrics: csum_completed counts LAN packets whose
// partial TCP or UDP checksum (a sender with TX checksum offload) they
// completed before encrypting, decrypt_shared the WAN packets a worker
// decrypted for another worker's batch (see spread.go), lan_merged the
// decrypted TCP segments that left through the TUN port merged into
// super-packets (see lanout.go).
func (d *Dataplane) WorkerEvents() map[string]uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	var done, shared, merged uint64
	for _, w := range d.workers {
		done += w.csumDone.Load()
		shared += w.helped.Load()
		if w.gro != nil {
			merged += w.gro.Merged()
		}
	}
	return map[string]uint64{"csum_completed": done, "decrypt_shared": shared, "lan_merged": merged}
}

// SetIKERateLimit rate-limits IKE_SA_INIT per source at the WAN program
// (loader.SetIKERateLimit); 0 lifts the limit.
func (d *Dataplane) SetIKERateLimit(perSecond uint32) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return offload.ErrClosed
	}
	if err := d.ld.SetIKERateLimit(perSecond); err != nil {
		return fmt.Errorf("afxdp: %w", err)
	}
	return nil
}

// XDPCounters returns the verdict counters of the WAN and LAN programs
// (loader.WANCounters, loader.LANCounters), for metrics.
func (d *Dataplane) XDPCounters() (wan, lan map[string]uint64, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, nil, offload.ErrClosed
	}
	if wan, err = d.ld.WANCounters(); err != nil {
		return nil, nil, fmt.Errorf("afxdp: %w", err)
	}
	if lan, err = d.ld.LANCounters(); err != nil {
		return nil, nil, fmt.Errorf("afxdp: %w", err)
	}
	return wan, lan, nil
}

// SocketCounters sums the kernel's statistics of all AF_XDP sockets
// (XDP_STATISTICS): packets the kernel dropped before a worker saw them
// because a ring was full or the fill ring empty, which no other counter
// of the data plane can see.
func (d *Dataplane) SocketCounters() (map[string]uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, offload.ErrClosed
	}
	out := map[string]uint64{
		"rx_dropped": 0, "rx_invalid_descs": 0, "tx_invalid_descs": 0,
		"rx_ring_full": 0, "rx_fill_ring_empty_descs": 0, "tx_ring_empty_descs": 0,
	}
	for _, s := range d.socks {
		st, err := s.Stats()
		if err != nil {
			return nil, fmt.Errorf("afxdp: %w", err)
		}
		out["rx_dropped"] += st.RxDropped
		out["rx_invalid_descs"] += st.RxInvalidDescs
		out["tx_invalid_descs"] += st.TxInvalidDescs
		out["rx_ring_full"] += st.RxRingFull
		out["rx_fill_ring_empty_descs"] += st.RxFillRingEmptyDescs
		out["tx_ring_empty_descs"] += st.TxRingEmptyDescs
	}
	return out, nil
}

// allowedCPUs lists the CPUs this process may run on, so that worker i is
// pinned to the i-th of them (queue i's interrupts usually land there) and
// never to a CPU a cpuset forbids.
func allowedCPUs() []int {
	var set unix.CPUSet
	var cpus []int
	if err := unix.SchedGetaffinity(0, &set); err == nil {
		for c := range len(set) * 64 {
			if set.IsSet(c) {
				cpus = append(cpus, c)
			}
		}
	}
	if len(cpus) == 0 {
		for c := range runtime.NumCPU() {
			cpus = append(cpus, c)
		}
	}
	return cpus
}
