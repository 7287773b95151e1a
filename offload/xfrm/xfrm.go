// Package xfrm is the data plane that leaves ESP to the Linux kernel's
// XFRM (mode "xfrm") or, through XFRM, to the NIC (mode "xfrm-offload"):
// SAs become XFRM states and policies XFRM policies, programmed over
// netlink in the data plane's network namespace.
//
// Everything it installs carries a reqid from its own range (and the
// configured mark, if any), which is how it tells its own states and
// policies from those of other daemons in the namespace: Close removes
// only those, and New removes those a killed predecessor left behind.
package xfrm

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/xdpsec/xdpsec/offload"
)

// DefaultReqIDBase is where the reqid range starts when Options leave it
// zero: far above the small reqids strongSwan (1, 2, ...) and Libreswan
// (16384 and up) hand out, so a namespace can host either beside us.
const DefaultReqIDBase = 0x78640000

// reqIDSpan is the size of the reqid range: two reqids per child (its
// SAs', its trap's), so 32768 children.
const reqIDSpan = 0x10000

// OffloadConfig asks for NIC offload (mode xfrm-offload).
type OffloadConfig struct {
	// Dev is the interface whose NIC does the work (the WAN port).
	Dev string
	// Type is "crypto" (the NIC encrypts, the kernel does the rest) or
	// "packet" (the NIC also does the ESP framing and sequencing).
	Type string
	// Required fails an SA the NIC refuses instead of falling back to
	// software.
	Required bool
}

// Options configure a data plane.
type Options struct {
	Logger *zap.Logger
	// NetNS is the network namespace to program; netns.None() or the
	// zero value (fd 0 is never a namespace) mean the current one.
	NetNS netns.NsHandle
	// Offload, when set, makes this mode xfrm-offload.
	Offload *OffloadConfig
	// Mark and IfID, when non-zero, go on every state and policy (for
	// setups that route by mark or use xfrm interfaces).
	Mark, MarkMask uint32
	IfID           uint32
	// ReqIDBase starts the reqid range (DefaultReqIDBase when 0); it must
	// be even, and distinct instances in one namespace need distinct
	// ranges.
	ReqIDBase uint32
}

type saKey struct {
	spi uint32
	dir offload.Direction
}

// saEntry is an installed SA.
type saEntry struct {
	cfg     offload.SA // keys cleared
	id      netlink.XfrmState
	offload string // in force, as the kernel reported it
	// gone: the kernel removed the state at its hard limit; bytes and
	// packets are then its final counters, from the expire message.
	gone           bool
	bytes, packets uint64
}

// Dataplane programs the kernel's XFRM.
type Dataplane struct {
	log     *zap.Logger
	opts    Options
	k       kernel
	ifindex int // offload device

	mu       sync.Mutex
	closed   bool
	reserved offload.SPIReservations
	sas      map[saKey]*saEntry
	policies map[offload.PolicyKey]offload.Policy
	reqids   map[[2]string]int
	nextReq  int
	lineage  offload.Lineage

	stat *statFile
	// rt routes protected destinations (nil without a kernel, in tests).
	rt *routes

	events *offload.EventQueue
	mon    *monitor
}

var _ offload.Dataplane = (*Dataplane)(nil)

// New opens netlink in the namespace, removes what a previous instance
// with the same reqid range left behind, and starts the event monitor.
func New(opts Options) (*Dataplane, error) {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.ReqIDBase == 0 {
		opts.ReqIDBase = DefaultReqIDBase
	}
	if opts.NetNS == 0 {
		opts.NetNS = netns.None()
	}
	if opts.ReqIDBase%2 != 0 || uint64(opts.ReqIDBase)+reqIDSpan > 1<<32 {
		return nil, fmt.Errorf("xfrm: bad reqid base %#x", opts.ReqIDBase)
	}
	if o := opts.Offload; o != nil && o.Type != OffloadCrypto && o.Type != OffloadPacket {
		return nil, fmt.Errorf("xfrm: bad offload type %q", o.Type)
	}
	k, err := newNLKernel(opts.NetNS)
	if err != nil {
		return nil, fmt.Errorf("xfrm: %w", err)
	}
	d := newDataplane(opts, k)
	if o := opts.Offload; o != nil {
		if o.Dev == "" {
			k.close()
			return nil, errors.New("xfrm: offload without a device")
		}
		idx, err := ifindexAt(opts.NetNS, o.Dev)
		if err != nil {
			k.close()
			return nil, fmt.Errorf("xfrm: offload device %s: %w", o.Dev, err)
		}
		d.ifindex = idx
	}
	if err := d.sweep("leftovers of a previous run"); err != nil {
		k.close()
		return nil, fmt.Errorf("xfrm: remove leftovers: %w", err)
	}
	if d.rt, err = newRoutes(opts.NetNS, d.log); err != nil {
		k.close()
		return nil, fmt.Errorf("xfrm: %w", err)
	}
	if d.stat, err = openStat(opts.NetNS); err != nil {
		// Kernels without CONFIG_XFRM_STATISTICS have no file: the
		// drops stay empty rather than the data plane failing.
		d.log.Warn("xfrm statistics unavailable", zap.Error(err))
	}
	if d.mon, err = startMonitor(opts.NetNS, d.handle); err != nil {
		d.stat.close()
		k.close()
		return nil, fmt.Errorf("xfrm: monitor: %w", err)
	}
	d.log.Info("xfrm data plane ready", zap.String("mode", d.Name()),
		zap.String("reqids", fmt.Sprintf("%#x-%#x", opts.ReqIDBase, uint64(opts.ReqIDBase)+reqIDSpan-1)))
	return d, nil
}

