package perf

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/xdpsec/xdpsec/internal/netlab"
	"github.com/xdpsec/xdpsec/perf/loadgen"
)

// RFC 2544-style runs: per frame size, the highest rate that loses less
// than ZeroLossPercent, and the latency at that rate.
const (
	// ZeroLossPercent is the loss a "zero-loss" trial may have: one
	// datagram in 10^4, so that one scheduling hiccup of a shared CPU in a
	// 2-second trial does not decide the result, while any real queue
	// overflow does.
	ZeroLossPercent = 0.01
	// IMIXLargeFrame is IMIX's large frame in the tunnel lab: the largest
	// frame that every tunnel carries without fragmenting (kernel-libipsec
	// fixes its TUN MTU at 1400, see bench_configs.go).
	IMIXLargeFrame = 1400
	// frameDrain is how long a trial waits for late datagrams: the lab's
	// queues hold milliseconds, RFC 2544's 2 s would only add time.
	frameDrain = 300 * time.Millisecond
	// senderShortfall: a paced trial whose sender reached less than this
	// share of the offered rate measured the sender, not the path.
	senderShortfall = 0.9
	// framePort is the receiver's UDP port on hostB.
	framePort = 47100
)

// DefaultFrames are the frame sizes the bench measures: small, medium and
// the largest the tunnels carry, and IMIX.
func DefaultFrames() []string { return []string{"64", "512", "1400", "imix"} }

// FrameResult is one frame size's outcome.
type FrameResult struct {
	Profile string `json:"profile"`
	// ZeroLossPPS is the received frame rate of the best passing trial;
	// ZeroLossMbps the same in Mbit/s of frames. 0 when no trial passed.
	ZeroLossPPS  float64 `json:"zero_loss_pps"`
	ZeroLossMbps float64 `json:"zero_loss_mbps"`
	// UnlimitedPPS is what arrived from a sender going flat out: what the
	// path carries when overloaded.
	UnlimitedPPS float64 `json:"unlimited_pps"`
	// LowerBound: every paced trial passed, so the trial budget ran out
	// before the search found a failing rate above ZeroLossPPS.
	LowerBound bool `json:"lower_bound,omitempty"`
	// SenderBound: a trial lost nothing while the sender could not offer
	// more (the flat-out one, or a paced one that fell short of its rate
	// by more than senderShortfall): the sender, not the path, set the
	// rate, and the path carries at least ZeroLossPPS.
	SenderBound bool `json:"sender_bound,omitempty"`
	// Latency is the one-way latency at the zero-loss rate.
	Latency loadgen.Latency  `json:"latency"`
	Trials  []loadgen.Result `json:"trials"`
	VsPlain float64          `json:"vs_plain,omitempty"`
	VsWG    float64          `json:"vs_wireguard_go,omitempty"`
	// Error says why the search stopped early.
	Error string `json:"error,omitempty"`
}

// trialFunc runs one trial at offered frames per second (0 = unlimited).
type trialFunc func(ctx context.Context, offeredPPS float64) (loadgen.Result, error)

