// Command xdpsec-bench runs the lab: the demo now, benchmarks and reports as
// the data planes arrive. The logic lives in package perf.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
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
	root.AddCommand(demoCommand())
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
