package ike

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/xdpsec/xdpsec/internal/netlab"
)

// TestRefusedRekeyChildComesBack: the responder insists on PFS for its
// CHILD SAs, the initiator's esp_proposals have no key exchange. IKE_AUTH
// creates the first child anyway (no KE is negotiated there), but every
// rekey is refused, so the child expires. Its start connection brings it
// back: CREATE_CHILD_SA is refused too, so a fresh IKE SA carries it. The
// expiry is handled once although the IKE timer and the data plane's
// limits on both SAs report it, and `sas` shows the child DOWN with the
// peer's refusal meanwhile.
func TestRefusedRekeyChildComesBack(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	a, b, w := lifecyclePair(t, lab, "aes256gcm16", func(ca, cb *Conn) {
		ca.StartAction = StartStart
		ca.Children[0].Lifetime = 2 * time.Second
		cb.Children[0].ESPProposals = mustESP(t, "aes256gcm16-x25519")
	})
	initiate(t, a)
	first, _ := settled(t, a, b, w)

	waitFor(t, 5*time.Second, "the refused rekey", func() bool {
		_, c, ok := installedChild(a)
		return ok && strings.Contains(c.Reason, "NO_PROPOSAL_CHOSEN")
	})
	// The data plane's limits report the expiry on both SAs, one right
	// after the other, before the IKE timer does.
	a.e.Expire(first.SPIIn, true)
	a.e.Expire(first.SPIOut, true)

	var down ChildInfo
	waitFor(t, 5*time.Second, "the child listed DOWN with the refusal", func() bool {
		for _, sa := range a.e.SAs() {
			for _, c := range sa.Children {
				if c.State == "DOWN" {
					down = c
					return true
				}
			}
		}
		return false
	})
	if down.Name != "net" || !strings.Contains(down.Reason, "lifetime expired") ||
		!strings.Contains(down.Reason, "NO_PROPOSAL_CHOSEN") || down.DownSince.IsZero() {
		t.Errorf("DOWN child %+v", down)
	}

	waitFor(t, 15*time.Second, "the child back on a fresh IKE SA", func() bool {
		sa, c, ok := installedChild(a)
		return ok && c.SPIIn != first.SPIIn && sa.SPIi != 0 && len(a.e.SAs()) == 1
	})
	if a.logs.FilterMessageSnippet("lost CHILD SA is back").Len() != 1 {
		t.Error("no log line for the child's return")
	}
	if _, ok := findLog(a.logs, "establishing the connection afresh"); !ok {
		t.Error("the refused CREATE_CHILD_SA did not lead to a fresh IKE SA")
	}
	expiries := 0
	for _, e := range a.logs.All() {
		if strings.Contains(e.Message, "CHILD SA lifetime expired") {
			for _, f := range e.Context {
				if f.Key == "spi" && fieldString(f) == fmt.Sprintf("%08x", first.SPIIn) {
					expiries++
				}
			}
		}
	}
	if expiries != 1 {
		t.Errorf("the first child's expiry handled %d times, want once", expiries)
	}
	for _, sa := range a.e.SAs() {
		for _, c := range sa.Children {
			if c.State == "DOWN" {
				t.Errorf("child still listed DOWN after its return: %+v", c)
			}
		}
	}
}
