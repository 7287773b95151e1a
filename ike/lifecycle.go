package ike

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"go.uber.org/zap"
)

// DefaultRekeyGrace is how long a rekeyed CHILD SA outlives its Delete:
// packets the peer sent on it just before switching are still in flight.
const DefaultRekeyGrace = 2 * time.Second

// rekeyRetry bounds the random wait before a rekey the peer refused with
// TEMPORARY_FAILURE (or that failed otherwise) is tried again.
const (
	rekeyRetryMin = 500 * time.Millisecond
	rekeyRetryMax = 3 * time.Second
)

// softLifetime is when an SA of lifetime lt is rekeyed: at 90% of it,
// brought forward by a random part of jitter (a fraction of lt), so that
// the two ends, and the many SAs of a busy gateway, do not rekey in step.
func softLifetime(lt time.Duration, jitter float64) time.Duration {
	soft := float64(lt) * 0.9
	if jitter > 0 {
		soft -= rand.Float64() * min(jitter, 0.8) * float64(lt)
	}
	return time.Duration(soft)
}

// afterFunc runs fn under the lock of the IKE SA that owns c when the
// timer fires (an IKE rekey may have moved c meanwhile).
func (c *childSA) afterFunc(d time.Duration, fn func(sa *ikeSA)) *time.Timer {
	return time.AfterFunc(d, func() {
		for {
			sa := c.owner.Load()
			sa.mu.Lock()
			if c.owner.Load() != sa {
				sa.mu.Unlock()
				continue
			}
			if !sa.gone && !c.removed {
				fn(sa)
			}
			sa.mu.Unlock()
			return
		}
	})
}

// armChildTimers schedules the rekey of a CHILD SA now in use, and its
// deletion at the end of its lifetime should the rekey never succeed.
func (sa *ikeSA) armChildTimers(c *childSA) {
	lt := c.sa.Lifetime
	if lt <= 0 {
		return
	}
	jitter := 0.0
	if sa.conn != nil {
		jitter = sa.conn.RekeyJitter
	}
	soft := softLifetime(lt, jitter)
	c.rekeyAt = c.sa.Established.Add(soft)
	c.timers.set("rekey", c.afterFunc(time.Until(c.rekeyAt), func(sa *ikeSA) { sa.queueChildRekey(c, "lifetime") }))
	c.timers.set("hard", c.afterFunc(time.Until(c.sa.Established.Add(lt)), func(sa *ikeSA) { sa.hardExpire(c) }))
}

// retryChildRekey tries a failed or refused rekey again a little later,
// unless the SA is about to expire anyway.
func (sa *ikeSA) retryChildRekey(c *childSA) {
	d := rekeyRetryMin + rand.N(rekeyRetryMax-rekeyRetryMin)
	c.rekeyAt = time.Now().Add(d)
	c.timers.set("rekey", c.afterFunc(d, func(sa *ikeSA) { sa.queueChildRekey(c, "retry") }))
}

// queueChildRekey queues a rekey of c unless one is on its way.
func (sa *ikeSA) queueChildRekey(c *childSA, why string) {
	if c.state != childInstalled || c.rekeyQueued || sa.state != stateEstablished {
		return
	}
	c.rekeyQueued = true
	sa.e.log.Debug("rekeying CHILD SA", sa.fields(zap.String("child", c.sa.Child), zap.String("reason", why))...)
	sa.enqueue(&rekeyChildTask{old: c})
}

// hardExpire deletes a CHILD SA whose lifetime ran out unrekeyed.
// The IKE timer and the data plane's limits on either SA all report the
// same end: only the first counts.
func (sa *ikeSA) hardExpire(c *childSA) {
	if c.state == childRekeyed || c.retired || c.expiring {
		return
	}
	c.expiring = true
	sa.e.log.Warn("CHILD SA lifetime expired before it could be rekeyed; deleting it", sa.fields(zap.String("child", c.sa.Child),
		zap.String("spi", fmt.Sprintf("%08x", c.sa.SPIIn)), zap.String("last_rekey", orNone(c.lastRefusal)))...)
	sa.enqueue(deleteChildTask(c, "expired", "lifetime expired before a rekey succeeded"))
}

func orNone(s string) string {
	if s == "" {
		return "none refused"
	}
	return s
}

