package esp

import (
	"math"
	"sync"
	"sync/atomic"
)

const (
	// MaxReplayWindow is the largest anti-replay window an SA can have.
	MaxReplayWindow = 4096
	// DefaultReplayWindow is used when Config.ReplayWindow is 0.
	DefaultReplayWindow = 1024
)

// replayWindow is the RFC 6479 anti-replay window: a ring of 64-bit blocks
// one block larger than the window, so sliding it forward only clears whole
// blocks and never shifts bits. Checks read it without the lock (a stale
// answer only costs a wasted decryption, never a wrong verdict), updates take
// the lock and decide again.
type replayWindow struct {
	size   uint64 // W: sequence numbers in (top-W, top] are tracked
	mask   uint64 // number of blocks - 1
	top    atomic.Uint64
	mu     sync.Mutex
	blocks []atomic.Uint64
}

func newReplayWindow(size int) *replayWindow {
	n := uint64(1)
	for n < uint64(size+63)/64+1 {
		n <<= 1
	}
	return &replayWindow{size: uint64(size), mask: n - 1, blocks: make([]atomic.Uint64, n)}
}

// inferESN reconstructs the 64-bit sequence number from its low half as in
// RFC 4303 Appendix A2.1: the high half is the one that puts seql nearest to
// the window (top-W, top]. It returns 0, never a valid number, where the
// high half would leave the 64-bit space.
func inferESN(top uint64, seql uint32, w uint64) uint64 {
	tl, th := uint32(top), top>>32
	bottom := tl - uint32(w-1) // wraps in case B, as the RFC intends
	if uint64(tl) >= w-1 {     // case A: the window lies in one subspace
		if seql >= bottom {
			return th<<32 | uint64(seql)
		}
		if th == math.MaxUint32 {
			return 0
		}
		return (th+1)<<32 | uint64(seql)
	}
	// case B: the window straddles the subspace boundary
	if seql >= bottom {
		if th == 0 {
			return 0
		}
		return (th-1)<<32 | uint64(seql)
	}
	return th<<32 | uint64(seql)
}

// check returns the full sequence number of a packet and whether it may be
// new: not 0, not left of the window, not seen.
func (w *replayWindow) check(seql uint32, esn bool) (uint64, bool) {
	top := w.top.Load()
	seq := uint64(seql)
	if esn {
		seq = inferESN(top, seql, w.size)
	}
	if seq == 0 {
		return 0, false
	}
	if seq > top {
		return seq, true
	}
	if top-seq >= w.size {
		return seq, false
	}
	return seq, w.blocks[(seq>>6)&w.mask].Load()&(1<<(seq&63)) == 0
}

// update records seq, whose ICV is valid, and reports false if another
// worker recorded it first or moved the window past it meanwhile.
func (w *replayWindow) update(seq uint64) bool {
	w.mu.Lock()
	ok := w.record(seq)
	w.mu.Unlock()
	return ok
}

// record is update with the lock held.
func (w *replayWindow) record(seq uint64) bool {
	top := w.top.Load()
	if seq > top {
		cur, next := top>>6, seq>>6
		n := next - cur
		if n > w.mask+1 {
			n = w.mask + 1
		}
		for i := uint64(1); i <= n; i++ {
			w.blocks[(cur+i)&w.mask].Store(0)
		}
		w.top.Store(seq)
	} else if top-seq >= w.size {
		return false
	}
	b := &w.blocks[(seq>>6)&w.mask]
	old := b.Load()
	bit := uint64(1) << (seq & 63)
	if old&bit != 0 {
		return false
	}
	b.Store(old | bit)
	return true
}
