package control

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xdpsec/xdpsec/offload"
	"github.com/xdpsec/xdpsec/offload/none"
)

// xdpDP is a data plane with an XDP front door: workers' drops from
// Stats, the programs' counters from XDPCounters.
type xdpDP struct {
	*none.Dataplane
	drops    map[string]uint64
	wan, lan map[string]uint64
}

func (x xdpDP) Stats(context.Context) (offload.Stats, error) {
	return offload.Stats{Mode: "test", Drops: x.drops}, nil
}
func (x xdpDP) XDPCounters() (wan, lan map[string]uint64, err error) { return x.wan, x.lan, nil }
func (x xdpDP) WorkerPackets() []uint64                              { return []uint64{7} }
func (x xdpDP) SocketCounters() (map[string]uint64, error)           { return nil, nil }
func (x xdpDP) WorkerEvents() map[string]uint64                      { return map[string]uint64{"csum_completed": 6} }

func gather(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			got[key] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return got
}

// TestDropsOneVocabulary: a forged ESP packet dropped by XDP counts in
// xdpsec_dataplane_drops_total like one a worker drops, keepalives are no
// drop there, and counters that are not verdicts stay out of the verdicts.
func TestDropsOneVocabulary(t *testing.T) {
	dp := xdpDP{Dataplane: none.New(),
		drops: map[string]uint64{"unknown_spi": 2, "replay": 1},
		wan: map[string]uint64{"drop_unknown_spi": 5, "drop_keepalive": 9, "drop_malformed": 1, "redirect_xsk": 100,
			"drop_peer": 2, "drop_encap": 1},
		lan: map[string]uint64{"drop_xsk_miss": 3, "drop_ext_limit": 1, "mss_clamped": 4, "redirect_xsk": 50, "event_trap": 1},
	}
	got := gather(t, newDataplaneCollector(dp))
	want := map[string]float64{
		"xdpsec_dataplane_drops_total,dataplane=none,reason=unknown_spi": 7,
		"xdpsec_dataplane_drops_total,dataplane=none,reason=replay":      1,
		"xdpsec_dataplane_drops_total,dataplane=none,reason=malformed":   2,
		"xdpsec_dataplane_drops_total,dataplane=none,reason=no_socket":   3,
		"xdpsec_xdp_verdicts_total,interface=wan,verdict=drop_keepalive": 9,
		"xdpsec_xdp_verdicts_total,interface=lan,verdict=redirect_xsk":   50,
		"xdpsec_xdp_events_total,event=mss_clamped,interface=lan":        4,
		"xdpsec_xdp_events_total,event=event_trap,interface=lan":         1,
		"xdpsec_dataplane_drops_total,dataplane=none,reason=address":     2,
		"xdpsec_dataplane_drops_total,dataplane=none,reason=encap":       1,
		"xdpsec_afxdp_worker_events_total,event=csum_completed":          6,
	}
	for key, w := range want {
		if got[key] != w {
			t.Errorf("%s = %v, want %v", key, got[key], w)
		}
	}
	for key := range got {
		if strings.Contains(key, "reason=keepalive") || strings.Contains(key, "verdict=mss_clamped") || strings.Contains(key, "verdict=event_") ||
			strings.Contains(key, "reason=csum_completed") {
			t.Errorf("%s: not where it belongs", key)
		}
	}
}

// TestEveryXDPDropHasAReason keeps the front door's drops in the one
// vocabulary as verdicts are added to the programs.
func TestEveryXDPDropHasAReason(t *testing.T) {
	for _, v := range []string{"drop_unknown_spi", "drop_xsk_miss", "drop_malformed", "drop_ike_ratelimit",
		"drop_ext_limit", "drop_bad_action", "drop_discard", "drop_trap"} {
		if r := xdpDropReason(v); r == "" || strings.HasPrefix(r, "drop_") {
			t.Errorf("xdpDropReason(%q) = %q", v, r)
		}
	}
}