// armIKETimers schedules the IKE SA's rekey and DPD.
func (sa *ikeSA) armIKETimers() {
	c := sa.conn
	if c == nil {
		return
	}
	if c.IKELifetime > 0 {
		d := softLifetime(c.IKELifetime, c.RekeyJitter)
		sa.rekeyAt = time.Now().Add(d)
		sa.timers.set("rekey", sa.afterFunc(d, func() { sa.queueIKERekey(nil) }))
	}
	if c.DPDDelay > 0 {
		sa.armDPD(c.DPDDelay)
	} else {
		sa.armQuietPeerCheck()
	}
}

// afterFunc runs fn under sa.mu unless the SA is gone by then.
func (sa *ikeSA) afterFunc(d time.Duration, fn func()) *time.Timer {
	return time.AfterFunc(d, func() {
		sa.mu.Lock()
		defer sa.mu.Unlock()
		if !sa.gone {
			fn()
		}
	})
}

// queueIKERekey queues a rekey of the IKE SA unless one is on its way;
// done, if not nil, learns the outcome.
func (sa *ikeSA) queueIKERekey(done chan error) {
	if sa.state != stateEstablished || sa.ikeRekey {
		if done != nil {
			done <- fmt.Errorf("IKE SA is %s or already rekeying", sa.state)
		}
		return
	}
	sa.ikeRekey = true
	sa.enqueue(&rekeyIKETask{done: done})
}

// childUp and childDown count the CHILD SAs sending for each configured
// child across IKE SAs; when the count drops to zero a trap connection (or
// one held after DPD) gets its trap policies back.
func (e *Engine) childUp(conn, child string) {
	e.mu.Lock()
	e.liveChildren[conn+"\x00"+child]++
	e.childBackLocked(conn, child)
	e.mu.Unlock()
}

func (e *Engine) childDown(conn, child string, hold bool) {
	k := conn + "\x00" + child
	e.mu.Lock()
	e.liveChildren[k]--
	n := e.liveChildren[k]
	if n <= 0 {
		delete(e.liveChildren, k)
	}
	var cfg *Child
	if n <= 0 && !e.closed {
		for _, c := range e.conns {
			if c.Name != conn || (c.StartAction != StartTrap && !hold) {
				continue
			}
			for i := range c.Children {
				if c.Children[i].Name == child {
					cfg = &c.Children[i]
				}
			}
		}
	}
	e.mu.Unlock()
	if cfg != nil {
		e.trap(conn, *cfg)
	}
}

func (e *Engine) trap(conn string, child Child) {
	inst := e.opts.Installer
	if inst == nil {
		return
	}
	ctx, cancel := context.WithTimeout(e.ctx, installTimeout)
	defer cancel()
	if err := inst.Trap(ctx, conn, child); err != nil {
		e.log.Warn("installing trap policies failed", zap.String("conn", conn), zap.String("child", child.Name), zap.Error(err))
	}
}

func (e *Engine) untrap(conn string, child Child) {
	inst := e.opts.Installer
	if inst == nil {
		return
	}
	ctx, cancel := context.WithTimeout(e.ctx, installTimeout)
	defer cancel()
	if err := inst.Untrap(ctx, conn, child); err != nil {
		e.log.Warn("removing trap policies failed", zap.String("conn", conn), zap.String("child", child.Name), zap.Error(err))
	}
}

// childLive reports whether a CHILD SA of conn/child is sending.
func (e *Engine) childLive(conn, child string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.liveChildren[conn+"\x00"+child] > 0
}

// restartConn initiates conn again in the background until it is up, the
// connection is gone, Terminate stops it or the engine stops.
func (e *Engine) restartConn(conn string) {
	e.mu.Lock()
	if e.closed || e.restarting[conn] != nil {
		e.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(e.ctx)
	r := &restart{cancel: cancel}
	e.restarting[conn] = r
	e.mu.Unlock()
	go func() {
		defer func() {
			e.mu.Lock()
			// Terminate and a later restart may have replaced it.
			if e.restarting[conn] == r {
				delete(e.restarting, conn)
			}
			e.mu.Unlock()
			cancel()
		}()
		delay := time.Second
		for attempt := 1; ; attempt++ {
			e.log.Info("restarting connection", zap.String("conn", conn), zap.Int("attempt", attempt))
			err := e.Initiate(ctx, conn)
			if err == nil || ctx.Err() != nil || e.conn(conn) == nil || e.established(conn) != nil {
				return
			}
			e.log.Warn("restart failed, trying again", zap.String("conn", conn), zap.Duration("in", delay), zap.Error(err))
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return
			}
			delay = min(2*delay, 30*time.Second)
		}
	}()
}

