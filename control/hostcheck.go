package control

import (
	"errors"
	"fmt"
	"net"

	"github.com/xdpsec/xdpsec/control/config"
	"github.com/xdpsec/xdpsec/offload/xfrm"
)

// HostProblems checks the configuration against this host: what the schema
// cannot know, such as whether the named interfaces exist and whether this
// build has the chosen data plane. It returns every problem found.
func HostProblems(cfg *config.Config) []string {
	var problems []string
	if err := CheckSupported(cfg); err != nil {
		problems = append(problems, err.Error())
	}
	if cfg.Dataplane.Mode == "none" {
		return problems
	}
	if m := cfg.Dataplane.Mode; m == "xfrm" || m == "xfrm-offload" {
		// Only a definite no: without the privileges to probe, the
		// daemon's own start-up says more.
		if err := xfrm.Probe(); errors.Is(err, xfrm.ErrNoESP) {
			problems = append(problems, fmt.Sprintf("dataplane.mode %s: %v", m, err))
		}
	}
	if cfg.Dataplane.TUN != "" && cfg.Dataplane.Mode != "afxdp" {
		problems = append(problems, fmt.Sprintf("dataplane.tun: the TUN port exists only in mode afxdp, not %s", cfg.Dataplane.Mode))
	}
	// The TUN port is created by the daemon, so only the NICs must exist.
	for _, iface := range []struct{ key, name string }{
		{"dataplane.wan", cfg.Dataplane.WAN},
		{"dataplane.lan", cfg.Dataplane.LAN},
		{"dataplane.offload.dev", cfg.Dataplane.Offload.Dev},
	} {
		if iface.name == "" {
			continue
		}
		if _, err := net.InterfaceByName(iface.name); err != nil {
			problems = append(problems, fmt.Sprintf("%s: interface %q does not exist on this host", iface.key, iface.name))
		}
	}
	return problems
}
