package ike

import (
	"net/netip"
	"testing"
)

// TestHalfOpenAdmission: a full table gives room to a request that proved
// itself by taking the oldest half-open SA that is not a configured
// peer's; with none such, or without proof, the request is dropped.
func TestHalfOpenAdmission(t *testing.T) {
	e := newEngine(Options{CookieThreshold: 1, HalfOpenLimit: 3})
	add := func(addr string, known bool) *ikeSA {
		ap := netip.MustParseAddrPort(addr)
		sa := &ikeSA{e: e, remote: ap, initFrom: ap, knownPeer: known}
		e.mu.Lock()
		e.halfOpen.add(sa)
		e.mu.Unlock()
		return sa
	}
	from := netip.MustParseAddrPort("198.51.100.9:500")
	peer := add("192.0.2.2:500", true)
	first := add("198.51.100.1:500", false)
	add("198.51.100.1:4500", false)
	if got := e.halfOpen.fromSource(first.remote.Addr()); got != 2 {
		t.Fatalf("half-open from %s: %d, want 2", first.remote.Addr(), got)
	}

	if e.admitHalfOpen(from, false) {
		t.Fatal("full table admitted a request without a COOKIE")
	}
	if n := e.Stats().Dropped[DropHalfOpenLimit]; n != 1 {
		t.Errorf("%s = %d, want 1", DropHalfOpenLimit, n)
	}
	if !e.admitHalfOpen(from, true) {
		t.Fatal("full table refused a request with a valid COOKIE")
	}
	if first.halfOpen != nil || !first.gone || peer.halfOpen == nil {
		t.Errorf("evicted: first %v (gone %v), configured peer's %v; want the oldest unknown one gone, the peer's kept",
			first.halfOpen != nil, first.gone, peer.halfOpen != nil)
	}
	if st := e.Stats(); st.HalfOpen != 2 || st.HalfOpenEvicted != 1 {
		t.Errorf("half-open %d, evicted %d; want 2 and 1", st.HalfOpen, st.HalfOpenEvicted)
	}
	if got := e.halfOpen.fromSource(first.remote.Addr()); got != 1 {
		t.Errorf("half-open from %s after the eviction: %d, want 1", first.remote.Addr(), got)
	}

	// Only configured peers' half-open SAs left: nothing to give up.
	e2 := newEngine(Options{CookieThreshold: 1, HalfOpenLimit: 1})
	ap := netip.MustParseAddrPort("192.0.2.2:500")
	sa := &ikeSA{e: e2, remote: ap, initFrom: ap, knownPeer: true}
	e2.halfOpen.add(sa)
	if e2.admitHalfOpen(from, true) || sa.halfOpen == nil {
		t.Error("a configured peer's half-open SA was evicted")
	}
	// Below the limit, no proof is needed.
	e3 := newEngine(Options{CookieThreshold: 1, HalfOpenLimit: 1})
	if !e3.admitHalfOpen(from, false) {
		t.Error("an empty table refused a request")
	}
}

func TestKnownPeer(t *testing.T) {
	a := netip.MustParseAddr("192.0.2.2")
	cands := []*Conn{{Name: "any"}, {Name: "b", RemoteAddr: a}}
	if !knownPeer(cands, a) || !knownPeer(cands, netip.AddrFrom16(a.As16())) {
		t.Error("configured remote address not known")
	}
	if knownPeer(cands[:1], a) || knownPeer(cands, netip.MustParseAddr("192.0.2.3")) {
		t.Error("%any or another address counted as a configured peer")
	}
}
