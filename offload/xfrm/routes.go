package xfrm

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/xdpsec/xdpsec/offload"
)

// routes gives each protected destination a route. The kernel looks for a
// route before it looks at the XFRM policies, so a forwarded packet for a
// remote site the routing table does not know is answered with "network
// unreachable" instead of being encrypted; strongSwan installs routes for
// the same reason. Ours point at the next hop towards the peer, with a
// source address from the local selector where the gateway has one, so
// its own traffic to the remote site matches the policy too.
//
// A destination that already has a route (the operator's, or a default
// route does not count: only the exact prefix) is left as it is.
type routes struct {
	h   *netlink.Handle
	log *zap.Logger
	// ours counts the outbound policies using each of our routes; foreign
	// records destinations whose existing route we left alone.
	ours    map[netip.Prefix]*routeEntry
	foreign map[netip.Prefix]int
}

type routeEntry struct {
	route netlink.Route
	users int
}

func newRoutes(ns netns.NsHandle, log *zap.Logger) (*routes, error) {
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("route handle: %w", err)
	}
	r := &routes{h: h, log: log, ours: map[netip.Prefix]*routeEntry{}, foreign: map[netip.Prefix]int{}}
	if n, err := r.sweep(); err != nil {
		h.Close()
		return nil, err
	} else if n > 0 {
		log.Info("removed routes a previous run left", zap.Int("routes", n))
	}
	return r, nil
}

// sweep removes every route with our protocol.
func (r *routes) sweep() (int, error) {
	list, err := r.h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Protocol: offload.RouteProtocol, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return 0, fmt.Errorf("list routes: %w", err)
	}
	for i := range list {
		if err := r.h.RouteDel(&list[i]); err != nil && !errors.Is(err, unix.ESRCH) {
			return i, fmt.Errorf("remove route %s: %w", list[i].Dst, err)
		}
	}
	return len(list), nil
}

func prefixNet(p netip.Prefix) *net.IPNet {
	p = p.Masked()
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// add routes dst towards peer (the tunnel's remote end), with a source
// from local where the gateway has an address in it.
func (r *routes) add(dst, local netip.Prefix, peer netip.Addr) error {
	dst = dst.Masked()
	if e, ok := r.ours[dst]; ok {
		e.users++
		return nil
	}
	if _, ok := r.foreign[dst]; ok {
		r.foreign[dst]++
		return nil
	}
	if !peer.IsValid() || peer.IsUnspecified() {
		return nil
	}
	via, err := r.h.RouteGet(peer.AsSlice())
	if err != nil || len(via) == 0 {
		return fmt.Errorf("route to peer %s: %w", peer, err)
	}
	rt := netlink.Route{
		Dst: prefixNet(dst), Gw: via[0].Gw, LinkIndex: via[0].LinkIndex,
		Protocol: offload.RouteProtocol, Table: unix.RT_TABLE_MAIN,
	}
	if src, ok := r.localAddr(local); ok {
		rt.Src = src.AsSlice()
	}
	if err := r.h.RouteAdd(&rt); err != nil {
		if errors.Is(err, unix.EEXIST) {
			r.foreign[dst] = 1
			return nil
		}
		return fmt.Errorf("add route %s: %w", dst, err)
	}
	r.ours[dst] = &routeEntry{route: rt, users: 1}
	r.log.Debug("route added for protected destination", zap.Stringer("dst", dst), zap.Stringer("peer", peer))
	return nil
}

// localAddr finds an address of the gateway inside p.
func (r *routes) localAddr(p netip.Prefix) (netip.Addr, bool) {
	family := netlink.FAMILY_V4
	if p.Addr().Is6() {
		family = netlink.FAMILY_V6
	}
	addrs, err := r.h.AddrList(nil, family)
	if err != nil {
		return netip.Addr{}, false
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && p.Contains(ip.Unmap()) {
			return ip.Unmap(), true
		}
	}
	return netip.Addr{}, false
}

// release drops one user of dst's route and removes the route with its
// last user.
func (r *routes) release(dst netip.Prefix) error {
	dst = dst.Masked()
	if n, ok := r.foreign[dst]; ok {
		if n <= 1 {
			delete(r.foreign, dst)
		} else {
			r.foreign[dst] = n - 1
		}
		return nil
	}
	e, ok := r.ours[dst]
	if !ok {
		return nil
	}
	if e.users--; e.users > 0 {
		return nil
	}
	delete(r.ours, dst)
	if err := r.h.RouteDel(&e.route); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("remove route %s: %w", dst, err)
	}
	return nil
}

// close removes all our routes.
func (r *routes) close() error {
	var errs []error
	for dst, e := range r.ours {
		if err := r.h.RouteDel(&e.route); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("remove route %s: %w", dst, err))
		}
		delete(r.ours, dst)
	}
	r.h.Close()
	return errors.Join(errs...)
}
