package perf

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/xdpsec/xdpsec/internal/iperf"
	"github.com/xdpsec/xdpsec/internal/netlab"
)

// Configuration names, as `xdpsec-bench bench --configs` takes them and the
// report prints them.
const (
	ConfigPlain      = "plain"
	ConfigXdpsec     = "xdpsec"
	ConfigStrongSwan = "strongswan"
	ConfigWireGuard  = "wireguard-go"
)

// BenchConfigs returns every configuration, in the order the bench runs
// them: the baseline first, so a broken lab shows before any tunnel is
// blamed for it.
func BenchConfigs() []string {
	return []string{ConfigPlain, ConfigXdpsec, ConfigStrongSwan, ConfigWireGuard}
}

// Bench defaults. The UDP numbers follow the brief of the benchmark: 1400
// bytes fit every tunnel here without fragmentation (see the MTUs set in
// bench_configs.go), and 0.1 % is the loss a "lossless" trial may have.
const (
	DefaultBenchSeconds    = 10
	DefaultUDPTrials       = 6
	DefaultUDPTrialSeconds = 2
	UDPDatagramBytes       = 1400
	UDPLossLimitPercent    = 0.1
)

// BenchOptions configures RunBench. Zero values take the defaults above.
type BenchOptions struct {
	// BinDir holds xdpsecd (xdpsecctl is not needed).
	BinDir string
	// Configs to run, by name; nil means BenchConfigs().
	Configs []string
	// Seconds of the TCP transfer per configuration.
	Seconds int
	// UDP enables the search for the highest UDP rate with less than
	// UDPLossLimitPercent loss.
	UDP bool
	// UDPTrials bounds the trials of one search (the first one included);
	// UDPTrialSeconds is the length of each.
	UDPTrials       int
	UDPTrialSeconds int
	// ProfileDir, when set, makes the xdpsec configuration run both
	// daemons with --cpu-profile DIR/gwA.pprof and DIR/gwB.pprof and puts
	// the top of each profile into the report.
	ProfileDir string
	// WireGuardGo is a wireguard-go binary to use; empty means build
	// WireGuardGoModule@WireGuardGoVersion with `go install` into a
	// temporary directory.
	WireGuardGo string
	// Out receives progress lines (nil = dropped); DaemonLog the output of
	// xdpsecd, charon and wireguard-go (nil = dropped).
	Out       io.Writer
	DaemonLog io.Writer
}

