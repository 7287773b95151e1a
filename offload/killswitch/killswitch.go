// Package killswitch keeps protected traffic from leaving in clear while
// no xdpsec runs to steer it: a kernel-side fence that outlives a crash.
//
// The afxdp data plane catches protected packets in XDP on the LAN port,
// before the kernel routes them. When the daemon dies the XDP program goes
// too (with a private bpffs, as under `ip netns exec`) or stays without
// sockets to redirect to (with pinned links: it then drops); in the first
// case the kernel would forward every protected packet by the operator's
// routes, in clear. So, in the daemon's network namespace, every pair of
// a child's selectors (local_ts x remote_ts) gets a policy rule
//
//	from LOCAL_TS to REMOTE_TS lookup Table   (priority RulePriority)
//
// and Table holds a blackhole route for each remote selector. The rule
// comes before the main table (priority 32766), so the blackhole wins over
// any route the operator has, and only for traffic the SPD protects: a
// source outside the local selectors is routed as before. While the daemon
// runs, XDP redirects the LAN's protected packets before any route lookup,
// so the fence costs nothing; the gateway's own traffic through the TUN
// port finds the data plane's TUN routes in Table too (metric 0, ahead of
// the blackhole's BlackholeMetric), and they vanish with the TUN device
// when the daemon dies. The daemon's own IKE packets (UDP from ports 500
// and 4500, iif lo) skip the fence by a rule just before it, in case the
// selectors cover the tunnel endpoints.
//
// Everything carries offload.RouteProtocol, so Sync finds a killed
// predecessor's entries and nobody else's. One daemon per network
// namespace owns the fence.
package killswitch

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
)

const (
	// Table is the routing table of the blackholes (and of the afxdp TUN
	// port's routes). 0x7864 ("xd") is also the reqid base of the xfrm
	// data plane.
	Table = 0x7864
	// RulePriority places the fence's rules before the main table's
	// (32766); BypassPriority the IKE exemption just before them.
	RulePriority   = 0x7864
	BypassPriority = RulePriority - 1
	// BlackholeMetric is the blackholes' route metric: any route with a
	// lower metric in Table (the TUN port's, metric 0) wins while it
	// exists.
	BlackholeMetric = 0x7864
)

// ikePorts are the source ports of the daemon's IKE and NAT-T packets.
var ikePorts = [...]uint16{500, 4500}

// Pair is one local selector and one remote selector of a child, of the
// same address family.
type Pair struct {
	Local, Remote netip.Prefix
}

// Switch is the fence in the namespace of the netlink handle it holds.
type Switch struct {
	h   *netlink.Handle
	log *zap.Logger
}

// New opens the fence in the calling thread's network namespace. It
// changes nothing: Sync installs.
func New(log *zap.Logger) (*Switch, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("killswitch: netlink: %w", err)
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &Switch{h: h, log: log}, nil
}

// Close releases the netlink handle and leaves the fence as it is.
func (s *Switch) Close() { s.h.Close() }

// Installed reports whether any entry of ours is in place (a running or
// killed instance's).
func (s *Switch) Installed() (bool, error) {
	rules, routes, err := s.list()
	return len(rules)+len(routes) > 0, err
}

// Sync makes the fence cover exactly pairs: it adds what is missing
// first, then removes what is no longer wanted (a predecessor's
// leftovers, connections a reload removed), so no protected pair is ever
// without its blackhole in between. It returns how many entries it
// removed.
func (s *Switch) Sync(pairs []Pair) (removed int, err error) {
	wantRules, wantRoutes := s.want(pairs)
	haveRules, haveRoutes, err := s.list()
	if err != nil {
		return 0, err
	}
	// Routes before rules: a rule without its route lets traffic through.
	for _, r := range wantRoutes {
		if !slices.ContainsFunc(haveRoutes, func(h netlink.Route) bool { return sameRoute(h, r) }) {
			if err := s.h.RouteAdd(&r); err != nil && !errors.Is(err, unix.EEXIST) {
				return 0, fmt.Errorf("killswitch: add blackhole %s: %w", r.Dst, err)
			}
		}
	}
	for _, r := range wantRules {
		if !slices.ContainsFunc(haveRules, func(h netlink.Rule) bool { return sameRule(h, r) }) {
			if err := s.h.RuleAdd(&r); err != nil && !errors.Is(err, unix.EEXIST) {
				return 0, fmt.Errorf("killswitch: add rule %s: %w", r, err)
			}
		}
	}
	var errs []error
	// Protecting rules go before the bypass and the routes they use.
	slices.SortStableFunc(haveRules, func(a, b netlink.Rule) int { return b.Priority - a.Priority })
	for _, h := range haveRules {
		if !slices.ContainsFunc(wantRules, func(r netlink.Rule) bool { return sameRule(h, r) }) {
			if err := s.h.RuleDel(&h); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("killswitch: remove rule %s: %w", h, err))
				continue
			}
			removed++
		}
	}
	for _, h := range haveRoutes {
		if !slices.ContainsFunc(wantRoutes, func(r netlink.Route) bool { return sameRoute(h, r) }) {
			if err := s.h.RouteDel(&h); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("killswitch: remove blackhole %s: %w", h.Dst, err))
				continue
			}
			removed++
		}
	}
	return removed, errors.Join(errs...)
}

