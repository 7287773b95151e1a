package xfrm

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"

	"github.com/xdpsec/xdpsec/offload"
)

var (
	lanA  = netip.MustParsePrefix("10.1.0.0/24")
	lanB  = netip.MustParsePrefix("10.2.0.0/24")
	gwA   = netip.MustParseAddr("192.0.2.1")
	gwB   = netip.MustParseAddr("192.0.2.2")
	bgCtx = context.Background()
)

func outSA(spi uint32) offload.SA {
	sa := baseSA()
	sa.Conn, sa.Child, sa.SPI, sa.Dir, sa.Src, sa.Dst = "site-b", "net", spi, offload.Out, gwA, gwB
	return sa
}

func inSA(spi uint32) offload.SA {
	sa := outSA(spi)
	sa.Dir, sa.Src, sa.Dst = offload.In, gwB, gwA
	sa.LocalTS, sa.RemoteTS = []netip.Prefix{lanA}, []netip.Prefix{lanB}
	return sa
}

func outPolicy(spi uint32) offload.Policy {
	return offload.Policy{Conn: "site-b", Child: "net", Dir: offload.Out, Src: lanA, Dst: lanB,
		Action: offload.Protect, SPI: spi, Mode: offload.Tunnel, TunnelSrc: gwA, TunnelDst: gwB}
}

func inPolicy(spi uint32) offload.Policy {
	return offload.Policy{Conn: "site-b", Child: "net", Dir: offload.In, Src: lanB, Dst: lanA,
		Action: offload.Protect, SPI: spi, Mode: offload.Tunnel, TunnelSrc: gwB, TunnelDst: gwA}
}

