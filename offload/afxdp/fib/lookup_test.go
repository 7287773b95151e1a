package fib

import (
	"net/netip"
	"testing"
)

// newBare returns a FIB with no background goroutine, for tests of the
// read path alone.
func newBare() *FIB {
	f := &FIB{seed: 0x1234567 | 1, reqs: make(chan netip.Addr, reqQueue)}
	f.snap.Store(&snapshot{m: map[netip.Addr]*entry{}})
	return f
}

func TestLookupHitNoAlloc(t *testing.T) {
	f := newBare()
	dst := netip.MustParseAddr("2001:db8::1")
	want := NextHop{IfIndex: 3, MTU: 1500, DstMAC: [6]byte{2, 0, 0, 0, 0, 1}}
	st := &dstState{}
	f.snap.Store(&snapshot{m: map[netip.Addr]*entry{dst: {nh: want, ok: true, st: st}}})
	if got, ok := f.Lookup(dst); !ok || got != want {
		t.Fatalf("Lookup = %+v, %v; want %+v, true", got, ok, want)
	}
	if !st.used.Load() {
		t.Fatal("a hit did not mark the entry used")
	}
	if n := testing.AllocsPerRun(1000, func() { f.Lookup(dst) }); n != 0 {
		t.Fatalf("hit allocates %v times", n)
	}
}

func TestLookupMissQueue(t *testing.T) {
	tests := []struct {
		name   string
		lookup []string
		queued []string
	}{
		{"one miss queues once", []string{"192.0.2.1"}, []string{"192.0.2.1"}},
		{"repeated misses are deduplicated", []string{"192.0.2.1", "192.0.2.1", "192.0.2.1"}, []string{"192.0.2.1"}},
		{"mapped address is the IPv4 one", []string{"::ffff:192.0.2.7", "192.0.2.7"}, []string{"192.0.2.7"}},
		{"distinct misses queue each", []string{"192.0.2.1", "2001:db8::1"}, []string{"192.0.2.1", "2001:db8::1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newBare()
			for _, s := range tt.lookup {
				if _, ok := f.Lookup(netip.MustParseAddr(s)); ok {
					t.Fatalf("Lookup(%s) hit on an empty cache", s)
				}
			}
			if len(f.reqs) != len(tt.queued) {
				t.Fatalf("%d requests queued, want %d", len(f.reqs), len(tt.queued))
			}
			for _, s := range tt.queued {
				if got := <-f.reqs; got != netip.MustParseAddr(s) {
					t.Fatalf("queued %v, want %s", got, s)
				}
			}
		})
	}
}

// TestLookupMissNeverBlocks fills the queue far beyond its bound; Lookup
// must keep returning, and a slot freed by the writer opens up again.
func TestLookupMissNeverBlocks(t *testing.T) {
	f := newBare()
	for i := range 4 * reqQueue {
		f.Lookup(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	if len(f.reqs) != reqQueue {
		t.Fatalf("queue holds %d, want it full at %d", len(f.reqs), reqQueue)
	}
	first := <-f.reqs
	f.clearPending(first)
	f.Lookup(first)
	if len(f.reqs) != reqQueue {
		t.Fatalf("a served destination was not queued again: %d queued", len(f.reqs))
	}
}

// TestUnresolvedEntryDoesNotQueue checks that a destination the writer
// already works on is not queued again by every packet.
func TestUnresolvedEntryDoesNotQueue(t *testing.T) {
	f := newBare()
	dst := netip.MustParseAddr("198.51.100.9")
	st := &dstState{}
	f.snap.Store(&snapshot{m: map[netip.Addr]*entry{dst: {st: st}}})
	if _, ok := f.Lookup(dst); ok {
		t.Fatal("unresolved entry hit")
	}
	if len(f.reqs) != 0 {
		t.Fatalf("%d requests queued for a known entry", len(f.reqs))
	}
	if !st.used.Load() {
		t.Fatal("miss on a known entry did not mark it used, so it would not be retried")
	}
}

// TestUnreachable tells a destination without a route, whose packets
// are dropped at once, from ones still being resolved, which are held.
func TestUnreachable(t *testing.T) {
	f := newBare()
	noRoute := netip.MustParseAddr("198.51.100.1")
	resolving := netip.MustParseAddr("198.51.100.2")
	f.snap.Store(&snapshot{m: map[netip.Addr]*entry{
		noRoute:   {noRoute: true, st: &dstState{}},
		resolving: {st: &dstState{}},
	}})
	for _, c := range []struct {
		dst  string
		want bool
	}{{"198.51.100.1", true}, {"::ffff:198.51.100.1", true}, {"198.51.100.2", false}, {"198.51.100.3", false}} {
		if got := f.Unreachable(netip.MustParseAddr(c.dst)); got != c.want {
			t.Errorf("Unreachable(%s) = %v, want %v", c.dst, got, c.want)
		}
	}
	if len(f.reqs) != 0 {
		t.Errorf("Unreachable queued %d requests", len(f.reqs))
	}
}

func TestLookupInvalidAddr(t *testing.T) {
	f := newBare()
	if _, ok := f.Lookup(netip.Addr{}); ok {
		t.Fatal("zero address hit")
	}
	if len(f.reqs) != 0 {
		t.Fatal("zero address queued for resolution")
	}
}

func BenchmarkLookupHit(b *testing.B) {
	f := newBare()
	m := map[netip.Addr]*entry{}
	for i := range 1024 {
		m[netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})] = &entry{ok: true, st: &dstState{}}
	}
	f.snap.Store(&snapshot{m: m})
	dst := netip.AddrFrom4([4]byte{10, 0, 1, 7})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, ok := f.Lookup(dst); !ok {
				b.Fatal("miss")
			}
		}
	})
}