// Remove takes the whole fence down: the clean shutdown.
func (s *Switch) Remove() error {
	_, err := s.Sync(nil)
	return err
}

// want lists the rules and routes that cover pairs.
func (s *Switch) want(pairs []Pair) ([]netlink.Rule, []netlink.Route) {
	var rules []netlink.Rule
	var routes []netlink.Route
	families := map[int]bool{}
	for _, p := range pairs {
		l, r := p.Local.Masked(), p.Remote.Masked()
		if !l.IsValid() || !r.IsValid() || l.Addr().Is4() != r.Addr().Is4() {
			continue
		}
		fam := family(r)
		families[fam] = true
		rule := *netlink.NewRule()
		rule.Family, rule.Priority, rule.Table, rule.Protocol = fam, RulePriority, Table, offload.RouteProtocol
		rule.Src, rule.Dst = ipNet(l), ipNet(r)
		if !slices.ContainsFunc(rules, func(h netlink.Rule) bool { return sameRule(h, rule) }) {
			rules = append(rules, rule)
		}
		route := netlink.Route{
			Dst: ipNet(r), Table: Table, Type: unix.RTN_BLACKHOLE, Priority: BlackholeMetric,
			Protocol: offload.RouteProtocol, Family: fam,
		}
		if !slices.ContainsFunc(routes, func(h netlink.Route) bool { return sameRoute(h, route) }) {
			routes = append(routes, route)
		}
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		if !families[fam] {
			continue
		}
		for _, port := range ikePorts {
			rule := *netlink.NewRule()
			rule.Family, rule.Priority, rule.Table, rule.Protocol = fam, BypassPriority, unix.RT_TABLE_MAIN, offload.RouteProtocol
			rule.IifName, rule.IPProto, rule.Sport = "lo", unix.IPPROTO_UDP, netlink.NewRulePortRange(port, port)
			rules = append(rules, rule)
		}
	}
	return rules, routes
}

// list returns the rules and routes of ours in the namespace.
func (s *Switch) list() ([]netlink.Rule, []netlink.Route, error) {
	var rules []netlink.Rule
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		all, err := s.h.RuleList(fam)
		if err != nil {
			return nil, nil, fmt.Errorf("killswitch: list rules: %w", err)
		}
		for _, r := range all {
			if r.Protocol == offload.RouteProtocol && (r.Priority == RulePriority || r.Priority == BypassPriority) {
				r.Family = fam
				rules = append(rules, r)
			}
		}
	}
	routes, err := s.h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: Table, Protocol: offload.RouteProtocol},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return nil, nil, fmt.Errorf("killswitch: list routes: %w", err)
	}
	return rules, routes, nil
}

func sameRule(a, b netlink.Rule) bool {
	return a.Family == b.Family && a.Priority == b.Priority && a.Table == b.Table &&
		netStr(a.Src) == netStr(b.Src) && netStr(a.Dst) == netStr(b.Dst) &&
		a.IifName == b.IifName && a.IPProto == b.IPProto && portStr(a.Sport) == portStr(b.Sport)
}

func sameRoute(a, b netlink.Route) bool {
	return netStr(a.Dst) == netStr(b.Dst) && a.Priority == b.Priority && a.Type == b.Type
}

// netStr compares prefixes as the kernel reports them: a zero-length
// prefix (0.0.0.0/0) may come back as none at all.
func netStr(n *net.IPNet) string {
	if n == nil {
		return ""
	}
	if ones, _ := n.Mask.Size(); ones == 0 {
		return ""
	}
	return n.String()
}

func portStr(p *netlink.RulePortRange) string {
	if p == nil {
		return ""
	}
	return fmt.Sprintf("%d-%d", p.Start, p.End)
}

func family(p netip.Prefix) int {
	if p.Addr().Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
