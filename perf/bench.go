package perf

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/xdpsec/xdpsec/internal/iperf"
	"github.com/xdpsec/xdpsec/internal/netlab"
	"github.com/xdpsec/xdpsec/perf/loadgen"
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

// Bench defaults: six trials of 2 seconds bring a search within a few
// per cent of the zero-loss rate (see searchRate) in about 15 s per frame
// profile.
const (
	DefaultBenchSeconds    = 10
	DefaultUDPTrials       = 6
	DefaultUDPTrialSeconds = 2
)

// Lab kinds, as `--lab` takes them and the report names them.
const (
	// LabRealWire behaves like hosts and gateways on real NICs: every
	// receiving interface coalesces with GRO, as NIC drivers do by
	// default, and the hosts hand over finished checksums.
	LabRealWire = "real-wire"
	// LabLegacy is the lab of the first benchmarks: veth's default of no
	// GRO on any receiver (hosts still hand over finished checksums).
	LabLegacy = "legacy"
)

func labDescription(kind string) string {
	switch kind {
	case LabRealWire:
		return "real wire: veth pairs with GRO on every receiving interface (as NIC drivers coalesce), hosts hand over finished checksums"
	case LabLegacy:
		return "legacy: veth pairs without GRO on any receiver (veth's default), hosts hand over finished checksums"
	}
	return kind
}

// BenchOptions configures RunBench. Zero values take the defaults above.
type BenchOptions struct {
	// BinDir holds xdpsecd (xdpsecctl is not needed).
	BinDir string
	// Configs to run, by name; nil means BenchConfigs().
	Configs []string
	// Seconds of the TCP transfer per configuration.
	Seconds int
	// Lab is LabRealWire (the default) or LabLegacy.
	Lab string
	// UDP enables the RFC 2544 runs: for each of Frames (nil means
	// DefaultFrames()), the highest rate with less than ZeroLossPercent
	// loss and the latency at that rate.
	UDP    bool
	Frames []string
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
	if o.Lab == "" {
		o.Lab = LabRealWire
	}
	if o.Frames == nil {
		o.Frames = DefaultFrames()
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
	if opts.Lab != LabRealWire && opts.Lab != LabLegacy {
		return nil, fmt.Errorf("unknown lab %q (have %s, %s)", opts.Lab, LabRealWire, LabLegacy)
	}
	for _, f := range opts.Frames {
		if _, err := loadgen.ParseProfile(f, IMIXLargeFrame); err != nil {
			return nil, err
		}
	}
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
	r := &BenchReport{
		Date:            time.Now().UTC(),
		Host:            host,
		Kernel:          kernelRelease(),
		CPUs:            runtime.NumCPU(),
		CPUModel:        cpuModel(),
		Lab:             opts.Lab,
		Seconds:         opts.Seconds,
		ZeroLossPercent: ZeroLossPercent,
		TrialSeconds:    opts.UDPTrialSeconds,
	}
	if opts.UDP {
		r.Frames = opts.Frames
	}
	return r
}

// configLimit bounds one configuration: set-up and teardown (90 s cover
// daemons, IKE, their stops and a wireguard-go build from the module
// cache), the TCP transfer and every UDP trial with its iperf3 start-up.
func (b *bench) configLimit() time.Duration {
	d := 90*time.Second + time.Duration(b.opts.Seconds+10)*time.Second
	if b.opts.UDP {
		perTrial := time.Duration(b.opts.UDPTrialSeconds)*time.Second + frameDrain + time.Second
		d += time.Duration(len(b.opts.Frames)*b.opts.UDPTrials) * perTrial
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
	lab, err := netlab.NewLab(ctx, netlab.LabOptions{Prefix: prefix, NoGatewayRoutes: config != ConfigPlain,
		GRO: b.opts.Lab == LabRealWire})
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
		res.Frames, err = b.frameRuns(ctx, lab)
		if err != nil {
			return fmt.Errorf("UDP runs: %w", err)
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
