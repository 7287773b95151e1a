package ike

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"time"

	"go.uber.org/zap"
)

// Change is what a changed connection needs from the engine when the
// configuration is replaced (SetConns). The classes are ordered: a change
// needs the most its fields need.
type Change uint8

// Change classes.
const (
	// ChangeNone: nothing the engine uses differs (a renamed psk_file
	// with the same key, say); the SAs stay as they are.
	ChangeNone Change = iota
	// ChangeTimers: lifetimes, rekey jitter, DPD or the actions; the
	// existing SAs stay and their timers are re-armed.
	ChangeTimers
	// ChangeChildren: a child was added, removed, or its selectors,
	// mode, proposals or replay window changed; just those CHILD SAs are
	// deleted and created again over the IKE SA, which stays.
	ChangeChildren
	// ChangeIKE: addresses, identities, the key, the IKE proposals or the
	// encapsulation changed; the IKE SA is deleted and the connection
	// needs a new one.
	ChangeIKE
	// ChangeAdded and ChangeRemoved: the connection is new or gone.
	ChangeAdded
	ChangeRemoved
)

func (c Change) String() string {
	switch c {
	case ChangeTimers:
		return "timers"
	case ChangeChildren:
		return "child"
	case ChangeIKE:
		return "ike"
	case ChangeAdded:
		return "added"
	case ChangeRemoved:
		return "removed"
	}
	return "none"
}

// ConnChange reports what SetConns did with one connection.
type ConnChange struct {
	Conn   string
	Change Change
	// Children names the children whose CHILD SAs are created or deleted
	// (ChangeChildren only).
	Children []string
}

// SetConns replaces the configuration and reports, per connection, what
// the change needed (Classify): connections that are gone or whose IKE
// settings changed lose their IKE SA; ones whose children changed keep it
// and have just those CHILD SAs deleted and created again; ones whose
// timers changed keep their SAs with the timers re-armed; the others are
// untouched. Initiating a connection again is the caller's business.
func (e *Engine) SetConns(conns []Conn) []ConnChange {
	next := make([]*Conn, len(conns))
	for i := range conns {
		c := conns[i]
		// The caller's later edits must not reach the running copy
		// (nor make it compare equal to the next configuration).
		c.Children = slices.Clone(c.Children)
		next[i] = &c
	}
	e.mu.Lock()
	changes, plan := e.planLocked(next)
	prev := e.conns
	e.conns = next
	var all []*ikeSA
	for _, sa := range e.sas {
		all = append(all, sa)
	}
	e.mu.Unlock()
	e.retrap(prev, next, plan)
	for _, sa := range all {
		sa.mu.Lock()
		if sa.conn != nil {
			p, ok := plan[sa.conn]
			switch {
			case !ok || p.change == ChangeIKE || p.change == ChangeRemoved:
				e.log.Info("connection removed or changed, deleting its IKE SA", sa.fields()...)
				if sa.state == stateEstablished {
					sa.startDelete("configuration changed")
				} else {
					sa.fail(fmt.Errorf("connection %q removed or changed", sa.conn.Name))
				}
			case p.change == ChangeTimers || p.change == ChangeChildren:
				e.log.Info("connection changed, keeping its IKE SA", sa.fields(
					zap.Stringer("change", p.change), zap.Strings("children", p.children))...)
				sa.reconfigure(p.next, p.children)
			}
		}
		sa.mu.Unlock()
	}
	return changes
}

// connPlan is what SetConns does with one connection of the old
// configuration.
type connPlan struct {
	change   Change
	next     *Conn
	children []string
}

// planLocked classifies the new connections against the old ones (e.mu
// held). Unchanged ones keep their old pointer in next, so SAs referring
// to it stay attached to the current configuration. The plan is keyed
// by the old connections; a new one appears under its own pointer.
func (e *Engine) planLocked(next []*Conn) ([]ConnChange, map[*Conn]connPlan) {
	plan := map[*Conn]connPlan{}
	changes := make([]ConnChange, 0, len(next))
	for i, n := range next {
		idx := slices.IndexFunc(e.conns, func(c *Conn) bool { return c.Name == n.Name })
		if idx < 0 {
			plan[n] = connPlan{change: ChangeAdded, next: n}
			changes = append(changes, ConnChange{Conn: n.Name, Change: ChangeAdded})
			continue
		}
		old := e.conns[idx]
		ch, children := classify(old, n)
		if ch == ChangeNone {
			next[i] = old
		}
		plan[old] = connPlan{change: ch, next: next[i], children: children}
		changes = append(changes, ConnChange{Conn: n.Name, Change: ch, Children: children})
	}
	for _, old := range e.conns {
		if _, ok := plan[old]; !ok {
			plan[old] = connPlan{change: ChangeRemoved}
			changes = append(changes, ConnChange{Conn: old.Name, Change: ChangeRemoved})
		}
	}
	return changes, plan
}