// stopRestart cancels a background restart of conn.
func (e *Engine) stopRestart(conn string) {
	e.mu.Lock()
	r := e.restarting[conn]
	delete(e.restarting, conn)
	e.mu.Unlock()
	if r != nil {
		r.cancel()
	}
}

// restart is a background restart of a connection.
type restart struct{ cancel context.CancelFunc }

// ofConn returns the IKE SAs of a connection.
func (e *Engine) ofConn(conn string) []*ikeSA {
	e.mu.Lock()
	all := make([]*ikeSA, 0, len(e.sas))
	for _, sa := range e.sas {
		all = append(all, sa)
	}
	e.mu.Unlock()
	// Each SA's lock is taken on its own: the lock order puts sa.mu
	// before e.mu.
	var out []*ikeSA
	for _, sa := range all {
		sa.mu.Lock()
		if sa.connName() == conn {
			out = append(out, sa)
		}
		sa.mu.Unlock()
	}
	return out
}

// established returns conn's newest established IKE SA, if any.
func (e *Engine) established(conn string) *ikeSA {
	var best *ikeSA
	var bestAt time.Time
	for _, sa := range e.ofConn(conn) {
		sa.mu.Lock()
		if !sa.gone && sa.state == stateEstablished && sa.established.After(bestAt) {
			best, bestAt = sa, sa.established
		}
		sa.mu.Unlock()
	}
	return best
}

// Terminate deletes the IKE SAs of conn and with them its CHILD SAs, at
// the peer too (INFORMATIONAL Delete), and stops any restart of it; it
// returns when the peer answered or the retransmissions gave up. Trap
// policies of a trap connection stay (as with swanctl --terminate).
func (e *Engine) Terminate(ctx context.Context, conn string) error {
	if e.conn(conn) == nil {
		return fmt.Errorf("terminate %q: no such connection", conn)
	}
	e.stopRestart(conn)
	e.forgetLost(conn, "")
	var waits []chan struct{}
	found := false
	for _, sa := range e.ofConn(conn) {
		sa.mu.Lock()
		if !sa.gone {
			found = true
			switch sa.state {
			case stateEstablished:
				sa.startDelete("terminated by the operator")
			case stateConnecting:
				sa.fail(fmt.Errorf("terminated by the operator"))
			}
			if sa.deleted != nil {
				waits = append(waits, sa.deleted)
			}
		}
		sa.mu.Unlock()
	}
	if !found {
		return fmt.Errorf("terminate %q: %w", conn, ErrNotUp)
	}
	for _, w := range waits {
		select {
		case <-w:
		case <-ctx.Done():
			return fmt.Errorf("terminate %q: %w", conn, ctx.Err())
		}
	}
	return nil
}

// ErrNotUp says a connection has no IKE SA (or no such CHILD SA) to act on.
var ErrNotUp = errors.New("connection is not up")

// Rekey rekeys conn's IKE SA (child "") or the named CHILD SA now and
// returns when the new SA is in place.
func (e *Engine) Rekey(ctx context.Context, conn, child string) error {
	if e.conn(conn) == nil {
		return fmt.Errorf("rekey %q: no such connection", conn)
	}
	sa := e.established(conn)
	if sa == nil {
		return fmt.Errorf("rekey %q: %w", conn, ErrNotUp)
	}
	done := make(chan error, 1)
	sa.mu.Lock()
	if child == "" {
		sa.queueIKERekey(done)
	} else {
		var c *childSA
		for _, cc := range sa.children {
			if cc.sa.Child == child && cc.state == childInstalled {
				c = cc
			}
		}
		if c == nil {
			sa.mu.Unlock()
			return fmt.Errorf("rekey %s/%s: no installed CHILD SA: %w", conn, child, ErrNotUp)
		}
		if c.rekeyQueued {
			sa.mu.Unlock()
			return fmt.Errorf("rekey %s/%s: a rekey is already under way", conn, child)
		}
		c.rekeyQueued = true
		sa.enqueue(&rekeyChildTask{old: c, done: done})
	}
	sa.mu.Unlock()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("rekey %q: %w", conn, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("rekey %q: %w", conn, ctx.Err())
	}
}

