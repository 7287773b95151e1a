package fib

import (
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// nudValid are the neighbour states whose link-layer address may be used,
// as the kernel's NUD_VALID.
const nudValid = netlink.NUD_PERMANENT | netlink.NUD_NOARP | netlink.NUD_REACHABLE |
	netlink.NUD_PROBE | netlink.NUD_STALE | netlink.NUD_DELAY

// resolveNew handles a queued miss.
func (f *FIB) resolveNew(dst netip.Addr, b *batch) {
	b.served = append(b.served, dst)
	if !dst.IsValid() {
		return
	}
	if _, known := f.dsts[dst]; known {
		// Queued twice around a publish; the entry is handled already.
		return
	}
	if len(f.dsts) >= maxEntries {
		f.log.Debug("fib: table full, not caching", zap.Stringer("dst", dst))
		return
	}
	st := &dstState{}
	st.used.Store(true)
	f.dsts[dst] = st
	f.resolveRoute(dst, st)
	f.ensureNeigh(st)
	b.dirty = true
}

// resolveRoute asks the kernel which route dst takes now. A destination
// without a usable unicast route is kept as a negative entry, so its
// packets miss without queueing until routes change or it goes idle.
func (f *FIB) resolveRoute(dst netip.Addr, st *dstState) {
	st.hasRoute = false
	routes, err := f.h.RouteGet(dst.AsSlice())
	if err != nil || len(routes) == 0 {
		f.log.Debug("fib: no route", zap.Stringer("dst", dst), zap.Error(err))
		return
	}
	r := routes[0]
	// Local, broadcast, multicast, blackhole, unreachable and prohibit
	// destinations are not forwarded by the data plane.
	if r.Type != unix.RTN_UNICAST || r.LinkIndex <= 0 {
		return
	}
	ri := routeInfo{ifIndex: r.LinkIndex, src: addrFromIP(r.Src), mtu: r.MTU}
	ri.gw = addrFromIP(r.Gw)
	if !ri.gw.IsValid() {
		// An IPv4 route may have an IPv6 next hop (RFC 5549, RTA_VIA).
		if via, ok := r.Via.(*netlink.Via); ok && via != nil {
			ri.gw = addrFromIP(via.Addr)
		}
	}
	ri.neigh = dst.WithZone("")
	if ri.gw.IsValid() {
		ri.neigh = ri.gw
	}
	li, err := f.link(ri.ifIndex)
	if err != nil {
		f.log.Debug("fib: link", zap.Int("ifindex", ri.ifIndex), zap.Error(err))
		return
	}
	if ri.mtu == 0 || ri.mtu > li.mtu {
		ri.mtu = li.mtu
	}
	st.route, st.hasRoute = ri, true
}

func addrFromIP(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}
	}
	return a.Unmap()
}

// link returns the cached attributes of ifIndex, reading them on first use;
// the link subscription keeps them current afterwards.
func (f *FIB) link(ifIndex int) (linkInfo, error) {
	if li, ok := f.links[ifIndex]; ok {
		return li, nil
	}
	l, err := f.h.LinkByIndex(ifIndex)
	if err != nil {
		return linkInfo{}, err
	}
	li := linkInfoOf(l.Attrs())
	f.links[ifIndex] = li
	return li, nil
}

func linkInfoOf(a *netlink.LinkAttrs) linkInfo {
	li := linkInfo{mtu: a.MTU}
	// Only Ethernet-like links resolve neighbours; TUN and other L3
	// devices carry no link-layer header at all.
	if len(a.HardwareAddr) == 6 && a.RawFlags&unix.IFF_NOARP == 0 {
		li.hasL2 = true
		copy(li.mac[:], a.HardwareAddr)
	}
	return li
}