func (o BenchOptions) withDefaults() BenchOptions {
	if o.Configs == nil {
		o.Configs = BenchConfigs()
	}
	if o.Seconds <= 0 {
		o.Seconds = DefaultBenchSeconds
	}
	if o.UDPTrials <= 0 {
		o.UDPTrials = DefaultUDPTrials
	}
	if o.UDPTrialSeconds <= 0 {
		o.UDPTrialSeconds = DefaultUDPTrialSeconds
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.DaemonLog == nil {
		o.DaemonLog = io.Discard
	}
	return o
}

// BenchReport is the outcome of one RunBench: the machine, the settings
// and one result per configuration.
type BenchReport struct {
	Date         time.Time      `json:"date"`
	Host         string         `json:"host"`
	Kernel       string         `json:"kernel"`
	CPUs         int            `json:"cpus"`
	CPUModel     string         `json:"cpu_model"`
	Seconds      int            `json:"tcp_seconds"`
	UDP          bool           `json:"udp_search"`
	UDPDatagram  int            `json:"udp_datagram_bytes"`
	UDPLossLimit float64        `json:"udp_loss_limit_percent"`
	Results      []BenchResult  `json:"results"`
	Profiles     []BenchProfile `json:"profiles,omitempty"`
}

// BenchResult is one configuration's numbers. Ratios are 0 where they
// cannot be computed (the reference is missing, skipped or failed).
type BenchResult struct {
	Config      string `json:"config"`
	Description string `json:"description"`
	// Lab is the namespace prefix the configuration ran in.
	Lab string `json:"lab,omitempty"`
	// TCPMbps is iperf3's receiver rate of one TCP stream.
	TCPMbps float64 `json:"tcp_mbps"`
	// UDPMbps is the rate received at the highest offered rate that lost
	// less than UDPLossLimitPercent; 0 when no trial passed or no search ran.
	UDPMbps float64 `json:"udp_mbps"`
	// UDPLowerBound: every fixed-rate trial passed, so the trial budget
	// ran out before the search found a failing rate above UDPMbps.
	UDPLowerBound bool       `json:"udp_lower_bound,omitempty"`
	UDPTrials     []UDPTrial `json:"udp_trials,omitempty"`
	// Drops are xdpsec's data-plane drop counters at the end of its run,
	// "gwA/reason" -> packets, non-zero ones only: they say where the
	// loss of a failed UDP trial went.
	Drops map[string]uint64 `json:"drops,omitempty"`

	TCPvsPlain     float64 `json:"tcp_vs_plain,omitempty"`
	TCPvsWireGuard float64 `json:"tcp_vs_wireguard_go,omitempty"`
	UDPvsPlain     float64 `json:"udp_vs_plain,omitempty"`
	UDPvsWireGuard float64 `json:"udp_vs_wireguard_go,omitempty"`

	// Skipped says why the configuration could not run on this machine
	// (a missing tool); Error why it failed. At most one is set.
	Skipped string  `json:"skipped,omitempty"`
	Error   string  `json:"error,omitempty"`
	WallS   float64 `json:"wall_seconds"`
}

// BenchProfile is the top of one daemon's CPU profile.
type BenchProfile struct {
	Gateway string `json:"gateway"`
	Path    string `json:"path"`
	Top     string `json:"top"`
}

// Failed lists the configurations that failed (skipped ones are not
// failures: the report says why they did not run).
func (r *BenchReport) Failed() []string {
	var out []string
	for _, res := range r.Results {
		if res.Error != "" {
			out = append(out, res.Config)
		}
	}
	return out
}

// Result returns the result of the named configuration.
func (r *BenchReport) Result(config string) (BenchResult, bool) {
	i := slices.IndexFunc(r.Results, func(res BenchResult) bool { return res.Config == config })
	if i < 0 {
		return BenchResult{}, false
	}
	return r.Results[i], true
}

// computeRatios fills the ratio columns from the plain and wireguard-go
// rows. A ratio needs both numbers; a missing one leaves it 0 ("n/a").
func (r *BenchReport) computeRatios() {
	ref := func(config string) (tcp, udp float64) {
		res, ok := r.Result(config)
		if !ok || res.Skipped != "" {
			return 0, 0
		}
		return res.TCPMbps, res.UDPMbps
	}
	plainTCP, plainUDP := ref(ConfigPlain)
	wgTCP, wgUDP := ref(ConfigWireGuard)
	ratio := func(x, base float64) float64 {
		if x <= 0 || base <= 0 {
			return 0
		}
		return x / base
	}
	for i := range r.Results {
		res := &r.Results[i]
		res.TCPvsPlain = ratio(res.TCPMbps, plainTCP)
		res.TCPvsWireGuard = ratio(res.TCPMbps, wgTCP)
		res.UDPvsPlain = ratio(res.UDPMbps, plainUDP)
		res.UDPvsWireGuard = ratio(res.UDPMbps, wgUDP)
	}
}

// Goal is the project's stated target (reported, never asserted): xdpsec's
// single TCP stream at least 1.5 times wireguard-go's on the same machine.
const Goal = 1.5

// GoalLine says whether the report meets Goal, or why it cannot tell.
func (r *BenchReport) GoalLine() string {
	x, okX := r.Result(ConfigXdpsec)
	w, okW := r.Result(ConfigWireGuard)
	switch {
	case !okX || !okW:
		return fmt.Sprintf("goal xdpsec TCP >= %.1fx wireguard-go: not measured (both configurations are needed)", Goal)
	case x.TCPvsWireGuard == 0:
		return fmt.Sprintf("goal xdpsec TCP >= %.1fx wireguard-go: not measured (%s)", Goal, firstNonEmpty(x.Error, x.Skipped, w.Error, w.Skipped, "no number"))
	case x.TCPvsWireGuard >= Goal:
		return fmt.Sprintf("goal xdpsec TCP >= %.1fx wireguard-go: met (%.2fx)", Goal, x.TCPvsWireGuard)
	default:
		return fmt.Sprintf("goal xdpsec TCP >= %.1fx wireguard-go: NOT met (%.2fx)", Goal, x.TCPvsWireGuard)
	}
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// WriteText writes the report as a table for people.
func (r *BenchReport) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "xdpsec-bench bench, %s, host %s: %d CPUs (%s), kernel %s, veth lab\n",
		r.Date.UTC().Format("2006-01-02 15:04 MST"), r.Host, r.CPUs, r.CPUModel, r.Kernel)
	fmt.Fprintf(bw, "TCP: iperf3, 1 stream, %d s, hostA -> hostB.", r.Seconds)
	if r.UDP {
		fmt.Fprintf(bw, " UDP: %d-byte datagrams, highest rate with < %g %% loss (received rate).", r.UDPDatagram, r.UDPLossLimit)
	}
	fmt.Fprintln(bw)
	fmt.Fprintln(bw)
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "config\tTCP Mbit/s\tx plain\tx wg-go\tUDP Mbit/s\tx plain\tx wg-go\t\tnotes")
	for _, res := range r.Results {
		note := res.Description
		switch {
		case res.Skipped != "":
			note = "skipped: " + res.Skipped
		case res.Error != "":
			note = "FAILED: " + res.Error
		}
		// A number measured before a failure is still shown: a TCP rate
		// stands even when the UDP search after it broke.
		tcp, tcpPlain, tcpWG := "-", "-", "-"
		if res.TCPMbps > 0 {
			tcp, tcpPlain, tcpWG = mbps(res.TCPMbps), ratioCell(res.TCPvsPlain), ratioCell(res.TCPvsWireGuard)
		}
		udp, udpPlain, udpWG := "-", "-", "-"
		if r.UDP && len(res.UDPTrials) > 0 {
			udp, udpPlain, udpWG = mbps(res.UDPMbps), ratioCell(res.UDPvsPlain), ratioCell(res.UDPvsWireGuard)
			if res.UDPLowerBound {
				udp = ">=" + udp
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\t%s\n", res.Config, tcp, tcpPlain, tcpWG, udp, udpPlain, udpWG, note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(bw)
	fmt.Fprintln(bw, r.GoalLine())
	for _, res := range r.Results {
		if res.UDPLowerBound {
			fmt.Fprintf(bw, "%s UDP >=: every paced trial passed; more --udp-trials would find a higher rate\n", res.Config)
		}
	}
	if r.UDP && slices.ContainsFunc(r.Results, func(res BenchResult) bool { return len(res.UDPTrials) > 0 }) {
		fmt.Fprintln(bw, "\nUDP trials (offered -> received Mbit/s, loss; offered 0 = unlimited):")
		for _, res := range r.Results {
			if len(res.UDPTrials) == 0 {
				continue
			}
			var parts []string
			for _, t := range res.UDPTrials {
				parts = append(parts, t.String())
			}
			fmt.Fprintf(bw, "  %-13s %s\n", res.Config, strings.Join(parts, "; "))
		}
	}
	for _, res := range r.Results {
		if len(res.Drops) == 0 {
			continue
		}
		keys := slices.Sorted(maps.Keys(res.Drops))
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s %d", k, res.Drops[k]))
		}
		fmt.Fprintf(bw, "\n%s data-plane drops over the whole run: %s\n", res.Config, strings.Join(parts, ", "))
	}
	for _, p := range r.Profiles {
		fmt.Fprintf(bw, "\nCPU profile of xdpsecd on %s (%s), top 15:\n", p.Gateway, p.Path)
		bw.Write(indentLines(p.Top, "  "))
	}
	return bw.Flush()
}

func mbps(v float64) string {
	if v <= 0 {
		return "0"
	}
	return fmt.Sprintf("%.0f", v)
}

func ratioCell(v float64) string {
	if v <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", v)
}

// skipError marks a configuration that cannot run on this machine (a tool
// is missing or cannot be built); the report shows it as skipped.
type skipError struct{ reason string }

func (e *skipError) Error() string { return e.reason }

func skipf(format string, args ...any) error {
	return &skipError{reason: fmt.Sprintf(format, args...)}
}

// bench is one RunBench: options plus what is prepared once for all
// configurations.
type bench struct {
	opts BenchOptions
	tmp  string
	// wgBin is wireguard-go once built (or given); wgErr why it is not.
	wgBin   string
	wgErr   error
	wgTried bool
	report  *BenchReport
}

// RunBench runs each configuration on a fresh lab, one after the other,
// and returns the report. A configuration that fails or cannot run is
// recorded in its row and the others still run; the error is for what
// stops the whole bench (bad options, missing xdpsecd, cancellation).
func RunBench(ctx context.Context, opts BenchOptions) (*BenchReport, error) {
	opts = opts.withDefaults()
	for _, c := range opts.Configs {
		if !slices.Contains(BenchConfigs(), c) {
			return nil, fmt.Errorf("unknown configuration %q (have %s)", c, strings.Join(BenchConfigs(), ", "))
		}
	}
	if slices.Contains(opts.Configs, ConfigXdpsec) {
		if _, err := os.Stat(filepath.Join(opts.BinDir, "xdpsecd")); err != nil {
			return nil, fmt.Errorf("bench needs xdpsecd in %s (run make build): %w", opts.BinDir, err)
		}
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		return nil, fmt.Errorf("bench needs iperf3 (apt-get install -y iperf3): %w", err)
	}
	if opts.ProfileDir != "" {
		if err := os.MkdirAll(opts.ProfileDir, 0o755); err != nil {
			return nil, fmt.Errorf("profile directory: %w", err)
		}
	}
	tmp, err := os.MkdirTemp("", "xdpsec-bench-")
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)

	b := &bench{opts: opts, tmp: tmp, report: newReport(opts)}
	for _, c := range opts.Configs {
		if err := ctx.Err(); err != nil {
			b.report.computeRatios()
			return b.report, fmt.Errorf("bench interrupted before %s: %w", c, err)
		}
		fmt.Fprintf(opts.Out, "[%s] %s\n", c, describe(c))
		res := b.runConfig(ctx, c)
		switch {
		case res.Skipped != "":
			fmt.Fprintf(opts.Out, "    skipped: %s\n", res.Skipped)
		case res.Error != "":
			fmt.Fprintf(opts.Out, "    FAILED: %s\n", res.Error)
		default:
			fmt.Fprintf(opts.Out, "    TCP %.0f Mbit/s", res.TCPMbps)
			if opts.UDP {
				bound := ""
				if res.UDPLowerBound {
					bound = ">="
				}
				fmt.Fprintf(opts.Out, ", UDP %s%.0f Mbit/s at < %g %% loss", bound, res.UDPMbps, UDPLossLimitPercent)
			}
			fmt.Fprintf(opts.Out, " (%.1fs)\n", res.WallS)
		}
		b.report.Results = append(b.report.Results, res)
	}
	b.report.computeRatios()
	if ctx.Err() != nil {
		return b.report, fmt.Errorf("bench interrupted: %w", ctx.Err())
	}
	return b.report, nil
}

