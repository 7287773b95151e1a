package perf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xdpsec/xdpsec/control/api"
	"github.com/xdpsec/xdpsec/internal/netlab"
	"github.com/xdpsec/xdpsec/internal/swan"
)

// setupXdpsec starts one xdpsecd per gateway with the demo's configuration
// (afxdp data plane, aes256gcm16, raw ESP) and waits for the CHILD SA.
//
// With a profile directory each daemon must run with --cpu-profile, which
// the demo's gateway start has no way to pass. So both are first started
// by it with start_action none (it writes the configuration and checks
// that the daemon comes up), then restarted by us on the same file with
// the flag, and gwA is told to initiate over the API. Without profiling
// the demo's start is used as is.
func (b *bench) setupXdpsec(ctx context.Context, lab *netlab.Lab, res *BenchResult) (func() error, error) {
	dir, err := os.MkdirTemp(b.tmp, "xdpsec-")
	if err != nil {
		return nil, fmt.Errorf("xdpsec dir: %w", err)
	}
	v4 := lab.V4
	profile := b.opts.ProfileDir != ""
	initiate := "start"
	if profile {
		initiate = "none"
	}
	gwB := &demoGateway{name: "gwB", ns: lab.GwB, startAction: "none", local: v4.GwBWAN.String(), remote: v4.GwAWAN.String(),
		localID: "gw-b.example.com", remoteID: "gw-a.example.com", localTS: v4.LANB.String(), remoteTS: v4.LANA.String()}
	gwA := &demoGateway{name: "gwA", ns: lab.GwA, startAction: initiate, local: v4.GwAWAN.String(), remote: v4.GwBWAN.String(),
		localID: "gw-a.example.com", remoteID: "gw-b.example.com", localTS: v4.LANA.String(), remoteTS: v4.LANB.String()}
	gws := []*demoGateway{gwB, gwA}
	// Read the drop counters while the daemons still run, then stop gwA
	// first: it initiated, and its SIGTERM deletes the SA at a gwB that is
	// still listening. Each daemon writes its profile as it exits.
	teardown := func() error {
		var errs []error
		for _, gw := range []*demoGateway{gwA, gwB} {
			if err := collectDrops(gw, res); err != nil {
				errs = append(errs, err)
			}
		}
		for _, gw := range []*demoGateway{gwA, gwB} {
			if gw.proc != nil {
				if err := gw.proc.Stop(netlab.DefaultStopGrace); err != nil {
					errs = append(errs, fmt.Errorf("stop xdpsecd on %s: %w", gw.name, err))
				}
			}
		}
		return errors.Join(errs...)
	}
	fail := func(err error) (func() error, error) { return nil, errors.Join(err, teardown()) }

	demoOpts := DemoOptions{BinDir: b.opts.BinDir, DaemonLog: b.opts.DaemonLog}
	for _, gw := range gws {
		if err := gw.start(ctx, demoOpts, dir); err != nil {
			return fail(err)
		}
		if profile {
			if err := b.restartProfiled(ctx, gw); err != nil {
				return fail(err)
			}
		}
	}
	if profile {
		if err := api.NewClient(gwA.socket).Up(ctx, "peer"); err != nil {
			return fail(fmt.Errorf("xdpsecctl up on gwA: %w", err))
		}
	}
	if err := waitEstablished(ctx, gwA.socket, 15*time.Second); err != nil {
		return fail(fmt.Errorf("xdpsec SA: %w", err))
	}
	return teardown, nil
}

// collectDrops adds gw's non-zero data-plane drop counters to res.
func collectDrops(gw *demoGateway, res *BenchResult) error {
	if gw.proc == nil {
		return nil
	}
	select {
	case <-gw.proc.Done():
		return nil
	default:
	}
	// Teardown also runs after the configuration's context expired, so
	// the request has its own short bound.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := api.NewClient(gw.socket).Stats(ctx)
	if err != nil {
		return fmt.Errorf("stats of %s: %w", gw.name, err)
	}
	add := func(key string, n uint64) {
		if n == 0 {
			return
		}
		if res.Drops == nil {
			res.Drops = map[string]uint64{}
		}
		res.Drops[gw.name+"/"+key] = n
	}
	for reason, n := range st.Drops {
		add(reason, n)
	}
	// The XDP programs' own drops (no socket on a queue, unknown SPI)
	// happen before a worker sees the packet.
	for prog, counters := range st.XDP {
		for name, n := range counters {
			if strings.HasPrefix(name, "drop_") {
				add("xdp_"+prog+"/"+name, n)
			}
		}
	}
	return nil
}

