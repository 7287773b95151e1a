package control

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"go.uber.org/zap"

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

func TestInstallerOrderAndRollback(t *testing.T) {
	ctx := context.Background()
	dp := none.New()
	in := &installer{dp: dp, log: zap.NewNop()}
	sa := testChildSA(true)
	if err := in.InstallChild(ctx, sa); err != nil {
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

	failing := &failingPolicies{Dataplane: none.New(), n: 2}
	in = &installer{dp: failing, log: zap.NewNop()}
	if err := in.InstallChild(ctx, sa); err == nil || !strings.Contains(err.Error(), "policy table full") {
		t.Fatalf("InstallChild with a failing policy: %v", err)
	}
	if len(failing.SAs()) != 0 || len(failing.Policies()) != 0 {
		t.Fatalf("rollback left %d SAs and %d policies", len(failing.SAs()), len(failing.Policies()))
	}
}
