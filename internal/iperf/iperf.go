// Package iperf runs iperf3 between lab namespaces for tests and
// benchmarks, and reads its JSON reports.
package iperf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/xdpsec/xdpsec/internal/netlab"
)

// TCP runs a single-stream TCP transfer of secs seconds and
// returns the receiver's rate in Mbit/s. iperf3 3.12 with -J exits 0 when
// its connection is refused, so a client that beats the server's listen()
// would read as "moved no data": Run retries on the output.
func TCP(ctx context.Context, client, server *netlab.NS, serverAddr string, secs int) (float64, error) {
	out, err := Run(ctx, client, server, serverAddr, "-t", strconv.Itoa(secs))
	if err != nil {
		return 0, err
	}
	return ParseTCP(out)
}

// ParseTCP reads the receiver's rate from an iperf3 TCP client's JSON.
func ParseTCP(out []byte) (float64, error) {
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return 0, fmt.Errorf("iperf3 TCP output: %w", err)
	}
	if res.Error != "" {
		return 0, fmt.Errorf("iperf3: %s", res.Error)
	}
	if res.End.SumReceived.BitsPerSecond <= 0 {
		return 0, errors.New("iperf3 moved no data")
	}
	return res.End.SumReceived.BitsPerSecond / 1e6, nil
}

// Run starts a one-shot iperf3 server in server, runs the client in
// client with args and returns the client's JSON output.
func Run(ctx context.Context, client, server *netlab.NS, serverAddr string, args ...string) ([]byte, error) {
	srv, err := server.Start(exec.CommandContext(ctx, "iperf3", "-s", "-1", "-B", serverAddr), nil)
	if err != nil {
		return nil, fmt.Errorf("start iperf3 server: %w", err)
	}
	defer srv.Stop(2 * time.Second)
	var out strings.Builder
	args = append([]string{"-c", serverAddr, "-J"}, args...)
	// The server needs a moment to listen; retry the client briefly. A
	// transfer that started and failed is not retried: its error is real.
	// iperf3 3.12 with -J may exit 0 after a refused connection, so the
	// output decides.
	for range 20 {
		out.Reset()
		err = client.Run(ctx, &out, "iperf3", args...)
		if !strings.Contains(out.String(), "unable to connect") {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err != nil {
		return nil, fmt.Errorf("iperf3: %w", err)
	}
	// iperf3 prints warnings (a UDP datagram larger than the control
	// connection's MSS, say) on stderr, which Run merges in front of the
	// JSON document.
	text := out.String()
	if i := strings.IndexByte(text, '{'); i > 0 {
		text = text[i:]
	}
	return []byte(text), nil
}
