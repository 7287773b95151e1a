package netlab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Interface names inside the lab's namespaces. Names are per namespace, so
// every lab uses the same ones.
const (
	// HostIf is a host's only interface, towards its gateway.
	HostIf = "eth0"
	// LANIf is a gateway's plaintext side; on the NAT box, its inside.
	LANIf = "lan0"
	// WANIf is a gateway's ciphertext side; on the NAT box, its outside.
	WANIf = "wan0"
)

// Addrs is the lab's address plan for one family. Prefix lengths are
// those of the links; the Addr fields are the bare addresses.
type Addrs struct {
	LANA, LANB, WAN netip.Prefix

	HostA, GwALAN, GwAWAN netip.Addr
	GwBWAN, GwBLAN, HostB netip.Addr
	// GwAPublic is where gwB reaches gwA: GwAWAN without NAT, the NAT
	// box's outside address with it.
	GwAPublic netip.Addr

	// NATNet is the link between gwA and the NAT box; NATInside and
	// NATOutside are the NAT box's addresses. Zero without NAT.
	NATNet                netip.Prefix
	NATInside, NATOutside netip.Addr
}

// The address plan. IPv4 follows DESIGN.md ("Tests and the lab"). IPv6
// uses ULA prefixes for the LANs and the documentation prefix 2001:db8::/32
// for the WAN, mirroring the IPv4 roles. With NAT, the NAT box takes over
// gwA's public addresses (192.0.2.1, 2001:db8::1) so gwB's view of site A
// is the same in both topologies, and gwA moves into 100.64.0.0/24 (shared
// address space, RFC 6598; it never leaves our namespaces) and
// 2001:db8:1::/64. IPv6 is routed by the NAT box, not translated.
func plan4() Addrs {
	return Addrs{
		LANA: pfx("10.1.0.0/24"), LANB: pfx("10.2.0.0/24"), WAN: pfx("192.0.2.0/24"),
		HostA: ip("10.1.0.10"), GwALAN: ip("10.1.0.1"), GwAWAN: ip("192.0.2.1"),
		GwBWAN: ip("192.0.2.2"), GwBLAN: ip("10.2.0.1"), HostB: ip("10.2.0.10"),
		GwAPublic: ip("192.0.2.1"),
	}
}

func plan6() Addrs {
	return Addrs{
		LANA: pfx("fd00:1::/64"), LANB: pfx("fd00:2::/64"), WAN: pfx("2001:db8::/64"),
		HostA: ip("fd00:1::10"), GwALAN: ip("fd00:1::1"), GwAWAN: ip("2001:db8::1"),
		GwBWAN: ip("2001:db8::2"), GwBLAN: ip("fd00:2::1"), HostB: ip("fd00:2::10"),
		GwAPublic: ip("2001:db8::1"),
	}
}

func natPlans() (v4, v6 natPlan) {
	return natPlan{net: pfx("100.64.0.0/24"), gwA: ip("100.64.0.2"), inside: ip("100.64.0.1")},
		natPlan{net: pfx("2001:db8:1::/64"), gwA: ip("2001:db8:1::2"), inside: ip("2001:db8:1::1")}
}