// newDataplane builds the tables around a kernel; New adds the monitor
// and the statistics file, tests use it with a fake kernel.
func newDataplane(opts Options, k kernel) *Dataplane {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.ReqIDBase == 0 {
		opts.ReqIDBase = DefaultReqIDBase
	}
	return &Dataplane{
		log: opts.Logger.With(zap.String("dataplane", "xfrm")), opts: opts, k: k,
		reserved: offload.SPIReservations{},
		sas:      map[saKey]*saEntry{},
		policies: map[offload.PolicyKey]offload.Policy{},
		reqids:   map[[2]string]int{},
		lineage:  offload.Lineage{},
		events:   offload.NewEventQueue(256),
	}
}

func ifindexAt(ns netns.NsHandle, dev string) (int, error) {
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return 0, err
	}
	defer h.Close()
	l, err := h.LinkByName(dev)
	if err != nil {
		return 0, err
	}
	return l.Attrs().Index, nil
}

// Name implements offload.Dataplane.
func (d *Dataplane) Name() string {
	if d.opts.Offload != nil {
		return "xfrm-offload"
	}
	return "xfrm"
}

func (d *Dataplane) xlat() xlat {
	x := xlat{ifid: int(d.opts.IfID)}
	if d.opts.Mark != 0 || d.opts.MarkMask != 0 {
		x.mark = &netlink.XfrmMark{Value: d.opts.Mark, Mask: d.opts.MarkMask}
	}
	return x
}

// reqIDs returns the child's reqids, allocating them on first use. Called
// with d.mu held. They stay for the run: a child keeps its reqid across
// rekeys, and the range is large enough for any configuration.
func (d *Dataplane) reqIDs(conn, child string) (policyReqIDs, error) {
	k := [2]string{conn, child}
	n, ok := d.reqids[k]
	if !ok {
		if d.nextReq+2 > reqIDSpan {
			return policyReqIDs{}, errors.New("reqid range exhausted")
		}
		n = int(d.opts.ReqIDBase) + d.nextReq
		d.nextReq += 2
		d.reqids[k] = n
	}
	return policyReqIDs{sa: n, trap: n + 1}, nil
}

func (d *Dataplane) ourReqID(r int) bool {
	return r >= int(d.opts.ReqIDBase) && r < int(d.opts.ReqIDBase)+reqIDSpan
}

func (d *Dataplane) ourMark(m *netlink.XfrmMark) bool {
	x := d.xlat()
	if x.mark == nil {
		return true
	}
	mask := x.mark.Mask
	if mask == 0 {
		mask = ^uint32(0)
	}
	return m != nil && m.Value == x.mark.Value && m.Mask == mask
}

// ownsState tells our states from others' in the namespace.
func (d *Dataplane) ownsState(st *netlink.XfrmState) bool {
	return d.ourReqID(st.Reqid) && d.ourMark(st.Mark)
}

// ownsPolicy: a template with our reqid, or, for bypass and discard
// policies that have no template, our priority band.
func (d *Dataplane) ownsPolicy(p *netlink.XfrmPolicy) bool {
	if !d.ourMark(p.Mark) {
		return false
	}
	if len(p.Tmpls) == 0 {
		return inPriorityBand(p.Priority)
	}
	for _, t := range p.Tmpls {
		if !d.ourReqID(t.Reqid) {
			return false
		}
	}
	return true
}

