package ike

import (
	"math/rand/v2"
	"time"

	"go.uber.org/zap"
)

// A CHILD SA of a start or trap connection exists to carry traffic, so one
// that goes without a successor (its lifetime ran out because every rekey
// was refused, the peer deleted it or no longer knows it) comes back on its
// own. A start connection creates it again with CREATE_CHILD_SA after a
// back-off; a trap connection waits for traffic, which its trap policies
// (back at once) report, and honours the same back-off. When the IKE SA
// carries no other child and the peer refuses the new one too (a peer that
// insists on a PFS group our esp_proposals lack refuses every
// CREATE_CHILD_SA), the connection is established afresh: IKE_AUTH
// creates the first child without a key exchange of its own.

// Back-off between attempts to bring back a lost CHILD SA, and how long a
// recovered child's failures are remembered, so that a peer that deletes
// every new child at once does not get a new one every second.
const (
	lostRetryFirst = time.Second
	lostRetryMax   = 2 * time.Minute
	lostMemory     = 10 * time.Minute
)

// Backoff is the wait after the failures-th failure in a row: first
// doubling to most, shortened at random by up to a quarter (rnd returns a
// number in [0, 1)) so that many connections whose peer came back do not
// retry in step.
func Backoff(failures int, first, most time.Duration, rnd func() float64) time.Duration {
	d := most
	if failures <= 30 {
		d = min(first<<max(failures-1, 0), most)
	}
	return d - time.Duration(rnd()*0.25*float64(d))
}

// lostChild is a configured child that is down though its connection
// should carry it (guarded by e.mu).
type lostChild struct {
	conn, child string
	reason      string // why it went, then why the last attempt failed
	since       time.Time
	tries       int
	retryAt     time.Time // next attempt; zero while a fresh IKE SA brings it
	recovered   time.Time // non-zero: up again, kept to remember tries
	timer       *time.Timer
}

func lostKey(conn, child string) string { return conn + "\x00" + child }

// childLost records that c went without a successor (sa.mu held) and
// schedules its return, for start and trap connections.
func (sa *ikeSA) childLost(c *childSA, why string) {
	e := sa.e
	conn := sa.conn
	if conn == nil || (conn.StartAction != StartStart && conn.StartAction != StartTrap) {
		return
	}
	name := c.sa.Child
	if childNamed(conn, name) == nil || e.childLive(conn.Name, name) {
		return // left the configuration, or another SA carries it
	}
	if c.lastRefusal != "" {
		why += " (" + c.lastRefusal + ")"
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	k := lostKey(conn.Name, name)
	l := e.lost[k]
	switch {
	case l == nil || !l.recovered.IsZero() && time.Since(l.recovered) > lostMemory:
		l = &lostChild{conn: conn.Name, child: name, since: time.Now()}
		e.lost[k] = l
	case !l.recovered.IsZero():
		// Lost again soon after it came back: that return counts as
		// a failure, so the back-off grows.
		l.tries++
		l.since = time.Now()
	}
	l.reason, l.recovered = why, time.Time{}
	d := e.scheduleLostLocked(l, conn.StartAction == StartStart)
	e.log.Warn("CHILD SA lost: bringing it back", sa.fields(zap.String("child", name), zap.String("reason", why),
		zap.Duration("in", d))...)
}

// scheduleLostLocked sets l's next attempt (e.mu held): a timer for a
// start connection, a time before which Acquire waits for a trap one.
func (e *Engine) scheduleLostLocked(l *lostChild, start bool) time.Duration {
	d := Backoff(l.tries+1, lostRetryFirst, lostRetryMax, rand.Float64)
	l.retryAt = time.Now().Add(d)
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	if start {
		conn, child := l.conn, l.child
		l.timer = time.AfterFunc(d, func() { e.recreateLost(conn, child) })
	}
	return d
}

// recreateLost creates a lost child again on the connection's IKE SA. With
// none established, the IKE SA that comes next brings it in IKE_AUTH.
func (e *Engine) recreateLost(conn, child string) {
	sa := e.established(conn)
	if sa == nil {
		return
	}
	sa.mu.Lock()
	defer sa.mu.Unlock()
	if sa.gone || sa.state != stateEstablished || sa.conn == nil || sa.pendingCreate[child] {
		return
	}
	cfg := childNamed(sa.conn, child)
	if cfg == nil {
		e.forgetLost(conn, child)
		return
	}
	e.log.Info("creating lost CHILD SA again", sa.fields(zap.String("child", child))...)
	sa.pendingCreate[child] = true
	sa.enqueue(&createChildTask{cfg: cfg})
}

// lostRetryAt returns when the next attempt for a lost child is due, zero
// when the child is not lost (Acquire's back-off).
func (e *Engine) lostRetryAt(conn, child string) time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	if l := e.lost[lostKey(conn, child)]; l != nil && l.recovered.IsZero() {
		return l.retryAt
	}
	return time.Time{}
}

