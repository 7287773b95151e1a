package bpf

import (
	"strings"
	"testing"
)

// Every counter has its own label; a counter added in C without one here
// would show up as "wan_counter_N" in the metrics.
func TestCounterNames(t *testing.T) {
	seen := map[string]bool{}
	for c := range WanWanCounterWAN_COUNTER_MAX {
		n := c.String()
		if strings.HasPrefix(n, "wan_counter_") || seen[n] {
			t.Errorf("WAN counter %d: label %q missing or duplicate", c, n)
		}
		seen[n] = true
	}
	seen = map[string]bool{}
	for c := range LanLanCounterLAN_COUNTER_MAX {
		n := c.String()
		if strings.HasPrefix(n, "lan_counter_") || seen[n] {
			t.Errorf("LAN counter %d: label %q missing or duplicate", c, n)
		}
		seen[n] = true
	}
}

// Every counter has a fixture that moves it.
func TestFixturesCoverCounters(t *testing.T) {
	wan := map[WanWanCounter]bool{}
	for _, c := range wanCases() {
		for _, n := range c.count {
			wan[n] = true
		}
	}
	for c := range WanWanCounterWAN_COUNTER_MAX {
		if !wan[c] {
			t.Errorf("no WAN fixture counts %s", c)
		}
	}
	lan := map[LanLanCounter]bool{}
	for _, c := range lanCases() {
		for _, n := range c.count {
			lan[n] = true
		}
	}
	for c := range LanLanCounterLAN_COUNTER_MAX {
		if !lan[c] {
			t.Errorf("no LAN fixture counts %s", c)
		}
	}
}
