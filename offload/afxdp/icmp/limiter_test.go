package icmp

import (
	"net/netip"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a, b := netip.MustParseAddr("10.1.0.10"), netip.MustParseAddr("2001:db8::10")
	type step struct {
		src  netip.Addr
		at   time.Duration
		n    int // attempts at that instant
		want int // of which allowed
	}
	tests := []struct {
		name  string
		cfg   LimiterConfig
		steps []step
	}{
		{"burst then refused", LimiterConfig{PerSource: 1, Burst: 3}, []step{{a, 0, 5, 3}}},
		{"refills at the rate", LimiterConfig{PerSource: 2, Burst: 2}, []step{
			{a, 0, 3, 2}, {a, 400 * time.Millisecond, 1, 0}, {a, 500 * time.Millisecond, 2, 1}, {a, 5 * time.Second, 5, 2},
		}},
		{"sources are independent", LimiterConfig{PerSource: 1, Burst: 2}, []step{
			{a, 0, 3, 2}, {b, 0, 3, 2}, {a, 10 * time.Millisecond, 1, 0},
		}},
		{"mapped address is the IPv4 one", LimiterConfig{PerSource: 1, Burst: 1}, []step{
			{a, 0, 1, 1}, {netip.AddrFrom16(a.As16()), 0, 1, 0},
		}},
		{"global bucket caps all sources", LimiterConfig{PerSource: 100, Burst: 100, Global: 1, GlobalBurst: 4}, []step{
			{a, 0, 3, 3}, {b, 0, 3, 1}, {b, 999 * time.Millisecond, 1, 0}, {b, time.Second, 1, 1},
		}},
		{"clock going back does not lock out", LimiterConfig{PerSource: 1, Burst: 1}, []step{
			{a, time.Hour, 1, 1}, {a, 0, 1, 1}, {a, 0, 1, 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewLimiter(tt.cfg)
			for i, s := range tt.steps {
				got := 0
				for range s.n {
					if l.Allow(s.src, t0.Add(s.at)) {
						got++
					}
				}
				if got != s.want {
					t.Fatalf("step %d (%v at %v): %d of %d allowed, want %d", i, s.src, s.at, got, s.n, s.want)
				}
			}
		})
	}
}

// TestLimiterBoundedMemory sends from far more sources than the table
// holds: the table does not grow, every new source still gets its burst,
// and a source that keeps its slot stays limited.
func TestLimiterBoundedMemory(t *testing.T) {
	l := NewLimiter(LimiterConfig{PerSource: 1, Burst: 1, Global: 1e9, GlobalBurst: 1 << 20, Sources: 16})
	if len(l.slots) != 17 {
		t.Fatalf("%d slots for 16 sources", len(l.slots))
	}
	now := time.Unix(1000, 0)
	for i := range 10000 {
		src := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if !l.Allow(src, now) {
			t.Fatalf("new source %v refused", src)
		}
		if l.Allow(src, now) {
			t.Fatalf("source %v allowed twice at once with burst 1", src)
		}
	}
	if len(l.slots) != 17 {
		t.Fatalf("table grew to %d slots", len(l.slots))
	}
}

func TestLimiterNoAlloc(t *testing.T) {
	l := NewLimiter(LimiterConfig{})
	src := netip.MustParseAddr("2001:db8::1")
	now := time.Now()
	if n := testing.AllocsPerRun(1000, func() { l.Allow(src, now) }); n != 0 {
		t.Fatalf("Allow allocates %v times", n)
	}
}
