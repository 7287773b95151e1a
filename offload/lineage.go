package offload

import (
	"cmp"
	"maps"
	"slices"
)

type lineageKey struct {
	conn, child string
	dir         Direction
}

// Lineage sums traffic per connection, child and direction, the way
// Stats.Children reports it: a data plane keeps one for the SAs it has
// deleted, and its Stats adds the live SAs to a copy, so the totals do not
// go back when a child is rekeyed or goes down. Entries of removed
// connections stay: their totals are counters that must not go back while
// the daemon runs, and they cost a few bytes.
type Lineage map[lineageKey]ChildCounters

// Add counts traffic to conn/child/dir.
func (l Lineage) Add(conn, child string, dir Direction, bytes, packets uint64) {
	k := lineageKey{conn, child, dir}
	c := l[k]
	c.Conn, c.Child, c.Dir = conn, child, dir
	c.Bytes += bytes
	c.Packets += packets
	l[k] = c
}

// Clone returns a copy to add live SAs to.
func (l Lineage) Clone() Lineage {
	out := make(Lineage, len(l))
	maps.Copy(out, l)
	return out
}

// List returns the totals sorted by conn, child and direction.
func (l Lineage) List() []ChildCounters {
	out := slices.Collect(maps.Values(l))
	slices.SortFunc(out, func(a, b ChildCounters) int {
		return cmp.Or(cmp.Compare(a.Conn, b.Conn), cmp.Compare(a.Child, b.Child), cmp.Compare(a.Dir, b.Dir))
	})
	return out
}
