package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xdpsec/xdpsec/internal/netlab"
	"github.com/xdpsec/xdpsec/loader"
	"github.com/xdpsec/xdpsec/offload"
	"github.com/xdpsec/xdpsec/offload/killswitch"
)

// startDaemonPrivateMount runs xdpsecd the way `ip netns exec` does: in a
// mount namespace of its own with /sys remounted for the network
// namespace, so that /sys/fs/bpf is an empty directory of the new sysfs
// and no bpffs is mounted there.
func startDaemonPrivateMount(t *testing.T, bins binaries, ns *netlab.NS, d labDir) *daemon {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", `umount -l /sys && mount -t sysfs sysfs /sys && exec "$0" "$@"`,
		bins.daemon, "--config", d.config)
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	return startCommandIn(t, ns, d, cmd)
}

// instanceRE finds the instance directory in the loader's log line.
var instanceRE = regexp.MustCompile(`xdpsec/(ns[0-9]+-[0-9a-f]+)`)

// TestFailClosedAfterCrash (issue 12, item 7): a daemon started as under
// `ip netns exec`, with the operator's routes to the remote site in place
// (the lab's gateway routes), is killed with SIGKILL. No protected packet
// may then leave its WAN port in clear: neither forwarded ones from the
// LAN host nor the gateway's own from its LAN address, first with the XDP
// programs still attached (pins kept on the host's bpffs) and then with
// them removed, when the kernel-side kill switch alone holds. A clean
// stop of the next daemon leaves no rule, route or pin of xdpsec behind.
func TestFailClosedAfterCrash(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	bins, lab, gwA, dA := fenceLab(t, "fc", xdpsecConn{tun: "xdpsec0"})
	v4 := lab.V4
	a := startDaemonPrivateMount(t, bins, lab.GwA, dA)
	waitEstablished(t, bins, dA, "s2s")
	a.waitLog(t, "fail closed", `"hitless_restart": true`)
	inst := instanceRE.FindStringSubmatch(a.logs.String())
	if inst == nil {
		t.Fatalf("no instance directory in the log:\n%s", a.logs.String())
	}

	clear, err := lab.GwA.CaptureOut(netlab.WANIf, v4.LANA, v4.LANB, unix.IPPROTO_ICMP)
	if err != nil {
		t.Fatal(err)
	}
	defer clear.Stop()
	warmUp(t, ctx, lab.HostA, v4.HostB)
	// The gateway's own traffic from its LAN address goes through the TUN
	// port, past the kill switch's blackhole.
	if err := lab.GwA.Run(ctx, nil, "ping", "-c", "3", "-i", "0.2", "-W", "2", "-I", v4.GwALAN.String(), v4.HostB.String()); err != nil {
		t.Fatalf("gwA's own ping through the TUN port: %v", err)
	}
	if n := clear.Count(); n != 0 {
		t.Fatalf("%d protected packets left gwA's WAN in clear while the daemon ran", n)
	}

	if err := a.proc.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-a.proc.Done()
	leaks := func(phase string) {
		t.Helper()
		before := clear.Count()
		lab.HostA.Ping(ctx, v4.HostB, 10, 200*time.Millisecond)
		lab.GwA.Run(ctx, nil, "ping", "-c", "5", "-i", "0.2", "-W", "1", "-I", v4.GwALAN.String(), v4.HostB.String())
		time.Sleep(200 * time.Millisecond)
		if n := clear.Count() - before; n != 0 {
			t.Errorf("%s: %d of 15 protected pings left gwA's WAN in clear", phase, n)
		}
	}
	leaks("after SIGKILL")
	if _, err := os.Stat(filepath.Join(loader.DefaultPinRoot, inst[1])); err != nil {
		t.Errorf("the killed daemon's pins are gone from the host's bpffs: %v", err)
	}

	// Without the XDP programs only the kill switch stands between the
	// LAN and the operator's routes.
	if err := loader.Remove("", inst[1]); err != nil {
		t.Fatal(err)
	}
	if l, err := lab.GwA.Handle().LinkByName(netlab.LANIf); err != nil || (l.Attrs().Xdp != nil && l.Attrs().Xdp.Attached) {
		t.Fatalf("XDP still on gwA's LAN port after removing the pins (%v)", err)
	}
	leaks("without XDP")

	// The next daemon takes over without a gap and, stopped cleanly,
	// takes the fence down.
	a2 := startDaemonIn(t, bins, lab.GwA, dA)
	waitEstablished(t, bins, dA, "s2s")
	pingUntil(t, ctx, lab.HostA, v4.HostB, 10*time.Second)
	n4 := fenceEntries(t, lab.GwA, false)
	if n4 == 0 {
		t.Errorf("no kill switch while the daemon runs")
	}
	// The fence follows reloads: IPv6 selectors added, then removed.
	for _, dual := range []bool{true, false} {
		writeGatewayConfig(t, dA, gwA, xdpsecConn{ike: lcIKE, esp: lcESP, startAction: "start", dataplane: "afxdp", tun: "xdpsec0", dualStack: dual})
		if out, code := ctl(t, bins, dA.socket, "reload"); code != 0 {
			t.Fatalf("reload: exit %d: %s", code, out)
		}
		want := n4
		if dual {
			want = 2 * n4 // the same rules, bypasses and blackholes for IPv6
		}
		if n := fenceEntries(t, lab.GwA, false); n != want {
			t.Errorf("after a reload with dual stack %v: %d kill switch entries, want %d", dual, n, want)
		}
	}
	if err := a2.proc.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := a2.proc.Err(); err != nil {
		t.Errorf("xdpsecd did not exit cleanly: %v", err)
	}
	if n := fenceEntries(t, lab.GwA, true); n != 0 {
		t.Errorf("%d rules and routes of the kill switch left after SIGTERM", n)
	}
	if _, err := os.Stat(filepath.Join(loader.DefaultPinRoot, inst[1])); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pins left after SIGTERM: %v", err)
	}
	if n := clear.Count(); n != 0 {
		t.Errorf("%d protected packets left in clear in all", n)
	}
}

