package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xdpsec/xdpsec/control/api"
	"github.com/xdpsec/xdpsec/internal/netlab"
	"github.com/xdpsec/xdpsec/offload/xfrm"
)

// The tests of the kernel data planes need a kernel with ESP. The build
// machines' kernel has none, so they run inside the VM test rig (make
// test-vm, TestKernelDataplanesInVM), which boots Debian's kernel and runs
// this package's test binary there; on a kernel without ESP they have
// nothing to test and say so.
func requireKernelESP(t *testing.T) {
	t.Helper()
	netlab.RequireRoot(t)
	if err := xfrm.Probe(); err != nil {
		t.Skipf("kernel data plane tests need ESP in the kernel (they run in the VM, make test-vm): %v", err)
	}
}

// xfrmStateCount counts the XFRM states and policies in a namespace.
func xfrmStateCount(t *testing.T, ns *netlab.NS) (states, policies int) {
	t.Helper()
	err := ns.Do(func() error {
		h, err := netlink.NewHandle(unix.NETLINK_XFRM)
		if err != nil {
			return err
		}
		defer h.Close()
		sts, err := h.XfrmStateList(netlink.FAMILY_ALL)
		if err != nil {
			return err
		}
		pols, err := h.XfrmPolicyList(netlink.FAMILY_ALL)
		if err != nil {
			return err
		}
		states, policies = len(sts), len(pols)
		return nil
	})
	if err != nil {
		t.Fatalf("xfrm dump in %s: %v", ns.Name, err)
	}
	return states, policies
}

// sendForgedESP sends raw ESP with an SPI nobody installed from ns to dst.
func sendForgedESP(t *testing.T, ns *netlab.NS, dst netip.Addr, spi uint32) {
	t.Helper()
	err := ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ESP)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		b := make([]byte, 96)
		binary.BigEndian.PutUint32(b, spi)
		binary.BigEndian.PutUint32(b[4:], 1)
		return unix.Sendto(fd, b, 0, &unix.SockaddrInet4{Addr: dst.As4()})
	})
	if err != nil {
		t.Fatalf("send forged esp: %v", err)
	}
}

// TestXfrmTunnel runs two xdpsecd with the kernel's ESP (mode xfrm) in a
// lab whose sites have no route to each other but the tunnel: ping and a
// TCP transfer between the hosts, raw ESP and ESP-in-UDP; a CHILD rekey
// under a UDP stream loses nothing; forged ESP of an unknown SPI is
// dropped by XDP and counted; shutting down leaves no state or policy.
func TestXfrmTunnel(t *testing.T) {
	requireKernelESP(t)
	bins := buildBinaries(t)
	for _, encap := range []string{"auto", "always"} {
		t.Run("encap-"+encap, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			lab := netlab.NewTestLab(t, netlab.LabOptions{Prefix: netlab.RandomPrefix("xx"), NoGatewayRoutes: true})
			const ike, esp = "aes256gcm16-prfsha256-x25519", "aes256gcm16"
			dA, dB, dmA, dmB := startPair(t, bins, lab,
				xdpsecConn{ike: ike, esp: esp, startAction: "start", dataplane: "xfrm", encap: encap},
				xdpsecConn{ike: ike, esp: esp, startAction: "none", dataplane: "xfrm", encap: encap})
			sa := waitEstablished(t, bins, dA, "s2s")
			if len(sa.Children) != 1 || sa.Children[0].Encap != (encap == "always") {
				t.Fatalf("child SA %+v, want one with encap %v", sa.Children, encap == "always")
			}

			// Slower streams than on the host: the guest's CPUs are
			// emulated, and a lab of five namespaces, two daemons and
			// the kernel's ESP must not run out of them, or datagrams
			// are lost for reasons that have nothing to do with the
			// rekey. 200 datagrams/s still finds a 5 ms hole.
			traffic := startTrafficAt(t, ctx, lab, 200, 100_000)
			rekey(t, bins, dB, "s2s/net")
			waitFor := time.Now().Add(15 * time.Second)
			for {
				if _, c, ok := current(ctlSAs(t, bins, dA), "s2s", "net"); ok && c.Rekeys >= 1 {
					break
				}
				if time.Now().After(waitFor) {
					t.Fatal("the CHILD rekey did not happen")
				}
				time.Sleep(100 * time.Millisecond)
			}
			time.Sleep(time.Second) // traffic on the new SA
			if !traffic.checkNoLoss(t, "xfrm rekey") {
				// Where the kernel lost it: its XFRM and XDP counters.
				for name, d := range map[string]labDir{"gwA": dA, "gwB": dB} {
					out, _ := ctl(t, bins, d.socket, "stats")
					t.Logf("xdpsecctl stats on %s:\n%s", name, out)
				}
			}

			var st api.Stats
			ctlJSON(t, bins, dA.socket, &st, "stats")
			if st.Dataplane != "xfrm" {
				t.Errorf("data plane %q, want xfrm", st.Dataplane)
			}
			before := st.XDP["wan"]["drop_unknown_spi"]
			sendForgedESP(t, lab.GwB, lab.V4.GwAWAN, 0x0badc0de)
			deadline := time.Now().Add(3 * time.Second)
			for {
				ctlJSON(t, bins, dA.socket, &st, "stats")
				if st.XDP["wan"]["drop_unknown_spi"] > before {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("forged ESP not counted by XDP: %v", st.XDP["wan"])
				}
				time.Sleep(50 * time.Millisecond)
			}
			if st.XDP["wan"]["redirect_cpu"] == 0 {
				t.Errorf("no ESP of our SAs went through the CPU map: %v", st.XDP["wan"])
			}

			for _, s := range []struct {
				dm *daemon
				ns *netlab.NS
			}{{dmA, lab.GwA}, {dmB, lab.GwB}} {
				s.dm.signal(t, unix.SIGTERM)
				select {
				case <-s.dm.proc.Done():
				case <-ctx.Done():
					t.Fatalf("xdpsecd in %s did not exit on SIGTERM", s.ns.Name)
				}
				if err := s.dm.proc.Err(); err != nil {
					t.Errorf("xdpsecd in %s exited with %v", s.ns.Name, err)
				}
				if states, pols := xfrmStateCount(t, s.ns); states != 0 || pols != 0 {
					t.Errorf("%s after shutdown: %d XFRM states and %d policies left", s.ns.Name, states, pols)
				}
			}
		})
	}
}

