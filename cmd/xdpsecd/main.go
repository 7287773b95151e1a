// Command xdpsecd is the xdpsec IPsec gateway daemon. It only wires things
// together: flags, logger, signals; the logic lives in package control.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/xdpsec/xdpsec/control"
	"github.com/xdpsec/xdpsec/control/config"
)

const defaultConfig = "/etc/xdpsec/xdpsec.yaml"

func main() {
	if err := newRootCommand(os.Stdout, os.Stderr).ExecuteContext(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "xdpsecd:", err)
		os.Exit(1)
	}
}

type flags struct {
	configPath  string
	check       bool
	logLevel    string
	logFormat   string
	cpuProfile  string
	removeFence bool
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	var f flags
	cmd := &cobra.Command{
		Use:   "xdpsecd",
		Short: "xdpsec IPsec gateway daemon",
		Long: `xdpsecd negotiates IKEv2 with the peers in its configuration file and
programs the chosen data plane. It runs in the foreground and logs to
standard error.

Signals: SIGTERM/SIGINT stop it cleanly; SIGHUP re-reads the configuration
file (an invalid file is reported and the running configuration kept).

Use --check to validate a configuration file and exit, like nginx -t.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       control.Version(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.check {
				return runCheck(stdout, f.configPath)
			}
			if f.removeFence {
				return runRemoveKillSwitch(cmd.Context(), stdout, f.configPath)
			}
			return runDaemon(cmd.Context(), stderr, f)
		},
	}
	cmd.Flags().StringVarP(&f.configPath, "config", "c", defaultConfig, "configuration file")
	cmd.Flags().BoolVar(&f.check, "check", false, "validate the configuration file and exit (0 = valid)")
	cmd.Flags().StringVar(&f.logLevel, "log-level", "", "log level (debug, info, warn, error); overrides log.level")
	cmd.Flags().StringVar(&f.logFormat, "log-format", "", "log format (console, json); overrides log.format")
	cmd.Flags().BoolVar(&f.removeFence, "remove-kill-switch", false,
		"take down the kill switch a stopped daemon kept (dataplane.fail_closed: always) and exit; for uninstalling")
	cmd.Flags().StringVar(&f.cpuProfile, "cpu-profile", "", "write a CPU profile (pprof) of the whole run to this file, for performance work")
	return cmd
}

// runCheck validates everything that can be known before starting and lists
// every problem, so an operator fixes a file in one pass.
func runCheck(out io.Writer, path string) error {
	cfg, err := config.Load(path)
	if err != nil {
		return fmt.Errorf("configuration %s is invalid:\n%s", path, indent(err.Error()))
	}
	if problems := control.HostProblems(cfg); len(problems) > 0 {
		return fmt.Errorf("configuration %s cannot run on this host:\n%s", path, indent(strings.Join(problems, "\n")))
	}
	fmt.Fprintf(out, "configuration %s is valid (%d connections, data plane %s)\n",
		path, len(cfg.Connections), cfg.Dataplane.Mode)
	for _, w := range config.Warnings(cfg) {
		fmt.Fprintf(out, "warning: %s\n", w)
	}
	return nil
}

func runDaemon(ctx context.Context, stderr io.Writer, f flags) error {
	cfg, err := config.Load(f.configPath)
	if err != nil {
		return fmt.Errorf("configuration %s is invalid:\n%s", f.configPath, indent(err.Error()))
	}
	levelName, levelPinned := cfg.Log.Level, f.logLevel != ""
	if levelPinned {
		levelName = f.logLevel
	}
	level, err := control.ParseLevel(levelName)
	if err != nil {
		return err
	}
	format := cfg.Log.Format
	if f.logFormat != "" {
		format = f.logFormat
	}
	atomicLevel := zap.NewAtomicLevelAt(level)
	log, err := control.NewLogger(stderr, atomicLevel, format)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()

	if problems := control.HostProblems(cfg); len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	d, err := control.New(cfg, control.Options{
		ConfigPath:  f.configPath,
		Logger:      log,
		Level:       atomicLevel,
		LevelPinned: levelPinned,
	})
	if err != nil {
		return err
	}

	if f.cpuProfile != "" {
		stopProfile, err := startCPUProfile(f.cpuProfile)
		if err != nil {
			return err
		}
		defer stopProfile()
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP received, reloading", zap.String("config", f.configPath))
				// Reload logs its own outcome; the error needs no second line.
				_, _ = d.Reload(ctx)
			}
		}
	}()
	return d.Run(ctx)
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ")
}

// startCPUProfile profiles the daemon until the returned function runs at
// exit; benchmarks use it to say where the time goes.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
