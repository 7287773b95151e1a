package ike

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xdpsec/xdpsec/ike/message"
	"github.com/xdpsec/xdpsec/internal/netlab"
)

// wire models the data planes of two gateways closely enough to check
// make-before-break without traffic: each end decrypts with its installed
// inbound SAs and sends each child's traffic with the SA its policies
// name. A packet is lost exactly when one end sends with an SA the other
// cannot decrypt, so every change either end makes is checked against
// the other end's state at that moment.
type wire struct {
	mu     sync.Mutex
	ends   [2]*modelPlane
	faults []string
}

// modelPlane is one end's data plane: an Installer.
type modelPlane struct {
	w    *wire
	idx  int
	next atomic.Uint32
	in   map[uint32]ChildSA // by SPI
	out  map[uint32]ChildSA
	// sending names the outbound SPI each conn/child's policies use.
	sending map[string]uint32
	traps   map[string]int
}

func newWire(baseA, baseB uint32) *wire {
	w := &wire{}
	for i, base := range []uint32{baseA, baseB} {
		p := &modelPlane{w: w, idx: i, in: map[uint32]ChildSA{}, out: map[uint32]ChildSA{},
			sending: map[string]uint32{}, traps: map[string]int{}}
		p.next.Store(base)
		w.ends[i] = p
	}
	return w
}

func (p *modelPlane) peer() *modelPlane { return p.w.ends[1-p.idx] }

func (p *modelPlane) fault(format string, args ...any) {
	p.w.faults = append(p.w.faults, fmt.Sprintf("gw%c: ", 'A'+p.idx)+fmt.Sprintf(format, args...))
}

// check finds children of either end sending with an SA the other end
// does not decrypt. Called with w.mu held.
func (w *wire) check(when string) {
	for _, p := range w.ends {
		for k, spi := range p.sending {
			if _, ok := p.peer().in[spi]; !ok {
				p.fault("%s: %s sends with %08x, which the peer cannot decrypt", when, k, spi)
			}
		}
	}
}

func (p *modelPlane) AllocSPI(context.Context, string, string) (uint32, error) {
	return p.next.Add(1), nil
}

func (p *modelPlane) InstallInbound(_ context.Context, sa ChildSA) error {
	p.w.mu.Lock()
	defer p.w.mu.Unlock()
	p.in[sa.SPIIn] = sa
	return nil
}

func (p *modelPlane) InstallOutbound(_ context.Context, sa ChildSA) error {
	p.w.mu.Lock()
	defer p.w.mu.Unlock()
	if _, ok := p.in[sa.SPIIn]; !ok {
		p.fault("outbound %08x installed before its inbound %08x", sa.SPIOut, sa.SPIIn)
	}
	p.out[sa.SPIOut] = sa
	p.sending[sa.Conn+"/"+sa.Child] = sa.SPIOut
	p.w.check(fmt.Sprintf("gw%c switches to %08x", 'A'+p.idx, sa.SPIOut))
	return nil
}

func (p *modelPlane) DeleteChild(_ context.Context, sa ChildSA) error {
	p.w.mu.Lock()
	defer p.w.mu.Unlock()
	delete(p.in, sa.SPIIn)
	delete(p.out, sa.SPIOut)
	k := sa.Conn + "/" + sa.Child
	if p.sending[k] == sa.SPIOut && sa.SPIOut != 0 {
		delete(p.sending, k)
	}
	p.w.check(fmt.Sprintf("gw%c deletes %08x/%08x", 'A'+p.idx, sa.SPIIn, sa.SPIOut))
	return nil
}

func (p *modelPlane) Trap(_ context.Context, conn string, child Child) error {
	p.w.mu.Lock()
	defer p.w.mu.Unlock()
	p.traps[conn+"/"+child.Name]++
	return nil
}

