package control

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/xdpsec/xdpsec/control/api"
	"github.com/xdpsec/xdpsec/control/config"
	"github.com/xdpsec/xdpsec/ike"
)

// Back-off between failed initiations of a start_action start connection.
const (
	retryFirst = time.Second
	retryMax   = 2 * time.Minute
)

// retryDelay is the wait after the failures-th failure in a row: 1 s
// doubling to retryMax, shortened at random by up to a quarter so that the
// connections of a gateway whose peer came back do not all retry in step;
// rnd returns a number in [0, 1).
func retryDelay(failures int, rnd func() float64) time.Duration {
	return ike.Backoff(failures, retryFirst, retryMax, rnd)
}

// Initiation states as the API reports them.
const (
	initConnecting  = "connecting"
	initWaiting     = "waiting"
	initEstablished = "established"
	initGaveUp      = "gave_up"
)

// initiation is the bring-up of one start_action start connection: it
// tries until the connection is up, keyingtries failures in a row, the
// operator takes it down, the connection goes or the daemon stops.
type initiation struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	state    string
	failures int
	lastErr  string
	reason   ike.FailureReason
	failedAt time.Time
	next     time.Time
}

func (in *initiation) set(f func(in *initiation)) {
	in.mu.Lock()
	defer in.mu.Unlock()
	f(in)
}

func (in *initiation) api() *api.Initiation {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := &api.Initiation{State: in.state, Failures: in.failures, LastError: in.lastErr, LastReason: string(in.reason)}
	if !in.failedAt.IsZero() {
		t := in.failedAt.UTC()
		out.LastFailure = &t
	}
	if in.state == initWaiting {
		t := in.next.UTC()
		out.NextAttempt = &t
	}
	return out
}

// initiations holds the daemon's bring-ups by connection.
type initiations struct {
	mu     sync.Mutex
	byConn map[string]*initiation
}

// bringUp starts the bring-up of c unless one is running: it returns at
// once, the attempts run in the background under ctx (the daemon's run
// context), so that a peer that is not up yet holds up nothing.
func (d *Daemon) bringUp(ctx context.Context, wg *sync.WaitGroup, c *config.Connection) {
	if c.StartAction != "start" {
		return
	}
	d.inits.mu.Lock()
	defer d.inits.mu.Unlock()
	if in := d.inits.byConn[c.Name]; in != nil {
		select {
		case <-in.done:
		default:
			return
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	in := &initiation{cancel: cancel, done: make(chan struct{}), state: initConnecting}
	d.inits.byConn[c.Name] = in
	if wg != nil {
		wg.Add(1)
	}
	go func() {
		defer func() {
			cancel()
			close(in.done)
			if wg != nil {
				wg.Done()
			}
		}()
		d.keepInitiating(ctx, c.Name, in)
	}()
}

// stopBringUp ends the bring-up of conn, if any, and forgets it; it
// reports whether one was still trying.
func (d *Daemon) stopBringUp(conn string) bool {
	d.inits.mu.Lock()
	in := d.inits.byConn[conn]
	delete(d.inits.byConn, conn)
	d.inits.mu.Unlock()
	if in == nil {
		return false
	}
	in.cancel()
	<-in.done
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.state != initEstablished && in.state != initGaveUp
}

func (d *Daemon) initiationOf(conn string) *api.Initiation {
	d.inits.mu.Lock()
	in := d.inits.byConn[conn]
	d.inits.mu.Unlock()
	if in == nil {
		return nil
	}
	return in.api()
}

// keepInitiating is the loop of one bring-up. Each attempt goes through
// the same de-duplication as `xdpsecctl up`, so a connection that came up
// meanwhile (the peer initiated, say) is left as it is.
func (d *Daemon) keepInitiating(ctx context.Context, conn string, in *initiation) {
	log := d.log.With(zap.String("conn", conn))
	for ctx.Err() == nil {
		c := findConn(d.config(), conn)
		if c == nil || c.StartAction != "start" {
			return
		}
		in.set(func(in *initiation) { in.state = initConnecting })
		initiate := d.Initiate
		if d.attempt != nil {
			initiate = d.attempt
		}
		err := initiate(ctx, conn)
		if err == nil {
			in.set(func(in *initiation) { in.state = initEstablished })
			return
		}
		if ctx.Err() != nil {
			return
		}
		reason := ike.ReasonOf(err)
		d.metrics.initFailures.WithLabelValues(conn, string(reason)).Inc()
		var ne *ike.NegotiationError
		if errors.As(err, &ne) && ne.IKEUp && d.engine != nil {
			// An IKE SA without its CHILD SA carries nothing; the next
			// attempt starts afresh rather than beside it.
			if terr := d.engine.Terminate(ctx, conn); terr != nil && !errors.Is(terr, ike.ErrNotUp) {
				log.Debug("removing the IKE SA of a failed attempt", zap.Error(terr))
			}
		}
		var failures int
		in.set(func(in *initiation) {
			in.failures++
			failures = in.failures
			in.lastErr, in.reason, in.failedAt = err.Error(), reason, time.Now()
		})
		if c.KeyingTries > 0 && failures >= c.KeyingTries {
			in.set(func(in *initiation) { in.state = initGaveUp })
			log.Error("initiation failed, giving up (keyingtries reached)", zap.Int("attempts", failures),
				zap.String("reason", string(reason)), zap.Error(err))
			return
		}
		wait := retryDelay(failures, rand.Float64)
		in.set(func(in *initiation) { in.state, in.next = initWaiting, time.Now().Add(wait) })
		log.Warn("initiation failed, trying again", zap.Int("attempt", failures), zap.Duration("in", wait),
			zap.String("reason", string(reason)), zap.Error(err))
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}