func newReport(opts BenchOptions) *BenchReport {
	host, _ := os.Hostname()
	return &BenchReport{
		Date:         time.Now().UTC(),
		Host:         host,
		Kernel:       kernelRelease(),
		CPUs:         runtime.NumCPU(),
		CPUModel:     cpuModel(),
		Seconds:      opts.Seconds,
		UDP:          opts.UDP,
		UDPDatagram:  UDPDatagramBytes,
		UDPLossLimit: UDPLossLimitPercent,
	}
}

// configLimit bounds one configuration: set-up and teardown (90 s cover
// daemons, IKE, their stops and a wireguard-go build from the module
// cache), the TCP transfer and every UDP trial with its iperf3 start-up.
func (b *bench) configLimit() time.Duration {
	d := 90*time.Second + time.Duration(b.opts.Seconds+10)*time.Second
	if b.opts.UDP {
		d += time.Duration(b.opts.UDPTrials*(b.opts.UDPTrialSeconds+5)) * time.Second
	}
	return d
}

// runConfig runs one configuration on its own lab and always tears it
// down: the tunnel first (so daemons exit cleanly and write profiles),
// then the lab.
func (b *bench) runConfig(ctx context.Context, config string) (res BenchResult) {
	start := time.Now()
	res = BenchResult{Config: config, Description: describe(config)}
	defer func() { res.WallS = time.Since(start).Seconds() }()
	ctx, cancel := context.WithTimeout(ctx, b.configLimit())
	defer cancel()

	err := b.measure(ctx, config, &res)
	var skip *skipError
	switch {
	case errors.As(err, &skip):
		res.Skipped = skip.reason
	case err != nil:
		res.Error = err.Error()
	}
	return res
}

