package perf

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/xdpsec/xdpsec/internal/netlab"
	"github.com/xdpsec/xdpsec/internal/testbin"
)

// TestBenchTiny runs the bench in its smallest useful form (1-second TCP
// transfers, plain routing and xdpsec, no UDP search) so the command
// cannot rot between the times someone runs it for numbers.
func TestBenchTiny(t *testing.T) {
	netlab.RequireRoot(t)
	if testing.Short() {
		t.Skip("builds xdpsecd and two namespace labs")
	}
	bin := testbin.Build(t, "github.com/xdpsec/xdpsec/cmd/xdpsecd")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var progress, logs strings.Builder
	report, err := RunBench(ctx, BenchOptions{
		BinDir:    bin,
		Configs:   []string{ConfigPlain, ConfigXdpsec},
		Seconds:   1,
		Out:       &progress,
		DaemonLog: &logs,
	})
	if err != nil {
		t.Fatalf("bench: %v\nprogress:\n%s\ndaemon logs:\n%s", err, progress.String(), logs.String())
	}
	var text strings.Builder
	if err := report.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", text.String())
	if len(report.Results) != 2 {
		t.Fatalf("%d results, want 2", len(report.Results))
	}
	for _, res := range report.Results {
		if res.Error != "" || res.Skipped != "" {
			t.Errorf("%s: error %q, skipped %q\ndaemon logs:\n%s", res.Config, res.Error, res.Skipped, logs.String())
		}
		if res.TCPMbps <= 0 {
			t.Errorf("%s: TCP %.1f Mbit/s, want a rate", res.Config, res.TCPMbps)
		}
		if res.UDPMbps != 0 || len(res.UDPTrials) != 0 {
			t.Errorf("%s: UDP measured although the search was off: %+v", res.Config, res.UDPTrials)
		}
		// Torn down: no namespace of the configuration's lab is left.
		for _, role := range []string{"hostA", "gwA", "gwB", "hostB"} {
			if name := res.Lab + "-" + role; res.Lab == "" || netlab.Exists(name) {
				t.Errorf("%s: namespace %q still exists after the bench", res.Config, name)
			}
		}
	}
	plain, _ := report.Result(ConfigPlain)
	x, _ := report.Result(ConfigXdpsec)
	if plain.TCPvsPlain != 1 || x.TCPvsPlain <= 0 || x.TCPvsWireGuard != 0 {
		t.Errorf("ratios: plain %v, xdpsec %v to plain and %v to wireguard-go (not run); want 1, > 0, 0",
			plain.TCPvsPlain, x.TCPvsPlain, x.TCPvsWireGuard)
	}
	for _, want := range []string{"plain", "xdpsec", "1.00", "not measured"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if _, err := json.Marshal(report); err != nil {
		t.Errorf("report does not encode as JSON: %v", err)
	}
}

// link is a model of a path for the search: everything up to capacity
// Mbit/s arrives; an unlimited sender overloads it and gets flatOut
// through (a livelocked gateway may pass less than its capacity), unless
// the sender is too slow to overload it at all.
type link struct {
	capacity, flatOut float64
	senderBound       bool
	calls             int
}

func (l *link) trial(_ context.Context, offered float64) (UDPTrial, error) {
	l.calls++
	if offered == 0 {
		if l.senderBound {
			return UDPTrial{ReceivedMbps: l.flatOut}, nil
		}
		return UDPTrial{ReceivedMbps: l.flatOut, LossPercent: 30}, nil
	}
	if offered <= l.capacity {
		return UDPTrial{ReceivedMbps: offered}, nil
	}
	return UDPTrial{ReceivedMbps: l.capacity, LossPercent: 100 * (offered - l.capacity) / offered}, nil
}

func TestSearchUDP(t *testing.T) {
	for _, tc := range []struct {
		name              string
		capacity, flatOut float64
		senderBound       bool
		wantTrials        int
		lowerBound        bool
	}{
		{"capacity below the flat-out rate", 300, 400, false, 6, false},
		{"livelock: capacity above the flat-out rate", 500, 400, false, 6, false},
		{"capacity just under the flat-out rate", 780, 800, false, 6, false},
		// A gateway that collapses under a flat-out sender: doubling
		// finds the paced capacity within the budget.
		{"deep livelock", 700, 100, false, 6, false},
		// Too deep for six trials: the answer is flagged as a lower bound.
		{"budget runs out", 10000, 100, false, 6, true},
		// The sender cannot overload the path: the first trial is clean
		// and is the answer.
		{"sender-bound", 900, 900, true, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &link{capacity: tc.capacity, flatOut: tc.flatOut, senderBound: tc.senderBound}
			got, trials, lower, err := searchUDP(context.Background(), l.trial, DefaultUDPTrials, UDPLossLimitPercent)
			if err != nil {
				t.Fatal(err)
			}
			if lower != tc.lowerBound {
				t.Errorf("lower bound %v, want %v (trials %v)", lower, tc.lowerBound, trials)
			}
			if l.calls != tc.wantTrials || len(trials) != tc.wantTrials {
				t.Errorf("%d calls, %d trials recorded; want %d", l.calls, len(trials), tc.wantTrials)
			}
			// Six trials must land within 20 % under the capacity (unless
			// flagged as a lower bound) and never above it.
			if got > tc.capacity || (!lower && got < 0.8*tc.capacity) || got <= 0 {
				t.Errorf("found %.1f Mbit/s for a capacity of %.1f (trials %v)", got, tc.capacity, trials)
			}
			for _, tr := range trials {
				if tr.Pass != (tr.LossPercent < UDPLossLimitPercent) {
					t.Errorf("trial %v: pass flag disagrees with its loss", tr)
				}
			}
		})
	}
}

