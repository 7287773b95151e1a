package control

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/xdpsec/xdpsec/control/config"
	"github.com/xdpsec/xdpsec/ike"
	"github.com/xdpsec/xdpsec/offload"
	"github.com/xdpsec/xdpsec/offload/none"
)

func testChildSA(encap bool) ike.ChildSA {
	local, remote := netip.MustParseAddrPort("192.0.2.1:500"), netip.MustParseAddrPort("192.0.2.2:500")
	if encap {
		local, remote = netip.MustParseAddrPort("192.0.2.1:4500"), netip.MustParseAddrPort("198.51.100.7:31337")
	}
	return ike.ChildSA{
		Conn: "site-b", Child: "net", SPIIn: 0x1000, SPIOut: 0x2000,
		Encr: 20, KeyBits: 256, EncrKeyIn: []byte("in-key-with-salt-0123456789abcdef...."), EncrKeyOut: []byte("out-key-with-salt-0123456789abcdef..."),
		Mode: ike.ModeTunnel, Local: local, Remote: remote, Encap: encap,
		LocalTS:  []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24"), netip.MustParsePrefix("fd00:1::/64")},
		RemoteTS: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/24")},
	}
}

func TestOffloadSAsDirections(t *testing.T) {
	for _, encap := range []bool{false, true} {
		sa := testChildSA(encap)
		in, out := offloadSAs(sa)
		if in.Dir != offload.In || in.SPI != sa.SPIIn || string(in.EncrKey) != string(sa.EncrKeyIn) ||
			in.Src != sa.Remote.Addr() || in.Dst != sa.Local.Addr() {
			t.Errorf("encap=%v inbound SA = %+v", encap, in)
		}
		if out.Dir != offload.Out || out.SPI != sa.SPIOut || string(out.EncrKey) != string(sa.EncrKeyOut) ||
			out.Src != sa.Local.Addr() || out.Dst != sa.Remote.Addr() {
			t.Errorf("encap=%v outbound SA = %+v", encap, out)
		}
		switch {
		case !encap && (in.Encap != nil || out.Encap != nil):
			t.Errorf("raw ESP SA has UDP encapsulation")
		case encap && (in.Encap == nil || *in.Encap != offload.Encap{SrcPort: 31337, DstPort: 4500} ||
			out.Encap == nil || *out.Encap != offload.Encap{SrcPort: 4500, DstPort: 31337}):
			t.Errorf("encapsulation ports: in %+v, out %+v", in.Encap, out.Encap)
		}
		// Without ESN the outbound SA asks for its rekey before its
		// 32-bit sequence numbers run out; the inbound one has no
		// counter of its own to exhaust.
		if out.Lifetime.SoftPackets == 0 || out.Lifetime.SoftPackets >= 1<<32-1 || in.Lifetime.SoftPackets != 0 {
			t.Errorf("packet soft limits: in %d, out %d", in.Lifetime.SoftPackets, out.Lifetime.SoftPackets)
		}
		esn := sa
		esn.ESN = true
		if _, o := offloadSAs(esn); o.Lifetime.SoftPackets != 0 {
			t.Errorf("ESN SA with a packet soft limit %d", o.Lifetime.SoftPackets)
		}
	}
}

func TestChildPoliciesPairFamilies(t *testing.T) {
	ps := childPolicies(testChildSA(false))
	// Only the IPv4 local selector pairs with the IPv4 remote one.
	if len(ps) != 2 {
		t.Fatalf("%d policies, want 2: %+v", len(ps), ps)
	}
	out, in := ps[0], ps[1]
	if out.Dir != offload.Out || out.SPI != 0x2000 || out.Src.String() != "10.1.0.0/24" || out.Dst.String() != "10.2.0.0/24" {
		t.Errorf("outbound policy = %+v", out)
	}
	if in.Dir != offload.In || in.SPI != 0x1000 || in.Src.String() != "10.2.0.0/24" || in.Dst.String() != "10.1.0.0/24" {
		t.Errorf("inbound policy = %+v", in)
	}
}

// failingPolicies refuses the n-th AddPolicy, to exercise the rollback.
type failingPolicies struct {
	*none.Dataplane
	n int
}

func (f *failingPolicies) AddPolicy(ctx context.Context, p offload.Policy) error {
	f.n--
	if f.n == 0 {
		return errors.New("policy table full")
	}
	return f.Dataplane.AddPolicy(ctx, p)
}

