package afxdp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/xdpsec/xdpsec/offload"
	"github.com/xdpsec/xdpsec/offload/afxdp/tun"
	"github.com/xdpsec/xdpsec/offload/esp"
	"github.com/xdpsec/xdpsec/offload/killswitch"
)

// This file is the TUN port: the gateway's own traffic to remote
// selectors. The host stack routes it into the TUN device (the routes are
// installed here, one per outbound protect policy), a worker encrypts it
// like LAN traffic, and decrypted packets for the gateway's own addresses
// are written back into the TUN device.

// localAddrs is an immutable set of the gateway's addresses, published
// through an atomic pointer so that workers test membership without a
// lock.
type localAddrs struct {
	m map[netip.Addr]struct{}
}

func (l *localAddrs) has(a netip.Addr) bool {
	_, ok := l.m[a]
	return ok
}

// tunMTU is the TUN port's MTU when Options.TUNMTU is 0: the WAN port's
// MTU less the most ESP can add, so that no host packet is too big for
// any SA (the host's own PMTU discovery and TCP MSS follow from it).
func tunMTU(wanMTU int) int { return wanMTU - esp.MaxHeadroom - esp.MaxTailroom }

// openTUN creates the TUN port and starts following the gateway's
// addresses. Called by New, in the gateway's namespace.
func (d *Dataplane) openTUN(name string, mtu int) error {
	if mtu == 0 {
		mtu = tunMTU(d.wanMTU)
	}
	// Offloads let the host hand over up to 64 KiB per read, which the
	// device cuts into packets of the TUN's MTU; the worker then sees
	// ordinary packets.
	dev, err := tun.Create(name, mtu, tun.Options{Offload: true})
	if err != nil {
		return fmt.Errorf("afxdp: %w", err)
	}
	d.tun = dev
	// The current addresses are read before New returns, so the first
	// decrypted packet for the gateway already finds them; the
	// subscription then keeps the set current.
	addrs, err := d.nl.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("afxdp: list addresses: %w", err)
	}
	known := map[ifAddr]struct{}{}
	for _, a := range addrs {
		if ia, ok := toIfAddr(a.LinkIndex, a.IPNet); ok {
			known[ia] = struct{}{}
		}
	}
	d.publishLocals(known)
	ch := make(chan netlink.AddrUpdate, 64)
	d.addrDone = make(chan struct{})
	err = netlink.AddrSubscribeWithOptions(ch, d.addrDone, netlink.AddrSubscribeOptions{
		Namespace: &d.ns,
		// A failed subscription leaves the set as it was: decrypted
		// packets for an address added since are then dropped as
		// no_route, which the log explains.
		ErrorCallback: func(err error) { d.log.Warn("address subscription", zap.Error(err)) },
	})
	if err != nil {
		close(d.addrDone)
		d.addrDone = nil
		return fmt.Errorf("afxdp: subscribe to addresses: %w", err)
	}
	d.addrWG.Add(1)
	go func() {
		defer d.addrWG.Done()
		for u := range ch {
			ia, ok := toIfAddr(u.LinkIndex, &u.LinkAddress)
			if !ok {
				continue
			}
			if u.NewAddr {
				known[ia] = struct{}{}
			} else {
				delete(known, ia)
			}
			d.publishLocals(known)
		}
	}()
	return nil
}

// ifAddr is an address on one interface: the same address may be on two.
type ifAddr struct {
	ifIndex int
	addr    netip.Addr
}

