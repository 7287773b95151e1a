package control

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap/zaptest"

	"github.com/xdpsec/xdpsec/control/api"
	"github.com/xdpsec/xdpsec/control/config"
	"github.com/xdpsec/xdpsec/ike"
)

// TestRetryDelay checks the back-off: 1 s doubling, capped at 2 min for
// every later failure (no overflow however long the peer stays away),
// and the jitter only ever shortens a wait, by at most a quarter.
func TestRetryDelay(t *testing.T) {
	none := func() float64 { return 0 }
	most := func() float64 { return 0.999999 }
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second,
		32 * time.Second, 64 * time.Second, 2 * time.Minute, 2 * time.Minute}
	for i, w := range want {
		if got := retryDelay(i+1, none); got != w {
			t.Errorf("failure %d: %s, want %s", i+1, got, w)
		}
	}
	for _, n := range []int{9, 30, 63, 64, 1000, 1 << 30} {
		if got := retryDelay(n, none); got != retryMax {
			t.Errorf("failure %d: %s, want the cap %s", n, got, retryMax)
		}
	}
	for n := 1; n <= 12; n++ {
		top := retryDelay(n, none)
		low := retryDelay(n, most)
		if low >= top || low < top*3/4 {
			t.Errorf("failure %d: jittered %s outside (%s, %s]", n, low, top*3/4, top)
		}
	}
}

func bringUpDaemon(t *testing.T, keyingtries int, attempt func(ctx context.Context, conn string) error) (*Daemon, *config.Connection) {
	t.Helper()
	c := config.Connection{Name: "site-b", StartAction: "start", KeyingTries: keyingtries}
	d := &Daemon{log: zaptest.NewLogger(t), metrics: newDaemonMetrics(), cfg: &config.Config{Connections: []config.Connection{c}},
		inits: initiations{byConn: map[string]*initiation{}}, attempt: attempt}
	return d, &d.cfg.Connections[0]
}

func waitInitiation(t *testing.T, d *Daemon, state string, within time.Duration) *api.Initiation {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		in := d.initiationOf("site-b")
		if in != nil && in.State == state {
			return in
		}
		if time.Now().After(deadline) {
			t.Fatalf("bring-up not %s within %s: %+v", state, within, in)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBringUpKeyingtries: with keyingtries 2 the bring-up gives up after
// the second failure (one wait of about a second between), counting each
// failure by reason; with 0 it keeps going until an attempt succeeds.
func TestBringUpKeyingtries(t *testing.T) {
	timeout := &ike.NegotiationError{Reason: ike.FailTimeout, Err: errors.New("IKE_SA_INIT timed out")}
	var calls atomic.Int32
	d, c := bringUpDaemon(t, 2, func(context.Context, string) error { calls.Add(1); return timeout })
	var wg sync.WaitGroup
	d.bringUp(context.Background(), &wg, c)
	in := waitInitiation(t, d, initGaveUp, 5*time.Second)
	wg.Wait()
	if n := calls.Load(); n != 2 || in.Failures != 2 || in.LastReason != "timeout" || in.NextAttempt != nil {
		t.Fatalf("gave up after %d attempts: %+v, want 2 timeouts and no next attempt", n, in)
	}
	var m dto.Metric
	if err := d.metrics.initFailures.WithLabelValues("site-b", "timeout").Write(&m); err != nil {
		t.Fatal(err)
	}
	if n := m.GetCounter().GetValue(); n != 2 {
		t.Fatalf("xdpsec_initiation_failures_total{reason=timeout} = %v, want 2", n)
	}

	calls.Store(0)
	d, c = bringUpDaemon(t, 0, func(context.Context, string) error {
		if calls.Add(1) < 3 {
			return &ike.NegotiationError{Reason: ike.FailAuth, Err: errors.New("AUTHENTICATION_FAILED")}
		}
		return nil
	})
	d.bringUp(context.Background(), &wg, c)
	waiting := waitInitiation(t, d, initWaiting, 2*time.Second)
	if waiting.NextAttempt == nil || waiting.LastReason != "auth_failed" || waiting.Failures != 1 {
		t.Fatalf("after the first failure: %+v, want waiting with a next attempt and auth_failed", waiting)
	}
	in = waitInitiation(t, d, initEstablished, 6*time.Second)
	wg.Wait()
	if calls.Load() != 3 || in.Failures != 2 {
		t.Fatalf("established after %d attempts: %+v, want 3 attempts, 2 failures", calls.Load(), in)
	}
}

// TestBringUpStops: the daemon's end and `xdpsecctl down` stop a
// bring-up at once, in the middle of its wait.
func TestBringUpStops(t *testing.T) {
	fail := func(context.Context, string) error { return errors.New("no") }
	d, c := bringUpDaemon(t, 0, fail)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	d.bringUp(ctx, &wg, c)
	waitInitiation(t, d, initWaiting, 2*time.Second)
	start := time.Now()
	cancel()
	wg.Wait()
	if took := time.Since(start); took > 200*time.Millisecond {
		t.Fatalf("bring-up ran on for %s after the daemon stopped", took)
	}

	d, c = bringUpDaemon(t, 0, fail)
	d.bringUp(context.Background(), &wg, c)
	waitInitiation(t, d, initWaiting, 2*time.Second)
	if !d.stopBringUp("site-b") {
		t.Fatal("stopBringUp: no bring-up was trying")
	}
	wg.Wait()
	if in := d.initiationOf("site-b"); in != nil {
		t.Fatalf("bring-up still reported after down: %+v", in)
	}
}
