package none

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/xdpsec/xdpsec/offload"
)

func validSA(spi uint32, dir offload.Direction) offload.SA {
	return offload.SA{
		Conn: "c", Child: "net", SPI: spi, Dir: dir, Encr: 20, KeyBits: 256,
		EncrKey: make(offload.Key, 36), Mode: offload.Tunnel,
		Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"),
	}
}

func TestAllocSPIUniqueAndReleased(t *testing.T) {
	ctx := context.Background()
	d := New()
	seen := map[uint32]bool{}
	for range 1000 {
		spi, err := d.AllocSPI(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if spi < 256 || seen[spi] {
			t.Fatalf("spi %08x reserved range or duplicate", spi)
		}
		seen[spi] = true
	}
	for spi := range seen {
		if err := d.ReleaseSPI(ctx, spi); err != nil {
			t.Fatal(err)
		}
		if err := d.ReleaseSPI(ctx, spi); !errors.Is(err, offload.ErrNotFound) {
			t.Fatalf("second release: %v, want ErrNotFound", err)
		}
		break
	}
}

func TestAddSAValidation(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		mutate func(*offload.SA)
	}{
		{"reserved spi", func(sa *offload.SA) { sa.SPI = 255 }},
		{"no direction", func(sa *offload.SA) { sa.Dir = 0 }},
		{"no mode", func(sa *offload.SA) { sa.Mode = 0 }},
		{"no key", func(sa *offload.SA) { sa.EncrKey = nil }},
		{"mixed families", func(sa *offload.SA) { sa.Dst = netip.MustParseAddr("2001:db8::2") }},
		{"no source", func(sa *offload.SA) { sa.Src = netip.Addr{} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sa := validSA(1000, offload.In)
			tc.mutate(&sa)
			if err := New().AddSA(ctx, sa); err == nil {
				t.Fatal("invalid SA accepted")
			}
		})
	}
}

func TestSALifecycle(t *testing.T) {
	ctx := context.Background()
	d := New()
	spi, err := d.AllocSPI(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.AddSA(ctx, validSA(spi, offload.In)); err != nil {
		t.Fatal(err)
	}
	if err := d.AddSA(ctx, validSA(spi, offload.In)); !errors.Is(err, offload.ErrExists) {
		t.Fatalf("duplicate AddSA: %v, want ErrExists", err)
	}
	// The same SPI outbound is another SA (the peer chose it).
	if err := d.AddSA(ctx, validSA(spi, offload.Out)); err != nil {
		t.Fatal(err)
	}
	if err := d.ReleaseSPI(ctx, spi); !errors.Is(err, offload.ErrNotFound) {
		t.Fatalf("installed SPI still reserved: %v", err)
	}
	st, err := d.Stats(ctx)
	if err != nil || len(st.SAs) != 2 || st.Mode != "none" {
		t.Fatalf("stats = %+v, %v", st, err)
	}
	if err := d.DelSA(ctx, spi, offload.In); err != nil {
		t.Fatal(err)
	}
	if err := d.DelSA(ctx, spi, offload.In); !errors.Is(err, offload.ErrNotFound) {
		t.Fatalf("second DelSA: %v, want ErrNotFound", err)
	}
	if got := len(d.SAs()); got != 1 {
		t.Fatalf("%d SAs left, want 1", got)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-d.Events(); ok {
		t.Fatal("events channel open after Close")
	}
	if err := d.AddSA(ctx, validSA(4096, offload.In)); !errors.Is(err, offload.ErrClosed) {
		t.Fatalf("AddSA after Close: %v, want ErrClosed", err)
	}
}

func TestPolicyReplace(t *testing.T) {
	ctx := context.Background()
	d := New()
	p := offload.Policy{Conn: "c", Child: "net", Dir: offload.Out, Action: offload.Protect, SPI: 1000,
		Src: netip.MustParsePrefix("10.1.0.0/24"), Dst: netip.MustParsePrefix("10.2.0.0/24")}
	if err := d.AddPolicy(ctx, p); err != nil {
		t.Fatal(err)
	}
	p.SPI = 2000
	if err := d.AddPolicy(ctx, p); err != nil {
		t.Fatal(err)
	}
	ps := d.Policies()
	if len(ps) != 1 || ps[0].SPI != 2000 {
		t.Fatalf("policies = %+v, want one with SPI 2000", ps)
	}
	if err := d.DelPolicy(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := d.DelPolicy(ctx, p); !errors.Is(err, offload.ErrNotFound) {
		t.Fatalf("second DelPolicy: %v", err)
	}
	if err := d.AddPolicy(ctx, offload.Policy{}); err == nil {
		t.Fatal("policy without selectors accepted")
	}
}

// TestDelPolicySuperseded: deleting an old SA's or a trap's policy leaves
// the policy alone once a newer SA has taken it over.
func TestDelPolicySuperseded(t *testing.T) {
	ctx := context.Background()
	base := offload.Policy{Conn: "c", Child: "net", Dir: offload.Out, Action: offload.Protect,
		Src: netip.MustParsePrefix("10.1.0.0/24"), Dst: netip.MustParsePrefix("10.2.0.0/24")}
	with := func(action offload.Action, spi uint32) offload.Policy {
		p := base
		p.Action, p.SPI = action, spi
		return p
	}
	for _, tc := range []struct {
		name        string
		installed   offload.Policy
		del         offload.Policy
		wantRemoved bool
	}{
		{"same spi", with(offload.Protect, 1000), with(offload.Protect, 1000), true},
		{"rekeyed spi", with(offload.Protect, 2000), with(offload.Protect, 1000), false},
		{"trap still trap", with(offload.Protect, 0), with(offload.Protect, 0), true},
		{"trap replaced by sa", with(offload.Protect, 2000), with(offload.Protect, 0), false},
		{"trap replaced by discard", with(offload.Discard, 0), with(offload.Protect, 0), false},
		{"no action removes any", with(offload.Protect, 2000), with(0, 0), true},
		{"discard removes discard", with(offload.Discard, 0), with(offload.Discard, 0), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := New()
			if err := d.AddPolicy(ctx, tc.installed); err != nil {
				t.Fatal(err)
			}
			err := d.DelPolicy(ctx, tc.del)
			switch {
			case tc.wantRemoved && (err != nil || len(d.Policies()) != 0):
				t.Fatalf("DelPolicy = %v, %d policies left, want it removed", err, len(d.Policies()))
			case !tc.wantRemoved && (!errors.Is(err, offload.ErrNotFound) || len(d.Policies()) != 1):
				t.Fatalf("DelPolicy = %v, %d policies left, want ErrNotFound and the policy kept", err, len(d.Policies()))
			}
		})
	}
}