// TestXfrmOffloadFallback: xfrm-offload on veth, which has no IPsec
// offload: by default the SAs fall back to the kernel's software ESP with
// a warning naming the reason and the tunnel works (sas shows no offload
// in force); with offload.required the CHILD SA fails instead, and says
// why.
func TestXfrmOffloadFallback(t *testing.T) {
	requireKernelESP(t)
	bins := buildBinaries(t)
	const ike, esp = "aes256gcm16-prfsha256-x25519", "aes256gcm16"
	for _, required := range []bool{false, true} {
		t.Run(map[bool]string{false: "fallback", true: "required"}[required], func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			lab := netlab.NewTestLab(t, netlab.LabOptions{Prefix: netlab.RandomPrefix("xo"), NoGatewayRoutes: true})
			off := fmt.Sprintf("{dev: %s, type: crypto, required: %v}", netlab.WANIf, required)
			// With offload required only the IKE SA comes up, which
			// startPair would wait for in vain: then `up` is the test.
			start := map[bool]string{false: "start", true: "none"}[required]
			dA, _, dmA, _ := startPair(t, bins, lab,
				xdpsecConn{ike: ike, esp: esp, startAction: start, dataplane: "xfrm-offload", offload: off},
				xdpsecConn{ike: ike, esp: esp, startAction: "none", dataplane: "xfrm"})
			var st api.Stats
			ctlJSON(t, bins, dA.socket, &st, "stats")
			if st.Dataplane != "xfrm-offload" {
				t.Errorf("data plane %q, want xfrm-offload", st.Dataplane)
			}
			if !required {
				// The kernel either refuses the offload (the SA is added
				// again in software) or takes the state without it.
				dmA.waitLog(t, "ipsec offload")
				pingAll(t, ctx, lab.HostA, lab.V4.HostB, 3)
				_, c, ok := current(ctlSAs(t, bins, dA), "s2s", "net")
				if !ok || c.Offload != "" {
					t.Errorf("child %+v: want it installed, in software", c)
				}
				return
			}
			out, code := ctl(t, bins, dA.socket, "up", "s2s")
			if code == 0 || !strings.Contains(out, "offload") {
				t.Errorf("xdpsecctl up with offload required on a NIC without it: exit %d: %s", code, out)
			}
			dmA.waitLog(t, "installing the CHILD SA failed", "offload")
			sas := ctlSAs(t, bins, dA)
			if len(sas) != 1 || len(sas[0].Children) != 0 {
				t.Errorf("with offload required on a NIC without it, want the IKE SA without a child: %+v", sas)
			}
		})
	}
}

// TestXfrmTrap: start_action trap with the kernel's data plane: the first
// ping from hostA hits the trap policy, the kernel's ACQUIRE brings the
// tunnel up, later pings pass.
func TestXfrmTrap(t *testing.T) {
	requireKernelESP(t)
	testTrap(t, "xfrm")
}