func newTestDP(t *testing.T, opts Options) (*Dataplane, *fakeKernel) {
	t.Helper()
	k := newFakeKernel()
	d := newDataplane(opts, k)
	d.ifindex = 7
	t.Cleanup(func() { _ = d.Close() })
	return d, k
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// outTemplate returns the SPI and reqid the kernel's out policy for
// lanA -> lanB names, or ok false when there is none.
func outTemplate(k *fakeKernel) (spi, reqid int, ok bool) {
	p, ok := k.policy(netlink.XFRM_DIR_OUT, lanA.String(), lanB.String())
	if !ok || len(p.Tmpls) != 1 {
		return 0, 0, false
	}
	return p.Tmpls[0].Spi, p.Tmpls[0].Reqid, true
}

func TestPolicyReplaceAndSuperseded(t *testing.T) {
	d, k := newTestDP(t, Options{})
	trap := outPolicy(0)
	must(t, d.AddPolicy(bgCtx, trap))
	spi, reqid, ok := outTemplate(k)
	if !ok || spi != 0 || reqid != DefaultReqIDBase+1 {
		t.Fatalf("trap template spi %x reqid %x ok %v, want spi 0 and the child's trap reqid", spi, reqid, ok)
	}

	// An SA's policy needs the SA.
	if err := d.AddPolicy(bgCtx, outPolicy(0x1000)); !errors.Is(err, offload.ErrNotFound) {
		t.Fatalf("policy before its sa: %v", err)
	}
	must(t, d.AddSA(bgCtx, inSA(0x2000)))
	must(t, d.AddSA(bgCtx, outSA(0x1000)))
	must(t, d.AddPolicy(bgCtx, outPolicy(0x1000)))
	must(t, d.AddPolicy(bgCtx, inPolicy(0x2000)))
	if spi, reqid, _ := outTemplate(k); spi != 0x1000 || reqid != DefaultReqIDBase {
		t.Fatalf("after install: spi %x reqid %x", spi, reqid)
	}
	if _, ok := k.policy(netlink.XFRM_DIR_FWD, lanB.String(), lanA.String()); !ok {
		t.Fatal("no fwd policy for the inbound direction")
	}
	if p, ok := k.policy(netlink.XFRM_DIR_IN, lanB.String(), lanA.String()); !ok || p.Tmpls[0].Spi != 0 {
		t.Fatalf("in policy %v: its template must not pin the spi", p)
	}

	// The trap was replaced: removing the trap leaves the SA's policy.
	if err := d.DelPolicy(bgCtx, trap); !errors.Is(err, offload.ErrNotFound) {
		t.Fatalf("del superseded trap: %v", err)
	}
	if spi, _, ok := outTemplate(k); !ok || spi != 0x1000 {
		t.Fatal("deleting the trap took the sa's policy")
	}

	// Rekey: the new SA's policies replace the old ones. The inbound
	// ones translate to the same kernel policies (the template names
	// the reqid), so the kernel's stay untouched: rewriting them could
	// drop what the new SA decrypts meanwhile.
	must(t, d.AddSA(bgCtx, inSA(0x2001)))
	must(t, d.AddSA(bgCtx, outSA(0x1001)))
	writes := k.updates
	must(t, d.AddPolicy(bgCtx, outPolicy(0x1001)))
	must(t, d.AddPolicy(bgCtx, inPolicy(0x2001)))
	if spi, _, _ := outTemplate(k); spi != 0x1001 {
		t.Fatalf("after rekey the out policy names %x", spi)
	}
	if got := k.updates - writes; got != 1 {
		t.Fatalf("rekey wrote %d kernel policies, want 1 (out; in and fwd unchanged)", got)
	}
	for _, p := range []offload.Policy{outPolicy(0x1000), inPolicy(0x2000)} {
		if err := d.DelPolicy(bgCtx, p); !errors.Is(err, offload.ErrNotFound) {
			t.Fatalf("del old %s policy: %v", p.Dir, err)
		}
	}
	if spi, _, ok := outTemplate(k); !ok || spi != 0x1001 {
		t.Fatal("deleting the old child took the new one's policy")
	}
	must(t, d.DelSA(bgCtx, 0x1000, offload.Out))
	must(t, d.DelSA(bgCtx, 0x2000, offload.In))

	// The current child's policies go.
	must(t, d.DelPolicy(bgCtx, outPolicy(0x1001)))
	must(t, d.DelPolicy(bgCtx, inPolicy(0x2001)))
	if len(k.policies) != 0 {
		t.Fatalf("policies left: %v", k.policies)
	}
	if err := d.DelPolicy(bgCtx, outPolicy(0x1001)); !errors.Is(err, offload.ErrNotFound) {
		t.Fatalf("del twice: %v", err)
	}

	// A trap is removed while it is still one; bypass and discard
	// whatever they are.
	must(t, d.AddPolicy(bgCtx, trap))
	must(t, d.DelPolicy(bgCtx, trap))
	by := offload.Policy{Dir: offload.In, Src: lanB, Dst: lanA, Action: offload.Bypass}
	must(t, d.AddPolicy(bgCtx, by))
	if len(k.policies) != 2 {
		t.Fatalf("bypass in: %d kernel policies, want in and fwd", len(k.policies))
	}
	must(t, d.DelPolicy(bgCtx, offload.Policy{Dir: offload.In, Src: lanB, Dst: lanA}))
	if len(k.policies) != 0 {
		t.Fatalf("policies left: %v", k.policies)
	}
}

func TestAddPolicyRollsBack(t *testing.T) {
	d, k := newTestDP(t, Options{})
	failFwd := func(p *netlink.XfrmPolicy) error {
		if p.Dir == netlink.XFRM_DIR_FWD {
			return unix.ENOMEM
		}
		return nil
	}
	// A new policy that fails half-way leaves nothing behind.
	k.polErr = failFwd
	if err := d.AddPolicy(bgCtx, inPolicy(0x2000)); err == nil {
		t.Fatal("no error")
	}
	if len(k.policies) != 0 || len(d.Policies()) != 0 {
		t.Fatalf("left behind: kernel %v table %v", k.policies, d.Policies())
	}
	// A replacement that fails puts the previous policy back.
	k.polErr = nil
	must(t, d.AddPolicy(bgCtx, inPolicy(0x2000)))
	k.polErr = failFwd
	block := inPolicy(0x2001)
	block.Action = offload.Discard
	if err := d.AddPolicy(bgCtx, block); err == nil {
		t.Fatal("no error")
	}
	k.polErr = nil
	if got := d.Policies(); len(got) != 1 || got[0].SPI != 0x2000 {
		t.Fatalf("table %v, want the previous policy", got)
	}
	if len(k.policies) != 2 {
		t.Fatalf("kernel %v, want in and fwd back", k.policies)
	}
}

func TestSAErrors(t *testing.T) {
	d, _ := newTestDP(t, Options{})
	must(t, d.AddSA(bgCtx, outSA(0x1000)))
	if err := d.AddSA(bgCtx, outSA(0x1000)); !errors.Is(err, offload.ErrExists) {
		t.Fatalf("add twice: %v", err)
	}
	if err := d.DelSA(bgCtx, 0x1000, offload.In); !errors.Is(err, offload.ErrNotFound) {
		t.Fatalf("del other direction: %v", err)
	}
	must(t, d.DelSA(bgCtx, 0x1000, offload.Out))
	if err := d.DelSA(bgCtx, 0x1000, offload.Out); !errors.Is(err, offload.ErrNotFound) {
		t.Fatalf("del twice: %v", err)
	}
	must(t, d.Close())
	if err := d.AddSA(bgCtx, outSA(0x1001)); !errors.Is(err, offload.ErrClosed) {
		t.Fatalf("add after close: %v", err)
	}
	if _, ok := <-d.Events(); ok {
		t.Fatal("events open after close")
	}
}

func TestSPIs(t *testing.T) {
	d, k := newTestDP(t, Options{})
	spi, err := d.AllocSPI(bgCtx)
	must(t, err)
	if spi < 256 {
		t.Fatalf("spi %d", spi)
	}
	must(t, d.ReleaseSPI(bgCtx, spi))
	if err := d.ReleaseSPI(bgCtx, spi); !errors.Is(err, offload.ErrNotFound) {
		t.Fatalf("release twice: %v", err)
	}
	spi, err = d.AllocSPI(bgCtx)
	must(t, err)
	must(t, d.AddSA(bgCtx, inSA(spi)))
	if err := d.ReleaseSPI(bgCtx, spi); !errors.Is(err, offload.ErrNotFound) {
		t.Fatalf("installed spi still reserved: %v", err)
	}
	if len(k.states) != 1 {
		t.Fatal("no state")
	}
}

func TestLineage(t *testing.T) {
	d, k := newTestDP(t, Options{})
	must(t, d.AddSA(bgCtx, inSA(0x2000)))
	must(t, d.AddSA(bgCtx, outSA(0x1000)))
	k.setCounters(0x2000, gwA.String(), 1000, 10)
	k.setCounters(0x1000, gwB.String(), 500, 5)
	st, err := d.Stats(bgCtx)
	must(t, err)
	want := []offload.ChildCounters{
		{Conn: "site-b", Child: "net", Dir: offload.In, Bytes: 1000, Packets: 10},
		{Conn: "site-b", Child: "net", Dir: offload.Out, Bytes: 500, Packets: 5},
	}
	if !reflect.DeepEqual(st.Children, want) {
		t.Fatalf("children %+v, want %+v", st.Children, want)
	}
	if st.Mode != "xfrm" || len(st.SAs) != 2 || st.SAs[0].SPI != 0x1000 || st.SAs[0].Bytes != 500 || st.SAs[1].Packets != 10 {
		t.Fatalf("sas %+v", st.SAs)
	}

	// Rekey: the old SAs' traffic stays in the totals.
	must(t, d.AddSA(bgCtx, inSA(0x2001)))
	must(t, d.AddSA(bgCtx, outSA(0x1001)))
	k.setCounters(0x2000, gwA.String(), 1500, 15) // more before it goes
	must(t, d.DelSA(bgCtx, 0x2000, offload.In))
	must(t, d.DelSA(bgCtx, 0x1000, offload.Out))
	k.setCounters(0x2001, gwA.String(), 100, 1)
	k.setCounters(0x1001, gwB.String(), 200, 2)
	st, err = d.Stats(bgCtx)
	must(t, err)
	want = []offload.ChildCounters{
		{Conn: "site-b", Child: "net", Dir: offload.In, Bytes: 1600, Packets: 16},
		{Conn: "site-b", Child: "net", Dir: offload.Out, Bytes: 700, Packets: 7},
	}
	if !reflect.DeepEqual(st.Children, want) {
		t.Fatalf("after rekey: children %+v, want %+v", st.Children, want)
	}

	// A hard expire removes the state in the kernel; its final counters
	// (from the expire message) stay with the child.
	info := usersaInfo(0x1001, gwB, DefaultReqIDBase)
	info.Curlft.Bytes, info.Curlft.Packets = 250, 3
	delete(k.states, "00001001/"+gwB.String())
	d.handle(expireMsg(info, true))
	ev := <-d.Events()
	if ev.Kind != offload.HardExpire || ev.SPI != 0x1001 || ev.Dir != offload.Out || ev.Conn != "site-b" || ev.Child != "net" {
		t.Fatalf("event %+v", ev)
	}
	must(t, d.DelSA(bgCtx, 0x1001, offload.Out))
	st, err = d.Stats(bgCtx)
	must(t, err)
	if got := st.Children[1]; got.Bytes != 750 || got.Packets != 8 {
		t.Fatalf("out totals after hard expire %+v, want 750 bytes 8 packets (500 + 250, 5 + 3)", got)
	}
}

func usersaInfo(spi uint32, dst netip.Addr, reqid uint32) nl.XfrmUsersaInfo {
	var info nl.XfrmUsersaInfo
	info.Family = unix.AF_INET
	info.Id.Daddr.FromIP(net.IP(dst.AsSlice()))
	info.Id.Spi = nl.Swap32(spi)
	info.Id.Proto = unix.IPPROTO_ESP
	info.Reqid = reqid
	return info
}

func expireMsg(info nl.XfrmUsersaInfo, hard bool) syscall.NetlinkMessage {
	ex := nl.XfrmUserExpire{XfrmUsersaInfo: info}
	if hard {
		ex.Hard = 1
	}
	return syscall.NetlinkMessage{Header: syscall.NlMsghdr{Type: nl.XFRM_MSG_EXPIRE},
		Data: append([]byte(nil), ex.Serialize()...)}
}

func acquireMsg(policySrc, policyDst netip.Prefix, dir netlink.Dir, src, dst netip.Addr) syscall.NetlinkMessage {
	b := make([]byte, acquireMinLen+16)
	flow := (*nl.XfrmSelector)(unsafe.Pointer(&b[acquireSelOff]))
	flow.Family = unix.AF_INET
	flow.Saddr.FromIP(net.IP(src.AsSlice()))
	flow.Daddr.FromIP(net.IP(dst.AsSlice()))
	flow.PrefixlenS, flow.PrefixlenD = 32, 32
	pol := (*nl.XfrmUserpolicyInfo)(unsafe.Pointer(&b[acquirePolicyOff]))
	pol.Dir = uint8(dir)
	pol.Sel.Family = unix.AF_INET
	pol.Sel.Saddr.FromIP(net.IP(policySrc.Addr().AsSlice()))
	pol.Sel.Daddr.FromIP(net.IP(policyDst.Addr().AsSlice()))
	pol.Sel.PrefixlenS, pol.Sel.PrefixlenD = uint8(policySrc.Bits()), uint8(policyDst.Bits())
	return syscall.NetlinkMessage{Header: syscall.NlMsghdr{Type: nl.XFRM_MSG_ACQUIRE}, Data: b}
}

func TestEvents(t *testing.T) {
	d, _ := newTestDP(t, Options{})
	must(t, d.AddSA(bgCtx, inSA(0x2000)))
	must(t, d.AddSA(bgCtx, outSA(0x2000))) // same SPI both ways: the destination tells
	must(t, d.AddPolicy(bgCtx, outPolicy(0)))

	d.handle(expireMsg(usersaInfo(0x2000, gwA, DefaultReqIDBase), false))
	if ev := <-d.Events(); ev.Kind != offload.SoftExpire || ev.Dir != offload.In || ev.SPI != 0x2000 {
		t.Fatalf("soft expire %+v", ev)
	}
	d.handle(expireMsg(usersaInfo(0x2000, gwB, DefaultReqIDBase), false))
	if ev := <-d.Events(); ev.Dir != offload.Out {
		t.Fatalf("soft expire of the out sa %+v", ev)
	}
	// Others' states, unknown SPIs: nothing.
	d.handle(expireMsg(usersaInfo(0x2000, gwA, 1), true))
	d.handle(expireMsg(usersaInfo(0x3000, gwA, DefaultReqIDBase), true))
	d.handle(acquireMsg(netip.MustParsePrefix("10.9.0.0/24"), lanB, netlink.XFRM_DIR_OUT, gwA, gwB))

	src, dst := netip.MustParseAddr("10.1.0.10"), netip.MustParseAddr("10.2.0.10")
	d.handle(acquireMsg(lanA, lanB, netlink.XFRM_DIR_OUT, src, dst))
	ev := <-d.Events()
	want := offload.Event{Kind: offload.Acquire, Conn: "site-b", Child: "net", Dir: offload.Out, Src: src, Dst: dst}
	if ev != want {
		t.Fatalf("acquire %+v, want %+v", ev, want)
	}
	select {
	case ev := <-d.Events():
		t.Fatalf("unexpected event %+v", ev)
	default:
	}
}

func TestOffload(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cfg       OffloadConfig
		addErr    error // on adds with the offload attribute
		inForce   *string
		wantErr   string
		wantState bool
		want      string // OffloadInEffect
		warn      string
	}{
		{name: "crypto in force", cfg: OffloadConfig{Dev: "eth0", Type: "crypto"}, wantState: true, want: "crypto"},
		{name: "packet in force", cfg: OffloadConfig{Dev: "eth0", Type: "packet", Required: true}, wantState: true, want: "packet"},
		{name: "refused: software", cfg: OffloadConfig{Dev: "eth0", Type: "crypto"}, addErr: unix.EOPNOTSUPP,
			wantState: true, want: "", warn: "nic refused ipsec offload; sa runs in software"},
		{name: "refused with einval: software", cfg: OffloadConfig{Dev: "eth0", Type: "packet"}, addErr: unix.EINVAL,
			wantState: true, want: "", warn: "nic refused ipsec offload; sa runs in software"},
		{name: "refused and required", cfg: OffloadConfig{Dev: "eth0", Type: "crypto", Required: true}, addErr: unix.EOPNOTSUPP,
			wantErr: "crypto offload on eth0 refused"},
		{name: "other error is not a refusal", cfg: OffloadConfig{Dev: "eth0", Type: "crypto"}, addErr: unix.ENOMEM,
			wantErr: "cannot allocate memory"},
		{name: "not in force, required", cfg: OffloadConfig{Dev: "eth0", Type: "packet", Required: true}, inForce: new(string),
			wantErr: "not in force"},
		{name: "not in force", cfg: OffloadConfig{Dev: "eth0", Type: "packet"}, inForce: new(string),
			wantState: true, want: "", warn: "ipsec offload not in force"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zap.WarnLevel)
			cfg := tc.cfg
			d, k := newTestDP(t, Options{Logger: zap.New(core), Offload: &cfg})
			if d.Name() != "xfrm-offload" {
				t.Errorf("name %q", d.Name())
			}
			k.inForce = tc.inForce
			k.addErr = func(s stateSpec) error {
				if s.offload != nil {
					if s.offload.ifindex != 7 || s.offload.packet != (cfg.Type == "packet") || s.offload.in {
						t.Errorf("offload attr %+v", s.offload)
					}
					return tc.addErr
				}
				return nil
			}
			err := d.AddSA(bgCtx, outSA(0x1000))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if got := len(k.states) == 1; got != tc.wantState {
				t.Fatalf("state installed %v, want %v", got, tc.wantState)
			}
			if tc.wantState {
				st, err := d.Stats(bgCtx)
				must(t, err)
				if st.SAs[0].OffloadInEffect != tc.want {
					t.Errorf("offload in effect %q, want %q", st.SAs[0].OffloadInEffect, tc.want)
				}
			}
			if tc.warn != "" {
				found := logs.FilterMessage(tc.warn).Len() == 1
				if !found {
					t.Errorf("no warning %q in %v", tc.warn, logs.All())
				}
			}
		})
	}
}

