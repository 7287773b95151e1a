package control

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"path/filepath"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/xdpsec/xdpsec/control/config"
	"github.com/xdpsec/xdpsec/offload"
	"github.com/xdpsec/xdpsec/offload/afxdp"
	"github.com/xdpsec/xdpsec/offload/frontdoor"
	"github.com/xdpsec/xdpsec/offload/none"
	"github.com/xdpsec/xdpsec/offload/xfrm"
)

// supportedModes lists the data planes this build can run. Modes the config
// schema knows but the build lacks are refused at startup rather than
// silently ignored: an operator must never believe traffic is protected when
// nothing processes it.
func supportedModes() []string { return []string{"afxdp", "xfrm", "xfrm-offload", "none"} }

// openDataplane builds the configured data plane in the daemon's network
// namespace. ctx lives as long as the daemon.
func openDataplane(ctx context.Context, cfg *config.Config, configPath string, log *zap.Logger) (offload.Dataplane, error) {
	dp := cfg.Dataplane
	switch dp.Mode {
	case "none":
		return none.New(), nil
	case "afxdp":
		d, err := afxdp.New(ctx, afxdp.Options{
			WAN:      dp.WAN,
			LAN:      dp.LAN,
			Workers:  dp.Workers,
			XDPMode:  dp.XDPMode,
			TUN:      dp.TUN,
			Instance: instanceName(configPath),
			Logger:   log.Named("afxdp"),
		})
		if err != nil {
			return nil, fmt.Errorf("afxdp data plane: %w", err)
		}
		return d, nil
	case "xfrm", "xfrm-offload":
		return openKernel(cfg, configPath, log)
	}
	return nil, fmt.Errorf("dataplane.mode %q is not available in this build", dp.Mode)
}

// openKernel builds the kernel data plane (XFRM, optionally offloaded to
// the NIC) with the XDP front door on the WAN port. A kernel without ESP
// is refused at once: the daemon would otherwise negotiate SAs that no
// one can install.
func openKernel(cfg *config.Config, configPath string, log *zap.Logger) (offload.Dataplane, error) {
	dp := cfg.Dataplane
	if err := xfrm.Probe(); err != nil {
		return nil, fmt.Errorf("%s data plane: %w", dp.Mode, err)
	}
	opts := xfrm.Options{Logger: log.Named("xfrm")}
	if dp.Mode == "xfrm-offload" {
		opts.Offload = &xfrm.OffloadConfig{Dev: dp.Offload.Dev, Type: dp.Offload.Type, Required: dp.Offload.Required}
	}
	k, err := xfrm.New(opts)
	if err != nil {
		return nil, fmt.Errorf("%s data plane: %w", dp.Mode, err)
	}
	d, err := frontdoor.New(k, frontdoor.Options{
		WAN: dp.WAN, XDPMode: dp.XDPMode, Instance: instanceName(configPath),
		Steering: frontdoor.Steering(dp.CPUSteering), CPUs: dp.Workers,
		Logger: log.Named("frontdoor"),
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("%s data plane: %w", dp.Mode, err), k.Close())
	}
	return d, nil
}

// instanceName names this daemon's bpffs pins. Several daemons run on one
// host, one per network namespace (the lab does this), and bpffs is shared
// by all of them: the namespace's inode and the configuration file keep
// their pins apart, and stay stable across restarts so a restarted daemon
// finds its own maps again.
func instanceName(configPath string) string {
	var st unix.Stat_t
	ns := uint64(0)
	if unix.Stat("/proc/thread-self/ns/net", &st) == nil {
		ns = st.Ino
	}
	abs, err := filepath.Abs(configPath)
	if err != nil {
		abs = configPath
	}
	sum := sha256.Sum256([]byte(abs))
	return fmt.Sprintf("ns%d-%x", ns, sum[:4])
}
