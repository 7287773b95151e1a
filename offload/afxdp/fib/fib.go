// Package fib gives the AF_XDP data plane the kernel's next hops (egress
// interface, preferred source, gateway, MAC addresses and MTU) without a
// netlink round trip per packet.
//
// Workers call Lookup, which reads an immutable snapshot through an atomic
// pointer: no lock, no I/O, no allocation on a hit. Everything else happens
// in one background goroutine that owns the writable state: it resolves
// misses with RTM_GETROUTE, asks the kernel to resolve missing neighbours,
// follows the kernel's neighbour, route and link notifications, and
// publishes a new snapshot after every batch of changes.
//
// Neighbour resolution is the kernel's job, not ours: for a next hop whose
// neighbour entry is missing or not valid, the goroutine sends RTM_NEWNEIGH
// with NTF_USE (NLM_F_CREATE|NLM_F_REPLACE, no link-layer address), the
// netlink form of `ip neigh replace ADDR dev DEV use`. The kernel creates the
// entry if needed and runs neigh_event_send on it, exactly as if it had a
// packet to send: it broadcasts an ARP request or multicasts an IPv6
// neighbour solicitation, with its own timers and retries, and announces the
// result on RTNLGRP_NEIGH, where the subscription picks it up.
package fib

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.uber.org/zap"
)

// NextHop is where the data plane sends a packet for one destination.
type NextHop struct {
	// IfIndex is the egress interface.
	IfIndex int
	// Src is the route's preferred source address (zero if the route has
	// none), the address the gateway's own packets (ICMP errors) use.
	Src netip.Addr
	// Gateway is the router the packet goes through; zero when the
	// destination is on-link.
	Gateway netip.Addr
	// SrcMAC is the egress interface's address, DstMAC the neighbour's.
	// Both are zero on interfaces without link-layer addresses.
	SrcMAC, DstMAC [6]byte
	// MTU is the path MTU: the route's MTU metric (which includes a PMTU
	// exception learnt by the kernel) when set, else the interface MTU.
	MTU int
}

const (
	// reqQueue bounds the miss queue; a miss that does not fit is dropped
	// and comes back with the destination's next packet.
	reqQueue = 1024
	// pendSlots is the size of the dedup table for queued misses; a power
	// of two.
	pendSlots = 4096
	// sweepEvery drives retries, idle eviction and stale-neighbour probes.
	sweepEvery = time.Second
	// idleUnresolved and idleResolved are how many sweeps without a Lookup
	// an entry survives: an unresolvable destination is forgotten quickly,
	// a working one is kept through quiet periods.
	idleUnresolved = 10
	idleResolved   = 300
	// maxEntries bounds memory; misses beyond it are not cached until idle
	// entries are evicted.
	maxEntries = 65536
	// resubscribeAfter is the pause before a failed subscription (usually
	// ENOBUFS after a burst) is opened again.
	resubscribeAfter = time.Second
	// rcvBuf is the subscription sockets' receive buffer; large enough
	// that a burst of neighbour or route changes does not overflow it.
	rcvBuf = 1 << 20
)

// entry is one destination in a published snapshot. nh, ok and noRoute
// never change after publication; st is shared with the writer.
type entry struct {
	nh NextHop
	ok bool
	// noRoute marks a destination the kernel has no usable unicast route
	// for: waiting does not resolve it, only a route change does.
	noRoute bool
	st      *dstState
}

type snapshot struct {
	m map[netip.Addr]*entry
}

// dstState is the writer's record of one destination. used is the only
// field readers touch.
type dstState struct {
	used atomic.Bool

	idle     int
	hasRoute bool
	route    routeInfo
}

type routeInfo struct {
	ifIndex int
	neigh   netip.Addr // gateway, or the destination when on-link
	gw      netip.Addr
	src     netip.Addr
	mtu     int
}

type neighKey struct {
	ifIndex int
	addr    netip.Addr
}

type neighInfo struct {
	mac   [6]byte
	state int
}

type linkInfo struct {
	mac   [6]byte
	hasL2 bool
	mtu   int
}