// fenceLab builds a lab with xdpsecd (afxdp) answering on gwB and writes
// gwA's configuration, an afxdp initiator with the tun and dataplaneExtra
// of a, for the caller to start.
func fenceLab(t *testing.T, prefix string, a xdpsecConn) (binaries, *netlab.Lab, gateway, labDir) {
	t.Helper()
	netlab.RequireRoot(t)
	bins := buildBinaries(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{Prefix: netlab.RandomPrefix(prefix)})
	gwA, gwB := labGateways(lab)
	dB := newLabDir(t)
	writeGatewayConfig(t, dB, gwB, xdpsecConn{ike: lcIKE, esp: lcESP, startAction: "none", dataplane: "afxdp"})
	startDaemonIn(t, bins, lab.GwB, dB)
	dA := newLabDir(t)
	a.ike, a.esp, a.startAction, a.dataplane = lcIKE, lcESP, "start", "afxdp"
	writeGatewayConfig(t, dA, gwA, a)
	return bins, lab, gwA, dA
}

// fenceEntries counts xdpsec's policy rules and kill switch routes in ns;
// all counts every route in the kill switch's table (the TUN port's too).
func fenceEntries(t *testing.T, ns *netlab.NS, all bool) int {
	t.Helper()
	h := ns.Handle()
	n := 0
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rules, err := h.RuleList(fam)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rules {
			if r.Protocol == offload.RouteProtocol || r.Table == killswitch.Table {
				n++
			}
		}
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: killswitch.Table}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if all || r.Protocol == offload.RouteProtocol {
			n++
		}
	}
	return n
}

// TestFailClosedAlways: with dataplane.fail_closed: always, a clean stop
// keeps the kill switch, so protected pings do not leave in clear by the
// operator's routes; `xdpsecd --remove-kill-switch` refuses while a
// daemon runs and takes the fence down once none does.
func TestFailClosedAlways(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	bins, lab, _, dA := fenceLab(t, "fa", xdpsecConn{dataplaneExtra: "fail_closed: always"})
	v4 := lab.V4
	a := startDaemonIn(t, bins, lab.GwA, dA)
	waitEstablished(t, bins, dA, "s2s")
	pingUntil(t, ctx, lab.HostA, v4.HostB, 10*time.Second)

	removeFence := func() (string, error) {
		var out []byte
		err := lab.GwA.Do(func() error {
			var err error
			out, err = exec.CommandContext(ctx, bins.daemon, "--config", dA.config, "--remove-kill-switch").CombinedOutput()
			return err
		})
		return string(out), err
	}
	if out, err := removeFence(); err == nil {
		t.Errorf("--remove-kill-switch succeeded while the daemon runs: %s", out)
	}
	if err := a.proc.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := a.proc.Err(); err != nil {
		t.Errorf("xdpsecd did not exit cleanly: %v", err)
	}
	if fenceEntries(t, lab.GwA, false) == 0 {
		t.Fatal("no kill switch left after a clean stop with fail_closed: always")
	}
	clear, err := lab.GwA.CaptureOut(netlab.WANIf, v4.LANA, v4.LANB, unix.IPPROTO_ICMP)
	if err != nil {
		t.Fatal(err)
	}
	defer clear.Stop()
	lab.HostA.Ping(ctx, v4.HostB, 10, 200*time.Millisecond)
	time.Sleep(200 * time.Millisecond)
	if n := clear.Count(); n != 0 {
		t.Errorf("%d of 10 protected pings left gwA's WAN in clear after the clean stop", n)
	}

	if out, err := removeFence(); err != nil {
		t.Fatalf("--remove-kill-switch: %v\n%s", err, out)
	}
	if n := fenceEntries(t, lab.GwA, false); n != 0 {
		t.Errorf("%d kill switch entries left after --remove-kill-switch", n)
	}
}