func (p *modelPlane) Untrap(_ context.Context, conn string, child Child) error {
	p.w.mu.Lock()
	defer p.w.mu.Unlock()
	p.traps[conn+"/"+child.Name]--
	return nil
}

// snapshot returns the SA counts and the SPI the child sends with.
func (p *modelPlane) snapshot(child string) (in, out int, sending uint32) {
	p.w.mu.Lock()
	defer p.w.mu.Unlock()
	return len(p.in), len(p.out), p.sending[child]
}

// clearFaults forgets what happened while a CHILD SA was first set up:
// the IKE_AUTH responder sends as soon as it answered, and cannot know
// when the initiator has installed its inbound SA (RFC 7296 leaves that
// race open; only rekeys can be made lossless).
func (w *wire) clearFaults() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.faults = nil
}

func (w *wire) faultList() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.faults...)
}

func (w *wire) trapCount(end int, k string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ends[end].traps[k]
}

// lifecyclePair starts two engines on the lab's gateways joined by a wire
// model; tweak adjusts the connections before they are set.
func lifecyclePair(t *testing.T, lab *netlab.Lab, esp string, tweak func(a, b *Conn)) (a, b *side, w *wire) {
	t.Helper()
	ca, cb := siteConns(t, lab.V4, "aes256gcm16-prfsha256-x25519", esp)
	if tweak != nil {
		tweak(&ca, &cb)
	}
	w = newWire(0x1000, 0x2000)
	oa, ob := fastOpts(), fastOpts()
	oa.RekeyGrace, ob.RekeyGrace = 150*time.Millisecond, 150*time.Millisecond
	oa.Installer, ob.Installer = w.ends[0], w.ends[1]
	a = startEngine(t, lab.GwA, "gwA", oa, 0)
	b = startEngine(t, lab.GwB, "gwB", ob, 0)
	a.e.SetConns([]Conn{ca})
	b.e.SetConns([]Conn{cb})
	return a, b, w
}

func initiate(t *testing.T, s *side) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.e.Initiate(ctx, "s2s"); err != nil {
		t.Fatalf("Initiate: %v", err)
	}
}

// installedChild returns the end's one INSTALLED child of the IKE SA.
func installedChild(s *side) (IKESAInfo, ChildInfo, bool) {
	for _, sa := range s.e.SAs() {
		if sa.State != "ESTABLISHED" {
			continue
		}
		for _, c := range sa.Children {
			if c.State == "INSTALLED" {
				return sa, c, true
			}
		}
	}
	return IKESAInfo{}, ChildInfo{}, false
}

// settled waits until both ends hold exactly one IKE SA with one child,
// one SA pair each in the data plane, sending crosswise.
func settled(t *testing.T, a, b *side, w *wire) (ChildInfo, ChildInfo) {
	t.Helper()
	var ca, cb ChildInfo
	waitFor(t, 5*time.Second, "both ends to settle on one SA pair", func() bool {
		sa, sb := a.e.SAs(), b.e.SAs()
		if len(sa) != 1 || len(sb) != 1 || len(sa[0].Children) != 1 || len(sb[0].Children) != 1 {
			return false
		}
		ca, cb = sa[0].Children[0], sb[0].Children[0]
		ia, oa, xa := w.ends[0].snapshot("s2s/net")
		ib, ob, xb := w.ends[1].snapshot("s2s/net")
		return ca.State == "INSTALLED" && cb.State == "INSTALLED" && ia == 1 && oa == 1 && ib == 1 && ob == 1 &&
			ca.SPIOut == cb.SPIIn && cb.SPIOut == ca.SPIIn && xa == ca.SPIOut && xb == cb.SPIOut
	})
	return ca, cb
}

func noFaults(t *testing.T, w *wire) {
	t.Helper()
	for _, f := range w.faultList() {
		t.Error(f)
	}
}

