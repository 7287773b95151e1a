package killswitch

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xdpsec/xdpsec/internal/netlab"
	"github.com/xdpsec/xdpsec/offload"
)

// fence is what a namespace holds of the kill switch, as sorted strings.
func fence(t *testing.T, ns *netlab.NS) (rules, routes []string) {
	t.Helper()
	h := ns.Handle()
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		list, err := h.RuleList(fam)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range list {
			if r.Protocol != offload.RouteProtocol {
				continue
			}
			s := netStr(r.Src) + ">" + netStr(r.Dst)
			if r.Priority == BypassPriority {
				s = "bypass:" + portStr(r.Sport)
			} else if r.Priority != RulePriority || r.Table != Table {
				s = "stray:" + r.String()
			}
			rules = append(rules, s)
		}
	}
	list, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: Table}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range list {
		kind := "blackhole"
		if r.Type != unix.RTN_BLACKHOLE {
			kind = "other"
		}
		routes = append(routes, kind+":"+netStr(r.Dst))
	}
	slices.Sort(rules)
	slices.Sort(routes)
	return rules, routes
}

func pairs(s ...string) []Pair {
	var out []Pair
	for _, p := range s {
		l, r, _ := strings.Cut(p, ">")
		out = append(out, Pair{netip.MustParsePrefix(l), netip.MustParsePrefix(r)})
	}
	return out
}

// TestSync: the fence covers exactly the pairs asked for; a second
// instance (the next daemon after a crash) keeps what is still wanted,
// removes only the leftovers, leaves other routes in its table alone, and
// Remove leaves nothing.
func TestSync(t *testing.T) {
	ns := netlab.NewTestNS(t, "", "ks")
	if err := ns.AddAddr("lo", netip.MustParsePrefix("10.1.0.1/32")); err != nil {
		t.Fatal(err)
	}
	run := func(fn func(s *Switch) error) {
		t.Helper()
		if err := ns.Do(func() error {
			s, err := New(nil)
			if err != nil {
				return err
			}
			defer s.Close()
			return fn(s)
		}); err != nil {
			t.Fatal(err)
		}
	}
	first := pairs("10.1.0.0/24>10.2.0.0/24", "10.1.0.0/24>10.3.0.0/24", "fd00:1::/64>fd00:2::/64",
		"10.1.0.0/24>10.2.0.0/24", "10.1.0.0/24>fd00:2::/64")
	run(func(s *Switch) error { _, err := s.Sync(first); return err })
	rules, routes := fence(t, ns)
	wantRules := []string{"10.1.0.0/24>10.2.0.0/24", "10.1.0.0/24>10.3.0.0/24",
		"bypass:4500-4500", "bypass:4500-4500", "bypass:500-500", "bypass:500-500", "fd00:1::/64>fd00:2::/64"}
	wantRoutes := []string{"blackhole:10.2.0.0/24", "blackhole:10.3.0.0/24", "blackhole:fd00:2::/64"}
	if !slices.Equal(rules, wantRules) || !slices.Equal(routes, wantRoutes) {
		t.Fatalf("after the first sync:\nrules  %q\nwant   %q\nroutes %q\nwant   %q", rules, wantRules, routes, wantRoutes)
	}

	// A route of the TUN port's kind in the same table: not ours.
	tun := &netlink.Route{Dst: ipNet(netip.MustParsePrefix("10.2.0.0/24")), Table: Table, Type: unix.RTN_UNREACHABLE, Protocol: unix.RTPROT_STATIC}
	if err := ns.Handle().RouteAdd(tun); err != nil {
		t.Fatal(err)
	}
	var removed int
	run(func(s *Switch) error {
		var err error
		removed, err = s.Sync(pairs("10.1.0.0/24>10.2.0.0/24"))
		return err
	})
	rules, routes = fence(t, ns)
	wantRules = []string{"10.1.0.0/24>10.2.0.0/24", "bypass:4500-4500", "bypass:500-500"}
	wantRoutes = []string{"blackhole:10.2.0.0/24", "other:10.2.0.0/24"}
	if !slices.Equal(rules, wantRules) || !slices.Equal(routes, wantRoutes) {
		t.Fatalf("after the second sync:\nrules  %q\nwant   %q\nroutes %q\nwant   %q", rules, wantRules, routes, wantRoutes)
	}
	// Two rules and two bypasses of IPv6, one of IPv4, two blackholes.
	if removed != 6 {
		t.Errorf("second sync removed %d entries, want 6", removed)
	}

	run(func(s *Switch) error { return s.Remove() })
	rules, routes = fence(t, ns)
	if len(rules) != 0 || !slices.Equal(routes, []string{"other:10.2.0.0/24"}) {
		t.Errorf("after Remove: rules %q, routes %q", rules, routes)
	}
}