// install runs both steps of an installation, as the engine does.
func install(ctx context.Context, in *installer, sa ike.ChildSA) error {
	if err := in.InstallInbound(ctx, sa); err != nil {
		return err
	}
	return in.InstallOutbound(ctx, sa)
}

func TestInstallerOrderAndRollback(t *testing.T) {
	ctx := context.Background()
	dp := none.New()
	in := newInstaller(dp, zap.NewNop())
	sa := testChildSA(true)
	if err := in.InstallInbound(ctx, sa); err != nil {
		t.Fatal(err)
	}
	// Step one: the inbound SA decrypts, nothing is sent through it yet.
	if sas := dp.SAs(); len(sas) != 1 || sas[0].Dir != offload.In || len(dp.Policies()) != 0 {
		t.Fatalf("after InstallInbound: SAs %+v, %d policies, want the inbound SA alone", sas, len(dp.Policies()))
	}
	if err := in.InstallOutbound(ctx, sa); err != nil {
		t.Fatal(err)
	}
	if len(dp.SAs()) != 2 || len(dp.Policies()) != 2 {
		t.Fatalf("installed %d SAs and %d policies, want 2 and 2", len(dp.SAs()), len(dp.Policies()))
	}
	if err := in.DeleteChild(ctx, sa); err != nil {
		t.Fatal(err)
	}
	if len(dp.SAs()) != 0 || len(dp.Policies()) != 0 {
		t.Fatalf("left %d SAs and %d policies after DeleteChild", len(dp.SAs()), len(dp.Policies()))
	}
	// A child that never came up only gives its SPI back: no error.
	if err := in.DeleteChild(ctx, ike.ChildSA{Conn: "site-b", Child: "net", SPIIn: 0x3000}); err != nil {
		t.Fatalf("DeleteChild of a child without SAs: %v", err)
	}
	spi, err := in.AllocSPI(ctx, "site-b", "net")
	if err != nil {
		t.Fatal(err)
	}
	if err := in.DeleteChild(ctx, ike.ChildSA{Conn: "site-b", Child: "net", SPIIn: spi}); err != nil {
		t.Fatalf("DeleteChild of a child that only reserved its SPI: %v", err)
	}
	if err := dp.ReleaseSPI(ctx, spi); !errors.Is(err, offload.ErrNotFound) {
		t.Errorf("the SPI is still reserved after DeleteChild: %v", err)
	}

	failing := &failingPolicies{Dataplane: none.New(), n: 2}
	in = newInstaller(failing, zap.NewNop())
	if err := in.InstallInbound(ctx, sa); err != nil {
		t.Fatal(err)
	}
	if err := in.InstallOutbound(ctx, sa); err == nil || !strings.Contains(err.Error(), "policy table full") {
		t.Fatalf("InstallOutbound with a failing policy: %v", err)
	}
	// The outbound half is rolled back; the inbound SA is the engine's
	// to delete (DeleteChild), as it may already have decrypted.
	if sas := failing.SAs(); len(sas) != 1 || sas[0].Dir != offload.In || len(failing.Policies()) != 0 {
		t.Fatalf("rollback left SAs %+v and %d policies", sas, len(failing.Policies()))
	}
}

// TestInstallerRekey: make-before-break. The new SA pair takes the
// policies over; deleting the old pair leaves them with the new one.
func TestInstallerRekey(t *testing.T) {
	ctx := context.Background()
	dp := none.New()
	in := newInstaller(dp, zap.NewNop())
	old := testChildSA(false)
	if err := install(ctx, in, old); err != nil {
		t.Fatal(err)
	}
	next := old
	next.SPIIn, next.SPIOut = 0x1001, 0x2001
	if err := in.InstallInbound(ctx, next); err != nil {
		t.Fatal(err)
	}
	if len(dp.SAs()) != 3 {
		t.Fatalf("%d SAs while the new inbound SA is in, want 3", len(dp.SAs()))
	}
	if err := in.InstallOutbound(ctx, next); err != nil {
		t.Fatal(err)
	}
	if err := in.DeleteChild(ctx, old); err != nil {
		t.Fatal(err)
	}
	if len(dp.SAs()) != 2 {
		t.Fatalf("%d SAs after the old pair went, want 2", len(dp.SAs()))
	}
	ps := dp.Policies()
	if len(ps) != 2 {
		t.Fatalf("policies after the rekey: %+v, want 2", ps)
	}
	for _, p := range ps {
		if want := map[offload.Direction]uint32{offload.In: next.SPIIn, offload.Out: next.SPIOut}[p.Dir]; p.SPI != want {
			t.Errorf("%s policy names spi %x, want the new SA's %x", p.Dir, p.SPI, want)
		}
	}
}