func familyOf(a netip.Addr) int {
	if a.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

// ensureNeigh makes the kernel resolve st's neighbour unless a usable
// entry is known.
func (f *FIB) ensureNeigh(st *dstState) {
	if !st.hasRoute {
		return
	}
	li := f.links[st.route.ifIndex]
	if !li.hasL2 {
		return
	}
	key := neighKey{ifIndex: st.route.ifIndex, addr: st.route.neigh}
	if n, ok := f.neighs[key]; ok && n.state&nudValid != 0 {
		return
	}
	f.trigger(key)
}

// trigger asks the kernel to resolve key's address on its link: RTM_NEWNEIGH
// with NTF_USE makes it run neigh_event_send on the (created if missing)
// entry, which sends ARP or neighbour solicitations with the kernel's own
// retry timers. The reply arrives through the neighbour subscription.
// trigger reports whether it learnt a usable entry on the way.
func (f *FIB) trigger(key neighKey) bool {
	// NTF_USE on a PERMANENT or NOARP entry would strip its PERMANENT
	// state (__neigh_update), so an entry this FIB has not seen yet (the
	// subscription's initial dump may still be in flight) is looked up
	// first and never touched when an administrator made it.
	if _, seen := f.neighs[key]; !seen {
		list, err := f.h.NeighList(key.ifIndex, familyOf(key.addr))
		if err == nil {
			for i := range list {
				if addrFromIP(list[i].IP) == key.addr {
					f.storeNeigh(key, &list[i])
				}
			}
		}
		if n, ok := f.neighs[key]; ok && n.state&nudValid != 0 {
			return true
		}
	}
	err := f.h.NeighSet(&netlink.Neigh{
		LinkIndex: key.ifIndex,
		Family:    familyOf(key.addr),
		IP:        key.addr.AsSlice(),
		State:     netlink.NUD_NONE,
		Flags:     netlink.NTF_USE,
	})
	if err != nil {
		f.log.Debug("fib: neighbour solicit", zap.Stringer("addr", key.addr),
			zap.Int("ifindex", key.ifIndex), zap.Error(err))
	}
	return false
}

// storeNeigh records a kernel neighbour entry and reports whether the
// usable address changed.
func (f *FIB) storeNeigh(key neighKey, n *netlink.Neigh) bool {
	ni := neighInfo{state: n.State}
	if len(n.HardwareAddr) == 6 {
		copy(ni.mac[:], n.HardwareAddr)
	}
	old, had := f.neighs[key]
	f.neighs[key] = ni
	oldOK := had && old.state&nudValid != 0
	newOK := ni.state&nudValid != 0
	return oldOK != newOK || (newOK && old.mac != ni.mac)
}

func (f *FIB) neighUpdate(u netlink.NeighUpdate, b *batch) {
	if u.Family != netlink.FAMILY_V4 && u.Family != netlink.FAMILY_V6 {
		return
	}
	if u.Flags&netlink.NTF_PROXY != 0 {
		return
	}
	a := addrFromIP(u.IP)
	if !a.IsValid() {
		return
	}
	key := neighKey{ifIndex: u.LinkIndex, addr: a}
	if u.Type == unix.RTM_DELNEIGH {
		if old, had := f.neighs[key]; had {
			delete(f.neighs, key)
			if old.state&nudValid != 0 {
				b.dirty = true
			}
		}
		return
	}
	if f.storeNeigh(key, &u.Neigh) {
		b.dirty = true
	}
}

func (f *FIB) linkUpdate(u netlink.LinkUpdate, b *batch) {
	idx := int(u.Index)
	if _, cached := f.links[idx]; !cached {
		return
	}
	if u.Header.Type == unix.RTM_DELLINK {
		delete(f.links, idx)
		b.revalidate = true
		return
	}
	li := linkInfoOf(u.Link.Attrs())
	if li != f.links[idx] {
		f.links[idx] = li
		// The MTU is folded into each route's MTU, so re-resolve.
		b.revalidate = true
	}
}

// revalidate re-resolves every cached destination's route.
func (f *FIB) revalidate(b *batch) {
	for dst, st := range f.dsts {
		f.resolveRoute(dst, st)
		f.ensureNeigh(st)
	}
	b.dirty = true
}

// sweep runs once a second: it ages entries out, retries neighbours of
// unresolved destinations that packets still want, and asks the kernel to
// reconfirm STALE neighbours in use. The kernel sees none of the data
// plane's traffic, so without the last step a STALE entry would never be
// probed and a neighbour that changed its MAC silently would not be noticed.
func (f *FIB) sweep(b *batch) {
	for dst, st := range f.dsts {
		used := st.used.Swap(false)
		if used {
			st.idle = 0
		} else {
			st.idle++
		}
		ok := f.resolved(st)
		limit := idleUnresolved
		if ok {
			limit = idleResolved
		}
		if st.idle > limit {
			delete(f.dsts, dst)
			b.dirty = true
			continue
		}
		if !used || !st.hasRoute || !f.links[st.route.ifIndex].hasL2 {
			continue
		}
		key := neighKey{ifIndex: st.route.ifIndex, addr: st.route.neigh}
		n, known := f.neighs[key]
		if !known || n.state&nudValid == 0 || n.state == netlink.NUD_STALE {
			if f.trigger(key) {
				b.dirty = true
			}
		}
	}
}

// nextHop builds st's next hop, or reports that something is missing.
func (f *FIB) nextHop(st *dstState) (NextHop, bool) {
	if !st.hasRoute {
		return NextHop{}, false
	}
	li, ok := f.links[st.route.ifIndex]
	if !ok {
		return NextHop{}, false
	}
	nh := NextHop{
		IfIndex: st.route.ifIndex,
		Src:     st.route.src,
		Gateway: st.route.gw,
		MTU:     st.route.mtu,
	}
	if !li.hasL2 {
		return nh, true
	}
	n, ok := f.neighs[neighKey{ifIndex: st.route.ifIndex, addr: st.route.neigh}]
	if !ok || n.state&nudValid == 0 {
		return NextHop{}, false
	}
	nh.SrcMAC, nh.DstMAC = li.mac, n.mac
	return nh, true
}

func (f *FIB) resolved(st *dstState) bool {
	_, ok := f.nextHop(st)
	return ok
}

// publish replaces the readers' snapshot with the writer's current view.
func (f *FIB) publish() {
	m := make(map[netip.Addr]*entry, len(f.dsts))
	for dst, st := range f.dsts {
		nh, ok := f.nextHop(st)
		m[dst] = &entry{nh: nh, ok: ok, noRoute: !st.hasRoute, st: st}
	}
	f.snap.Store(&snapshot{m: m})
}
