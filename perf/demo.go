// Package perf holds the lab scenarios behind xdpsec-bench: the demo today,
// traffic generators and benchmark scenarios as the data planes arrive.
package perf

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/xdpsec/xdpsec/control/api"
	"github.com/xdpsec/xdpsec/internal/iperf"
	"github.com/xdpsec/xdpsec/internal/netlab"
)

// DemoOptions configures RunDemo.
type DemoOptions struct {
	// BinDir holds xdpsecd and xdpsecctl.
	BinDir string
	// Out receives the narrative; daemon logs go to DaemonLog (nil = dropped).
	Out       io.Writer
	DaemonLog io.Writer
}

// demoGateway is one site's gateway as the demo sets it up.
type demoGateway struct {
	name        string
	startAction string
	ns          *netlab.NS
	local       string
	remote      string
	localID     string
	remoteID    string
	localTS     string
	remoteTS    string
	dir         string
	socket      string
	proc        *netlab.Process
}

// RunDemo builds the site-to-site lab, starts one xdpsecd per gateway with
// a configuration for the other side, shows what each reports and tears it
// all down. It says plainly what this build can and cannot do yet.
func RunDemo(ctx context.Context, opts DemoOptions) (err error) {
	out := opts.Out
	start := time.Now()
	for _, b := range []string{"xdpsecd", "xdpsecctl"} {
		if _, err := os.Stat(filepath.Join(opts.BinDir, b)); err != nil {
			return fmt.Errorf("demo needs %s in %s (run make build): %w", b, opts.BinDir, err)
		}
	}

	step(out, "1/6", "building the two-site lab in network namespaces")
	// No routes between the sites: whatever crosses from hostA to hostB
	// went through the tunnel.
	lab, err := netlab.NewLab(ctx, netlab.LabOptions{Prefix: netlab.RandomPrefix("xdemo"), NoGatewayRoutes: true})
	if err != nil {
		return fmt.Errorf("build lab: %w", err)
	}
	defer func() {
		step(out, "6/6", "tearing the lab down")
		if cerr := lab.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("tear down lab: %w", cerr))
			return
		}
		fmt.Fprintf(out, "    all namespaces removed (%.1fs in total)\n", time.Since(start).Seconds())
	}()
	v4 := lab.V4
	fmt.Fprintf(out, "    hostA %s — gwA %s | %s — gwB %s | %s — hostB %s\n",
		v4.HostA, v4.GwALAN, v4.GwAWAN, v4.GwBWAN, v4.GwBLAN, v4.HostB)
	fmt.Fprintf(out, "    namespaces: %s\n", nsNames(lab))
	if _, perr := lab.HostA.Ping(ctx, v4.HostB, 1, 500*time.Millisecond); perr == nil {
		return errors.New("hostA reaches hostB without a tunnel: the lab is wired wrong")
	}
	fmt.Fprintf(out, "    hostA -> hostB before the tunnel: no route, as intended (the gateways do not route between the sites)\n")

	step(out, "2/6", "starting xdpsecd (data plane afxdp) on both gateways: gwB answers, gwA initiates")
	dir, err := os.MkdirTemp("", "xdpsec-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	gws := []*demoGateway{
		{name: "gwB", ns: lab.GwB, startAction: "none", local: v4.GwBWAN.String(), remote: v4.GwAWAN.String(),
			localID: "gw-b.example.com", remoteID: "gw-a.example.com", localTS: v4.LANB.String(), remoteTS: v4.LANA.String()},
		{name: "gwA", ns: lab.GwA, startAction: "start", local: v4.GwAWAN.String(), remote: v4.GwBWAN.String(),
			localID: "gw-a.example.com", remoteID: "gw-b.example.com", localTS: v4.LANA.String(), remoteTS: v4.LANB.String()},
	}
	for _, gw := range gws {
		if err := gw.start(ctx, opts, dir); err != nil {
			return err
		}
		fmt.Fprintf(out, "    %s: xdpsecd pid %d, API %s\n", gw.name, gw.proc.Pid(), gw.socket)
	}

	step(out, "3/6", "waiting for IKEv2 (IKE_SA_INIT + IKE_AUTH) to bring the SA up")
	negotiated := time.Now()
	if err := waitEstablished(ctx, gws[1].socket, 15*time.Second); err != nil {
		return err
	}
	fmt.Fprintf(out, "    IKE SA and CHILD SA established in %s\n", time.Since(negotiated).Round(time.Millisecond))

	step(out, "4/6", "traffic through the tunnel: ping, then a 5-second TCP transfer (iperf3)")
	var pingOut strings.Builder
	pingCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	perr := lab.HostA.Run(pingCtx, &pingOut, "ping", "-c", "5", "-i", "0.2", "-W", "2", v4.HostB.String())
	cancel()
	if perr != nil {
		return fmt.Errorf("ping hostA -> hostB through the tunnel: %w", perr)
	}
	fmt.Fprintf(out, "    ping hostA -> hostB: %s\n", pingSummary(pingOut.String()))
	fmt.Fprintf(out, "    (packets towards a next hop a gateway has not resolved yet wait in its neighbour queue while the kernel does ARP)\n")
	mbps, err := iperf.TCP(ctx, lab.HostA, lab.HostB, v4.HostB.String(), 5)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "    TCP hostA -> hostB through ESP (AES-256-GCM): %.0f Mbit/s\n", mbps)

	step(out, "5/6", "what each daemon reports (xdpsecctl status, conns, sas)")
	for _, gw := range []*demoGateway{gws[1], gws[0]} {
		cmds := []string{"status", "sas"}
		if gw.name == "gwA" {
			cmds = []string{"status", "conns", "sas"}
		}
		for _, cmd := range cmds {
			fmt.Fprintf(out, "\n  $ xdpsecctl --socket %s %s    # on %s\n", gw.socket, cmd, gw.name)
			text, err := exec.CommandContext(ctx, filepath.Join(opts.BinDir, "xdpsecctl"), "--socket", gw.socket, cmd).CombinedOutput()
			if err != nil {
				return fmt.Errorf("xdpsecctl %s on %s: %w: %s", cmd, gw.name, err, text)
			}
			out.Write(indentLines(string(text), "    "))
		}
	}
	fmt.Fprint(out, `
  What this showed: two xdpsecd negotiated IKEv2 with each other (PSK,
  AES-256-GCM, X25519), agree on the IKE SPIs, the CHILD SA's SPI pair and
  its traffic selectors, and carry hostA's traffic to hostB through ESP:
  XDP steers the ESP packets of known SPIs to AF_XDP sockets, Go workers
  decrypt and forward them, and the SA counters above count them. The sites
  have no other path to each other. Numbers here come from a shared 2-core
  machine with veth links: read them as a smoke test, not a benchmark.
`)
	return nil
}

