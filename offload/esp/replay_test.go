package esp

import (
	"math"
	"testing"
)

func TestInferESN(t *testing.T) {
	const w = 64
	for _, c := range []struct {
		name string
		top  uint64
		seql uint32
		want uint64
	}{
		{"case A, in window", 5<<32 | 1000, 990, 5<<32 | 990},
		{"case A, ahead", 5<<32 | 1000, 2000, 5<<32 | 2000},
		{"case A, bottom edge", 5<<32 | 1000, 1000 - w + 1, 5<<32 | (1000 - w + 1)},
		{"case A, below bottom is next subspace", 5<<32 | 1000, 1000 - w, 6<<32 | (1000 - w)},
		{"case A, wrap to next subspace", 5<<32 | math.MaxUint32, 3, 6<<32 | 3},
		{"case B, previous subspace", 5<<32 | 10, math.MaxUint32 - 2, 4<<32 | (math.MaxUint32 - 2)},
		{"case B, current subspace", 5<<32 | 10, 7, 5<<32 | 7},
		{"case B, ahead", 5<<32 | 10, 100000, 5<<32 | 100000},
		{"case B, nothing before 0", 0, math.MaxUint32, 0},
		{"first packet", 0, 1, 1},
		{"end of space", math.MaxUint64, 0, 0},
	} {
		if got := inferESN(c.top, c.seql, w); got != c.want {
			t.Errorf("%s: inferESN(%#x, %#x) = %#x, want %#x", c.name, c.top, c.seql, got, c.want)
		}
	}
}

// replayStep is one packet offered to a window: its low or full sequence
// number and whether it must pass.
type replayStep struct {
	seq  uint64
	pass bool
}

// runReplay offers steps to a window whose top starts at top.
func runReplay(t *testing.T, size int, top uint64, esn bool, steps []replayStep) {
	t.Helper()
	r := newReplayWindow(size)
	r.top.Store(top)
	for i, s := range steps {
		seq, ok := r.check(uint32(s.seq), esn)
		if ok {
			if seq != s.seq {
				t.Fatalf("step %d: inferred %#x, want %#x", i, seq, s.seq)
			}
			ok = r.update(seq)
		}
		if ok != s.pass {
			t.Fatalf("step %d: seq %#x pass=%v, want %v", i, s.seq, ok, s.pass)
		}
	}
}

func TestReplayWindow(t *testing.T) {
	for _, c := range []struct {
		name  string
		size  int
		esn   bool
		steps []replayStep
	}{
		{"zero", 64, false, []replayStep{{0, false}, {1, true}}},
		{"duplicates", 64, false, []replayStep{{1, true}, {1, false}, {2, true}, {1, false}, {2, false}}},
		{"reorder", 64, false, []replayStep{{5, true}, {3, true}, {4, true}, {1, true}, {2, true}, {3, false}}},
		{"window edge", 64, false, []replayStep{{100, true}, {37, true}, {36, false}, {37, false}}},
		{"edge of odd window", 100, false, []replayStep{{1000, true}, {901, true}, {900, false}}},
		{"full window", 4096, false, []replayStep{{10000, true}, {10000 - 4095, true}, {10000 - 4096, false}, {6000, true}}},
		{"far ahead", 1024, false, []replayStep{{1, true}, {2, true}, {1 << 20, true}, {2, false}, {1<<20 - 1023, true}, {1<<20 - 1024, false}, {1 << 20, false}}},
		{"jump by block multiple", 64, false, []replayStep{{64, true}, {128, true}, {65, true}, {64, false}, {192, true}, {129, true}, {128, false}}},
		{"jump clears stale bits", 64, false, []replayStep{{1, true}, {200, true}, {129, false}, {137, true}, {137, false}}},
		{"32-bit end", 64, false, []replayStep{{math.MaxUint32, true}, {math.MaxUint32 - 1, true}, {math.MaxUint32, false}}},
		{"ESN wrap", 64, true, []replayStep{
			{1<<32 - 2, true}, {1<<32 - 1, true}, {1 << 32, true}, {1<<32 + 1, true},
			{1<<32 - 3, true}, {1<<32 - 1, false}, {1 << 32, false}, {1<<32 + 5, true},
		}},
		{"ESN reorder across wrap", 64, true, []replayStep{{1<<32 - 10, true}, {1<<32 + 3, true}, {1<<32 - 5, true}, {1<<32 - 5, false}, {1<<32 + 2, true}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var top uint64
			if c.esn {
				// Start next to 2^32 without sending 2^32 packets.
				top = c.steps[0].seq - 1
			}
			runReplay(t, c.size, top, c.esn, c.steps)
		})
	}
}

func TestReplayAgainstModel(t *testing.T) {
	for _, size := range []int{1, 32, 64, 65, 1000, 4096} {
		r := newReplayWindow(size)
		seen := map[uint64]bool{}
		var top uint64
		x := uint64(12345)
		for range 20000 {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			var seq uint64
			switch x % 4 {
			case 0:
				seq = top + 1 + x>>60
			case 1:
				seq = top + x>>54
			default:
				seq = top - min(top, x>>52&8191)
			}
			want := seq != 0 && (seq > top || top-seq < uint64(size)) && !seen[seq]
			_, ok := r.check(uint32(seq), false)
			if ok {
				ok = r.update(seq)
			}
			if ok != want {
				t.Fatalf("window %d, top %d: seq %d pass=%v, want %v", size, top, seq, ok, want)
			}
			if ok {
				seen[seq] = true
				top = max(top, seq)
			}
		}
	}
}

// TestReplayRaceRecheck covers two workers that both pass the lock-free
// check with the same packet, or with one the other pushes out of the
// window: the locked update must refuse the second.
func TestReplayRaceRecheck(t *testing.T) {
	r := newReplayWindow(64)
	a, okA := r.check(10, false)
	b, okB := r.check(10, false)
	if !okA || !okB {
		t.Fatal("first checks failed")
	}
	if !r.update(a) || r.update(b) {
		t.Fatal("duplicate recorded twice")
	}
	old, ok := r.check(11, false)
	if !ok {
		t.Fatal("check 11")
	}
	if !r.update(200) {
		t.Fatal("update 200")
	}
	if r.update(old) {
		t.Fatal("number left behind by the window recorded")
	}
}