// retrap moves trap policies to the new configuration: the old
// connections' go first, so that a changed connection's new ones are not
// removed with them. Only the children a change touches are re-trapped.
func (e *Engine) retrap(prev, next []*Conn, plan map[*Conn]connPlan) {
	touched := func(old, n *Conn, p connPlan, name string) bool {
		switch p.change {
		case ChangeNone:
			return false
		case ChangeTimers, ChangeChildren:
			return old.StartAction != n.StartAction || slices.Contains(p.children, name)
		}
		return true
	}
	for _, c := range prev {
		p := plan[c]
		if c.StartAction != StartTrap {
			continue
		}
		for _, ch := range c.Children {
			if p.next == nil || touched(c, p.next, p, ch.Name) {
				e.untrap(c.Name, ch)
			}
		}
	}
	olds := map[*Conn]*Conn{}
	for old, p := range plan {
		if p.next != nil {
			olds[p.next] = old
		}
	}
	for _, c := range next {
		old := olds[c]
		if c.StartAction != StartTrap || old == nil {
			continue
		}
		for _, ch := range c.Children {
			if touched(old, c, plan[old], ch.Name) && !e.childLive(c.Name, ch.Name) {
				e.trap(c.Name, ch)
			}
		}
	}
}

// Classify says what replacing connection old by next needs. A field it
// does not know of counts as an IKE change: the safe side.
func Classify(old, next *Conn) Change {
	ch, _ := classify(old, next)
	return ch
}

func classify(old, next *Conn) (Change, []string) {
	if reflect.DeepEqual(*old, *next) {
		return ChangeNone, nil
	}
	if old.Name != next.Name || old.LocalAddr != next.LocalAddr || old.RemoteAddr != next.RemoteAddr ||
		!old.LocalID.Equal(next.LocalID) || !old.RemoteID.Equal(next.RemoteID) ||
		!bytes.Equal(old.PSK, next.PSK) || !reflect.DeepEqual(old.IKEProposals, next.IKEProposals) ||
		old.ForceEncap != next.ForceEncap {
		return ChangeIKE, nil
	}
	children := changedChildren(old, next)
	// What is left once the IKE and child fields are known equal must be
	// a timer or an action; anything else is a field added to Conn that
	// this function has not been taught.
	a, b := *old, *next
	a.IKELifetime, a.RekeyJitter, a.DPDDelay, a.DPDAction, a.StartAction = 0, 0, 0, 0, 0
	b.IKELifetime, b.RekeyJitter, b.DPDDelay, b.DPDAction, b.StartAction = 0, 0, 0, 0, 0
	a.Children, b.Children = nil, nil
	if !reflect.DeepEqual(a, b) {
		return ChangeIKE, nil
	}
	if len(children) > 0 {
		return ChangeChildren, children
	}
	return ChangeTimers, nil
}

// changedChildren names the children added, removed or changed in a way
// that needs a new CHILD SA (a lifetime alone does not).
func changedChildren(old, next *Conn) []string {
	var out []string
	for i := range next.Children {
		n := &next.Children[i]
		o := childNamed(old, n.Name)
		if o == nil {
			out = append(out, n.Name)
			continue
		}
		a, b := *o, *n
		a.Lifetime, b.Lifetime = 0, 0
		if !reflect.DeepEqual(a, b) {
			out = append(out, n.Name)
		}
	}
	for i := range old.Children {
		if childNamed(next, old.Children[i].Name) == nil {
			out = append(out, old.Children[i].Name)
		}
	}
	return out
}

