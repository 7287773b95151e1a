package icmp

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"
)

// LimiterConfig sets a Limiter's rates. Zero fields take the defaults,
// which are Linux's: icmp_ratelimit (one per second per destination, burst
// 6) and icmp_msgs_per_sec/icmp_msgs_burst (1000 per second, burst 50).
type LimiterConfig struct {
	// PerSource is the sustained rate of errors to one address, per
	// second, and Burst how many may go at once.
	PerSource float64
	Burst     int
	// Global bounds all errors together, so that many sources (real or
	// spoofed) cannot multiply the per-source rate without limit.
	Global      float64
	GlobalBurst int
	// Sources is how many addresses are tracked at once (rounded up to a
	// power of two); it fixes the memory used.
	Sources int
}

// Limiter rate-limits ICMP errors with a token bucket per address (the
// source of the packet being answered) and one over all of them. Its
// memory is fixed when it is made: addresses share a direct-mapped table,
// and an address that lands on a slot held by another takes it over with a
// fresh bucket, which the global bucket keeps harmless. It is safe for
// concurrent use and does not allocate.
type Limiter struct {
	mu     sync.Mutex
	seed   uint64
	base   time.Time
	global gcra
	per    gcra
	slots  []slot
}

// gcra is a token bucket in its "generic cell rate algorithm" form: tat is
// the theoretical arrival time of the next message, in nanoseconds since
// the limiter's base.
type gcra struct {
	interval  int64 // ns between messages at the sustained rate
	tolerance int64 // how far tat may run ahead of now: (burst-1)*interval
}

type slot struct {
	addr netip.Addr
	tat  int64
}

// NewLimiter returns a Limiter with c's rates.
func NewLimiter(c LimiterConfig) *Limiter {
	if c.PerSource <= 0 {
		c.PerSource = 1
	}
	if c.Burst <= 0 {
		c.Burst = 6
	}
	if c.Global <= 0 {
		c.Global = 1000
	}
	if c.GlobalBurst <= 0 {
		c.GlobalBurst = 50
	}
	if c.Sources <= 0 {
		c.Sources = 4096
	}
	n := 1
	for n < c.Sources {
		n <<= 1
	}
	return &Limiter{
		seed:   rand.Uint64(),
		base:   time.Now(),
		global: newGCRA(c.Global, c.GlobalBurst),
		per:    newGCRA(c.PerSource, c.Burst),
		slots:  make([]slot, n+1), // the last one is the global bucket
	}
}

func newGCRA(rate float64, burst int) gcra {
	iv := int64(float64(time.Second) / rate)
	if iv < 1 {
		iv = 1
	}
	return gcra{interval: iv, tolerance: int64(burst-1) * iv}
}

// conforms reports whether a message at now fits the bucket whose state is
// *tat, without taking it.
func (g gcra) conforms(tat *int64, now int64) bool {
	// A tat beyond anything Allow can produce means the clock went back;
	// start over rather than refuse until it catches up.
	if *tat-now > g.tolerance+g.interval {
		*tat = now
	}
	return max(*tat, now)-now <= g.tolerance
}

func (g gcra) take(tat *int64, now int64) {
	*tat = max(*tat, now) + g.interval
}

// Allow reports whether an ICMP error to src may be sent at now, and if so
// counts it.
func (l *Limiter) Allow(src netip.Addr, now time.Time) bool {
	t := int64(now.Sub(l.base))
	src = src.Unmap()
	l.mu.Lock()
	defer l.mu.Unlock()
	s := &l.slots[l.index(src)]
	if s.addr != src {
		// A new address (or one evicted meanwhile) starts with a full
		// bucket.
		s.addr, s.tat = src, t-l.per.tolerance-l.per.interval
	}
	g := &l.slots[len(l.slots)-1].tat
	if !l.per.conforms(&s.tat, t) || !l.global.conforms(g, t) {
		return false
	}
	l.per.take(&s.tat, t)
	l.global.take(g, t)
	return true
}

func (l *Limiter) index(a netip.Addr) int {
	b := a.As16()
	x := binary.LittleEndian.Uint64(b[:8]) ^ l.seed
	x = (x ^ (x >> 31)) * 0x9e3779b97f4a7c15
	x ^= binary.LittleEndian.Uint64(b[8:])
	x = (x ^ (x >> 29)) * 0xbf58476d1ce4e5b9
	x ^= x >> 32
	return int(x & uint64(len(l.slots)-2))
}
