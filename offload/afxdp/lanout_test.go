package afxdp

import (
	"testing"

	"github.com/xdpsec/xdpsec/internal/netlab"
)

// TestLANOutputTUN sends TCP through a tunnel whose gateways write the
// decrypted packets to their TUN ports (gwA by LANOutputAuto, since its
// LAN is a veth; gwB by asking for it): the transfer arrives, gwB's
// stack forwards what gwB merged into super-packets, and nothing is
// dropped on the way.
func TestLANOutputTUN(t *testing.T) {
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true, GRO: true})
	a := startSiteWith(t, lab.GwA, lab.Prefix+"-gwA", Options{TUN: "xsa%d"})
	b := startSiteWith(t, lab.GwB, lab.Prefix+"-gwB", Options{TUN: "xsb%d", LANOutput: LANOutputTUN})
	for _, s := range []*site{a, b} {
		if got := s.dp.LANOutput(); got != LANOutputTUN {
			t.Fatalf("%s: lan output %s, want tun", s.ns.Name, got)
		}
		if p := s.dp.Paths()["lan_out"]; p != "tun (gro)" {
			t.Errorf("%s: lan_out path %q", s.ns.Name, p)
		}
	}
	install(t, lab.V4, a, b, newKeys(t, aes256gcm16), newKeys(t, aes256gcm16), nil)
	pingThrough(t, lab, lab.V4.HostB)
	iperfFrom(t, lab, lab.HostA, nil, a, b)
	merged := b.dp.WorkerEvents()["lan_merged"]
	t.Logf("gwB merged %d segments into super-packets", merged)
	if merged == 0 {
		t.Error("gwB wrote no super-packet to its TUN port")
	}
	for _, s := range []*site{a, b} {
		for reason, n := range drops(t, s) {
			if n != 0 {
				t.Errorf("%s: %d drops as %s", s.ns.Name, n, reason)
			}
		}
	}
}

// TestLANOutputChoice: af_xdp when asked or when there is no TUN port to
// write to; tun without a TUN port and unknown settings refused.
func TestLANOutputChoice(t *testing.T) {
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	a := startSite(t, lab.GwA, lab.Prefix+"-gwA")
	if got := a.dp.LANOutput(); got != LANOutputAFXDP {
		t.Errorf("without a tun port: lan output %s", got)
	}
	b := startSiteWith(t, lab.GwB, lab.Prefix+"-gwB", Options{TUN: "xsb%d", LANOutput: LANOutputAFXDP})
	if got := b.dp.LANOutput(); got != LANOutputAFXDP {
		t.Errorf("asked for af_xdp: lan output %s", got)
	}
	for _, o := range []Options{{LANOutput: LANOutputTUN}, {LANOutput: "bogus"}, {DecryptSharing: "bogus"}} {
		o.WAN, o.LAN = netlab.HostIf, "lo"
		err := lab.HostA.Do(func() error {
			d, err := New(t.Context(), o)
			if err == nil {
				d.Close()
			}
			return err
		})
		if err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
}