// FIB is a cache of next hops kept current from the kernel. Lookup is safe
// for concurrent use; everything else belongs to the background goroutine.
type FIB struct {
	h    *netlink.Handle
	ns   netns.NsHandle
	log  *zap.Logger
	seed uint64

	snap atomic.Pointer[snapshot]
	reqs chan netip.Addr
	pend [pendSlots]atomic.Uint64

	cancel context.CancelFunc
	wg     sync.WaitGroup

	// Writer state, owned by run.
	dsts   map[netip.Addr]*dstState
	neighs map[neighKey]neighInfo
	links  map[int]linkInfo
}

// New starts a FIB for the namespace that handle and nsHandle point to.
// nsHandle is where the subscriptions listen; pass netns.None() for the
// caller's own namespace. The FIB runs until ctx is cancelled or Close is
// called. A nil logger logs nothing.
func New(ctx context.Context, handle *netlink.Handle, nsHandle netns.NsHandle, logger *zap.Logger) (*FIB, error) {
	if handle == nil {
		return nil, errors.New("fib: nil netlink handle")
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(ctx)
	f := &FIB{
		h:      handle,
		ns:     nsHandle,
		log:    logger,
		seed:   rand.Uint64() | 1,
		reqs:   make(chan netip.Addr, reqQueue),
		cancel: cancel,
		dsts:   make(map[netip.Addr]*dstState),
		neighs: make(map[neighKey]neighInfo),
		links:  make(map[int]linkInfo),
	}
	f.snap.Store(&snapshot{m: map[netip.Addr]*entry{}})

	// Subscribe before the first resolution so no change between the two
	// is missed; the neighbour subscription's dump seeds the table.
	var subs subscriptions
	if _, err := subs.open(f, subAll); err != nil {
		subs.close()
		cancel()
		return nil, err
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		f.run(ctx, &subs)
	}()
	return f, nil
}

// NewStatic returns a FIB that answers from hops alone: no netlink, no
// background goroutine, nothing ever resolved or evicted. It is the
// kernel-free stand-in with which tests and benchmarks drive the data
// path; a miss stays a miss (and is queued, as by a FIB from New, for a
// resolver that never comes).
func NewStatic(hops map[netip.Addr]NextHop) *FIB {
	f := &FIB{seed: rand.Uint64() | 1, reqs: make(chan netip.Addr, reqQueue), cancel: func() {}}
	m := make(map[netip.Addr]*entry, len(hops))
	for dst, nh := range hops {
		m[dst.Unmap()] = &entry{nh: nh, ok: true, st: &dstState{}}
	}
	f.snap.Store(&snapshot{m: m})
	return f
}

// Close stops the background goroutine and its subscriptions and waits for
// them. Lookup keeps answering from the last snapshot.
func (f *FIB) Close() error {
	f.cancel()
	f.wg.Wait()
	return nil
}

// Lookup returns the next hop for dst. It never blocks and never does I/O:
// on a miss it queues dst for resolution (at most once while queued) and
// returns false, and the caller holds or drops the packet.
func (f *FIB) Lookup(dst netip.Addr) (NextHop, bool) {
	return f.LookupMemo(nil, dst)
}

// Memo is one reader's memory of the destination it looked up last. Runs
// of packets to one destination are the common case (every ESP packet of
// an SA goes to the same peer, a TCP burst to one host), and while the
// published snapshot is unchanged such a run skips the hash map. A Memo
// belongs to one goroutine; its zero value is empty.
type Memo struct {
	snap *snapshot
	dst  netip.Addr
	e    *entry
}

// LookupMemo is Lookup, answered from m when m holds dst in the current
// snapshot, and remembering dst in m when it is found. A nil m is Lookup.
func (f *FIB) LookupMemo(m *Memo, dst netip.Addr) (NextHop, bool) {
	if !dst.IsValid() {
		return NextHop{}, false
	}
	dst = dst.Unmap()
	s := f.snap.Load()
	var e *entry
	if m != nil && m.snap == s && m.dst == dst {
		e = m.e
	} else if e = s.m[dst]; e == nil {
		f.request(dst)
		return NextHop{}, false
	} else if m != nil {
		*m = Memo{snap: s, dst: dst, e: e}
	}
	// Load first: an unconditional Store would bounce the cache line
	// between workers on every packet. Marking the entry on every hit,
	// memoized or not, keeps the sweep from evicting it while in use.
	if !e.st.used.Load() {
		e.st.used.Store(true)
	}
	if e.ok {
		return e.nh, true
	}
	// Known but unresolved: the background goroutine retries on its own
	// while the entry is being used.
	return NextHop{}, false
}

// Unreachable reports whether dst is known to have no usable route, so
// that a caller drops its packets at once rather than holding them for a
// neighbour that will not resolve. A destination not resolved yet, or one
// whose neighbour is still being resolved, is not unreachable. Like
// Lookup it never blocks; unlike Lookup it queues nothing.
func (f *FIB) Unreachable(dst netip.Addr) bool {
	e, found := f.snap.Load().m[dst.Unmap()]
	return found && e.noRoute
}

// request queues dst for resolution unless it (or a destination sharing its
// dedup slot) is queued already; the packet that missed is not held, so a
// dropped request is simply asked again by a later packet.
func (f *FIB) request(dst netip.Addr) {
	h := f.hash(dst)
	slot := &f.pend[h&(pendSlots-1)]
	if slot.Load() != 0 || !slot.CompareAndSwap(0, h) {
		return
	}
	select {
	case f.reqs <- dst:
	default:
		slot.Store(0)
	}
}

func (f *FIB) hash(a netip.Addr) uint64 {
	b := a.As16()
	x := binary.LittleEndian.Uint64(b[:8]) ^ f.seed
	y := binary.LittleEndian.Uint64(b[8:])
	x = (x ^ (x >> 31)) * 0x9e3779b97f4a7c15
	x ^= y
	x = (x ^ (x >> 29)) * 0xbf58476d1ce4e5b9
	return x ^ (x >> 32) | 1
}

func (f *FIB) clearPending(dst netip.Addr) {
	h := f.hash(dst)
	f.pend[h&(pendSlots-1)].CompareAndSwap(h, 0)
}

const (
	subNeigh = 1 << iota
	subRoute
	subLink
	subAll = subNeigh | subRoute | subLink
)

// subscriptions holds the three netlink subscriptions. A nil channel is a
// subscription that failed and waits to be reopened.
type subscriptions struct {
	neigh                          chan netlink.NeighUpdate
	route                          chan netlink.RouteUpdate
	link                           chan netlink.LinkUpdate
	neighDone, routeDone, linkDone chan struct{}
}

// open subscribes to the kinds in which and returns those that failed.
func (s *subscriptions) open(f *FIB, which int) (int, error) {
	// The library reports the socket's closing as an error too; that one
	// is ours and not worth a warning.
	errCB := func(kind string, done <-chan struct{}) func(error) {
		return func(err error) {
			select {
			case <-done:
				return
			default:
			}
			f.log.Warn("fib: subscription error", zap.String("kind", kind), zap.Error(err))
		}
	}
	if which&subNeigh != 0 {
		ch, done := make(chan netlink.NeighUpdate, 256), make(chan struct{})
		err := netlink.NeighSubscribeWithOptions(ch, done, netlink.NeighSubscribeOptions{
			Namespace: f.nsPtr(), ErrorCallback: errCB("neigh", done), ListExisting: true,
			ReceiveBufferSize: rcvBuf, ReceiveBufferForceSize: true,
		})
		if err != nil {
			close(done)
			return which, fmt.Errorf("fib: subscribe to neighbours: %w", err)
		}
		s.neigh, s.neighDone = ch, done
		which &^= subNeigh
	}
	if which&subRoute != 0 {
		ch, done := make(chan netlink.RouteUpdate, 256), make(chan struct{})
		err := netlink.RouteSubscribeWithOptions(ch, done, netlink.RouteSubscribeOptions{
			Namespace: f.nsPtr(), ErrorCallback: errCB("route", done),
			ReceiveBufferSize: rcvBuf, ReceiveBufferForceSize: true,
		})
		if err != nil {
			close(done)
			return which, fmt.Errorf("fib: subscribe to routes: %w", err)
		}
		s.route, s.routeDone = ch, done
		which &^= subRoute
	}
	if which&subLink != 0 {
		ch, done := make(chan netlink.LinkUpdate, 64), make(chan struct{})
		err := netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{
			Namespace: f.nsPtr(), ErrorCallback: errCB("link", done),
			ReceiveBufferSize: rcvBuf, ReceiveBufferForceSize: true,
		})
		if err != nil {
			close(done)
			return which, fmt.Errorf("fib: subscribe to links: %w", err)
		}
		s.link, s.linkDone = ch, done
		which &^= subLink
	}
	return 0, nil
}

