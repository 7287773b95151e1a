package loader

import (
	"net/netip"
	"os"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/xdpsec/xdpsec/internal/netlab"
)

// Netlink's XDP_ATTACHED_* values.
const (
	attachedDrv = 1
	attachedSKB = 2
)

func (l *lab) xdpMode(t *testing.T, ifname string) uint32 {
	t.Helper()
	lk, err := l.gw.Handle().LinkByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	if x := lk.Attrs().Xdp; x != nil && x.Attached {
		return x.AttachMode
	}
	return 0
}

// TestAutoModeIsNativeOnVeth: veth has native XDP, so auto must not fall
// back.
func TestAutoModeIsNativeOnVeth(t *testing.T) {
	lb := newLab(t)
	ld := lb.open(t)
	defer ld.Detach()
	if m := lb.xdpMode(t, lb.wan); m != attachedDrv {
		t.Errorf("WAN attach mode %d, want native (%d)", m, attachedDrv)
	}
	if m := lb.xdpMode(t, lb.lan); m != attachedDrv {
		t.Errorf("LAN attach mode %d, want native (%d)", m, attachedDrv)
	}
}

// TestAutoModeFallsBackToGeneric uses the loopback device, which has no
// native XDP: auto falls back with a warning, native fails.
func TestAutoModeFallsBackToGeneric(t *testing.T) {
	netlab.RequireRoot(t)
	p := netlab.RandomPrefix("xm")
	lb := &lab{prefix: p, gw: netlab.NewTestNS(t, p, "gw")}

	var native error
	err := lb.gw.Do(func() error {
		_, native = Open(Options{Instance: p + "-native", WAN: "lo", Mode: ModeNative})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if native == nil {
		t.Error("native mode on lo succeeded, want an error")
	}
	// A failed first start leaves no pins behind.
	if _, err := os.Stat(DefaultPinRoot + "/" + p + "-native"); !os.IsNotExist(err) {
		t.Errorf("pin dir after failed Open: %v", err)
	}

	core, logs := observer.New(zapcore.WarnLevel)
	var ld *Loader
	err = lb.gw.Do(func() error {
		var err error
		ld, err = Open(Options{Instance: p, WAN: "lo", Mode: ModeAuto, Logger: zap.New(core)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ld.Detach()
	if m := lb.xdpMode(t, "lo"); m != attachedSKB {
		t.Errorf("attach mode %d, want generic (%d)", m, attachedSKB)
	}
	if n := logs.FilterMessage("native XDP unavailable, falling back to generic mode").Len(); n != 1 {
		t.Errorf("%d fallback log lines, want 1", n)
	}
}

func TestOptionsValidation(t *testing.T) {
	for _, o := range []Options{
		{Instance: ""},
		{Instance: "a/b"},
		{Instance: ".."},
		{Instance: "ok", Mode: "fast"},
	} {
		if _, err := Open(o); err == nil {
			t.Errorf("Open(%+v) succeeded", o)
		}
	}
}

func TestPolicyEntry(t *testing.T) {
	pfx := netip.MustParsePrefix
	ok := Policy{ID: 1, Dst: pfx("10.2.0.0/16"), Src: pfx("10.1.2.3/16"), Action: Protect}
	e, err := ok.entry()
	if err != nil {
		t.Fatal(err)
	}
	if e.SrcPlen != 96+16 || netip.AddrFrom16(e.Src) != netip.MustParseAddr("::ffff:10.1.0.0") {
		t.Errorf("IPv4 source in mapped form: plen %d addr %v", e.SrcPlen, netip.AddrFrom16(e.Src))
	}
	e6, err := Policy{Dst: pfx("fd00:2::/48"), Src: pfx("fd00:1::/48"), Action: Bypass}.entry()
	if err != nil || e6.SrcPlen != 48 {
		t.Errorf("IPv6 entry: plen %d, %v", e6.SrcPlen, err)
	}
	for _, p := range []Policy{
		{Dst: pfx("10.2.0.0/16"), Src: pfx("fd00::/8"), Action: Protect},
		{Dst: pfx("10.2.0.0/16"), Action: Protect},
		{Dst: pfx("10.2.0.0/16"), Src: pfx("10.1.0.0/16"), Action: 0},
	} {
		if _, err := p.entry(); err == nil {
			t.Errorf("entry(%+v) succeeded", p)
		}
	}
}

func TestDecodeEvents(t *testing.T) {
	raw := make([]byte, 40)
	if _, err := decodeTrap(raw[:10]); err == nil {
		t.Error("short trap record decoded")
	}
}