func (b *bench) measure(ctx context.Context, config string, res *BenchResult) (err error) {
	prefix := netlab.RandomPrefix("xb")
	res.Lab = prefix
	lab, err := netlab.NewLab(ctx, netlab.LabOptions{Prefix: prefix, NoGatewayRoutes: config != ConfigPlain})
	if err != nil {
		return fmt.Errorf("build lab: %w", err)
	}
	defer func() {
		if cerr := lab.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("tear down lab: %w", cerr))
		}
	}()

	var teardown func() error
	switch config {
	case ConfigPlain:
		teardown, err = func() error { return nil }, nil
	case ConfigXdpsec:
		teardown, err = b.setupXdpsec(ctx, lab, res)
	case ConfigStrongSwan:
		teardown, err = b.setupStrongSwan(ctx, lab)
	case ConfigWireGuard:
		teardown, err = b.setupWireGuard(ctx, lab)
	}
	if err != nil {
		return err
	}
	tornDown := false
	defer func() {
		if !tornDown {
			err = errors.Join(err, teardown())
		}
	}()

	if err := waitPath(ctx, lab, 15*time.Second); err != nil {
		return err
	}
	v4 := lab.V4
	res.TCPMbps, err = iperf.TCP(ctx, lab.HostA, lab.HostB, v4.HostB.String(), b.opts.Seconds)
	if err != nil {
		return fmt.Errorf("TCP: %w", err)
	}
	if b.opts.UDP {
		trial := func(ctx context.Context, offered float64) (UDPTrial, error) {
			return iperfUDP(ctx, lab.HostA, lab.HostB, v4.HostB.String(), offered, b.opts.UDPTrialSeconds)
		}
		res.UDPMbps, res.UDPTrials, res.UDPLowerBound, err = searchUDP(ctx, trial, b.opts.UDPTrials, UDPLossLimitPercent)
		if err != nil {
			return fmt.Errorf("UDP search: %w", err)
		}
	}
	tornDown = true
	if err := teardown(); err != nil {
		return fmt.Errorf("tear down %s: %w", config, err)
	}
	if config == ConfigXdpsec && b.opts.ProfileDir != "" {
		return b.profileTops(ctx)
	}
	return nil
}