// close stops every open subscription and drains its channel until the
// library closes it, so its goroutine is never left blocked on a send.
func (s *subscriptions) close() {
	if s.neigh != nil {
		close(s.neighDone)
		for range s.neigh {
		}
		s.neigh = nil
	}
	if s.route != nil {
		close(s.routeDone)
		for range s.route {
		}
		s.route = nil
	}
	if s.link != nil {
		close(s.linkDone)
		for range s.link {
		}
		s.link = nil
	}
}

func (f *FIB) nsPtr() *netns.NsHandle {
	if !f.ns.IsOpen() {
		return nil
	}
	ns := f.ns
	return &ns
}

// batch collects what one round of events changed.
type batch struct {
	dirty      bool // publish a new snapshot
	revalidate bool // re-resolve every destination's route
	served     []netip.Addr
}

// loop is the background goroutine's event state.
type loop struct {
	subs   subscriptions
	failed int // subscriptions that closed and wait to be reopened
	retry  <-chan time.Time
	sweep  *time.Ticker
}

func (f *FIB) run(ctx context.Context, subs *subscriptions) {
	l := &loop{subs: *subs, sweep: time.NewTicker(sweepEvery)}
	defer l.sweep.Stop()
	defer l.subs.close()

	for {
		var b batch
		// Block for one event, then take whatever else is already waiting
		// (up to a bound) so a burst costs one snapshot.
		select {
		case <-ctx.Done():
			return
		case dst := <-f.reqs:
			f.resolveNew(dst, &b)
		case u, ok := <-l.subs.neigh:
			f.onNeigh(l, u, ok, &b)
		case _, ok := <-l.subs.route:
			f.onRoute(l, ok, &b)
		case u, ok := <-l.subs.link:
			f.onLink(l, u, ok, &b)
		case <-l.sweep.C:
			f.sweep(&b)
		case <-l.retry:
			f.reopen(l, &b)
		}
	drain:
		for range 256 {
			select {
			case <-ctx.Done():
				return
			case dst := <-f.reqs:
				f.resolveNew(dst, &b)
			case u, ok := <-l.subs.neigh:
				f.onNeigh(l, u, ok, &b)
			case _, ok := <-l.subs.route:
				f.onRoute(l, ok, &b)
			case u, ok := <-l.subs.link:
				f.onLink(l, u, ok, &b)
			default:
				break drain
			}
		}
		if l.failed != 0 && l.retry == nil {
			f.log.Warn("fib: subscription closed, reopening", zap.Int("which", l.failed))
			l.retry = time.After(resubscribeAfter)
		}
		if b.revalidate {
			f.revalidate(&b)
		}
		if b.dirty {
			f.publish()
		}
		// Only now, with the result visible, may the same destinations be
		// queued again.
		for _, d := range b.served {
			f.clearPending(d)
		}
	}
}