// restartProfiled replaces gw's daemon with one on the same configuration
// that writes a CPU profile to ProfileDir/<gw>.pprof.
func (b *bench) restartProfiled(ctx context.Context, gw *demoGateway) error {
	if err := gw.proc.Stop(netlab.DefaultStopGrace); err != nil {
		return fmt.Errorf("stop xdpsecd on %s for the profiled restart: %w", gw.name, err)
	}
	profile, err := filepath.Abs(filepath.Join(b.opts.ProfileDir, gw.name+".pprof"))
	if err != nil {
		return fmt.Errorf("profile path: %w", err)
	}
	cmd := exec.Command(filepath.Join(b.opts.BinDir, "xdpsecd"),
		"--config", filepath.Join(gw.dir, "xdpsec.yaml"), "--cpu-profile", profile)
	proc, err := gw.ns.Start(cmd, prefixWriter(b.opts.DaemonLog, gw.name+": "))
	if err != nil {
		return fmt.Errorf("start profiled xdpsecd on %s: %w", gw.name, err)
	}
	gw.proc = proc
	return waitSocket(ctx, gw.socket, proc, 10*time.Second)
}

// setupStrongSwan runs charon with kernel-libipsec on both gateways and
// brings up the site-to-site CHILD SA with aes256gcm16.
//
// kernel-libipsec gives its TUN device ipsec0 an MTU of 1400 that no
// setting changes, and it reads packets with a buffer of that size, so
// raising the MTU with netlink breaks it (tried: TCP moved no data). The
// bench's 1428-byte UDP datagrams (IPv4) are therefore fragmented by gwA
// in front of ipsec0, two ESP packets each; that is how this peer runs,
// and docs/benchmarks.md says so.
func (b *bench) setupStrongSwan(ctx context.Context, lab *netlab.Lab) (func() error, error) {
	if _, err := os.Stat(swan.DefaultCharon); err != nil {
		return nil, skipf("strongSwan's charon is not installed (apt-get install strongswan-charon libcharon-extra-plugins): %v", err)
	}
	v4 := lab.V4
	var charons []*swan.Charon
	teardown := func() error {
		var errs []error
		for _, c := range charons {
			if err := c.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	fail := func(err error) (func() error, error) { return nil, errors.Join(err, teardown()) }
	for _, gw := range []struct {
		name string
		ns   *netlab.NS
	}{{"gwA", lab.GwA}, {"gwB", lab.GwB}} {
		dir, err := os.MkdirTemp(b.tmp, "swan-")
		if err != nil {
			return fail(fmt.Errorf("charon dir: %w", err))
		}
		c, err := swan.StartCharon(ctx, gw.ns, swan.Options{Dir: dir, Output: prefixWriter(b.opts.DaemonLog, "charon "+gw.name+": ")})
		if err != nil {
			return fail(fmt.Errorf("charon on %s: %w", gw.name, err))
		}
		charons = append(charons, c)
	}
	confA := swanConn(v4.GwAWAN, v4.GwBWAN, "gw-a.example.com", "gw-b.example.com", v4.LANA, v4.LANB)
	confB := swanConn(v4.GwBWAN, v4.GwAPublic, "gw-b.example.com", "gw-a.example.com", v4.LANB, v4.LANA)
	a, bb := charons[0], charons[1]
	if err := bb.LoadConn(ctx, confB); err != nil {
		return fail(err)
	}
	if err := a.LoadConn(ctx, confA); err != nil {
		return fail(err)
	}
	ictx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := a.Initiate(ictx, confA.Name, "net"); err != nil {
		return fail(err)
	}
	for _, c := range charons {
		if _, err := c.WaitEstablished(ictx, confA.Name); err != nil {
			return fail(err)
		}
	}
	return teardown, nil
}

// swanConn is one side of the site-to-site connection, as in the swan
// package's interop tests.
func swanConn(local, remote netip.Addr, localID, remoteID string, localTS, remoteTS netip.Prefix) swan.Conn {
	return swan.Conn{
		Name:       "s2s",
		LocalAddrs: []string{local.String()}, RemoteAddrs: []string{remote.String()},
		LocalID: localID, RemoteID: remoteID,
		// Never leaves the lab.
		PSK:       "xdpsec-bench-psk-not-a-secret-0123456789",
		Proposals: []string{"aes256gcm16-prfsha256-x25519"},
		Children: []swan.Child{{
			Name:    "net",
			LocalTS: []string{localTS.String()}, RemoteTS: []string{remoteTS.String()},
			ESPProposals: []string{"aes256gcm16"},
			StartAction:  "none",
		}},
	}
}

// WireGuardGoModule and WireGuardGoVersion are what the bench builds when
// no wireguard-go binary is given. The version is pinned so two runs of
// the bench compare the same code.
const (
	WireGuardGoModule  = "golang.zx2c4.com/wireguard"
	WireGuardGoVersion = "v0.0.0-20260522210424-ecfc5a8d5446"
)

// wgPort is the UDP port both wireguard-go instances listen on.
const wgPort = 51820

// wgMTU is the wg interfaces' MTU: 1500 less WireGuard's overhead over
// IPv4 (IPv4 20 + UDP 8 + WireGuard header 16 + tag 16). wireguard-go's
// default of 1420 reserves room for an IPv6 outer header the lab does
// not use, and would make gwA fragment the bench's 1428-byte datagrams.
const wgMTU = 1440

// wireGuardGo returns the wireguard-go binary: the one given in the
// options, or one built once per bench with `go install` into the bench's
// temporary directory (outside any module, so no go.mod is touched). A
// failure is remembered and becomes the skip reason.
func (b *bench) wireGuardGo(ctx context.Context) (string, error) {
	if b.wgTried {
		return b.wgBin, b.wgErr
	}
	b.wgTried = true
	if b.opts.WireGuardGo != "" {
		if _, err := os.Stat(b.opts.WireGuardGo); err != nil {
			b.wgErr = skipf("wireguard-go %s: %v", b.opts.WireGuardGo, err)
		}
		b.wgBin = b.opts.WireGuardGo
		return b.wgBin, b.wgErr
	}
	dir := filepath.Join(b.tmp, "wgbin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.wgErr = fmt.Errorf("wireguard-go build dir: %w", err)
		return "", b.wgErr
	}
	fmt.Fprintf(b.opts.Out, "    building %s@%s with go install\n", WireGuardGoModule, WireGuardGoVersion)
	bctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(bctx, goTool(), "install", WireGuardGoModule+"@"+WireGuardGoVersion)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=-mod=mod", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.wgErr = skipf("cannot build wireguard-go (go install %s@%s): %v: %s",
			WireGuardGoModule, WireGuardGoVersion, err, strings.TrimSpace(lastLine(string(out))))
		return "", b.wgErr
	}
	// go install names the binary after the module's last element.
	b.wgBin = filepath.Join(dir, "wireguard")
	return b.wgBin, nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// wgGateway is one end of the WireGuard tunnel.
type wgGateway struct {
	name       string
	ns         *netlab.NS
	ifname     string
	key, pub   string
	remoteLAN  netip.Prefix
	remoteWAN  netip.Addr
	proc       *netlab.Process
	uapiSocket string
}

// setupWireGuard runs wireguard-go on both gateways, keys and peers them
// with wg(8) and routes each remote LAN into the tunnel.
func (b *bench) setupWireGuard(ctx context.Context, lab *netlab.Lab) (func() error, error) {
	bin, err := b.wireGuardGo(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := exec.LookPath("wg"); err != nil {
		return nil, skipf("wg not installed (apt-get install -y wireguard-tools): %v", err)
	}
	v4 := lab.V4
	// wireguard-go's control socket is /var/run/wireguard/<ifname>.sock
	// in the host's file system, shared by every namespace, so the names
	// carry the lab's random suffix: two gateways, or two benches, must
	// not meet there.
	suffix := strings.TrimPrefix(lab.Prefix, "xb")
	gws := []*wgGateway{
		{name: "gwA", ns: lab.GwA, ifname: "wg" + suffix + "a", remoteLAN: v4.LANB, remoteWAN: v4.GwBWAN},
		{name: "gwB", ns: lab.GwB, ifname: "wg" + suffix + "b", remoteLAN: v4.LANA, remoteWAN: v4.GwAWAN},
	}
	teardown := func() error {
		var errs []error
		for _, gw := range gws {
			if gw.proc == nil {
				continue
			}
			if err := gw.proc.Stop(netlab.DefaultStopGrace); err != nil {
				errs = append(errs, fmt.Errorf("stop wireguard-go on %s: %w", gw.name, err))
			}
			// wireguard-go removes its socket on a clean exit; a killed
			// one leaves it behind.
			if err := os.Remove(gw.uapiSocket); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	fail := func(err error) (func() error, error) { return nil, errors.Join(err, teardown()) }

	for _, gw := range gws {
		if gw.key, gw.pub, err = wgKeyPair(ctx); err != nil {
			return fail(err)
		}
	}
	dir, err := os.MkdirTemp(b.tmp, "wg-")
	if err != nil {
		return fail(fmt.Errorf("wireguard dir: %w", err))
	}
	for i, gw := range gws {
		peer := gws[1-i]
		gw.uapiSocket = filepath.Join("/var/run/wireguard", gw.ifname+".sock")
		cmd := exec.Command(bin, "--foreground", gw.ifname)
		gw.proc, err = gw.ns.Start(cmd, prefixWriter(b.opts.DaemonLog, "wireguard-go "+gw.name+": "))
		if err != nil {
			return fail(skipf("cannot run wireguard-go: %v", err))
		}
		if err := waitSocket(ctx, gw.uapiSocket, gw.proc, 10*time.Second); err != nil {
			return fail(skipf("wireguard-go did not start on %s: %v", gw.name, err))
		}
		keyFile := filepath.Join(dir, gw.name+".key")
		if err := os.WriteFile(keyFile, []byte(gw.key+"\n"), 0o600); err != nil {
			return fail(fmt.Errorf("write key: %w", err))
		}
		endpoint := netip.AddrPortFrom(gw.remoteWAN, wgPort).String()
		err := gw.ns.Run(ctx, nil, "wg", "set", gw.ifname,
			"listen-port", fmt.Sprint(wgPort), "private-key", keyFile,
			"peer", peer.pub, "allowed-ips", gw.remoteLAN.String(), "endpoint", endpoint)
		if err != nil {
			return fail(fmt.Errorf("wg set on %s: %w", gw.name, err))
		}
		if err := wgLinkAndRoute(gw); err != nil {
			return fail(err)
		}
	}
	return teardown, nil
}

// wgLinkAndRoute sets the wg interface's MTU, brings it up and routes the
// remote LAN into it. The interface needs no address: the gateways only
// forward through it.
func wgLinkAndRoute(gw *wgGateway) error {
	h := gw.ns.Handle()
	link, err := h.LinkByName(gw.ifname)
	if err != nil {
		return fmt.Errorf("%s: link %s: %w", gw.name, gw.ifname, err)
	}
	if err := h.LinkSetMTU(link, wgMTU); err != nil {
		return fmt.Errorf("%s: MTU of %s: %w", gw.name, gw.ifname, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("%s: set %s up: %w", gw.name, gw.ifname, err)
	}
	dst := &net.IPNet{IP: gw.remoteLAN.Addr().AsSlice(), Mask: net.CIDRMask(gw.remoteLAN.Bits(), 32)}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst, Scope: netlink.SCOPE_LINK}); err != nil {
		return fmt.Errorf("%s: route %s dev %s: %w", gw.name, gw.remoteLAN, gw.ifname, err)
	}
	return nil
}

// wgKeyPair makes a private key and its public key with wg(8). Keys are
// made fresh per run: they protect nothing beyond the lab.
func wgKeyPair(ctx context.Context) (private, public string, err error) {
	key, err := exec.CommandContext(ctx, "wg", "genkey").Output()
	if err != nil {
		return "", "", fmt.Errorf("wg genkey: %w", err)
	}
	cmd := exec.CommandContext(ctx, "wg", "pubkey")
	cmd.Stdin = bytes.NewReader(key)
	pub, err := cmd.Output()
	if err != nil {
		return "", "", fmt.Errorf("wg pubkey: %w", err)
	}
	return strings.TrimSpace(string(key)), strings.TrimSpace(string(pub)), nil
}