func childNamed(c *Conn, name string) *Child {
	for i := range c.Children {
		if c.Children[i].Name == name {
			return &c.Children[i]
		}
	}
	return nil
}

// reconfigure moves an SA of a connection changed in its timers or
// children onto the new configuration next (sa.mu held): its timers are
// re-armed where their settings changed, and the CHILD SAs of the
// children named in changed are deleted and, where the child is still
// configured and this end brings it up, created again.
func (sa *ikeSA) reconfigure(next *Conn, changed []string) {
	old := sa.conn
	sa.conn = next
	for _, c := range sa.children {
		if nc := childNamed(next, c.sa.Child); nc != nil {
			c.cfg = nc
		}
	}
	if sa.gone || sa.state != stateEstablished {
		return
	}
	sa.rearmTimers(old)
	for _, c := range sa.children {
		if !slices.Contains(changed, c.sa.Child) && c.state != childRekeyed && !c.retired {
			sa.rearmChild(c, old)
		}
	}
	for _, c := range slices.Clone(sa.children) {
		if slices.Contains(changed, c.sa.Child) && c.state != childRekeyed && !c.retired {
			sa.enqueue(deleteChildTask(c, "configuration changed", ""))
		}
	}
	// The IKE SA's initiator brings changed children back at once. The
	// responder of a start connection does too, but later, so that when
	// both ends reload the initiator's CHILD SA is the only one (the
	// task skips a child that is up by then). A trap connection's
	// children come back with traffic, a responder's with the peer.
	switch {
	case next.StartAction == StartTrap:
	case sa.initiator:
		sa.recreateChildren(changed)
	case next.StartAction == StartStart:
		sa.timers.set("recreate", sa.afterFunc(recreateDelay, func() { sa.recreateChildren(changed) }))
	}
}

// recreateDelay is how long the responder of a start connection leaves
// the initiator to create the CHILD SAs a reload changed.
const recreateDelay = 2 * time.Second

func (sa *ikeSA) recreateChildren(names []string) {
	if sa.state != stateEstablished || sa.conn == nil {
		return
	}
	for _, name := range names {
		if nc := childNamed(sa.conn, name); nc != nil && !sa.pendingCreate[name] {
			sa.pendingCreate[name] = true
			sa.enqueue(&createChildTask{cfg: nc})
		}
	}
}

// rearmTimers re-arms the IKE SA's rekey and DPD where the settings they
// come from differ between old and the SA's connection now.
func (sa *ikeSA) rearmTimers(old *Conn) {
	c := sa.conn
	if old == nil || c.IKELifetime != old.IKELifetime || c.RekeyJitter != old.RekeyJitter {
		switch {
		case sa.ikeRekey:
			// The rekey under way arms the new SA's timers from c.
		case c.IKELifetime > 0:
			// The lifetime counts from the SA's start, not the reload.
			d := max(softLifetime(c.IKELifetime, c.RekeyJitter)-time.Since(sa.established), 0)
			sa.rekeyAt = time.Now().Add(d)
			sa.timers.set("rekey", sa.afterFunc(d, func() { sa.queueIKERekey(nil) }))
		default:
			sa.timers.stop("rekey")
			sa.rekeyAt = time.Time{}
		}
	}
	if old == nil || c.DPDDelay != old.DPDDelay {
		if c.DPDDelay > 0 {
			sa.armDPD(c.DPDDelay)
		} else {
			sa.armQuietPeerCheck()
		}
	}
}

// rearmChild re-arms a CHILD SA's rekey and hard expiry for a changed
// lifetime or jitter; the new lifetime counts from the SA's start.
func (sa *ikeSA) rearmChild(c *childSA, old *Conn) {
	if c.cfg == nil || c.state != childInstalled || c.rekeyQueued {
		return
	}
	oc := (*Child)(nil)
	if old != nil {
		oc = childNamed(old, c.sa.Child)
	}
	if oc != nil && oc.Lifetime == c.cfg.Lifetime && old.RekeyJitter == sa.conn.RekeyJitter {
		return
	}
	c.sa.Lifetime = c.cfg.Lifetime
	if c.sa.Lifetime <= 0 {
		c.timers.stop("rekey")
		c.timers.stop("hard")
		c.rekeyAt = time.Time{}
		return
	}
	sa.armChildTimers(c)
}