func (f *FIB) onNeigh(l *loop, u netlink.NeighUpdate, ok bool, b *batch) {
	if !ok {
		close(l.subs.neighDone)
		l.subs.neigh, l.failed = nil, l.failed|subNeigh
		return
	}
	f.neighUpdate(u, b)
}

// onRoute re-resolves all cached destinations on any route change, since
// any route may move any destination; working entries stay in place until
// their new resolution is published.
func (f *FIB) onRoute(l *loop, ok bool, b *batch) {
	if !ok {
		close(l.subs.routeDone)
		l.subs.route, l.failed = nil, l.failed|subRoute
	}
	b.revalidate = true
}

func (f *FIB) onLink(l *loop, u netlink.LinkUpdate, ok bool, b *batch) {
	if !ok {
		close(l.subs.linkDone)
		l.subs.link, l.failed = nil, l.failed|subLink
		return
	}
	f.linkUpdate(u, b)
}

// reopen resubscribes what failed. Events were lost meanwhile, so links
// and routes are re-read; the neighbour subscription lists its table again.
func (f *FIB) reopen(l *loop, b *batch) {
	l.retry = nil
	failed, err := l.subs.open(f, l.failed)
	l.failed = failed
	if err != nil {
		f.log.Warn("fib: resubscribe", zap.Error(err))
	}
	clear(f.links)
	b.revalidate = true
}