type natPlan struct {
	net         netip.Prefix
	gwA, inside netip.Addr
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func ip(s string) netip.Addr    { return netip.MustParseAddr(s) }

// LabOptions configures NewLab.
type LabOptions struct {
	// Prefix starts every namespace name ("xs1a2b" gives "xs1a2b-gwA"), so
	// several labs can exist at once. Required; RandomPrefix makes one.
	Prefix string
	// NoGatewayRoutes leaves out the gateways' routes to the remote LAN, so
	// only an IPsec tunnel can connect the sites.
	NoGatewayRoutes bool
	// NAT puts a NAT namespace between gwA and gwB that masquerades gwA's
	// IPv4 traffic behind its outside address.
	NAT bool
	// MTU of every veth; 0 means 1500.
	MTU int
	// GRO switches GRO on at both ends of every veth, so every receiver
	// coalesces as NIC drivers do by default (veth's own default is off).
	// XDP still sees each packet as it came: GRO runs after it.
	GRO bool
}

// Lab is the site-to-site lab of DESIGN.md:
//
//	hostA — gwA (lan0 | wan0) — [nat (lan0 | wan0)] — gwB (wan0 | lan0) — hostB
//
// Hosts have eth0 only and a default route to their gateway; gateways
// forward.
type Lab struct {
	Prefix                 string
	HostA, GwA, GwB, HostB *NS
	NAT                    *NS // nil without LabOptions.NAT
	V4, V6                 Addrs
	Options                LabOptions
}

// NewLab builds the lab. On error everything created so far is removed.
func NewLab(ctx context.Context, opts LabOptions) (*Lab, error) {
	if opts.Prefix == "" {
		return nil, errors.New("netlab: LabOptions.Prefix is required")
	}
	l := &Lab{Prefix: opts.Prefix, V4: plan4(), V6: plan6(), Options: opts}
	if err := l.build(ctx); err != nil {
		return nil, errors.Join(err, l.Close())
	}
	return l, nil
}

// Describe returns a human-readable summary of the lab (namespaces,
// interfaces, addresses) for the demo tool and test logs.
func (l *Lab) Describe() string {
	var b strings.Builder
	row := func(n *NS, ifaces string) {
		if n != nil {
			fmt.Fprintf(&b, "  %-20s %s\n", n.Name, ifaces)
		}
	}
	v4, v6 := l.V4, l.V6
	row(l.HostA, fmt.Sprintf("%s %s %s", HostIf, v4.HostA, v6.HostA))
	row(l.GwA, fmt.Sprintf("%s %s %s | %s %s %s", LANIf, v4.GwALAN, v6.GwALAN, WANIf, v4.GwAWAN, v6.GwAWAN))
	row(l.NAT, fmt.Sprintf("%s %s %s | %s %s %s (MASQUERADE)", LANIf, v4.NATInside, v6.NATInside, WANIf, v4.NATOutside, v6.NATOutside))
	row(l.GwB, fmt.Sprintf("%s %s %s | %s %s %s", WANIf, v4.GwBWAN, v6.GwBWAN, LANIf, v4.GwBLAN, v6.GwBLAN))
	row(l.HostB, fmt.Sprintf("%s %s %s", HostIf, v4.HostB, v6.HostB))
	return b.String()
}

// Namespaces returns the lab's namespaces, NAT included when present.
func (l *Lab) Namespaces() []*NS {
	var out []*NS
	for _, n := range []*NS{l.HostA, l.GwA, l.NAT, l.GwB, l.HostB} {
		if n != nil {
			out = append(out, n)
		}
	}
	return out
}

func (l *Lab) build(ctx context.Context) error {
	o := l.Options
	if o.NAT {
		nat4, nat6 := natPlans()
		for _, a := range []struct {
			dst  *Addrs
			plan natPlan
		}{{&l.V4, nat4}, {&l.V6, nat6}} {
			a.dst.NATNet = a.plan.net
			a.dst.NATInside = a.plan.inside
			a.dst.NATOutside = a.dst.GwAWAN
			a.dst.GwAWAN = a.plan.gwA
		}
	}
	var err error
	mk := func(role string) *NS {
		if err != nil {
			return nil
		}
		var n *NS
		n, err = NewNS(l.Prefix + "-" + role)
		return n
	}
	l.HostA, l.GwA, l.GwB, l.HostB = mk("hostA"), mk("gwA"), mk("gwB"), mk("hostB")
	if o.NAT {
		l.NAT = mk("nat")
	}
	if err != nil {
		return err
	}

	wanPeer, wanPeerIf := l.GwB, WANIf
	if o.NAT {
		wanPeer, wanPeerIf = l.NAT, LANIf
	}
	veths := []Veth{
		{A: l.HostA, AName: HostIf, B: l.GwA, BName: LANIf, MTU: o.MTU},
		{A: l.GwA, AName: WANIf, B: wanPeer, BName: wanPeerIf, MTU: o.MTU},
		{A: l.HostB, AName: HostIf, B: l.GwB, BName: LANIf, MTU: o.MTU},
	}
	if o.NAT {
		veths = append(veths, Veth{A: l.NAT, AName: WANIf, B: l.GwB, BName: WANIf, MTU: o.MTU})
	}
	for _, v := range veths {
		if err := AddVeth(v); err != nil {
			return err
		}
		if o.GRO {
			if err := v.A.SetGRO(v.AName, true); err != nil {
				return err
			}
			if err := v.B.SetGRO(v.BName, true); err != nil {
				return err
			}
		}
	}
	// The hosts' traffic reaches the gateways with finished checksums, as
	// from a real wire, so that every data plane and benchmark sees what a
	// physical LAN delivers. Hosts with offload on (containers on the
	// gateway host) are a case of their own, which a test opts into with
	// SetTxChecksumOffload (afxdp's TestChecksumOffloadedHosts).
	for _, h := range []*NS{l.HostA, l.HostB} {
		if err := h.SetTxChecksumOffload(HostIf, false); err != nil {
			return err
		}
	}

	for _, a := range []Addrs{l.V4, l.V6} {
		if err := l.address(a); err != nil {
			return err
		}
		if err := l.route(a); err != nil {
			return err
		}
	}
	for _, gw := range []*NS{l.GwA, l.GwB, l.NAT} {
		if gw == nil {
			continue
		}
		if err := gw.EnableForwarding(); err != nil {
			return err
		}
	}
	if o.NAT {
		// MASQUERADE out of the outside interface only: traffic from gwA
		// (IKE, ESP-in-UDP, and routed LAN traffic) leaves with the NAT
		// box's address, as behind a home router.
		err := l.NAT.Run(ctx, nil, "iptables", "-w", "-t", "nat", "-A", "POSTROUTING",
			"-o", WANIf, "-j", "MASQUERADE")
		if err != nil {
			return fmt.Errorf("netlab: NAT rule: %w", err)
		}
	}
	return nil
}

func (l *Lab) address(a Addrs) error {
	with := func(addr netip.Addr, p netip.Prefix) netip.Prefix {
		return netip.PrefixFrom(addr, p.Bits())
	}
	type as struct {
		ns   *NS
		link string
		addr netip.Prefix
	}
	list := []as{
		{l.HostA, HostIf, with(a.HostA, a.LANA)},
		{l.GwA, LANIf, with(a.GwALAN, a.LANA)},
		{l.GwB, LANIf, with(a.GwBLAN, a.LANB)},
		{l.HostB, HostIf, with(a.HostB, a.LANB)},
		{l.GwB, WANIf, with(a.GwBWAN, a.WAN)},
	}
	if l.NAT != nil {
		list = append(list,
			as{l.GwA, WANIf, with(a.GwAWAN, a.NATNet)},
			as{l.NAT, LANIf, with(a.NATInside, a.NATNet)},
			as{l.NAT, WANIf, with(a.NATOutside, a.WAN)},
		)
	} else {
		list = append(list, as{l.GwA, WANIf, with(a.GwAWAN, a.WAN)})
	}
	for _, x := range list {
		if err := x.ns.AddAddr(x.link, x.addr); err != nil {
			return err
		}
	}
	return nil
}

func (l *Lab) route(a Addrs) error {
	none := netip.Prefix{}
	type rt struct {
		ns  *NS
		dst netip.Prefix
		gw  netip.Addr
	}
	list := []rt{
		{l.HostA, none, a.GwALAN},
		{l.HostB, none, a.GwBLAN},
	}
	// The NAT box is gwA's way to the WAN; without NAT gwA and gwB share
	// the WAN link and need no route to reach each other.
	if l.NAT != nil {
		list = append(list, rt{l.GwA, none, a.NATInside})
	}
	if !l.Options.NoGatewayRoutes {
		if l.NAT != nil {
			list = append(list,
				rt{l.NAT, a.LANA, a.GwAWAN},
				rt{l.NAT, a.LANB, a.GwBWAN},
				rt{l.GwB, a.LANA, a.NATOutside},
			)
			// IPv6 is routed, not translated, so gwB needs the way back to
			// gwA's own WAN net.
			if a.GwAWAN.Is6() {
				list = append(list, rt{l.GwB, a.NATNet, a.NATOutside})
			}
			// gwA's default route via the NAT box already covers LAN B.
		} else {
			list = append(list,
				rt{l.GwA, a.LANB, a.GwBWAN},
				rt{l.GwB, a.LANA, a.GwAWAN},
			)
		}
	}
	for _, r := range list {
		if err := r.ns.AddRoute(r.dst, r.gw); err != nil {
			return err
		}
	}
	return nil
}

// Close stops all processes in the lab, deletes its veth pairs explicitly
// (namespace teardown is asynchronous in the kernel, so links could
// otherwise outlive Close for a moment) and deletes its namespaces. It may
// be called on a partly built lab and more than once.
func (l *Lab) Close() error {
	var errs []error
	for _, n := range l.Namespaces() {
		n.mu.Lock()
		procs := n.procs
		n.procs = nil
		n.mu.Unlock()
		for _, p := range procs {
			if err := p.Stop(DefaultStopGrace); err != nil {
				errs = append(errs, err)
			}
		}
	}
	// Delete each veth from one end; a missing link is fine (a partly
	// built lab, or a second Close).
	for _, e := range []struct {
		ns   *NS
		link string
	}{{l.HostA, HostIf}, {l.GwA, WANIf}, {l.HostB, HostIf}, {l.NAT, WANIf}} {
		if e.ns == nil || e.ns.nl == nil {
			continue
		}
		if _, err := e.ns.nl.LinkByName(e.link); err != nil {
			continue
		}
		if err := e.ns.DelLink(e.link); err != nil {
			errs = append(errs, err)
		}
	}
	for _, n := range l.Namespaces() {
		if err := n.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
