package perf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/xdpsec/xdpsec/internal/iperf"
	"github.com/xdpsec/xdpsec/internal/netlab"
)

// UDPTrial is one fixed-rate UDP transfer of the search.
type UDPTrial struct {
	// OfferedMbps is the rate iperf3 was asked to send; 0 = unlimited.
	OfferedMbps  float64 `json:"offered_mbps"`
	ReceivedMbps float64 `json:"received_mbps"`
	LossPercent  float64 `json:"loss_percent"`
	Pass         bool    `json:"pass"`
}

func (t UDPTrial) String() string {
	verdict := "fail"
	if t.Pass {
		verdict = "pass"
	}
	return fmt.Sprintf("%.0f -> %.0f, %.2f%% %s", t.OfferedMbps, t.ReceivedMbps, t.LossPercent, verdict)
}

// udpTrialFunc runs one trial at offered Mbit/s (0 = unlimited).
type udpTrialFunc func(ctx context.Context, offeredMbps float64) (UDPTrial, error)

// searchUDP looks for the highest offered rate that loses less than
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
// It returns the received rate of the best passing trial (0 if none
// passed), every trial made, and whether the budget ran out before any
// fixed-rate trial failed, in which case the rate is only a lower bound.
func searchUDP(ctx context.Context, trial udpTrialFunc, maxTrials int, lossLimit float64) (best float64, trials []UDPTrial, lowerBound bool, err error) {
	run := func(offered float64) (UDPTrial, error) {
		t, err := trial(ctx, offered)
		if err != nil {
			return t, err
		}
		t.OfferedMbps = offered
		t.Pass = t.LossPercent < lossLimit
		trials = append(trials, t)
		return t, nil
	}
	probe, err := run(0)
	if err != nil {
		return 0, trials, false, err
	}
	if probe.Pass {
		return probe.ReceivedMbps, trials, false, nil
	}
	if probe.ReceivedMbps <= 0 {
		return 0, trials, false, errors.New("nothing arrived at full rate")
	}
	// lo is the highest passing rate, hi the lowest failing one; hi stays
	// 0 (unknown) while every fixed-rate trial passes, because a sender
	// at a fixed rate leaves the gateways more CPU than one going flat
	// out, and the answer may lie above what the probe received.
	lo, hi := 0.0, 0.0
	next := probe.ReceivedMbps * 0.95
	for len(trials) < maxTrials {
		t, err := run(next)
		if err != nil {
			return best, trials, false, err
		}
		if t.Pass {
			lo = next
			best = max(best, t.ReceivedMbps)
		} else {
			hi = next
		}
		if hi == 0 {
			next = lo * 2
		} else {
			next = (lo + hi) / 2
		}
	}
	return best, trials, hi == 0 && best > 0, nil
}

// iperfUDP runs one UDP trial of secs seconds from client to server at
// offered Mbit/s (0 = as fast as iperf3 can send) with UDPDatagramBytes
// datagrams, and returns what arrived and what was lost.
func iperfUDP(ctx context.Context, client, server *netlab.NS, serverAddr string, offeredMbps float64, secs int) (UDPTrial, error) {
	rate := "0"
	if offeredMbps > 0 {
		rate = strconv.FormatInt(int64(offeredMbps*1000), 10) + "K"
	}
	out, err := iperf.Run(ctx, client, server, serverAddr,
		"-u", "-l", strconv.Itoa(UDPDatagramBytes), "-b", rate, "-t", strconv.Itoa(secs))
	if err != nil {
		return UDPTrial{}, err
	}
	return parseIperfUDP(out)
}

// parseIperfUDP reads the loss and the received rate of an iperf3 UDP
// client's JSON. iperf3 3.12 gives the sender's rate and the receiver's
// loss (exchanged at the end of the test) in end.sum; newer versions also
// give end.sum_received, which is preferred when present.
func parseIperfUDP(out []byte) (UDPTrial, error) {
	var res struct {
		End struct {
			Sum struct {
				BitsPerSecond float64 `json:"bits_per_second"`
				Packets       int64   `json:"packets"`
				LostPackets   int64   `json:"lost_packets"`
				LostPercent   float64 `json:"lost_percent"`
			} `json:"sum"`
			SumReceived *struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return UDPTrial{}, fmt.Errorf("iperf3 UDP output: %w", err)
	}
	if res.Error != "" {
		return UDPTrial{}, fmt.Errorf("iperf3: %s", res.Error)
	}
	s := res.End.Sum
	if s.Packets <= 0 {
		return UDPTrial{}, errors.New("iperf3 sent no UDP datagrams")
	}
	t := UDPTrial{LossPercent: s.LostPercent}
	if r := res.End.SumReceived; r != nil && r.BitsPerSecond > 0 {
		t.ReceivedMbps = r.BitsPerSecond / 1e6
	} else {
		t.ReceivedMbps = s.BitsPerSecond * (1 - s.LostPercent/100) / 1e6
	}
	return t, nil
}