// searchRate looks for the highest offered rate that loses less than
// lossLimit percent, in the spirit of RFC 2544's throughput test but
// bounded to maxTrials trials:
//
//  1. an unlimited trial: what arrives when the sender goes flat out is
//     close to the capacity (if even that trial is clean, the sender is
//     the bottleneck and it is the answer);
//  2. a trial just under that rate, where the answer usually is;
//  3. doubling while every trial passes (a gateway that livelocks under a
//     flat-out sender passes far more at a paced rate), then bisection
//     between the highest passing and the lowest failing rate.
//
// The result holds every trial made; the best passing one gives the rate
// and the latency.
func searchRate(ctx context.Context, trial trialFunc, maxTrials int, lossLimit float64) (FrameResult, error) {
	var fr FrameResult
	best := -1
	run := func(offered float64) (loadgen.Result, error) {
		r, err := trial(ctx, offered)
		if err != nil {
			return r, err
		}
		fr.Trials = append(fr.Trials, r)
		if r.LossPercent < lossLimit && r.Received > 0 && (best < 0 || r.ReceivedPPS > fr.Trials[best].ReceivedPPS) {
			best = len(fr.Trials) - 1
		}
		return r, nil
	}
	finish := func(lower bool) FrameResult {
		if best >= 0 {
			fr.ZeroLossPPS = fr.Trials[best].ReceivedPPS
			fr.Latency = fr.Trials[best].Latency
		}
		fr.LowerBound = lower
		return fr
	}
	probe, err := run(0)
	if err != nil {
		return fr, err
	}
	fr.UnlimitedPPS = probe.ReceivedPPS
	if probe.LossPercent < lossLimit {
		fr.SenderBound = true
		return finish(false), nil
	}
	if probe.ReceivedPPS <= 0 {
		return fr, errors.New("nothing arrived at full rate")
	}
	// lo is the highest passing rate, hi the lowest failing one; hi stays
	// 0 (unknown) while every paced trial passes, because a paced sender
	// leaves the gateways more CPU than one going flat out, and the
	// answer may lie above what the probe received.
	lo, hi := 0.0, 0.0
	next := probe.ReceivedPPS * 0.95
	for len(fr.Trials) < maxTrials {
		r, err := run(next)
		if err != nil {
			return finish(false), err
		}
		if r.LossPercent < lossLimit {
			lo = next
			if r.SentPPS < senderShortfall*next {
				// The sender cannot offer more: higher rates would
				// measure the sender again.
				fr.SenderBound = true
				return finish(false), nil
			}
		} else {
			hi = next
		}
		if hi == 0 {
			next = lo * 2
		} else {
			next = (lo + hi) / 2
		}
	}
	return finish(hi == 0 && best >= 0), nil
}

// frameRuns runs the search for each of the bench's frame profiles from
// hostA to hostB.
func (b *bench) frameRuns(ctx context.Context, lab *netlab.Lab) ([]FrameResult, error) {
	pair, err := loadgen.Open(lab.HostA, lab.HostB, netip.AddrPortFrom(lab.V4.HostB, framePort))
	if err != nil {
		return nil, err
	}
	defer pair.Close()
	var out []FrameResult
	for _, name := range b.opts.Frames {
		prof, err := loadgen.ParseProfile(name, IMIXLargeFrame)
		if err != nil {
			return out, err
		}
		trial := func(ctx context.Context, pps float64) (loadgen.Result, error) {
			return pair.Run(ctx, loadgen.Trial{Profile: prof, PPS: pps,
				Duration: time.Duration(b.opts.UDPTrialSeconds) * time.Second, Drain: frameDrain})
		}
		fr, err := searchRate(ctx, trial, b.opts.UDPTrials, ZeroLossPercent)
		fr.Profile = prof.Name
		fr.ZeroLossMbps = prof.Mbps(fr.ZeroLossPPS)
		if err != nil {
			fr.Error = err.Error()
			out = append(out, fr)
			if ctx.Err() != nil {
				return out, err
			}
			continue
		}
		fmt.Fprintf(b.opts.Out, "    %-5s zero-loss %s (%s), unlimited %s, p99 %s\n", prof.Name,
			ppsCell(fr.ZeroLossPPS, fr.LowerBound), mbps(fr.ZeroLossMbps), ppsCell(fr.UnlimitedPPS, false), durCell(fr.Latency.P99))
		out = append(out, fr)
	}
	return out, nil
}

// ppsCell prints a frame rate as "123k pps", ">=" marking a lower bound.
func ppsCell(pps float64, lower bool) string {
	s := fmt.Sprintf("%.0fk pps", pps/1e3)
	if pps < 1e4 {
		s = fmt.Sprintf("%.1fk pps", pps/1e3)
	}
	if lower {
		s = ">=" + s
	}
	return s
}

// durCell prints a latency rounded to what the histogram resolves.
func durCell(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%dus", d.Microseconds())
	default:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	}
}

// trialsLine lists a search's trials for the report.
func trialsLine(fr FrameResult) string {
	var parts []string
	for _, t := range fr.Trials {
		verdict := "fail"
		if t.LossPercent < ZeroLossPercent && t.Received > 0 {
			verdict = "pass"
		}
		offered := "max"
		if t.OfferedPPS > 0 {
			offered = fmt.Sprintf("%.0fk", t.OfferedPPS/1e3)
		}
		parts = append(parts, fmt.Sprintf("%s -> %.0fk, %.3f%% %s", offered, t.ReceivedPPS/1e3, t.LossPercent, verdict))
	}
	return strings.Join(parts, "; ")
}
