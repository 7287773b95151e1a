package afxdp

import (
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

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
	// txMu orders the SA's packets on the WAN across workers. The esp
	// engine gives each Encrypt the SA's next sequence number, so a
	// worker holds txMu from the first Encrypt of a run of the SA's
	// packets until the run is on the TX ring of the SA's home port (see
	// wanPort): runs get consecutive sequence numbers and enter that ring,
	// and so the wire, in the order they got them, whichever worker
	// sealed them. Without it two workers interleave numbers and send
	// them on two queues. See beginRun for why it cannot deadlock.
	txMu sync.Mutex
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
	levels := t.v4
	if dst.Is6() {
		levels = t.v6
	}
	for i := range levels {
		p, err := dst.Prefix(levels[i].bits)
		if err != nil {
			return nil
		}
		e := levels[i].m[p]
		if e == nil {
			continue
		}
		if !e.src.Contains(src) || (e.proto != 0 && e.proto != proto) {
			return nil
		}
		return e
	}
	return nil
}
