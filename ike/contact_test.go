package ike

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/xdpsec/xdpsec/internal/netlab"
)

// TestInitialContactOnce brings up two connections between the same two
// identities, one after the other. Only the first IKE_AUTH may carry
// INITIAL_CONTACT: the responder, which removes every older IKE SA between
// the identities when it sees one, must still hold both. Once both are
// gone, the engine counts no contact any more.
func TestInitialContactOnce(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	ca, cb := siteConns(t, lab.V4, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	other := netip.MustParsePrefix("10.9.0.0/24")
	ca2 := ca
	ca2.Name = "s2s-2"
	ca2.Children = []Child{ca.Children[0]}
	ca2.Children[0].Name, ca2.Children[0].RemoteTS = "net2", []netip.Prefix{other}
	// gwB's one connection takes both children.
	net2 := cb.Children[0]
	net2.Name, net2.LocalTS = "net2", []netip.Prefix{other}
	cb.Children = append(cb.Children, net2)

	a := startEngine(t, lab.GwA, "gwA", fastOpts(), 0x1000)
	b := startEngine(t, lab.GwB, "gwB", fastOpts(), 0x2000)
	a.e.SetConns([]Conn{ca, ca2})
	b.e.SetConns([]Conn{cb})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, name := range []string{"s2s", "s2s-2"} {
		if err := a.e.Initiate(ctx, name); err != nil {
			t.Fatalf("initiate %s: %v", name, err)
		}
	}
	// The responder acts on INITIAL_CONTACT at once, in the background.
	time.Sleep(500 * time.Millisecond)
	if n := len(b.e.SAs()); n != 2 {
		t.Errorf("responder holds %d IKE SAs after the second connection came up, want 2 (INITIAL_CONTACT sent again?)", n)
	}
	if n := len(a.e.SAs()); n != 2 {
		t.Errorf("initiator holds %d IKE SAs, want 2", n)
	}
	a.stop()
	a.e.mu.Lock()
	defer a.e.mu.Unlock()
	if len(a.e.contacts) != 0 || len(a.e.contactAddrs) != 0 {
		t.Errorf("after shutdown the engine still counts contacts: %v %v", a.e.contacts, a.e.contactAddrs)
	}
}