// Acquire asks for the CHILD SA child of conn because traffic hit its trap
// policy: it is created with CREATE_CHILD_SA on an established IKE SA, or
// the connection is initiated. It does not block; a negotiation already
// under way for the child absorbs further calls.
func (e *Engine) Acquire(conn, child string) {
	c := e.conn(conn)
	if c == nil || e.childLive(conn, child) {
		return
	}
	var cfg *Child
	for i := range c.Children {
		if c.Children[i].Name == child {
			cfg = &c.Children[i]
		}
	}
	if cfg == nil {
		return
	}
	if retry := e.lostRetryAt(conn, child); time.Now().Before(retry) {
		return // a lost child waits out its back-off, traffic or not
	}
	if sa := e.established(conn); sa != nil {
		sa.mu.Lock()
		if !sa.pendingCreate[child] {
			sa.pendingCreate[child] = true
			e.log.Info("traffic for a trapped child: creating it", sa.fields(zap.String("child", child))...)
			sa.enqueue(&createChildTask{cfg: cfg})
		}
		sa.mu.Unlock()
		return
	}
	for _, sa := range e.ofConn(conn) {
		sa.mu.Lock()
		busy := !sa.gone && sa.state == stateConnecting
		sa.mu.Unlock()
		if busy {
			return
		}
	}
	e.mu.Lock()
	if e.closed || e.acquiring[conn] {
		e.mu.Unlock()
		return
	}
	e.acquiring[conn] = true
	e.mu.Unlock()
	e.log.Info("traffic for a trapped connection: initiating it", zap.String("conn", conn), zap.String("child", child))
	go func() {
		defer func() {
			e.mu.Lock()
			delete(e.acquiring, conn)
			e.mu.Unlock()
		}()
		if err := e.Initiate(e.ctx, conn); err != nil {
			e.log.Warn("on-demand initiation failed", zap.String("conn", conn), zap.Error(err))
		}
	}()
}

// Expire is the data plane's report that the SA with SPI spi (ours or the
// peer's) reached a soft limit (hard false: bytes, packets, sequence
// numbers), so its child is rekeyed, or a hard one, so the CHILD SA is
// deleted.
func (e *Engine) Expire(spi uint32, hard bool) {
	e.mu.Lock()
	all := make([]*ikeSA, 0, len(e.sas))
	for _, sa := range e.sas {
		all = append(all, sa)
	}
	e.mu.Unlock()
	for _, sa := range all {
		sa.mu.Lock()
		for _, c := range sa.children {
			if c.sa.SPIIn != spi && c.sa.SPIOut != spi {
				continue
			}
			if hard {
				sa.hardExpire(c)
			} else {
				sa.queueChildRekey(c, "data plane soft limit")
			}
		}
		sa.mu.Unlock()
	}
}

// initialContact handles INITIAL_CONTACT (RFC 7296 2.4) on fresh, the new
// IKE SA of a peer that says it has no other SA with us: our other IKE
// SAs between the same two identities, whatever connection they belong
// to, established before fresh was started, are stale (the peer
// restarted) and go with their CHILD SAs, without a Delete the peer could
// not read. SAs that came up
// while fresh was being negotiated are left alone: they are the crossing
// initiations of a peer that is very much alive.
func (e *Engine) initialContact(fresh *ikeSA, local, peer Identity, started time.Time) {
	e.mu.Lock()
	all := make([]*ikeSA, 0, len(e.sas))
	for _, sa := range e.sas {
		if sa != fresh {
			all = append(all, sa)
		}
	}
	e.mu.Unlock()
	for _, sa := range all {
		sa.mu.Lock()
		if !sa.gone && sa.localID.Equal(local) && sa.peerID.Equal(peer) && sa.state == stateEstablished && sa.established.Before(started) {
			e.log.Info("peer sent INITIAL_CONTACT: removing its stale IKE SA", sa.fields()...)
			sa.remove(errors.New("replaced after INITIAL_CONTACT"))
		}
		sa.mu.Unlock()
	}
}
