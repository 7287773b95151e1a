package perf

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/xdpsec/xdpsec/internal/netlab"
	"github.com/xdpsec/xdpsec/internal/testbin"
	"github.com/xdpsec/xdpsec/perf/loadgen"
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
		if len(res.Frames) != 0 {
			t.Errorf("%s: UDP measured although the runs were off: %+v", res.Config, res.Frames)
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
// frames/s arrives; an unlimited sender overloads it and gets flatOut
// through (a livelocked gateway may pass less than its capacity), unless
// the sender is too slow to overload it at all.
type link struct {
	capacity, flatOut float64
	senderBound       bool
	// senderMax is the most a paced sender reaches (0: any rate).
	senderMax float64
	calls     int
}

// result is a one-second trial that offered offered/s and delivered
// received/s.
func result(offered, received float64) loadgen.Result {
	r := loadgen.Result{OfferedPPS: offered, Sent: uint64(max(offered, received)), Received: uint64(received),
		SentPPS: max(offered, received), ReceivedPPS: received, Latency: loadgen.Latency{P99: time.Duration(received)}}
	r.Lost = r.Sent - r.Received
	r.LossPercent = 100 * float64(r.Lost) / float64(r.Sent)
	return r
}

func (l *link) trial(_ context.Context, offered float64) (loadgen.Result, error) {
	l.calls++
	if offered == 0 {
		if l.senderBound {
			return result(l.flatOut, l.flatOut), nil
		}
		return result(l.flatOut/0.7, l.flatOut), nil
	}
	if l.senderMax > 0 && offered > l.senderMax {
		r := result(l.senderMax, min(l.senderMax, l.capacity))
		r.OfferedPPS = offered
		return r, nil
	}
	if offered <= l.capacity {
		return result(offered, offered), nil
	}
	return result(offered, l.capacity), nil
}

func TestSearchRate(t *testing.T) {
	for _, tc := range []struct {
		name              string
		capacity, flatOut float64
		senderBound       bool
		wantTrials        int
		lowerBound        bool
		senderMax         float64
	}{
		{"capacity below the flat-out rate", 300e3, 400e3, false, 6, false, 0},
		{"livelock: capacity above the flat-out rate", 500e3, 400e3, false, 6, false, 0},
		{"capacity just under the flat-out rate", 780e3, 800e3, false, 6, false, 0},
		// A gateway that collapses under a flat-out sender: doubling
		// finds the paced capacity within the budget.
		{"deep livelock", 700e3, 100e3, false, 6, false, 0},
		// Too deep for six trials: the answer is flagged as a lower bound.
		{"budget runs out", 10000e3, 100e3, false, 6, true, 0},
		// The sender cannot overload the path: the first trial is clean
		// and is the answer.
		{"sender-bound", 900e3, 900e3, true, 1, false, 0},
		// A paced sender that tops out at 300k/s, below the capacity,
		// while the flat-out one is burstier and loses: the search stops
		// at the first trial the sender could not drive, sender-bound.
		{"paced sender tops out", 500e3, 250e3, true, 3, false, 300e3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &link{capacity: tc.capacity, flatOut: tc.flatOut, senderBound: tc.senderBound && tc.senderMax == 0, senderMax: tc.senderMax}
			fr, err := searchRate(context.Background(), l.trial, DefaultUDPTrials, ZeroLossPercent)
			if err != nil {
				t.Fatal(err)
			}
			got := fr.ZeroLossPPS
			if fr.LowerBound != tc.lowerBound {
				t.Errorf("lower bound %v, want %v (trials %v)", fr.LowerBound, tc.lowerBound, fr.Trials)
			}
			if l.calls != tc.wantTrials || len(fr.Trials) != tc.wantTrials {
				t.Errorf("%d calls, %d trials recorded; want %d", l.calls, len(fr.Trials), tc.wantTrials)
			}
			// Six trials must land within 20 % under the capacity (unless
			// flagged as a lower bound) and never above it.
			if bound := min(tc.capacity, max(tc.senderMax, tc.flatOut)); got > tc.capacity || (!fr.LowerBound && got < 0.8*bound) || got <= 0 {
				t.Errorf("found %.0f/s for a capacity of %.0f/s (trials %v)", got, tc.capacity, fr.Trials)
			}
			if fr.SenderBound != tc.senderBound {
				t.Errorf("sender-bound %v, want %v", fr.SenderBound, tc.senderBound)
			}
			if fr.UnlimitedPPS != tc.flatOut {
				t.Errorf("unlimited %.0f/s, want the flat-out %.0f/s", fr.UnlimitedPPS, tc.flatOut)
			}
			// The latency reported is the best passing trial's.
			if fr.Latency.P99 != time.Duration(got) {
				t.Errorf("latency %v is not the zero-loss trial's (%v)", fr.Latency.P99, time.Duration(got))
			}
		})
	}
}

func TestSearchRateError(t *testing.T) {
	boom := errors.New("sender died")
	calls := 0
	trial := func(context.Context, float64) (loadgen.Result, error) {
		calls++
		if calls == 3 {
			return loadgen.Result{}, boom
		}
		return result(100e3, 95e3), nil
	}
	fr, err := searchRate(context.Background(), trial, DefaultUDPTrials, ZeroLossPercent)
	if !errors.Is(err, boom) {
		t.Fatalf("error %v, want %v", err, boom)
	}
	if len(fr.Trials) != 2 || fr.ZeroLossPPS != 0 {
		t.Errorf("%d trials kept (want the 2 before the failure), zero-loss %.0f (want 0: none passed)", len(fr.Trials), fr.ZeroLossPPS)
	}
}