func TestSearchUDPError(t *testing.T) {
	boom := errors.New("iperf3 died")
	calls := 0
	trial := func(context.Context, float64) (UDPTrial, error) {
		calls++
		if calls == 3 {
			return UDPTrial{}, boom
		}
		return UDPTrial{ReceivedMbps: 100, LossPercent: 5}, nil
	}
	_, trials, _, err := searchUDP(context.Background(), trial, DefaultUDPTrials, UDPLossLimitPercent)
	if !errors.Is(err, boom) {
		t.Fatalf("error %v, want %v", err, boom)
	}
	if len(trials) != 2 {
		t.Errorf("%d trials kept, want the 2 before the failure", len(trials))
	}
}

func TestParseIperfUDP(t *testing.T) {
	// Trimmed from iperf3 3.12's -J output of a UDP client.
	const withReceived = `{"end":{"sum":{"bits_per_second":1705065834.1,"lost_packets":19311,"packets":304480,"lost_percent":6.342288491854966},
		"sum_received":{"bits_per_second":1194054388.5,"lost_percent":18.05}}}`
	tr, err := parseIperfUDP([]byte(withReceived))
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(tr.ReceivedMbps-1194.054) > 0.01 || math.Abs(tr.LossPercent-6.3423) > 0.001 {
		t.Errorf("got %+v", tr)
	}
	// Without sum_received the sender's rate less the loss is what arrived.
	tr, err = parseIperfUDP([]byte(`{"end":{"sum":{"bits_per_second":1e9,"packets":1000,"lost_packets":100,"lost_percent":10}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(tr.ReceivedMbps-900) > 1e-9 {
		t.Errorf("received %.3f Mbit/s, want 900", tr.ReceivedMbps)
	}
	for _, bad := range []string{
		`{"error":"unable to connect to server: Connection refused"}`,
		`{"end":{"sum":{"packets":0}}}`,
		`not json`,
	} {
		if _, err := parseIperfUDP([]byte(bad)); err == nil {
			t.Errorf("parseIperfUDP(%q) succeeded", bad)
		}
	}
}

func TestBenchReportRatiosAndText(t *testing.T) {
	r := &BenchReport{
		Date: time.Date(2026, 11, 27, 4, 0, 0, 0, time.UTC), Host: "lab", CPUs: 2, CPUModel: "test", Kernel: "6.x",
		Seconds: 10, UDP: true, UDPDatagram: UDPDatagramBytes, UDPLossLimit: UDPLossLimitPercent,
		Results: []BenchResult{
			{Config: ConfigPlain, TCPMbps: 1000, UDPMbps: 800, UDPTrials: []UDPTrial{{ReceivedMbps: 800, Pass: true}}},
			{Config: ConfigXdpsec, TCPMbps: 600, UDPMbps: 400, UDPTrials: []UDPTrial{{ReceivedMbps: 400, Pass: true}}},
			{Config: ConfigStrongSwan, Skipped: "charon missing"},
			{Config: ConfigWireGuard, TCPMbps: 300, UDPMbps: 200, UDPTrials: []UDPTrial{{ReceivedMbps: 200, Pass: true}}},
		},
	}
	r.computeRatios()
	x, _ := r.Result(ConfigXdpsec)
	if x.TCPvsPlain != 0.6 || x.TCPvsWireGuard != 2 || x.UDPvsPlain != 0.5 || x.UDPvsWireGuard != 2 {
		t.Errorf("xdpsec ratios %+v", x)
	}
	s, _ := r.Result(ConfigStrongSwan)
	if s.TCPvsPlain != 0 || s.TCPvsWireGuard != 0 {
		t.Errorf("skipped row got ratios %+v", s)
	}
	if got := r.GoalLine(); !strings.Contains(got, "met (2.00x)") || strings.Contains(got, "NOT") {
		t.Errorf("goal line %q", got)
	}
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"skipped: charon missing", "0.60", "2.00", "x wg-go", "2026-11-27 04:00 UTC"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, b.String())
		}
	}
	if len(r.Failed()) != 0 {
		t.Errorf("failed %v, want none (skipped is not failed)", r.Failed())
	}

	r.Results[1].TCPMbps = 400
	r.computeRatios()
	if got := r.GoalLine(); !strings.Contains(got, "NOT met (1.33x)") {
		t.Errorf("goal line %q, want NOT met (1.33x)", got)
	}
	r.Results[3] = BenchResult{Config: ConfigWireGuard, Error: "wg set failed"}
	r.computeRatios()
	if got := r.GoalLine(); !strings.Contains(got, "not measured") {
		t.Errorf("goal line %q, want not measured", got)
	}
	if f := r.Failed(); len(f) != 1 || f[0] != ConfigWireGuard {
		t.Errorf("failed %v, want [wireguard-go]", f)
	}
}

func TestRunBenchRejectsUnknownConfig(t *testing.T) {
	_, err := RunBench(context.Background(), BenchOptions{Configs: []string{"ipsec-tools"}})
	if err == nil || !strings.Contains(err.Error(), "unknown configuration") {
		t.Fatalf("error %v, want unknown configuration", err)
	}
}
