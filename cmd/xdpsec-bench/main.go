// Command xdpsec-bench runs the lab: the demo now, benchmarks and reports as
// the data planes arrive. The logic lives in package perf.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/xdpsec/xdpsec/perf"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := newRootCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "xdpsec-bench:", err)
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "xdpsec-bench",
		Short:         "xdpsec lab, demo and benchmarks (network namespaces; needs root)",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(demoCommand(), benchCommand())
	return root
}

func demoCommand() *cobra.Command {
	var binDir string
	var verbose bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Build the two-site lab, start xdpsecd on both gateways, show their state, tear down",
		Long: `demo builds hostA — gwA — gwB — hostB in network namespaces, starts one
xdpsecd per gateway with a configuration for the other side, prints what
xdpsecctl reports and removes everything again, also when interrupted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if os.Geteuid() != 0 {
				return fmt.Errorf("demo needs root: it creates network namespaces")
			}
			opts := perf.DemoOptions{BinDir: binDir, Out: cmd.OutOrStdout()}
			if verbose {
				opts.DaemonLog = cmd.ErrOrStderr()
			}
			return perf.RunDemo(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&binDir, "bin", "bin", "directory holding xdpsecd and xdpsecctl")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "show the daemons' logs")
	return cmd
}

func writeSVG(report *perf.BenchReport, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	if err := report.WriteSVG(f); err != nil {
		f.Close()
		return fmt.Errorf("chart: %w", err)
	}
	return f.Close()
}

func benchCommand() *cobra.Command {
	var (
		opts    perf.BenchOptions
		configs string
		frames  string
		svgPath string
		legacy  bool
		noUDP   bool
		asJSON  bool
		verbose bool
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure TCP throughput and RFC 2544 zero-loss rates hostA -> hostB: plain routing, xdpsec, strongSwan, wireguard-go",
		Long: `bench measures hostA -> hostB through the two-site lab once per
configuration, each on a fresh lab that is torn down afterwards, also on
failure or interruption:

  plain         the gateways route, no tunnel (the baseline)
  xdpsec        xdpsecd on both gateways, afxdp data plane, ESP aes256gcm16
  strongswan    charon with kernel-libipsec, ESP aes256gcm16 (in UDP 4500)
  wireguard-go  userspace WireGuard, built with go install at run time

The lab behaves like a real wire: every receiving interface coalesces with
GRO, as NIC drivers do, and the hosts hand over finished checksums
(--legacy-lab: no GRO anywhere, the lab of the first benchmarks).

Each configuration gets a single-stream iperf3 TCP transfer and, unless
--no-udp, RFC 2544-style runs per frame size (--frames): the highest rate
that loses less than 0.01 %, found by a bounded binary search, with the
one-way latency percentiles at that rate. The tables give ratios to plain
routing and to wireguard-go; --svg draws them. A configuration whose tools
are missing is reported as skipped.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if os.Geteuid() != 0 {
				return fmt.Errorf("bench needs root: it creates network namespaces")
			}
			if configs != "" {
				opts.Configs = strings.Split(configs, ",")
			}
			if frames != "" {
				opts.Frames = strings.Split(frames, ",")
			}
			opts.Lab = perf.LabRealWire
			if legacy {
				opts.Lab = perf.LabLegacy
			}
			opts.UDP = !noUDP
			// Progress on stderr, so stdout holds only the report.
			opts.Out = cmd.ErrOrStderr()
			if verbose {
				opts.DaemonLog = cmd.ErrOrStderr()
			}
			report, err := perf.RunBench(cmd.Context(), opts)
			if report != nil && svgPath != "" {
				if serr := writeSVG(report, svgPath); serr != nil {
					return serr
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "chart written to %s\n", svgPath)
			}
			if report != nil {
				if asJSON {
					enc := json.NewEncoder(cmd.OutOrStdout())
					enc.SetIndent("", "  ")
					if jerr := enc.Encode(report); jerr != nil {
						return jerr
					}
				} else {
					fmt.Fprintln(cmd.OutOrStdout())
					if werr := report.WriteText(cmd.OutOrStdout()); werr != nil {
						return werr
					}
				}
			}
			if err != nil {
				return err
			}
			if failed := report.Failed(); len(failed) > 0 {
				return fmt.Errorf("configurations failed: %s", strings.Join(failed, ", "))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.BinDir, "bin", "bin", "directory holding xdpsecd")
	f.StringVar(&configs, "configs", "", "comma-separated configurations to run (default all: "+strings.Join(perf.BenchConfigs(), ",")+")")
	f.IntVar(&opts.Seconds, "seconds", perf.DefaultBenchSeconds, "length of each TCP transfer in seconds")
	f.BoolVar(&noUDP, "no-udp", false, "skip the RFC 2544 UDP runs")
	f.StringVar(&frames, "frames", strings.Join(perf.DefaultFrames(), ","), "frame sizes of the UDP runs, in bytes (64..1518) or imix")
	f.IntVar(&opts.UDPTrials, "udp-trials", perf.DefaultUDPTrials, "most UDP trials per frame size")
	f.IntVar(&opts.UDPTrialSeconds, "udp-trial-seconds", perf.DefaultUDPTrialSeconds, "length of each UDP trial in seconds")
	f.BoolVar(&legacy, "legacy-lab", false, "run the lab without GRO on any receiver (veth's default; the first benchmarks' lab)")
	f.StringVar(&svgPath, "svg", "xdpsec-bench.svg", "write the chart of the run to this file (empty: no chart)")
	f.StringVar(&opts.ProfileDir, "profile", "", "run xdpsecd with --cpu-profile DIR/gwA.pprof (and gwB) and print the top 15 functions")
	f.StringVar(&opts.WireGuardGo, "wireguard-go", "", "wireguard-go binary to use (default: go install "+perf.WireGuardGoModule+"@"+perf.WireGuardGoVersion+" into a temp dir)")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON instead of tables")
	f.BoolVarP(&verbose, "verbose", "v", false, "show the daemons' logs")
	return cmd
}
