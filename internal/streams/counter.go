// Package streams runs test traffic through the lab and accounts for every
// packet: a sequence-numbered UDP stream at a fixed rate whose receiver
// reports what was lost, duplicated or reordered, and a paced TCP stream
// whose receiver checks every byte. The rekey and DPD tests use them to
// prove a tunnel carried traffic without loss while its SAs changed.
package streams

import (
	"fmt"
	"strings"
)

// Counter accounts for sequence numbers (0, 1, 2, ...) as a receiver sees
// them. It is not safe for concurrent use; UDP guards it with a mutex.
type Counter struct {
	seen     []uint64 // bitmap of sequence numbers received at least once
	received uint64   // datagrams accepted, duplicates included
	unique   uint64
	dups     uint64
	// reordered counts first arrivals of a number lower than the highest
	// one already seen: a datagram overtaken by a later one.
	reordered uint64
	max       uint64
	any       bool
}

// Add records the arrival of seq.
func (c *Counter) Add(seq uint64) {
	c.received++
	w, bit := seq/64, uint64(1)<<(seq%64)
	for uint64(len(c.seen)) <= w {
		c.seen = append(c.seen, 0)
	}
	if c.seen[w]&bit != 0 {
		c.dups++
		return
	}
	c.seen[w] |= bit
	c.unique++
	if c.any && seq < c.max {
		c.reordered++
	}
	if !c.any || seq > c.max {
		c.max, c.any = seq, true
	}
}

// Has reports whether seq arrived.
func (c *Counter) Has(seq uint64) bool {
	w := seq / 64
	return w < uint64(len(c.seen)) && c.seen[w]&(1<<(seq%64)) != 0
}

// Result is a receiver's account of a stream of Sent numbers (0..Sent-1).
type Result struct {
	Sent       uint64
	Received   uint64 // datagrams, duplicates included
	Unique     uint64
	Missing    uint64 // of 0..Sent-1, never arrived
	Duplicates uint64
	Reordered  uint64
	// Stray counts numbers >= Sent: the sender never sent them, so the
	// datagram came from somewhere else or was corrupted into a number.
	Stray uint64
	// Gaps are the first runs of missing numbers, for the log.
	Gaps []Gap
	// SendErrors counts numbers the sender failed to write; they are
	// counted as missing too, since the packet never reached the wire.
	SendErrors uint64
}

// Gap is a run of missing sequence numbers, First..Last inclusive.
type Gap struct{ First, Last uint64 }

// maxGaps bounds Result.Gaps: enough to see a pattern, not a wall of text.
const maxGaps = 16

// Result accounts for a stream of sent numbers 0..sent-1.
func (c *Counter) Result(sent uint64) Result {
	r := Result{Sent: sent, Received: c.received, Unique: c.unique, Duplicates: c.dups, Reordered: c.reordered}
	var inRange uint64
	var gap *Gap
	for seq := uint64(0); seq < sent; seq++ {
		if c.Has(seq) {
			inRange++
			gap = nil
			continue
		}
		r.Missing++
		switch {
		case gap != nil:
			gap.Last = seq
		case len(r.Gaps) < maxGaps:
			r.Gaps = append(r.Gaps, Gap{seq, seq})
			gap = &r.Gaps[len(r.Gaps)-1]
		}
	}
	r.Stray = c.unique - inRange
	return r
}

// Lost is the number of datagrams that did not arrive.
func (r Result) Lost() uint64 { return r.Missing }

func (r Result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sent %d, received %d (%d unique), missing %d, duplicates %d, reordered %d",
		r.Sent, r.Received, r.Unique, r.Missing, r.Duplicates, r.Reordered)
	if r.Stray > 0 {
		fmt.Fprintf(&b, ", stray %d", r.Stray)
	}
	if r.SendErrors > 0 {
		fmt.Fprintf(&b, ", send errors %d", r.SendErrors)
	}
	if len(r.Gaps) > 0 {
		parts := make([]string, 0, len(r.Gaps))
		for _, g := range r.Gaps {
			if g.First == g.Last {
				parts = append(parts, fmt.Sprint(g.First))
			} else {
				parts = append(parts, fmt.Sprintf("%d-%d", g.First, g.Last))
			}
		}
		fmt.Fprintf(&b, "; missing runs: %s", strings.Join(parts, ", "))
		if r.Missing > 0 && len(r.Gaps) == maxGaps {
			b.WriteString(", ...")
		}
	}
	return b.String()
}