func TestCloseRemovesOnlyOurs(t *testing.T) {
	d, k := newTestDP(t, Options{Mark: 0x10, MarkMask: 0xff})
	// Someone else's state and policies in the same namespace.
	foreign := stateSpec{st: netlink.XfrmState{Src: net.ParseIP("203.0.113.1"), Dst: net.ParseIP("203.0.113.2"),
		Proto: netlink.XFRM_PROTO_ESP, Spi: 0x5000, Reqid: 1}}
	must(t, k.addState(foreign))
	must(t, k.updatePolicy(&netlink.XfrmPolicy{Dir: netlink.XFRM_DIR_OUT, Src: ipNetOf(netip.MustParsePrefix("10.8.0.0/24")),
		Dst: ipNetOf(netip.MustParsePrefix("10.9.0.0/24")), Tmpls: []netlink.XfrmPolicyTmpl{{Reqid: 1}}}))
	must(t, k.updatePolicy(&netlink.XfrmPolicy{Dir: netlink.XFRM_DIR_OUT, Src: ipNetOf(netip.MustParsePrefix("10.7.0.0/24")),
		Dst: ipNetOf(netip.MustParsePrefix("10.9.0.0/24")), Priority: 100}))
	// Ours, with a leftover the table does not know (a previous run's).
	must(t, d.AddSA(bgCtx, outSA(0x1000)))
	must(t, d.AddPolicy(bgCtx, outPolicy(0x1000)))
	must(t, d.AddPolicy(bgCtx, offload.Policy{Dir: offload.In, Src: lanB, Dst: lanA, Action: offload.Discard}))
	left := stateSpec{st: netlink.XfrmState{Src: gwA.AsSlice(), Dst: gwB.AsSlice(), Proto: netlink.XFRM_PROTO_ESP,
		Spi: 0x6000, Reqid: DefaultReqIDBase + 40, Mark: &netlink.XfrmMark{Value: 0x10, Mask: 0xff}}}
	must(t, k.addState(left))
	for _, p := range k.policies {
		if p.Mark == nil && len(p.Tmpls) > 0 && p.Tmpls[0].Reqid >= DefaultReqIDBase {
			t.Fatalf("policy without our mark: %v", p)
		}
	}
	must(t, d.Close())
	if len(k.states) != 1 || len(k.policies) != 2 {
		t.Fatalf("after close: states %v policies %v, want only the foreign ones", k.states, k.policies)
	}
	if _, ok := k.states[stateID(&foreign.st)]; !ok {
		t.Fatal("foreign state removed")
	}
}