// TestStatic checks the kernel-free FIB: it answers its hops, misses
// everything else, and closes.
func TestStatic(t *testing.T) {
	hop := NextHop{IfIndex: 2, MTU: 1500, DstMAC: [6]byte{2, 0, 0, 0, 0, 9}}
	f := NewStatic(map[netip.Addr]NextHop{netip.MustParseAddr("::ffff:192.0.2.2"): hop})
	if got, ok := f.Lookup(netip.MustParseAddr("192.0.2.2")); !ok || got != hop {
		t.Fatalf("Lookup = %+v, %v; want %+v, true", got, ok, hop)
	}
	if _, ok := f.Lookup(netip.MustParseAddr("192.0.2.3")); ok {
		t.Fatal("a destination without a hop was found")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestLookupMemo checks that a memoized answer lasts exactly as long as the
// snapshot it came from, that each memoized hit still marks the entry used
// (or the sweep would evict a destination in use), and that a miss is not
// remembered, so the next packet asks again.
func TestLookupMemo(t *testing.T) {
	f := newBare()
	var m Memo
	a := netip.MustParseAddr("192.0.2.1")
	b := netip.MustParseAddr("192.0.2.2")
	first := NextHop{IfIndex: 2, MTU: 1500, DstMAC: [6]byte{2, 0, 0, 0, 0, 1}}
	stA := &dstState{}
	f.snap.Store(&snapshot{m: map[netip.Addr]*entry{a: {nh: first, ok: true, st: stA}}})

	if _, ok := f.LookupMemo(&m, b); ok || len(f.reqs) != 1 {
		t.Fatalf("miss on b: ok %v, %d queued; want false, 1", ok, len(f.reqs))
	}
	<-f.reqs
	f.clearPending(b)
	if _, ok := f.LookupMemo(&m, b); ok || len(f.reqs) != 1 {
		t.Fatalf("second miss on b was answered from the memo (%d queued)", len(f.reqs))
	}

	for range 3 {
		if got, ok := f.LookupMemo(&m, a); !ok || got != first {
			t.Fatalf("LookupMemo(a) = %+v, %v; want %+v", got, ok, first)
		}
		if !stA.used.Swap(false) {
			t.Fatal("a memoized hit did not mark the entry used")
		}
	}
	if got, ok := f.LookupMemo(&m, netip.MustParseAddr("::ffff:192.0.2.1")); !ok || got != first {
		t.Fatalf("mapped address: %+v, %v; want the IPv4 entry", got, ok)
	}

	// A new snapshot (the route or neighbour changed) replaces the answer.
	second := first
	second.DstMAC[5] = 9
	f.snap.Store(&snapshot{m: map[netip.Addr]*entry{a: {nh: second, ok: true, st: stA}}})
	if got, _ := f.LookupMemo(&m, a); got != second {
		t.Fatalf("after a new snapshot: %+v, want %+v", got, second)
	}
	// And one without the destination makes it a miss again.
	f.snap.Store(&snapshot{m: map[netip.Addr]*entry{}})
	if _, ok := f.LookupMemo(&m, a); ok {
		t.Fatal("memo outlived its snapshot")
	}
	if n := testing.AllocsPerRun(1000, func() { f.LookupMemo(&m, b) }); n != 0 {
		t.Fatalf("memoized lookup allocates %v times", n)
	}
}