func toIfAddr(ifIndex int, n *net.IPNet) (ifAddr, bool) {
	if n == nil {
		return ifAddr{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return ifAddr{}, false
	}
	return ifAddr{ifIndex, a.Unmap()}, true
}

func (d *Dataplane) publishLocals(known map[ifAddr]struct{}) {
	l := &localAddrs{m: make(map[netip.Addr]struct{}, len(known))}
	for ia := range known {
		l.m[ia.addr] = struct{}{}
	}
	d.locals.Store(l)
}

// closeTUN stops the address watch and closes the TUN device, which takes
// its routes with it. Called by teardown after the workers stopped.
func (d *Dataplane) closeTUN() error {
	if d.addrDone != nil {
		close(d.addrDone)
		d.addrWG.Wait()
		d.addrDone = nil
	}
	if d.tun == nil {
		return nil
	}
	err := d.tun.Close()
	d.tun = nil
	if err != nil {
		return fmt.Errorf("afxdp: %w", err)
	}
	return nil
}

// hostRoute is the route that sends the gateway's own traffic for an
// outbound protect policy's destination into the TUN port. Its preferred
// source is a gateway address inside the policy's source selector: the
// tunnel's local endpoint when it is one, else the lowest such address;
// with none, the route has no source and the kernel picks one, which then
// only gets through if the selector happens to admit it.
func (d *Dataplane) hostRoute(p offload.Policy) *netlink.Route {
	r := &netlink.Route{
		LinkIndex: d.tun.Index(),
		Dst:       prefixIPNet(p.Dst.Masked()),
		Scope:     netlink.SCOPE_LINK,
		Table:     unix.RT_TABLE_MAIN,
		Protocol:  unix.RTPROT_STATIC,
	}
	locals := d.locals.Load()
	src := p.TunnelSrc
	if !src.IsValid() {
		if e, ok := d.sas[saKey{p.SPI, offload.Out}]; ok {
			src = e.cfg.Src
		}
	}
	if !src.IsValid() || !p.Src.Contains(src) || !locals.has(src) {
		src = netip.Addr{}
		for a := range locals.m {
			if p.Src.Contains(a) && !a.IsLinkLocalUnicast() && (!src.IsValid() || a.Less(src)) {
				src = a
			}
		}
	}
	if src.IsValid() {
		r.Src = src.AsSlice()
	}
	return r
}

func prefixIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func sameRoute(a, b *netlink.Route) bool {
	return a.Table == b.Table && a.LinkIndex == b.LinkIndex && a.Dst.String() == b.Dst.String() && a.Src.Equal(b.Src)
}

// syncHostRoutes makes the TUN routes match the outbound protect
// policies (traps included: the host's traffic for them is dropped, fail
// closed, rather than sent in clear by another route). Each goes into
// the main table, for the host's traffic without a chosen source, and
// into the kill switch's table (package killswitch), whose rule catches
// traffic from the local selectors before the main table: there the TUN
// route's metric 0 beats the blackhole while the TUN device exists. A
// destination that already has a route in the main table keeps it: the
// operator's route is not replaced, and the host's traffic there enters
// the tunnel only from a source in the local selectors. The routes are
// best effort: a failure is logged, not returned, since the policy
// protects the LAN's traffic all the same. Called with d.mu held.
func (d *Dataplane) syncHostRoutes() {
	if d.tun == nil || d.closed {
		return
	}
	want := map[offload.PolicyKey]*netlink.Route{}
	for k, pe := range d.policies {
		if k.Dir == offload.Out && pe.p.Action == offload.Protect {
			want[k] = d.hostRoute(pe.p)
		}
	}
	errs := d.syncRoutes(d.hostRoutes, want, true)
	fenced := make(map[offload.PolicyKey]*netlink.Route, len(want))
	for k, r := range want {
		f := *r
		f.Table = killswitch.Table
		fenced[k] = &f
	}
	errs = append(errs, d.syncRoutes(d.fenceRoutes, fenced, false)...)
	if err := errors.Join(errs...); err != nil {
		d.log.Warn("routes for host traffic", zap.Error(err))
	}
}

// syncRoutes makes the routes in have (by policy) those of want; warn
// logs destinations that already have a route of someone else's.
func (d *Dataplane) syncRoutes(have, want map[offload.PolicyKey]*netlink.Route, warn bool) []error {
	var errs []error
	for k, r := range have {
		if w, ok := want[k]; ok && sameRoute(r, w) {
			continue
		}
		if err := d.nl.RouteDel(r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("afxdp: delete route %s dev %s table %d: %w", r.Dst, d.tun.Name(), r.Table, err))
			continue
		}
		delete(have, k)
	}
	keys := make([]offload.PolicyKey, 0, len(want))
	for k := range want {
		if _, ok := have[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b offload.PolicyKey) int { return a.Dst.Addr().Compare(b.Dst.Addr()) })
	for _, k := range keys {
		r := want[k]
		err := d.nl.RouteAdd(r)
		switch {
		case errors.Is(err, unix.EEXIST):
			if warn {
				d.log.Warn("route for host traffic exists, not replaced",
					zap.Stringer("dst", r.Dst), zap.String("tun", d.tun.Name()))
			}
		case err != nil:
			errs = append(errs, fmt.Errorf("afxdp: add route %s dev %s table %d: %w", r.Dst, d.tun.Name(), r.Table, err))
		default:
			have[k] = r
		}
	}
	return errs
}

// TUN returns the TUN port's interface name, "" without one.
func (d *Dataplane) TUN() string { return d.tunName }