func TestSweepAtStart(t *testing.T) {
	k := newFakeKernel()
	must(t, k.addState(stateSpec{st: netlink.XfrmState{Src: gwA.AsSlice(), Dst: gwB.AsSlice(), Proto: netlink.XFRM_PROTO_ESP,
		Spi: 0x6000, Reqid: DefaultReqIDBase + 2}}))
	must(t, k.addState(stateSpec{st: netlink.XfrmState{Src: gwA.AsSlice(), Dst: gwB.AsSlice(), Proto: netlink.XFRM_PROTO_ESP,
		Spi: 0x6001, Reqid: DefaultReqIDBase + reqIDSpan}})) // another instance's range
	kps, err := policiesFor(offload.Policy{Dir: offload.In, Src: lanB, Dst: lanA, Action: offload.Bypass}, policyReqIDs{}, xlat{})
	must(t, err)
	for i := range kps {
		must(t, k.updatePolicy(&kps[i]))
	}
	core, logs := observer.New(zap.InfoLevel)
	d := newDataplane(Options{Logger: zap.New(core)}, k)
	must(t, d.sweep("leftovers of a previous run"))
	if len(k.states) != 1 || len(k.policies) != 0 {
		t.Fatalf("states %v policies %v", k.states, k.policies)
	}
	l := logs.FilterMessage("removed xfrm states and policies").All()
	if len(l) != 1 || l[0].ContextMap()["states"] != int64(1) || l[0].ContextMap()["policies"] != int64(2) {
		t.Fatalf("log %v", logs.All())
	}
}