// sweep removes every state and policy of ours the kernel has, policies
// first so that no traffic meets a policy whose state is gone.
func (d *Dataplane) sweep(why string) error {
	var errs []error
	pols, err := d.k.listPolicies()
	if err != nil {
		return fmt.Errorf("list policies: %w", err)
	}
	np := 0
	for i := range pols {
		p := &pols[i]
		if p.Dir > netlink.XFRM_DIR_FWD || !d.ownsPolicy(p) {
			continue
		}
		if err := d.k.delPolicy(p); err != nil && !isGone(err) {
			errs = append(errs, fmt.Errorf("del policy %s -> %s %s: %w", p.Src, p.Dst, p.Dir, err))
			continue
		}
		np++
	}
	sts, err := d.k.listStates()
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list states: %w", err))...)
	}
	ns := 0
	for i := range sts {
		st := &sts[i]
		if !d.ownsState(st) {
			continue
		}
		if err := d.k.delState(st); err != nil && !isGone(err) {
			errs = append(errs, fmt.Errorf("del sa %08x: %w", uint32(st.Spi), err))
			continue
		}
		ns++
	}
	if np+ns > 0 {
		d.log.Info("removed xfrm states and policies", zap.String("why", why),
			zap.Int("states", ns), zap.Int("policies", np))
	}
	return errors.Join(errs...)
}

// AllocSPI implements offload.Dataplane. Rather than the kernel's
// ALLOCSPI, which creates a larval state (needing the SA's addresses, not
// known yet, and one more kernel object to clean up on every failed
// negotiation), SPIs are drawn at random and reserved in this process;
// one is taken only if no state in the namespace (another daemon's
// included) has it.
func (d *Dataplane) AllocSPI(context.Context) (uint32, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0, offload.ErrClosed
	}
	sts, err := d.k.listStates()
	if err != nil {
		return 0, fmt.Errorf("alloc spi: %w", err)
	}
	used := make(map[uint32]struct{}, len(sts))
	for _, st := range sts {
		if st.Proto == netlink.XFRM_PROTO_ESP {
			used[uint32(st.Spi)] = struct{}{}
		}
	}
	return d.reserved.Reserve(func(spi uint32) bool {
		_, inKernel := used[spi]
		_, ours := d.sas[saKey{spi, offload.In}]
		return inKernel || ours
	})
}

// ReleaseSPI implements offload.Dataplane.
func (d *Dataplane) ReleaseSPI(_ context.Context, spi uint32) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.reserved.Release(spi)
}

// Close implements offload.Dataplane: policies go first, then the SAs,
// then anything else of ours the kernel still has; the monitor stops and
// Events is closed.
func (d *Dataplane) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	var errs []error
	for k, p := range d.policies {
		kps, err := policiesFor(p, policyReqIDs{}, d.xlat())
		if err == nil {
			for i := range kps {
				if err := d.k.delPolicy(&kps[i]); err != nil && !isGone(err) {
					errs = append(errs, fmt.Errorf("del policy %s -> %s: %w", p.Src, p.Dst, err))
				}
			}
		}
		delete(d.policies, k)
	}
	for k, e := range d.sas {
		if !e.gone {
			if err := d.k.delState(&e.id); err != nil && !isGone(err) {
				errs = append(errs, fmt.Errorf("del sa %08x/%s: %w", k.spi, k.dir, err))
			}
		}
		delete(d.sas, k)
	}
	if err := d.sweep("close"); err != nil {
		errs = append(errs, err)
	}
	if d.rt != nil {
		if err := d.rt.close(); err != nil {
			errs = append(errs, err)
		}
	}
	d.mu.Unlock()
	if d.mon != nil {
		d.mon.stop()
	}
	d.events.Close()
	d.stat.close()
	d.k.close()
	err := errors.Join(errs...)
	d.log.Info("xfrm data plane closed", zap.Error(err))
	return err
}

// Events implements offload.Dataplane.
func (d *Dataplane) Events() <-chan offload.Event { return d.events.C() }

// emit hands an event to the control plane. The channel is buffered; a
// control plane that lets it fill loses events rather than stalling the
// monitor, which would make the kernel drop them anyway (ENOBUFS).
func (d *Dataplane) emit(ev offload.Event) {
	if !d.events.Emit(ev) {
		d.log.Warn("event lost: channel full", zap.String("conn", ev.Conn), zap.String("child", ev.Child),
			zap.String("spi", fmt.Sprintf("%08x", ev.SPI)))
	}
}
