package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"go.uber.org/zap"

	"github.com/xdpsec/xdpsec/control/api"
	"github.com/xdpsec/xdpsec/control/config"
	"github.com/xdpsec/xdpsec/offload/killswitch"
)

// runRemoveKillSwitch takes down the fence that a daemon stopped with
// dataplane.fail_closed: always left in this network namespace. It
// refuses while the daemon of the configuration file runs, whose fence
// it would tear from under it.
func runRemoveKillSwitch(ctx context.Context, out io.Writer, path string) error {
	socket := api.DefaultSocket
	if cfg, err := config.Load(path); err == nil {
		socket = cfg.API.Socket
	}
	_, err := api.NewClient(socket).Status(ctx)
	if err == nil {
		return fmt.Errorf("xdpsecd is running (API socket %s): stop it first; a running daemon keeps its own kill switch", socket)
	}
	var ue *api.UnreachableError
	if !errors.As(err, &ue) {
		return fmt.Errorf("cannot tell whether xdpsecd runs: %w", err)
	}
	ks, err := killswitch.New(zap.NewNop())
	if err != nil {
		return fmt.Errorf("kill switch: %w", err)
	}
	defer ks.Close()
	held, err := ks.Installed()
	if err != nil {
		return fmt.Errorf("kill switch: %w", err)
	}
	if !held {
		fmt.Fprintln(out, "no kill switch in place")
		return nil
	}
	if err := ks.Remove(); err != nil {
		return fmt.Errorf("kill switch: %w", err)
	}
	fmt.Fprintln(out, "kill switch removed: protected destinations follow the kernel's routes again")
	return nil
}
