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
	"github.com/xdpsec/xdpsec/offload/killswitch"
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
			WAN:            dp.WAN,
			LAN:            dp.LAN,
			Workers:        dp.Workers,
			XDPMode:        dp.XDPMode,
			TUN:            dp.TUN,
			DecryptSharing: afxdp.Sharing(dp.DecryptSharing),
			LANOutput:      afxdp.LANOutput(dp.LANOutput),
			Instance:       instanceName(configPath),
			Logger:         log.Named("afxdp"),
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

// killSwitchPairs lists the selector pairs the kill switch fences: those
// of every tunnel-mode child in the configuration, whatever the
// connection's start_action, so that protected traffic is held from the
// start, before the first SA is negotiated, and while a connection is
// down. (The afxdp data plane refuses transport mode.)
func killSwitchPairs(cfg *config.Config) []killswitch.Pair {
	var pairs []killswitch.Pair
	for _, c := range cfg.Connections {
		for _, ch := range c.Children {
			if ch.Mode != "tunnel" {
				continue
			}
			for _, l := range ch.LocalTS {
				for _, r := range ch.RemoteTS {
					if l.Addr().Is4() == r.Addr().Is4() {
						pairs = append(pairs, killswitch.Pair{Local: l, Remote: r})
					}
				}
			}
		}
	}
	return pairs
}

// openKillSwitch installs the kill switch for cfg in afxdp mode (nil in
// the other modes: the xfrm planes' policies stay in the kernel when the
// daemon dies and keep protecting; mode none protects nothing by
// design). It replaces whatever a killed predecessor left, new entries
// first. held says that a fence was in place before (a predecessor's),
// which a failed start must then leave standing.
func openKillSwitch(cfg *config.Config, log *zap.Logger) (ks *killswitch.Switch, held bool, err error) {
	if cfg.Dataplane.Mode != "afxdp" {
		return nil, false, nil
	}
	if ks, err = killswitch.New(log); err != nil {
		return nil, false, err
	}
	if held, err = ks.Installed(); err != nil {
		ks.Close()
		return nil, false, err
	}
	n, err := ks.Sync(killSwitchPairs(cfg))
	if err != nil {
		ks.Close()
		return nil, held, err
	}
	if n > 0 {
		log.Info("kill switch: removed entries a previous run left", zap.Int("entries", n))
	}
	return ks, held, nil
}

// logFailClosed says in one line how protected traffic is held when the
// daemon is gone, and whether a restart will be hitless.
func logFailClosed(dp offload.Dataplane, cfg *config.Config, log *zap.Logger) {
	p, ok := dp.(interface{ Pins() (string, bool) })
	if !ok {
		return
	}
	dir, durable := p.Pins()
	fields := []zap.Field{zap.String("pins", dir), zap.Bool("hitless_restart", durable),
		zap.Int("kill_switch_pairs", len(killSwitchPairs(cfg)))}
	if durable {
		log.Info("fail closed: pins on a bpffs that outlives this process, so the XDP programs stay attached and a restart is hitless; "+
			"the kill switch also holds protected traffic while no daemon runs", fields...)
		return
	}
	log.Warn("fail closed: pins on a private bpffs that dies with this process (a private mount namespace, as under `ip netns exec`), "+
		"so a crash detaches the XDP programs and a restart is not hitless; the kill switch holds protected traffic while no daemon runs", fields...)
}