// TestChildRekeyMakeBeforeBreak rekeys the CHILD SA from alternating ends
// and checks, at every data-plane change of either end, that nothing is
// ever sent with an SA the peer cannot decrypt; SPIs change every time,
// counters follow the lineage and nothing stale remains.
func TestChildRekeyMakeBeforeBreak(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	for _, esp := range []string{"aes256gcm16", "aes256gcm16-x25519"} {
		t.Run(esp, func(t *testing.T) {
			a, b, w := lifecyclePair(t, lab, esp, nil)
			initiate(t, a)
			ca, _ := settled(t, a, b, w)
			w.clearFaults()
			seen := map[uint32]bool{ca.SPIIn: true, ca.SPIOut: true}
			const rounds = 8
			for i := range rounds {
				by := a
				if i%2 == 1 {
					by = b
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if err := by.e.Rekey(ctx, "s2s", "net"); err != nil {
					t.Fatalf("rekey %d: %v", i, err)
				}
				cancel()
				ca, cb := settled(t, a, b, w)
				if seen[ca.SPIIn] || seen[ca.SPIOut] {
					t.Fatalf("rekey %d reused an SPI: %08x/%08x", i, ca.SPIIn, ca.SPIOut)
				}
				seen[ca.SPIIn], seen[ca.SPIOut] = true, true
				if ca.Rekeys != i+1 || cb.Rekeys != i+1 {
					t.Errorf("rekey %d: rekey counts %d/%d", i, ca.Rekeys, cb.Rekeys)
				}
			}
			if sa, sb := a.e.Stats().ChildRekeys, b.e.Stats().ChildRekeys; sa != rounds || sb != rounds {
				t.Errorf("ChildRekeys %d/%d, want %d", sa, sb, rounds)
			}
			noFaults(t, w)
		})
	}
}

// TestChildRekeyByLifetime lets the lifetime drive the rekeys: the end
// with the shorter lifetime rekeys first each time.
func TestChildRekeyByLifetime(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	a, b, w := lifecyclePair(t, lab, "aes256gcm16", func(ca, cb *Conn) {
		ca.Children[0].Lifetime = 800 * time.Millisecond
	})
	initiate(t, a)
	settled(t, a, b, w)
	w.clearFaults()
	waitFor(t, 10*time.Second, "three lifetime rekeys", func() bool { return a.e.Stats().ChildRekeys >= 3 })
	_, c := settled(t, a, b, w)
	if c.Rekeys < 3 {
		t.Errorf("rekey count %d", c.Rekeys)
	}
	_, ca, _ := installedChild(a)
	if ca.RekeyAt.IsZero() || time.Until(ca.RekeyAt) > 800*time.Millisecond {
		t.Errorf("RekeyAt %v", ca.RekeyAt)
	}
	noFaults(t, w)
}

// TestExpireEvents: the data plane's soft limit (either SPI of the child)
// rekeys the CHILD SA, its hard limit deletes it at both ends.
func TestExpireEvents(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	a, b, w := lifecyclePair(t, lab, "aes256gcm16", nil)
	initiate(t, a)
	c0, _ := settled(t, a, b, w)
	w.clearFaults()
	a.e.Expire(c0.SPIOut, false)
	waitFor(t, 5*time.Second, "the rekey a soft expire asks for", func() bool { return a.e.Stats().ChildRekeys == 1 })
	c1, _ := settled(t, a, b, w)
	b.e.Expire(c1.SPIOut, false) // b's outbound is a's inbound SPI
	waitFor(t, 5*time.Second, "the second rekey", func() bool { return b.e.Stats().ChildRekeys == 2 })
	c2, _ := settled(t, a, b, w)
	noFaults(t, w)
	// Deleting a CHILD SA loses what is in flight: that is what a hard
	// limit means. Only the outcome is checked from here.
	w.clearFaults()
	a.e.Expire(c2.SPIIn, true)
	waitFor(t, 5*time.Second, "the expired CHILD SA gone at both ends", func() bool {
		sa, sb := a.e.SAs(), b.e.SAs()
		return len(sa) == 1 && len(sb) == 1 && len(sa[0].Children) == 0 && len(sb[0].Children) == 0
	})
	a.e.Expire(0x12345678, false) // unknown SPIs are ignored
}

// TestRekeyCollision makes both ends rekey the same CHILD SA at once:
// exactly one new pair survives (RFC 7296 2.8.1) and traffic is never
// sent with an SA the other end lacks.
func TestRekeyCollision(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	a, b, w := lifecyclePair(t, lab, "aes256gcm16", nil)
	initiate(t, a)
	settled(t, a, b, w)
	w.clearFaults()
	// A lost collision is the loser's one log line about it.
	collisions := func() int {
		n := 0
		for _, s := range []*side{a, b} {
			n += s.logs.FilterMessage("CHILD SA rekey collision lost: deleting our redundant SA").Len()
		}
		return n
	}
	prev := 0
	for i := range 8 {
		var wg sync.WaitGroup
		for _, s := range []*side{a, b} {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				// A lost collision or TEMPORARY_FAILURE is fine: the
				// other end's rekey covers it.
				_ = s.e.Rekey(ctx, "s2s", "net")
			})
		}
		wg.Wait()
		// Colliding requests make one rekey; two that did not overlap
		// (one end done before the other started) make two in a row.
		// Either way both ends settle on one common pair.
		ca, cb := settled(t, a, b, w)
		if cb.Rekeys != ca.Rekeys || ca.Rekeys <= prev || ca.Rekeys > prev+2 {
			t.Errorf("round %d: rekey counts %d/%d after %d", i, ca.Rekeys, cb.Rekeys, prev)
		}
		prev = ca.Rekeys
	}
	t.Logf("%d collisions in 8 rounds, %d rekeys", collisions(), prev)
	if collisions() == 0 {
		t.Error("no round had both ends rekeying at once; the collision path went untested")
	}
	noFaults(t, w)
}