// TestInstallerRekeyRollback: when the new SA's policies fail half-way,
// the ones already moved go back to the old SA instead of vanishing
// (which would let the child's traffic out unprotected).
func TestInstallerRekeyRollback(t *testing.T) {
	ctx := context.Background()
	failing := &failingPolicies{Dataplane: none.New(), n: -1}
	in := newInstaller(failing, zap.NewNop())
	old := testChildSA(false)
	if err := install(ctx, in, old); err != nil {
		t.Fatal(err)
	}
	next := old
	next.SPIIn, next.SPIOut = 0x1001, 0x2001
	if err := in.InstallInbound(ctx, next); err != nil {
		t.Fatal(err)
	}
	failing.n = 2 // the outbound policy moves, the inbound one fails
	if err := in.InstallOutbound(ctx, next); err == nil {
		t.Fatal("InstallOutbound succeeded with a failing policy")
	}
	ps := failing.Policies()
	if len(ps) != 2 {
		t.Fatalf("policies after the failed rekey: %+v, want the old SA's 2", ps)
	}
	for _, p := range ps {
		if want := map[offload.Direction]uint32{offload.In: old.SPIIn, offload.Out: old.SPIOut}[p.Dir]; p.SPI != want {
			t.Errorf("%s policy names spi %x, want the old SA's %x", p.Dir, p.SPI, want)
		}
	}
}

func TestTrapPolicies(t *testing.T) {
	v4l, v4r := netip.MustParsePrefix("10.1.0.0/24"), netip.MustParsePrefix("10.2.0.0/24")
	v6l, v6r := netip.MustParsePrefix("fd00:1::/64"), netip.MustParsePrefix("fd00:2::/64")
	gwA, gwB := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	for _, tc := range []struct {
		name          string
		local, remote []netip.Prefix
		addrs         connAddrs
		want          int
	}{
		{"one pair", []netip.Prefix{v4l}, []netip.Prefix{v4r}, connAddrs{gwA, gwB}, 1},
		{"families pair up", []netip.Prefix{v4l, v6l}, []netip.Prefix{v4r, v6r}, connAddrs{gwA, gwB}, 2},
		{"no family in common", []netip.Prefix{v4l}, []netip.Prefix{v6r}, connAddrs{gwA, gwB}, 0},
		{"local %any", []netip.Prefix{v4l}, []netip.Prefix{v4r}, connAddrs{remote: gwB}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := trapPolicies("site-b", ike.Child{Name: "net", LocalTS: tc.local, RemoteTS: tc.remote}, tc.addrs)
			if len(ps) != tc.want {
				t.Fatalf("%d trap policies, want %d: %+v", len(ps), tc.want, ps)
			}
			for _, p := range ps {
				if p.Dir != offload.Out || p.Action != offload.Protect || p.SPI != 0 || p.Mode != offload.Tunnel ||
					p.Conn != "site-b" || p.Child != "net" || p.Src.Addr().Is4() != p.Dst.Addr().Is4() ||
					p.TunnelSrc != tc.addrs.local || p.TunnelDst != tc.addrs.remote {
					t.Errorf("trap policy %+v", p)
				}
			}
		})
	}
}

