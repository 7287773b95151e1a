package afxdp

import (
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/xdpsec/xdpsec/offload/afxdp/xsk"
	"github.com/xdpsec/xdpsec/offload/esp"
)

// outSA is an outbound SA as the workers see it.
type outSA struct {
	sa     *esp.SA
	spi    uint32
	remote netip.Addr // outer destination: the next hop is looked up for it
	// overhead is the most ESP can add to a packet of this SA (outer
	// headers, IV, padding, trailer, ICV): a packet longer than the path
	// MTU minus overhead cannot leave in one piece.
	overhead int
	// expired is set when the SA's hard time limit passes; the esp engine
	// enforces only volume limits.
	expired atomic.Bool
	// txMu numbers the SA's runs: under it a worker reserves a run's
	// sequence numbers (esp ReserveSeq) and takes the run's ticket, so
	// tickets and sequence ranges are handed out in the same order. The
	// worker then encrypts without any lock, several workers at once if
	// one SA is hot, and hands the run to ord, which puts runs on the TX
	// ring of the SA's home port (see wanPort) in ticket order, and so
	// the wire in sequence-number order, whichever worker sealed them.
	// Without the order two workers would interleave numbers and send
	// them on two queues. See submit for why it cannot deadlock.
	txMu sync.Mutex
	// ticket is the next run's ticket; guarded by txMu.
	ticket uint64
	ord    txOrder
}

// orderSlots bounds how many of an SA's sealed runs may wait for a
// predecessor. A run whose ticket is that far ahead of the next one to
// send waits for the predecessors instead of parking (see submit).
const orderSlots = 8

// txOrder sends an SA's runs in ticket order. A run whose predecessors
// are all sent goes on the ring at once; any other is parked in slot
// ticket%orderSlots, copied out of its worker's scratch space so that the
// worker can move on, and is sent by whoever sends its predecessor. The
// slots are part of the outSA, so parking allocates nothing.
type txOrder struct {
	mu sync.Mutex
	// next is the ticket of the run to send next. Every ticket below it
	// is sent; every parked run's ticket is in [next, next+orderSlots),
	// so no two of them want the same slot.
	next  uint64
	slots [orderSlots]parkedRun
}

// parkedRun is a sealed run waiting for its predecessors: frames of the
// SA's home port, ready to send.
type parkedRun struct {
	used   bool
	ticket uint64
	n      int
	descs  [batchSize]xsk.Desc
}

// spdEntry is an outbound protect policy: traffic to dst from src (and of
// proto, unless 0) leaves through out.
type spdEntry struct {
	src, dst netip.Prefix
	proto    uint8
	out      *outSA
}

// lpmLevel holds the entries of one prefix length.
type lpmLevel struct {
	bits int
	m    map[netip.Prefix]*spdEntry
}

// spdTable is an immutable copy of the outbound protect policies, keyed
// like xdp_lan's SPD: one entry per destination prefix, longest prefix
// wins, then the source and protocol must match. Writers build a new
// table and publish it through an atomic pointer, so lookups take no lock.
type spdTable struct {
	v4, v6 []lpmLevel // longest prefix first
}

func buildSPD(entries []*spdEntry) *spdTable {
	t := &spdTable{}
	for _, e := range entries {
		levels := &t.v4
		if e.dst.Addr().Is6() {
			levels = &t.v6
		}
		i := slices.IndexFunc(*levels, func(l lpmLevel) bool { return l.bits == e.dst.Bits() })
		if i < 0 {
			*levels = append(*levels, lpmLevel{bits: e.dst.Bits(), m: map[netip.Prefix]*spdEntry{}})
			i = len(*levels) - 1
		}
		(*levels)[i].m[e.dst.Masked()] = e
	}
	for _, levels := range [][]lpmLevel{t.v4, t.v6} {
		slices.SortFunc(levels, func(a, b lpmLevel) int { return b.bits - a.bits })
	}
	return t
}

// lookup returns the entry for a packet, nil when none applies. As in
// xdp_lan, only the longest matching destination prefix is considered: a
// packet it does not select is not protected by a shorter one either.
func (t *spdTable) lookup(src, dst netip.Addr, proto uint8) *spdEntry {
	return selects(t.longest(dst), src, proto)
}

// spdMemo is one worker's memory of the packet it looked up last and the
// answer: a run of packets of one flow skips the per-level maps and the
// selector check while the table is unchanged.
type spdMemo struct {
	t        *spdTable
	src, dst netip.Addr
	proto    uint8
	e        *spdEntry
}

// lookupMemo is lookup, answered from m when m holds the same packet
// header fields for this table, and remembered in m otherwise.
func (t *spdTable) lookupMemo(m *spdMemo, src, dst netip.Addr, proto uint8) *spdEntry {
	if m.t != t || m.dst != dst || m.src != src || m.proto != proto {
		*m = spdMemo{t: t, src: src, dst: dst, proto: proto, e: t.lookup(src, dst, proto)}
	}
	return m.e
}

// longest returns the entry of dst's longest matching prefix, nil when
// no prefix matches.
func (t *spdTable) longest(dst netip.Addr) *spdEntry {
	levels := t.v4
	if dst.Is6() {
		levels = t.v6
	}
	for i := range levels {
		p, err := dst.Prefix(levels[i].bits)
		if err != nil {
			return nil
		}
		if e := levels[i].m[p]; e != nil {
			return e
		}
	}
	return nil
}

// selects returns e when it applies to a packet from src with protocol
// proto, nil otherwise (and for a nil e).
func selects(e *spdEntry, src netip.Addr, proto uint8) *spdEntry {
	if e == nil || !e.src.Contains(src) || (e.proto != 0 && e.proto != proto) {
		return nil
	}
	return e
}