// TestIKERekey rekeys the IKE SA from both ends in turn: new SPIs, the
// CHILD SA moves over untouched, and CHILD SA rekeys go on on the new IKE
// SA.
func TestIKERekey(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	a, b, w := lifecyclePair(t, lab, "aes256gcm16", nil)
	initiate(t, a)
	c0, _ := settled(t, a, b, w)
	w.clearFaults()
	prev := a.e.SAs()[0]
	for i := range 4 {
		by := a
		if i%2 == 1 {
			by = b
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := by.e.Rekey(ctx, "s2s", ""); err != nil {
			t.Fatalf("IKE rekey %d: %v", i, err)
		}
		cancel()
		ca, _ := settled(t, a, b, w)
		if ca.SPIIn != c0.SPIIn || ca.SPIOut != c0.SPIOut {
			t.Fatalf("IKE rekey changed the CHILD SA: %08x/%08x", ca.SPIIn, ca.SPIOut)
		}
		sa, sb := a.e.SAs()[0], b.e.SAs()[0]
		if sa.SPIi == prev.SPIi || sa.SPIr == prev.SPIr || sa.SPIi != sb.SPIi || sa.SPIr != sb.SPIr {
			t.Fatalf("IKE SPIs after rekey %d: %016x/%016x (was %016x/%016x), peer %016x/%016x", i, sa.SPIi, sa.SPIr, prev.SPIi, prev.SPIr, sb.SPIi, sb.SPIr)
		}
		if sa.Rekeys != i+1 || sa.Initiator != (by == a) {
			t.Errorf("after rekey %d: rekeys %d initiator %v", i, sa.Rekeys, sa.Initiator)
		}
		prev = sa
	}
	if n := a.e.Stats().IKERekeys; n != 4 {
		t.Errorf("IKERekeys %d", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.e.Rekey(ctx, "s2s", "net"); err != nil {
		t.Fatalf("CHILD rekey on the rekeyed IKE SA: %v", err)
	}
	if ca, _ := settled(t, a, b, w); ca.SPIIn == c0.SPIIn {
		t.Error("child not rekeyed")
	}
	noFaults(t, w)
}

// TestAdditionalChildren brings up a connection with two children: the
// second comes with CREATE_CHILD_SA.
func TestAdditionalChildren(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	a, b, _ := lifecyclePair(t, lab, "aes256gcm16", func(ca, cb *Conn) {
		ca.Children = append(ca.Children, Child{Name: "v6", LocalTS: []netip.Prefix{lab.V6.LANA}, RemoteTS: []netip.Prefix{lab.V6.LANB},
			ESPProposals: ca.Children[0].ESPProposals, ReplayWindow: 64})
		cb.Children = append(cb.Children, Child{Name: "v6", LocalTS: []netip.Prefix{lab.V6.LANB}, RemoteTS: []netip.Prefix{lab.V6.LANA},
			ESPProposals: cb.Children[0].ESPProposals, ReplayWindow: 64})
	})
	initiate(t, a)
	waitFor(t, 5*time.Second, "two children on both ends", func() bool {
		sa, sb := a.e.SAs(), b.e.SAs()
		return len(sa) == 1 && len(sb) == 1 && len(sa[0].Children) == 2 && len(sb[0].Children) == 2
	})
	sa, sb := a.e.SAs()[0], b.e.SAs()[0]
	for i := range 2 {
		x, y := sa.Children[i], sb.Children[i]
		if x.Name != y.Name || x.SPIIn != y.SPIOut || x.SPIOut != y.SPIIn {
			t.Errorf("child %d: %+v vs %+v", i, x, y)
		}
	}
	if got := sa.Children[1].LocalTS; len(got) != 1 || got[0] != lab.V6.LANA {
		t.Errorf("v6 child selectors %v", got)
	}
}

// TestTerminateDeletesBothEnds: Terminate at one end removes the SAs at
// both.
func TestTerminateDeletesBothEnds(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	a, b, w := lifecyclePair(t, lab, "aes256gcm16", nil)
	for _, by := range []*side{b, a} {
		initiate(t, a)
		settled(t, a, b, w)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := by.e.Terminate(ctx, "s2s"); err != nil {
			t.Fatalf("Terminate: %v", err)
		}
		cancel()
		waitFor(t, 3*time.Second, "both ends empty", func() bool {
			ia, oa, _ := w.ends[0].snapshot("")
			ib, ob, _ := w.ends[1].snapshot("")
			return len(a.e.SAs()) == 0 && len(b.e.SAs()) == 0 && ia+oa+ib+ob == 0
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := a.e.Terminate(ctx, "s2s"); err == nil {
		t.Error("Terminate of a connection that is down succeeded")
	}
}

// TestDPD silences the peer: DPD finds it dead, applies dpd_action and,
// with restart, brings the tunnel back once the peer answers again.
func TestDPD(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	for _, action := range []DPDAction{DPDClear, DPDRestart, DPDHold} {
		t.Run(action.String(), func(t *testing.T) {
			ca, cb := siteConns(t, lab.V4, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
			ca.DPDDelay, ca.DPDAction = 300*time.Millisecond, action
			w := newWire(0x1000, 0x2000)
			var deaf atomic.Bool
			oa, ob := fastOpts(), fastOpts()
			oa.Installer, ob.Installer = w.ends[0], w.ends[1]
			a := startEngine(t, lab.GwA, "gwA", oa, 0, func(e *Engine) {
				e.dropHook = func(message.Header) bool { return deaf.Load() }
			})
			b := startEngine(t, lab.GwB, "gwB", ob, 0)
			a.e.SetConns([]Conn{ca})
			b.e.SetConns([]Conn{cb})
			initiate(t, a)
			settled(t, a, b, w)
			old := a.e.SAs()[0].SPIi
			deaf.Store(true)
			// 300 ms idle, then 200+300+450+675 ms of retransmissions.
			waitFor(t, 5*time.Second, "DPD to declare the peer dead", func() bool { return a.e.Stats().DeadPeers == 1 })
			if _, ok := findLog(a.logs, "peer is dead", "dpd_action="+action.String()); !ok {
				t.Error("no log line for the dead peer")
			}
			switch action {
			case DPDClear:
				if n := len(a.e.SAs()); n != 0 {
					t.Errorf("%d IKE SAs left after clear", n)
				}
			case DPDHold:
				waitFor(t, time.Second, "trap after hold", func() bool { return w.trapCount(0, "s2s/net") == 1 })
			case DPDRestart:
				deaf.Store(false)
				waitFor(t, 10*time.Second, "the restarted tunnel", func() bool {
					_, c, ok := installedChild(a)
					sa := a.e.SAs()
					return ok && c.State == "INSTALLED" && len(sa) > 0 && sa[len(sa)-1].SPIi != old
				})
			}
		})
	}
}

// TestTrapAcquire: a trap connection installs trap policies, an Acquire
// brings it up, and the trap returns once the SAs are gone.
func TestTrapAcquire(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	a, b, w := lifecyclePair(t, lab, "aes256gcm16", func(ca, cb *Conn) { ca.StartAction = StartTrap })
	if n := w.trapCount(0, "s2s/net"); n != 1 {
		t.Fatalf("traps after SetConns: %d", n)
	}
	for range 3 {
		a.e.Acquire("s2s", "net") // repeated acquires start one negotiation
	}
	settled(t, a, b, w)
	if n := len(a.e.SAs()); n != 1 {
		t.Fatalf("%d IKE SAs after three acquires", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.e.Terminate(ctx, "s2s"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "trap back after the peer's delete", func() bool { return w.trapCount(0, "s2s/net") == 2 })
	// A CHILD SA deleted alone also brings the trap back; Acquire on the
	// live IKE SA then creates the child with CREATE_CHILD_SA.
	a.e.Acquire("s2s", "net")
	settled(t, a, b, w)
	a.e.SetConns(nil)
	if n := w.trapCount(0, "s2s/net"); n != 1 {
		t.Errorf("traps after removing the connection: %d (want the one untrapped)", n)
	}
}

// TestNonceOrder pins the collision rule: the lower nonce is compared over
// the shorter length.
func TestNonceOrder(t *testing.T) {
	for _, tc := range []struct {
		a, b []byte
		want int
	}{
		{[]byte{1, 2}, []byte{1, 3}, -1},
		{[]byte{2}, []byte{1, 9, 9}, 1},
		{[]byte{1, 2, 3}, []byte{1, 2}, 0},
	} {
		if got := cmpNonce(tc.a, tc.b); got != tc.want {
			t.Errorf("cmpNonce(%x, %x) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
	if l := lowerNonce([]byte{5}, []byte{4}); !bytes.Equal(l, []byte{4}) {
		t.Errorf("lowerNonce = %x", l)
	}
}

// TestDPDAlive: with a live but quiet peer, liveness checks go out about
// once per dpd_delay (not more often), all are answered, and the SA's
// re-arming timers do not pile up.
func TestDPDAlive(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	const delay = 100 * time.Millisecond
	a, b, w := lifecyclePair(t, lab, "aes256gcm16", func(ca, cb *Conn) { ca.DPDDelay = delay })
	initiate(t, a)
	settled(t, a, b, w)
	checks := func() uint64 {
		return a.e.Stats().Exchanges[ExchangeKey{"INFORMATIONAL", "initiator", ResultOK}]
	}
	start := checks()
	time.Sleep(10 * delay)
	n := checks() - start
	if n < 2 || n > 11 {
		t.Errorf("%d liveness checks in 10 dpd_delays, want about one per delay", n)
	}
	if d := a.e.Stats().DeadPeers; d != 0 {
		t.Errorf("%d dead peers with a live one", d)
	}
	a.e.mu.Lock()
	var sa *ikeSA
	for _, s := range a.e.sas {
		sa = s
	}
	a.e.mu.Unlock()
	sa.mu.Lock()
	timers := len(sa.timers)
	sa.mu.Unlock()
	if timers > 3 {
		t.Errorf("%d timers on the IKE SA after 10 DPD rounds", timers)
	}
}

// TestInitialContact: the peer restarts without deleting anything (its
// Delete never arrives) and initiates again with INITIAL_CONTACT: the old
// IKE SA and its CHILD SA go at once, without waiting for DPD.
func TestInitialContact(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	ca, cb := siteConns(t, lab.V4, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	var deaf atomic.Bool
	a := startEngine(t, lab.GwA, "gwA", fastOpts(), 0x1000, func(e *Engine) {
		e.dropHook = func(message.Header) bool { return deaf.Load() }
	})
	b := startEngine(t, lab.GwB, "gwB", fastOpts(), 0x2000)
	a.e.SetConns([]Conn{ca})
	b.e.SetConns([]Conn{cb})
	initiate(t, b)
	old := a.e.SAs()
	if len(old) != 1 {
		t.Fatalf("SAs %+v", old)
	}
	// gwB "crashes": its shutdown Delete is lost.
	deaf.Store(true)
	b.stop()
	deaf.Store(false)
	b2 := startEngine(t, lab.GwB, "gwB-restarted", fastOpts(), 0x3000)
	b2.e.SetConns([]Conn{cb})
	initiate(t, b2)
	waitFor(t, 3*time.Second, "the stale IKE SA gone", func() bool {
		sas := a.e.SAs()
		return len(sas) == 1 && sas[0].SPIi != old[0].SPIi
	})
	if d := a.inst.deletedList(); len(d) != 1 || d[0].SPIIn != old[0].Children[0].SPIIn {
		t.Errorf("CHILD SAs removed from the data plane: %+v", d)
	}
}

// trafficPlane is a data-plane model whose inbound packet counter moves
// while traffic flows.
type trafficPlane struct {
	*modelPlane
	flowing atomic.Bool
	packets atomic.Uint64
}

func (p *trafficPlane) Packets(context.Context, []uint32, []uint32) (uint64, uint64, error) {
	if p.flowing.Load() {
		return p.packets.Add(10), 0, nil
	}
	return p.packets.Load(), 0, nil
}

// TestDPDQuietWhileESPArrives: inbound ESP is a sign of life, so no
// liveness check goes out while it flows; once it stops, they do.
func TestDPDQuietWhileESPArrives(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	ca, cb := siteConns(t, lab.V4, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	const delay = 100 * time.Millisecond
	ca.DPDDelay = delay
	w := newWire(0x1000, 0x2000)
	tp := &trafficPlane{modelPlane: w.ends[0]}
	tp.flowing.Store(true)
	oa, ob := fastOpts(), fastOpts()
	oa.Installer, ob.Installer = tp, w.ends[1]
	a := startEngine(t, lab.GwA, "gwA", oa, 0)
	b := startEngine(t, lab.GwB, "gwB", ob, 0)
	a.e.SetConns([]Conn{ca})
	b.e.SetConns([]Conn{cb})
	initiate(t, a)
	checks := func() uint64 {
		return a.e.Stats().Exchanges[ExchangeKey{"INFORMATIONAL", "initiator", ResultOK}]
	}
	time.Sleep(8 * delay)
	if n := checks(); n != 0 {
		t.Errorf("%d liveness checks while ESP kept arriving", n)
	}
	tp.flowing.Store(false)
	waitFor(t, 20*delay, "liveness checks once ESP stopped", func() bool { return checks() >= 2 })
}