func TestDrops(t *testing.T) {
	raw, err := parseXfrmStat(strings.NewReader(`XfrmInError             	0
XfrmInBufferError       	0
XfrmInHdrError          	3
XfrmInNoStates          	17
XfrmInStateProtoError   	5
XfrmInStateSeqError     	2
XfrmInTmplMismatch      	4
XfrmInNoPols            	6
XfrmOutNoStates         	1
`))
	must(t, err)
	got := dropsOf(raw)
	want := map[string]uint64{"unknown_spi": 17, "replay": 2, "auth": 5, "selector": 10, "malformed": 3,
		"XfrmInError": 0, "XfrmInBufferError": 0, "XfrmOutNoStates": 1}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("drops %v, want %v", got, want)
	}
	if _, err := parseXfrmStat(strings.NewReader("XfrmInError x\n")); err == nil {
		t.Fatal("bad number accepted")
	}
}

func TestReqIDs(t *testing.T) {
	d, _ := newTestDP(t, Options{ReqIDBase: 0x100})
	a, _ := d.reqIDs("a", "x")
	b, _ := d.reqIDs("a", "y")
	a2, _ := d.reqIDs("a", "x")
	if a != a2 || a.sa != 0x100 || a.trap != 0x101 || b.sa != 0x102 {
		t.Fatalf("reqids %v %v %v", a, b, a2)
	}
	if !d.ourReqID(0x100+reqIDSpan-1) || d.ourReqID(0x100+reqIDSpan) || d.ourReqID(0xff) {
		t.Fatal("range")
	}
}
