package loader

import (
	"errors"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xdpsec/xdpsec/bpf"
	"github.com/xdpsec/xdpsec/internal/netlab"
)

// openDetached opens an instance attached to no interface: the maps are
// all there, which is what the typed methods work on.
func openDetached(t *testing.T) *Loader {
	t.Helper()
	netlab.RequireRoot(t)
	ld, err := Open(Options{Instance: netlab.RandomPrefix("xmap")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ld.Detach(); err != nil {
			t.Errorf("detach: %v", err)
		}
	})
	return ld
}

func TestSAMethods(t *testing.T) {
	ld := openDetached(t)
	dst6 := netip.MustParseAddr("2001:db8::1")
	peer6 := netip.MustParseAddr("2001:db8::2")
	if err := ld.PutSA(InboundSA{SPI: spiKnown, Dst: dst6, Peer: peer6, UDP: true, Action: SAPass}); err != nil {
		t.Fatal(err)
	}
	if a, err := ld.SA(spiKnown, dst6); err != nil || a != SAPass {
		t.Errorf("SA: %v, %v", a, err)
	}
	// The same SPI at another address is another SA.
	if _, err := ld.SA(spiKnown, gwWAN); !errors.Is(err, ErrNotFound) {
		t.Errorf("SA at other address: %v, want ErrNotFound", err)
	}
	if err := ld.PutSA(InboundSA{SPI: spiKnown + 1, Dst: gwWAN, Peer: peerWAN, Action: SAXfrm}); err != nil {
		t.Fatal(err)
	}
	if n, err := ld.ClearSAs(); err != nil || n != 2 {
		t.Fatalf("ClearSAs = %d, %v; want 2", n, err)
	}
	if _, err := ld.SA(spiKnown+1, gwWAN); !errors.Is(err, ErrNotFound) {
		t.Errorf("SA after ClearSAs: %v", err)
	}
	if err := ld.PutSA(InboundSA{SPI: spiKnown, Dst: dst6, Peer: peer6, Action: SAPass}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // deleting twice is fine
		if err := ld.DeleteSA(spiKnown, dst6); err != nil {
			t.Fatalf("delete %d: %v", i, err)
		}
	}
	if _, err := ld.SA(spiKnown, dst6); !errors.Is(err, ErrNotFound) {
		t.Errorf("SA after delete: %v", err)
	}
	for _, bad := range []error{
		ld.PutSA(InboundSA{SPI: 0, Dst: gwWAN, Peer: peerWAN, Action: SAAfXDP}),
		ld.PutSA(InboundSA{SPI: 255, Dst: gwWAN, Peer: peerWAN, Action: SAAfXDP}),
		ld.PutSA(InboundSA{SPI: spiKnown, Peer: peerWAN, Action: SAAfXDP}),
		ld.PutSA(InboundSA{SPI: spiKnown, Dst: gwWAN, Peer: peerWAN}),
		ld.PutSA(InboundSA{SPI: spiKnown, Dst: gwWAN, Action: SAAfXDP}),              // no peer
		ld.PutSA(InboundSA{SPI: spiKnown, Dst: gwWAN, Peer: peer6, Action: SAAfXDP}), // families differ
	} {
		if bad == nil {
			t.Error("invalid SA accepted")
		}
	}
}

func TestPolicyMethods(t *testing.T) {
	ld := openDetached(t)
	p4 := Policy{ID: 1, Dst: netip.MustParsePrefix("10.2.0.0/16"), Src: netip.MustParsePrefix("10.1.0.0/16"),
		Proto: unix.IPPROTO_UDP, SrcPort: 500, DstPort: 4500, Action: Discard}
	p6 := Policy{ID: 2, Dst: netip.MustParsePrefix("fd00:2::/48"), Src: netip.MustParsePrefix("fd00:1::/64"),
		Action: Protect, SPI: 0x3003, MSS: 1300}
	for _, p := range []Policy{p4, p6} {
		if err := ld.PutPolicy(p); err != nil {
			t.Fatal(err)
		}
		if got, err := ld.Policy(p.Dst); err != nil || got != p {
			t.Errorf("Policy(%s) = %+v, %v; want %+v", p.Dst, got, err, p)
		}
		for i := 0; i < 2; i++ {
			if err := ld.DeletePolicy(p.Dst); err != nil {
				t.Fatalf("delete %d: %v", i, err)
			}
		}
		if _, err := ld.Policy(p.Dst); !errors.Is(err, ErrNotFound) {
			t.Errorf("policy after delete: %v", err)
		}
	}
}

func TestConfigMethods(t *testing.T) {
	ld := openDetached(t)
	if err := ld.SetCPUs([]uint32{0}, 256); err != nil {
		t.Fatal(err)
	}
	if err := ld.SetIKERateLimit(5); err != nil {
		t.Fatal(err)
	}
	if err := ld.SetCPUPerSA(true); err != nil {
		t.Fatal(err)
	}
	cfg, err := ld.wanConfig()
	if err != nil {
		t.Fatal(err)
	}
	// Each setter keeps the other's fields.
	if cfg.CpuSlots != 1 || cfg.IkeInitRate != 5 || cfg.CpuPerSa != 1 {
		t.Errorf("config %+v, want 1 cpu slot, rate 5 and one CPU per SA", cfg)
	}
	var cpu uint32
	if err := ld.wan.CpuSlots.Lookup(uint32(0), &cpu); err != nil || cpu != 0 {
		t.Errorf("slot 0: cpu %d, %v", cpu, err)
	}
	if err := ld.SetCPUs(nil, 0); err != nil {
		t.Fatal(err)
	}
	if cfg, _ = ld.wanConfig(); cfg.CpuSlots != 0 || cfg.IkeInitRate != 5 {
		t.Errorf("config after clearing cpus %+v", cfg)
	}
	if err := ld.SetCPUs([]uint32{0}, 0); err == nil {
		t.Error("zero queue size accepted")
	}

	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	for _, s := range []Side{WAN, LAN} {
		if err := ld.RegisterXSK(s, 3, fd); err != nil {
			t.Fatalf("register %s: %v", s, err)
		}
		if err := ld.UnregisterXSK(s, 3); err != nil {
			t.Fatalf("unregister %s: %v", s, err)
		}
		if err := ld.UnregisterXSK(s, 3); err != nil {
			t.Fatalf("unregister %s twice: %v", s, err)
		}
	}
	if err := ld.RegisterXSK(Side(9), 0, fd); err == nil {
		t.Error("invalid side accepted")
	}

	c, err := ld.WANCounters()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c["drop_unknown_spi"]; !ok || len(c) != int(bpf.WanWanCounterWAN_COUNTER_MAX) {
		t.Errorf("WAN counters %v", c)
	}
	if c, err := ld.LANCounters(); err != nil || len(c) != int(bpf.LanLanCounterLAN_COUNTER_MAX) {
		t.Errorf("LAN counters %v, %v", c, err)
	}
}