func (gw *demoGateway) start(ctx context.Context, opts DemoOptions, dir string) error {
	gw.dir = filepath.Join(dir, gw.name)
	gw.socket = filepath.Join(gw.dir, "xdpsec.sock")
	if err := os.MkdirAll(gw.dir, 0o700); err != nil {
		return err
	}
	psk := filepath.Join(gw.dir, "peer.psk")
	// The same random-looking secret on both sides; it never leaves the lab.
	if err := os.WriteFile(psk, []byte("xdpsec-demo-shared-secret-0123456789\n"), 0o600); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`# xdpsec demo configuration for %[1]s
log: {level: info, format: console}
api: {socket: %[2]s}
metrics: {listen: ""}
dataplane:
  mode: afxdp
  wan: %[11]s
  lan: %[12]s
  # The gateway's own traffic goes through the tunnel by this port, and
  # decrypted TCP for the LAN leaves by it merged into super-packets
  # (lan_output auto: the LAN is a veth).
  tun: xdpsec0
connections:
  - name: peer
    local_addr: %[3]s
    remote_addr: %[4]s
    local_id: %[5]s
    remote_id: %[6]s
    auth: psk
    psk_file: %[7]s
    ike_proposals: [aes256gcm16-prfsha256-x25519]
    esp_proposals: [aes256gcm16]
    start_action: %[10]s
    children:
      - name: lan
        local_ts: [%[8]s]
        remote_ts: [%[9]s]
`, gw.name, gw.socket, gw.local, gw.remote, gw.localID, gw.remoteID, psk, gw.localTS, gw.remoteTS, gw.startAction, netlab.WANIf, netlab.LANIf)
	cfgPath := filepath.Join(gw.dir, "xdpsec.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return err
	}
	logw := opts.DaemonLog
	if logw == nil {
		logw = io.Discard
	}
	cmd := exec.Command(filepath.Join(opts.BinDir, "xdpsecd"), "--config", cfgPath)
	proc, err := gw.ns.Start(cmd, prefixWriter(logw, gw.name+": "))
	if err != nil {
		return fmt.Errorf("start xdpsecd on %s: %w", gw.name, err)
	}
	gw.proc = proc
	return waitSocket(ctx, gw.socket, proc, 10*time.Second)
}

// waitSocket waits until proc listens on the unix socket (xdpsecd's API,
// wireguard-go's control socket), failing early when proc exits.
func waitSocket(ctx context.Context, socket string, proc *netlab.Process, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		if c, err := net.Dial("unix", socket); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-proc.Done():
			return fmt.Errorf("%s exited before opening %s: %v", filepath.Base(proc.Cmd.Path), socket, proc.Err())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not open %s within %s", filepath.Base(proc.Cmd.Path), socket, limit)
		}
	}
}

// waitEstablished polls the daemon's API until a CHILD SA is installed.
func waitEstablished(ctx context.Context, socket string, limit time.Duration) error {
	client := api.NewClient(socket)
	deadline := time.Now().Add(limit)
	for {
		sas, err := client.SAs(ctx)
		if err != nil {
			return err
		}
		for _, sa := range sas {
			if sa.State == "ESTABLISHED" && len(sa.Children) > 0 && sa.Children[0].State == "INSTALLED" {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no SA established within %s (run with -v for the daemons' logs)", limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func step(out io.Writer, n, what string) { fmt.Fprintf(out, "\n[%s] %s\n", n, what) }

func nsNames(lab *netlab.Lab) string {
	var names []string
	for _, ns := range lab.Namespaces() {
		names = append(names, ns.Name)
	}
	return strings.Join(names, " ")
}

// pingSummary keeps ping's two summary lines, which say all a reader needs.
func pingSummary(s string) string {
	var keep []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, "packets transmitted") || strings.HasPrefix(line, "rtt ") {
			keep = append(keep, strings.TrimSpace(line))
		}
	}
	return strings.Join(keep, "; ")
}

func indentLines(s, prefix string) []byte {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		if line != "" {
			b.WriteString(prefix)
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

type linePrefixer struct {
	w      io.Writer
	prefix string
}

func prefixWriter(w io.Writer, prefix string) io.Writer { return &linePrefixer{w: w, prefix: prefix} }

func (p *linePrefixer) Write(b []byte) (int, error) {
	if _, err := p.w.Write(indentLines(string(b), p.prefix)); err != nil {
		return 0, err
	}
	return len(b), nil
}