// waitPath pings hostB from hostA until a reply comes back: the first
// packets may be spent on ARP, a WireGuard handshake or a next hop the
// data plane has not resolved yet, and must not count against a transfer.
func waitPath(ctx context.Context, lab *netlab.Lab, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		n, err := lab.HostA.Ping(ctx, lab.V4.HostB, 3, 300*time.Millisecond)
		if err == nil && n > 0 {
			return nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return fmt.Errorf("hostA cannot reach hostB within %s: %w", limit, errors.Join(err, ctx.Err()))
		}
	}
}

func describe(config string) string {
	switch config {
	case ConfigPlain:
		return "plain IPv4 routing by the gateways' kernels, no tunnel (baseline)"
	case ConfigXdpsec:
		return "xdpsecd on both gateways, afxdp data plane, ESP aes256gcm16, raw ESP"
	case ConfigStrongSwan:
		return "strongSwan charon, kernel-libipsec (user space over TUN), ESP aes256gcm16 in UDP 4500"
	case ConfigWireGuard:
		return "wireguard-go (user space over TUN), ChaCha20-Poly1305 in UDP"
	}
	return config
}

// profileTops runs `go tool pprof -top` on the profiles the xdpsec
// configuration wrote.
func (b *bench) profileTops(ctx context.Context) error {
	goBin := goTool()
	var errs []error
	for _, gw := range []string{"gwA", "gwB"} {
		path := filepath.Join(b.opts.ProfileDir, gw+".pprof")
		pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		out, err := exec.CommandContext(pctx, goBin, "tool", "pprof", "-top", "-nodecount=15",
			filepath.Join(b.opts.BinDir, "xdpsecd"), path).CombinedOutput()
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("pprof %s: %w: %s", path, err, out))
			continue
		}
		b.report.Profiles = append(b.report.Profiles, BenchProfile{Gateway: gw, Path: path, Top: string(out)})
	}
	return errors.Join(errs...)
}

// goTool finds the go command: on PATH, or where the Makefile expects it.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
