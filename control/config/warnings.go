package config

import "fmt"

// Warnings lists what is valid but likely to fail against common peers,
// for `xdpsecd --check` and the daemon's start-up log: each line names the
// connection, what is wrong and what to change.
func Warnings(cfg *Config) []string {
	var out []string
	for i := range cfg.Connections {
		c := &cfg.Connections[i]
		if len(c.Children) > 0 && !anyKE(c) {
			out = append(out, fmt.Sprintf("connection %s: esp_proposals %v name no key exchange group, so CHILD SA "+
				"rekeys carry no PFS; peers that require PFS (Libreswan by default, strongSwan with a group in its "+
				"esp_proposals) refuse every CREATE_CHILD_SA, and each child then lives only until its lifetime "+
				"ends (it comes back with a new IKE SA); add a group, e.g. aes256gcm16-x25519", c.Name, c.ESPProposalStrings))
		}
	}
	return out
}

func anyKE(c *Connection) bool {
	for _, p := range c.ESPProposals {
		if len(p.KE) > 0 {
			return true
		}
	}
	return false
}