// TestFrameRunsThroughLab runs the generator's search over a real lab
// with plain routing: every frame profile finds a zero-loss rate, with
// latencies, and the GRO lab really has GRO on its receivers.
func TestFrameRunsThroughLab(t *testing.T) {
	netlab.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lab, err := netlab.NewLab(ctx, netlab.LabOptions{Prefix: netlab.RandomPrefix("xf"), GRO: true})
	if err != nil {
		t.Fatal(err)
	}
	defer lab.Close()
	for _, n := range []*netlab.NS{lab.GwA, lab.HostB} {
		for _, ifname := range []string{netlab.HostIf, netlab.LANIf, netlab.WANIf} {
			if n == lab.GwA && ifname == netlab.HostIf || n == lab.HostB && ifname != netlab.HostIf {
				continue
			}
			if on, err := n.GRO(ifname); err != nil || !on {
				t.Errorf("%s %s: GRO on=%v (%v), want on", n.Name, ifname, on, err)
			}
		}
	}
	if err := waitPath(ctx, lab, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	b := &bench{opts: BenchOptions{Frames: []string{"64", "imix"}, UDPTrials: 3, UDPTrialSeconds: 1}.withDefaults()}
	frames, err := b.frameRuns(ctx, lab)
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) != 2 {
		t.Fatalf("%d frame results, want 2", len(frames))
	}
	for _, f := range frames {
		t.Logf("%s: zero-loss %.0f/s (%.1f Mbit/s), unlimited %.0f/s, latency %+v; %s", f.Profile, f.ZeroLossPPS, f.ZeroLossMbps, f.UnlimitedPPS, f.Latency, trialsLine(f))
		if f.ZeroLossPPS <= 0 || f.UnlimitedPPS <= 0 || f.Latency.Samples == 0 || f.Latency.P50 <= 0 || len(f.Trials) == 0 {
			t.Errorf("%s: no zero-loss rate through plain routing: %+v", f.Profile, f)
		}
	}
}

func TestBenchReportRatiosAndText(t *testing.T) {
	frame := func(pps float64) []FrameResult {
		return []FrameResult{{Profile: "64", ZeroLossPPS: pps, ZeroLossMbps: pps * 64 * 8 / 1e6, UnlimitedPPS: 2 * pps,
			Latency: loadgen.Latency{Samples: 1000, P50: 100 * time.Microsecond, P99: time.Millisecond},
			Trials:  []loadgen.Result{result(0, 2*pps), result(pps, pps)}}}
	}
	r := &BenchReport{
		Date: time.Date(2026, 11, 27, 4, 0, 0, 0, time.UTC), Host: "lab", CPUs: 2, CPUModel: "test", Kernel: "6.x",
		Lab: LabRealWire, Seconds: 10, Frames: []string{"64"}, ZeroLossPercent: ZeroLossPercent, TrialSeconds: 2,
		Results: []BenchResult{
			{Config: ConfigPlain, TCPMbps: 1000, Frames: frame(800e3)},
			{Config: ConfigXdpsec, TCPMbps: 600, Frames: frame(400e3)},
			{Config: ConfigStrongSwan, Skipped: "charon missing"},
			{Config: ConfigWireGuard, TCPMbps: 300, Frames: frame(200e3)},
		},
	}
	r.computeRatios()
	x, _ := r.Result(ConfigXdpsec)
	xf, _ := x.Frame("64")
	if x.TCPvsPlain != 0.6 || x.TCPvsWireGuard != 2 || xf.VsPlain != 0.5 || xf.VsWG != 2 {
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
	for _, want := range []string{"skipped: charon missing", "0.60", "2.00", "x wg-go", "2026-11-27 04:00 UTC",
		"real wire", "400k pps", "205", "0.50", "max -> 800k"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, b.String())
		}
	}
	var svg strings.Builder
	if err := r.WriteSVG(&svg); err != nil {
		t.Fatal(err)
	}
	checkSVG(t, svg.String(), map[string]int{ConfigPlain: 3, ConfigXdpsec: 3, ConfigWireGuard: 3, ConfigStrongSwan: 0})
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

// checkSVG parses the chart as XML and counts the bars of each
// configuration (their tooltips name it).
func checkSVG(t *testing.T, svg string, bars map[string]int) {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(svg))
	got := map[string]int{}
	inBar := false
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("chart is not well-formed XML: %v\n%s", err, svg)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			inBar = inBar || el.Name.Local == "rect"
		case xml.EndElement:
			if el.Name.Local == "rect" {
				inBar = false
			}
		case xml.CharData:
			if config, _, ok := strings.Cut(string(el), ":"); ok && inBar {
				got[config]++
			}
		}
	}
	for config, n := range bars {
		if got[config] != n {
			t.Errorf("chart has %d bars of %s, want %d", got[config], config, n)
		}
	}
	// TCP, one frame panel and its latency: three panels, strongSwan's n/a in each.
	if n := strings.Count(svg, ">n/a<"); n != 3 {
		t.Errorf("chart has %d n/a bars, want 3 (strongSwan skipped in each panel)", n)
	}
}
