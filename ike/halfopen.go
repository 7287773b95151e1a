package ike

import (
	"container/list"
	"context"
	"errors"
	"net/netip"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Defaults of the responder's half-open limits.
const (
	// DefaultHalfOpenPerSource bounds the half-open IKE SAs of one source
	// address: a gateway has one or two negotiations with a peer at a
	// time, an attacker that answers COOKIEs from its own address would
	// otherwise fill the table alone.
	DefaultHalfOpenPerSource = 10
	// DefaultInitRateLimit is the per-source IKE_SA_INIT rate (requests a
	// second) the front door enforces while COOKIEs are demanded; a peer
	// needs at most three (first try, COOKIE, INVALID_KE_PAYLOAD).
	DefaultInitRateLimit = 10
	// initRateCalm is how long no request may have met a table past the
	// COOKIE threshold before the front door's rate limit goes off again,
	// so that a flood in waves does not toggle it each time.
	initRateCalm = 10 * time.Second
)

// errEvicted ends a half-open SA that made room for a newer request.
var errEvicted = errors.New("half-open IKE SA evicted to make room in a full table")

// halfOpenTable counts the responder's half-open IKE SAs (guarded by e.mu):
// in all, by source address, and in order of arrival, so that a full
// table can give up its oldest entry for a request that proved itself.
type halfOpenTable struct {
	bySource map[netip.Addr]int
	order    list.List // *ikeSA, oldest first
}

func (t *halfOpenTable) len() int { return t.order.Len() }

func (t *halfOpenTable) fromSource(a netip.Addr) int { return t.bySource[a] }

func (t *halfOpenTable) add(sa *ikeSA) {
	if t.bySource == nil {
		t.bySource = map[netip.Addr]int{}
	}
	sa.halfOpen = t.order.PushBack(sa)
	t.bySource[sa.initRemote().Addr()]++
}

// remove takes sa out of the table if it is in it.
func (t *halfOpenTable) remove(sa *ikeSA) {
	if sa.halfOpen == nil {
		return
	}
	t.order.Remove(sa.halfOpen)
	sa.halfOpen = nil
	// The request's source, fixed for the SA's life: sa.remote may move
	// (NAT-T) before IKE_AUTH completes.
	a := sa.initRemote().Addr()
	if t.bySource[a]--; t.bySource[a] <= 0 {
		delete(t.bySource, a)
	}
}

// evictable returns the oldest half-open SA not negotiated with a
// configured peer, or nil: a configured peer's negotiation is never the
// one that makes room.
func (t *halfOpenTable) evictable() *ikeSA {
	for el := t.order.Front(); el != nil; el = el.Next() {
		if sa := el.Value.(*ikeSA); !sa.knownPeer {
			return sa
		}
	}
	return nil
}

// admitHalfOpen decides whether a new IKE_SA_INIT request from from may
// become a half-open SA when the table is full: only one with a valid
// COOKIE (it proved it receives at its address) or from a configured peer,
// and only by evicting the oldest unauthenticated half-open SA that is not
// a configured peer's. It reports whether there is room now.
func (e *Engine) admitHalfOpen(from netip.AddrPort, proved bool) bool {
	e.mu.Lock()
	full := e.halfOpen.len() >= e.opts.HalfOpenLimit
	var victim *ikeSA
	if full && proved {
		victim = e.halfOpen.evictable()
	}
	e.mu.Unlock()
	if !full {
		return true
	}
	if victim == nil {
		e.stats.drop(DropHalfOpenLimit)
		if !e.rateLimited("halfopen") {
			e.log.Warn("half-open IKE SA limit reached, dropping IKE_SA_INIT requests (flood?)",
				zap.Int("limit", e.opts.HalfOpenLimit), zap.Stringer("peer", from), zap.Bool("cookie_or_known_peer", proved))
		}
		return false
	}
	victim.mu.Lock()
	if victim.halfOpenNow() && !victim.gone {
		victim.remove(errEvicted)
		e.stats.add(&e.stats.halfOpenEvicted)
	}
	victim.mu.Unlock()
	return true
}

// halfOpenNow reports whether the SA is still in the half-open table.
func (sa *ikeSA) halfOpenNow() bool {
	sa.e.mu.Lock()
	defer sa.e.mu.Unlock()
	return sa.halfOpen != nil
}

// initRateGuard switches the front door's per-source IKE_SA_INIT rate
// limit on as soon as the responder demands COOKIEs, and off once no
// request has met a table past the COOKIE threshold for initRateCalm.
type initRateGuard struct {
	busy atomic.Int64 // when COOKIEs were last demanded, unix ns
	kick chan struct{}
	calm time.Duration // initRateCalm; tests shorten it before Run
}

func newInitRateGuard() *initRateGuard {
	return &initRateGuard{kick: make(chan struct{}, 1), calm: initRateCalm}
}

// underLoad records that COOKIEs are demanded now; cheap enough for every
// request of a flood.
func (g *initRateGuard) underLoad(now time.Time) {
	g.busy.Store(now.UnixNano())
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// run applies the limit through set until ctx is done, and takes it off on
// the way out.
func (g *initRateGuard) run(ctx context.Context, e *Engine, set func(perSecond uint32) error) {
	on := false
	apply := func(want bool) {
		rate := uint32(0)
		if want {
			rate = e.opts.InitRateLimit
		}
		if err := set(rate); err != nil {
			e.log.Warn("front door IKE_SA_INIT rate limit not changed", zap.Bool("on", want), zap.Error(err))
			return
		}
		on = want
		if want {
			e.log.Warn("under IKE_SA_INIT load: demanding COOKIEs and rate-limiting IKE_SA_INIT per source at the front door",
				zap.Uint32("per_second", rate), zap.Int("half_open", e.Stats().HalfOpen))
		} else {
			e.log.Info("IKE_SA_INIT load over: front door rate limit off")
		}
	}
	tick := time.NewTicker(min(time.Second, g.calm/4))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if on {
				apply(false)
			}
			return
		case <-g.kick:
		case <-tick.C:
		}
		want := time.Since(time.Unix(0, g.busy.Load())) < g.calm
		if want != on {
			apply(want)
		}
	}
}