// lostAttemptFailed handles a refused or failed CREATE_CHILD_SA for a
// child (sa.mu held); it does nothing unless the child is a lost one.
func (sa *ikeSA) lostAttemptFailed(name, why string) {
	e := sa.e
	conn := sa.conn
	e.mu.Lock()
	l := e.lost[lostKey(sa.connName(), name)]
	if l == nil || !l.recovered.IsZero() || conn == nil || e.closed {
		e.mu.Unlock()
		return
	}
	l.tries++
	l.reason = why
	tries := l.tries
	alone := true
	for _, c := range sa.children {
		if c.outbound && !c.removed {
			alone = false
		}
	}
	if !alone {
		d := e.scheduleLostLocked(l, conn.StartAction == StartStart)
		e.mu.Unlock()
		e.log.Warn("lost CHILD SA not created; trying again", sa.fields(zap.String("child", name), zap.String("reason", why),
			zap.Int("attempt", tries), zap.Duration("in", d))...)
		return
	}
	// This IKE SA carries nothing else: a fresh one brings the child in
	// IKE_AUTH, where the peer's PFS policy does not apply.
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	l.retryAt = time.Time{}
	e.mu.Unlock()
	e.log.Warn("lost CHILD SA cannot be created on this IKE SA: establishing the connection afresh",
		sa.fields(zap.String("child", name), zap.String("reason", why), zap.Int("attempt", tries))...)
	sa.startDelete("re-establishing the connection for a lost CHILD SA")
	if conn.StartAction == StartStart {
		e.restartConn(conn.Name)
	}
}

// childBackLocked notes that a child sends again (e.mu held): a lost one
// is back.
func (e *Engine) childBackLocked(conn, child string) {
	l := e.lost[lostKey(conn, child)]
	if l == nil || !l.recovered.IsZero() {
		return
	}
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	l.recovered = time.Now()
	e.log.Info("lost CHILD SA is back", zap.String("conn", conn), zap.String("child", child),
		zap.Duration("down", time.Since(l.since)), zap.Int("attempts", l.tries))
}

// forgetLost drops the record of a lost child, or of all of a
// connection's when child is "": the operator took it down or the
// configuration no longer has it.
func (e *Engine) forgetLost(conn, child string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, l := range e.lost {
		if l.conn == conn && (child == "" || l.child == child) {
			if l.timer != nil {
				l.timer.Stop()
			}
			delete(e.lost, k)
		}
	}
}

// lostInfoLocked lists the connection's lost children for SAs (e.mu held).
func (e *Engine) lostInfoLocked(conn string) []ChildInfo {
	var out []ChildInfo
	for _, l := range e.lost {
		if l.conn != conn || !l.recovered.IsZero() {
			continue
		}
		out = append(out, ChildInfo{Name: l.child, State: "DOWN", Reason: l.reason, DownSince: l.since,
			RetryAt: l.retryAt, Attempts: l.tries})
	}
	return out
}
