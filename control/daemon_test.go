package control

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/xdpsec/xdpsec/control/config"
	"github.com/xdpsec/xdpsec/offload"
	"github.com/xdpsec/xdpsec/offload/none"
)

// TestDataplaneEventsEnd: the event reader ends when the data plane
// closes its channel and when the daemon stops, whichever comes first.
func TestDataplaneEventsEnd(t *testing.T) {
	for _, tc := range []struct {
		name string
		stop func(dp *none.Dataplane, cancel context.CancelFunc)
	}{
		{"data plane closed", func(dp *none.Dataplane, _ context.CancelFunc) { dp.Close() }},
		{"daemon stopped", func(_ *none.Dataplane, cancel context.CancelFunc) { cancel() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dp := none.New()
			defer dp.Close()
			d := &Daemon{log: zap.NewNop(), dp: dp}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan struct{})
			go func() {
				defer close(done)
				d.dataplaneEvents(ctx)
			}()
			tc.stop(dp, cancel)
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("event reader still running")
			}
		})
	}
}

// lineageDP reports fixed lineage totals.
type lineageDP struct {
	*none.Dataplane
	children []offload.ChildCounters
	sas      []offload.SACounters
}

func (l lineageDP) Stats(context.Context) (offload.Stats, error) {
	return offload.Stats{Mode: "test", Children: l.children, SAs: l.sas, Drops: map[string]uint64{}}, nil
}

func TestChildMetricsFromLineage(t *testing.T) {
	dp := lineageDP{Dataplane: none.New(), children: []offload.ChildCounters{
		{Conn: "site-b", Child: "net", Dir: offload.In, Bytes: 1000, Packets: 10},
		{Conn: "site-b", Child: "net", Dir: offload.Out, Bytes: 2000, Packets: 20},
	}, sas: []offload.SACounters{
		{SPI: 0x1000, Dir: offload.In, OffloadInEffect: "crypto"},
		{SPI: 0x2000, Dir: offload.Out, OffloadInEffect: "crypto"},
		{SPI: 0x1001, Dir: offload.In},
	}}
	got := gather(t, newDataplaneCollector(dp))
	for key, want := range map[string]float64{
		"xdpsec_child_bytes_total,child=net,conn=site-b,direction=in":    1000,
		"xdpsec_child_bytes_total,child=net,conn=site-b,direction=out":   2000,
		"xdpsec_child_packets_total,child=net,conn=site-b,direction=in":  10,
		"xdpsec_child_packets_total,child=net,conn=site-b,direction=out": 20,
		"xdpsec_sa_offload,direction=in,offload=crypto":                  1,
		"xdpsec_sa_offload,direction=out,offload=crypto":                 1,
		"xdpsec_sa_offload,direction=in,offload=none":                    1,
	} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v (all: %v)", key, got[key], want, got)
		}
	}
}

func TestOffloadOf(t *testing.T) {
	for _, tc := range []struct{ in, out, want string }{
		{"", "", ""},
		{"crypto", "crypto", "crypto"},
		{"crypto", "", "in:crypto/out:"},
	} {
		if got := offloadOf(offload.SACounters{OffloadInEffect: tc.in}, offload.SACounters{OffloadInEffect: tc.out}); got != tc.want {
			t.Errorf("offloadOf(%q, %q) = %q, want %q", tc.in, tc.out, got, tc.want)
		}
	}
}

// TestIKEOptionsNeedRestart: the engine's options are fixed at start, so a
// reload that changes them is refused like any other ike change.
func TestIKEOptionsNeedRestart(t *testing.T) {
	base := config.Config{IKE: config.IKE{CookieThreshold: 1000, RetransmitTimeout: 4 * time.Second,
		RetransmitTries: 5, RetransmitBase: 1.8, RekeyGrace: 2 * time.Second}}
	for _, tc := range []struct {
		name   string
		change func(*config.IKE)
	}{
		{"retransmit_timeout", func(i *config.IKE) { i.RetransmitTimeout = time.Second }},
		{"retransmit_tries", func(i *config.IKE) { i.RetransmitTries = 3 }},
		{"retransmit_base", func(i *config.IKE) { i.RetransmitBase = 2 }},
		{"rekey_grace", func(i *config.IKE) { i.RekeyGrace = time.Second }},
	} {
		next := base
		tc.change(&next.IKE)
		if err := restartOnlyChanges(&base, &next); err == nil || !strings.Contains(err.Error(), "[ike]") {
			t.Errorf("%s changed: %v, want a refusal naming ike", tc.name, err)
		}
	}
	same := base
	if err := restartOnlyChanges(&base, &same); err != nil {
		t.Errorf("unchanged ike section refused: %v", err)
	}
}