func TestTrapUntrap(t *testing.T) {
	ctx := context.Background()
	child := ike.Child{Name: "net", Mode: ike.ModeTunnel,
		LocalTS:  []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24"), netip.MustParsePrefix("fd00:1::/64")},
		RemoteTS: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/24")}}
	conns := []ike.Conn{{Name: "site-b", LocalAddr: netip.MustParseAddr("192.0.2.1"), RemoteAddr: netip.MustParseAddr("192.0.2.2"),
		Children: []ike.Child{child}}}
	sa := testChildSA(false) // site-b/net with the same selectors
	type step func(*installer) error
	trap := func(in *installer) error { return in.Trap(ctx, "site-b", child) }
	untrap := func(in *installer) error { return in.Untrap(ctx, "site-b", child) }
	up := func(in *installer) error { return install(ctx, in, sa) }
	down := func(in *installer) error { return in.DeleteChild(ctx, sa) }
	for _, tc := range []struct {
		name      string
		steps     []step
		wantTraps int
		wantSA    int // policies naming an SA
	}{
		{"trap", []step{trap}, 1, 0},
		{"trap twice", []step{trap, trap}, 1, 0},
		{"trap and untrap", []step{trap, untrap}, 0, 0},
		{"untrap without trap", []step{untrap}, 0, 0},
		{"sa replaces trap", []step{trap, up}, 0, 2},
		{"untrap leaves the sa's policies", []step{trap, up, untrap}, 0, 2},
		{"trap again after the sa", []step{trap, up, down, trap}, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dp := none.New()
			in := newInstaller(dp, zap.NewNop())
			in.setConns(conns)
			for i, s := range tc.steps {
				if err := s(in); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
			}
			var traps, withSA int
			for _, p := range dp.Policies() {
				switch {
				case p.SPI == 0 && p.Action == offload.Protect && p.Dir == offload.Out:
					traps++
					if p.TunnelSrc != conns[0].LocalAddr || p.TunnelDst != conns[0].RemoteAddr {
						t.Errorf("trap without the connection's addresses: %+v", p)
					}
				case p.SPI != 0:
					withSA++
				}
			}
			if traps != tc.wantTraps || withSA != tc.wantSA {
				t.Errorf("%d traps and %d SA policies, want %d and %d: %+v", traps, withSA, tc.wantTraps, tc.wantSA, dp.Policies())
			}
		})
	}
}

func TestTrapRollback(t *testing.T) {
	ctx := context.Background()
	failing := &failingPolicies{Dataplane: none.New(), n: 2}
	in := newInstaller(failing, zap.NewNop())
	child := ike.Child{Name: "net",
		LocalTS:  []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24"), netip.MustParsePrefix("fd00:1::/64")},
		RemoteTS: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/24"), netip.MustParsePrefix("fd00:2::/64")}}
	if err := in.Trap(ctx, "site-b", child); err == nil || !strings.Contains(err.Error(), "policy table full") {
		t.Fatalf("Trap with a failing policy: %v", err)
	}
	if ps := failing.Policies(); len(ps) != 0 {
		t.Fatalf("rollback left %+v", ps)
	}
}

func TestIKEConnsActions(t *testing.T) {
	for _, tc := range []struct {
		dpd, start string
		jitter     float64
		wantDPD    ike.DPDAction
		wantStart  ike.StartAction
	}{
		{"clear", "none", 0, ike.DPDClear, ike.StartNone},
		{"hold", "trap", 10, ike.DPDHold, ike.StartTrap},
		{"restart", "start", 100, ike.DPDRestart, ike.StartStart},
	} {
		cfg := &config.Config{Connections: []config.Connection{{Name: "c", LocalAddr: "%any", RemoteAddr: "192.0.2.2",
			DPDAction: tc.dpd, StartAction: tc.start, RekeyJitter: tc.jitter}}}
		conns, err := ikeConns(cfg)
		if err != nil {
			t.Fatalf("%s/%s: %v", tc.dpd, tc.start, err)
		}
		c := conns[0]
		if c.DPDAction != tc.wantDPD || c.StartAction != tc.wantStart || c.RekeyJitter != tc.jitter/100 {
			t.Errorf("%s/%s/%v%%: got %v/%v/%v", tc.dpd, tc.start, tc.jitter, c.DPDAction, c.StartAction, c.RekeyJitter)
		}
	}
	bad := &config.Config{Connections: []config.Connection{{Name: "c", DPDAction: "explode", StartAction: "none"}}}
	if _, err := ikeConns(bad); err == nil || !strings.Contains(err.Error(), "dpd_action") {
		t.Errorf("unknown dpd action: %v", err)
	}
}

// countingDP reports fixed per-SA counters.
type countingDP struct {
	*none.Dataplane
	sas []offload.SACounters
}

func (c countingDP) Stats(context.Context) (offload.Stats, error) {
	return offload.Stats{SAs: c.sas}, nil
}

func TestPackets(t *testing.T) {
	dp := countingDP{Dataplane: none.New(), sas: []offload.SACounters{
		{SPI: 0x1000, Dir: offload.In, Packets: 5},
		{SPI: 0x1000, Dir: offload.Out, Packets: 100}, // same SPI, other direction
		{SPI: 0x1001, Dir: offload.In, Packets: 7},
		{SPI: 0x1002, Dir: offload.In, Packets: 1000}, // another IKE SA's
	}}
	in := newInstaller(dp, zap.NewNop())
	if n, _, err := in.Packets(context.Background(), []uint32{0x1000, 0x1001}, nil); err != nil || n != 12 {
		t.Errorf("Packets received = %d, %v; want 12", n, err)
	}
}
