package afxdp

import (
	"testing"
	"time"

	"github.com/xdpsec/xdpsec/internal/netlab"
)

// TestFirstPacketsHeld pings through a fresh lab, where no gateway has
// resolved its next hops yet (the WAN peer, the far host): every echo of
// the first ping must come back. Each gateway holds the packets towards a
// next hop it is still resolving and sends them once the kernel has, as
// the kernel's own neighbour queue does, instead of dropping them as
// no_route.
func TestFirstPacketsHeld(t *testing.T) {
	netlab.RequireRoot(t)
	for _, v6 := range []bool{false, true} {
		name := "ipv4"
		if v6 {
			name = "ipv6"
		}
		t.Run(name, func(t *testing.T) {
			lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
			plan := lab.V4
			if v6 {
				plan = lab.V6
			}
			a := startSite(t, lab.GwA, lab.Prefix+"-gwA")
			b := startSite(t, lab.GwB, lab.Prefix+"-gwB")
			install(t, plan, a, b, newKeys(t, aes256gcm16), newKeys(t, aes256gcm16), nil)
			// The hosts resolve their gateways before the first echo
			// leaves; the gateways' own next hops are what is tested.
			n, err := lab.HostA.Ping(t.Context(), plan.HostB, 5, 2*time.Second)
			if n != 5 {
				t.Errorf("first ping through a fresh lab: %d of 5 replies (%v)", n, err)
			}
			for _, s := range []*site{a, b} {
				if got := drops(t, s)["no_route"]; got != 0 {
					t.Errorf("%s: no_route %d, want 0", s.ns.Name, got)
				}
			}
		})
	}
}
