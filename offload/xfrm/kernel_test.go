package xfrm

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"

	"github.com/xdpsec/xdpsec/offload"
)

// Kernel tests run in fresh network namespaces. Those that add states
// need ESP in the kernel (the build machines have none; the qemu rig
// booting Debian's kernel does) and skip with the reason otherwise; those
// that only program policies run wherever XFRM exists.

// espSupport probes once per test binary.
var espSupport = sync.OnceValue(Probe)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("kernel test: needs root for network namespaces")
	}
}

func needESP(t *testing.T) {
	t.Helper()
	needRoot(t)
	if err := espSupport(); err != nil {
		t.Skipf("kernel test: %v", err)
	}
}

// freshNS makes an empty network namespace for one test.
func freshNS(t *testing.T) netns.NsHandle {
	t.Helper()
	needRoot(t)
	var ns netns.NsHandle
	err := onLockedThread(func() error {
		var err error
		ns, err = netns.New()
		return err
	})
	if err != nil {
		t.Skipf("kernel test: cannot make a network namespace: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

func nsHandle(t *testing.T, ns netns.NsHandle) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE, unix.NETLINK_XFRM)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

func kernelDB(t *testing.T, h *netlink.Handle) ([]netlink.XfrmState, []netlink.XfrmPolicy) {
	t.Helper()
	sts, err := h.XfrmStateList(netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	pols, err := h.XfrmPolicyList(netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	// The kernel lists per-socket policies too (dir >= 3); none are ours.
	var out []netlink.XfrmPolicy
	for _, p := range pols {
		if p.Dir <= netlink.XFRM_DIR_FWD {
			out = append(out, p)
		}
	}
	return sts, out
}

func newKernelDP(t *testing.T, ns netns.NsHandle, log *zap.Logger) *Dataplane {
	t.Helper()
	if log == nil {
		log = zaptest.NewLogger(t)
	}
	d, err := New(Options{Logger: log, NetNS: ns})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// kill drops a data plane as a crashed daemon would: nothing removed.
func kill(d *Dataplane) {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.mon.stop()
	d.stat.close()
	d.k.close()
}

func TestKernelPolicies(t *testing.T) {
	ns := freshNS(t)
	h := nsHandle(t, ns)
	d := newKernelDP(t, ns, nil)
	trap := outPolicy(0)
	must(t, d.AddPolicy(bgCtx, trap))
	must(t, d.AddPolicy(bgCtx, offload.Policy{Dir: offload.In, Src: lanB, Dst: lanA, Action: offload.Bypass}))
	must(t, d.AddPolicy(bgCtx, offload.Policy{Dir: offload.Out, Src: netip.MustParsePrefix("2001:db8:1::/64"),
		Dst: netip.MustParsePrefix("2001:db8:2::/64"), Proto: 17, Action: offload.Discard}))
	_, pols := kernelDB(t, h)
	if len(pols) != 4 {
		t.Fatalf("kernel policies %v, want out trap, in+fwd bypass, out discard", pols)
	}
	for _, p := range pols {
		switch {
		case p.Dir == netlink.XFRM_DIR_OUT && p.Action == netlink.XFRM_POLICY_ALLOW:
			if len(p.Tmpls) != 1 || p.Tmpls[0].Reqid != DefaultReqIDBase+1 || !p.Tmpls[0].Dst.Equal(net.ParseIP("192.0.2.2")) ||
				p.Tmpls[0].Mode != netlink.XFRM_MODE_TUNNEL {
				t.Errorf("trap %v", p)
			}
		case p.Dir == netlink.XFRM_DIR_OUT:
			if p.Action != netlink.XFRM_POLICY_BLOCK || p.Proto != 17 || p.Dst.String() != "2001:db8:2::/64" {
				t.Errorf("discard %v", p)
			}
		default:
			if len(p.Tmpls) != 0 || p.Src.String() != lanB.String() {
				t.Errorf("bypass %v", p)
			}
		}
		if !inPriorityBand(p.Priority) {
			t.Errorf("priority %d", p.Priority)
		}
	}
	// Replacing keeps one policy per selector.
	must(t, d.AddPolicy(bgCtx, offload.Policy{Dir: offload.Out, Src: lanA, Dst: lanB, Action: offload.Discard}))
	if _, pols = kernelDB(t, h); len(pols) != 4 {
		t.Fatalf("after replace: %v", pols)
	}
	must(t, d.DelPolicy(bgCtx, offload.Policy{Dir: offload.In, Src: lanB, Dst: lanA}))
	if _, pols = kernelDB(t, h); len(pols) != 2 {
		t.Fatalf("after delete: %v", pols)
	}
	must(t, d.Close())
	if _, pols = kernelDB(t, h); len(pols) != 0 {
		t.Fatalf("after close: %v", pols)
	}
}

func TestKernelPolicyLeftovers(t *testing.T) {
	ns := freshNS(t)
	h := nsHandle(t, ns)
	// Someone else's policy stays.
	must(t, h.XfrmPolicyAdd(&netlink.XfrmPolicy{Dir: netlink.XFRM_DIR_OUT, Src: ipNetOf(netip.MustParsePrefix("10.8.0.0/24")),
		Dst: ipNetOf(netip.MustParsePrefix("10.9.0.0/24")),
		Tmpls: []netlink.XfrmPolicyTmpl{{Src: net.ParseIP("192.0.2.1"), Dst: net.ParseIP("192.0.2.9"),
			Proto: netlink.XFRM_PROTO_ESP, Mode: netlink.XFRM_MODE_TUNNEL, Reqid: 1}}}))
	d := newKernelDP(t, ns, nil)
	must(t, d.AddPolicy(bgCtx, outPolicy(0)))
	must(t, d.AddPolicy(bgCtx, offload.Policy{Dir: offload.In, Src: lanB, Dst: lanA, Action: offload.Discard}))
	kill(d)
	if _, pols := kernelDB(t, h); len(pols) != 4 {
		t.Fatalf("before restart: %v", pols)
	}
	core, logs := observer.New(zap.InfoLevel)
	d = newKernelDP(t, ns, zap.New(core))
	if l := logs.FilterMessage("removed xfrm states and policies").All(); len(l) != 1 || l[0].ContextMap()["policies"] != int64(3) {
		t.Errorf("log %v", logs.All())
	}
	_, pols := kernelDB(t, h)
	if len(pols) != 1 || pols[0].Tmpls[0].Reqid != 1 {
		t.Fatalf("after restart: %v, want only the foreign policy", pols)
	}
	must(t, d.Close())
}

// TestKernelAcquire sends a packet into a trap: the kernel raises ACQUIRE
// (no ESP needed for that) and the data plane names the child.
func TestKernelAcquire(t *testing.T) {
	ns := freshNS(t)
	h := nsHandle(t, ns)
	// Routes through the loopback skip XFRM (DST_NOXFRM): the packet
	// must leave through a real device.
	l := testLink(t, h, "lan0")
	must(t, h.AddrAdd(l, &netlink.Addr{IPNet: ipNetOfAddr("10.1.0.1/24")}))
	must(t, h.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: ipNetOf(lanB)}))
	d := newKernelDP(t, ns, nil)
	defer d.Close()
	must(t, d.AddPolicy(bgCtx, outPolicy(0)))

	sendUDP(t, ns, "10.1.0.1", "10.2.0.10:9")
	select {
	case ev := <-d.Events():
		want := offload.Event{Kind: offload.Acquire, Conn: "site-b", Child: "net", Dir: offload.Out,
			Src: netip.MustParseAddr("10.1.0.1"), Dst: netip.MustParseAddr("10.2.0.10")}
		if ev != want {
			t.Fatalf("event %+v, want %+v", ev, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no acquire")
	}
	// The trap's drop shows in this namespace's xfrm_stat, which the
	// data plane opened from inside it.
	st, err := d.Stats(bgCtx)
	must(t, err)
	if st.Drops["XfrmOutNoStates"] == 0 {
		t.Errorf("drops %v: XfrmOutNoStates not counted", st.Drops)
	}
}

// testLink adds a device without IPsec offload: a dummy, or a veth where
// the kernel has no dummy driver.
func testLink(t *testing.T, h *netlink.Handle, name string) netlink.Link {
	t.Helper()
	var peer string
	err := h.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: name}})
	if err != nil {
		peer = name + "p"
		err = h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peer})
	}
	if err != nil {
		t.Skipf("kernel test: no dummy or veth device: %v", err)
	}
	for _, n := range []string{name, peer} {
		if n == "" {
			continue
		}
		l, err := h.LinkByName(n)
		must(t, err)
		must(t, h.LinkSetUp(l))
	}
	l, err := h.LinkByName(name)
	must(t, err)
	return l
}

func ipNetOfAddr(s string) *net.IPNet {
	ip, n, _ := net.ParseCIDR(s)
	n.IP = ip
	return n
}

// sendUDP sends one datagram from inside ns.
func sendUDP(t *testing.T, ns netns.NsHandle, src, dst string) {
	t.Helper()
	must(t, onLockedThread(func() error {
		if err := netns.Set(ns); err != nil {
			return err
		}
		c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)}, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(dst)))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("x"))
		// The trap drops the packet; some kernels say so (EAGAIN).
		if errors.Is(err, unix.EAGAIN) {
			err = nil
		}
		return err
	}))
}

func espPair(t *testing.T, d *Dataplane, mod func(*offload.SA)) {
	t.Helper()
	in, out := inSA(0x2000), outSA(0x1000)
	if mod != nil {
		mod(&in)
		mod(&out)
	}
	must(t, d.AddSA(bgCtx, in))
	must(t, d.AddSA(bgCtx, out))
	must(t, d.AddPolicy(bgCtx, outPolicy(0x1000)))
	must(t, d.AddPolicy(bgCtx, inPolicy(0x2000)))
}

func TestKernelSAs(t *testing.T) {
	needESP(t)
	for _, tc := range []struct {
		name string
		mod  func(*offload.SA)
	}{
		{"aes128gcm16", nil},
		{"aes256gcm16 esn", func(sa *offload.SA) { sa.KeyBits, sa.EncrKey, sa.ESN, sa.ReplayWindow = 256, key(36), true, 1024 }},
		{"chacha20poly1305 natt", func(sa *offload.SA) {
			sa.Encr, sa.KeyBits, sa.EncrKey = offload.EncrChaCha20Poly1305, 256, key(36)
			sa.Encap = &offload.Encap{SrcPort: 4500, DstPort: 4500}
		}},
		{"aes256-sha512 large window", func(sa *offload.SA) {
			sa.Encr, sa.KeyBits, sa.EncrKey, sa.Integ, sa.IntegKey = offload.EncrAESCBC, 256, key(32), offload.IntegHMACSHA512_256, key(64)
			sa.ReplayWindow = 4096
			sa.Lifetime = offload.Lifetime{SoftBytes: 1 << 30, HardBytes: 1 << 31, SoftTime: time.Hour, HardTime: 2 * time.Hour}
		}},
		{"aes128-sha256", func(sa *offload.SA) {
			sa.Encr, sa.KeyBits, sa.EncrKey, sa.Integ, sa.IntegKey = offload.EncrAESCBC, 128, key(16), offload.IntegHMACSHA256_128, key(32)
		}},
		{"aes128-sha384", func(sa *offload.SA) {
			sa.Encr, sa.KeyBits, sa.EncrKey, sa.Integ, sa.IntegKey = offload.EncrAESCBC, 128, key(16), offload.IntegHMACSHA384_192, key(48)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := freshNS(t)
			h := nsHandle(t, ns)
			d := newKernelDP(t, ns, nil)
			espPair(t, d, tc.mod)
			sts, pols := kernelDB(t, h)
			if len(sts) != 2 || len(pols) != 3 {
				t.Fatalf("states %v policies %v", sts, pols)
			}
			for _, st := range sts {
				if st.Reqid != DefaultReqIDBase || st.Proto != netlink.XFRM_PROTO_ESP || st.Mode != netlink.XFRM_MODE_TUNNEL {
					t.Errorf("state %v", st)
				}
			}
			stats, err := d.Stats(bgCtx)
			must(t, err)
			if len(stats.SAs) != 2 || stats.SAs[0].OffloadInEffect != "" {
				t.Errorf("stats %+v", stats)
			}
			must(t, d.DelPolicy(bgCtx, outPolicy(0x1000)))
			must(t, d.DelPolicy(bgCtx, inPolicy(0x2000)))
			must(t, d.DelSA(bgCtx, 0x1000, offload.Out))
			must(t, d.DelSA(bgCtx, 0x2000, offload.In))
			if sts, pols := kernelDB(t, h); len(sts) != 0 || len(pols) != 0 {
				t.Fatalf("after delete: states %v policies %v", sts, pols)
			}
			espPair(t, d, tc.mod)
			must(t, d.Close())
			if sts, pols := kernelDB(t, h); len(sts) != 0 || len(pols) != 0 {
				t.Fatalf("after close: states %v policies %v", sts, pols)
			}
		})
	}
}

func TestKernelLeftovers(t *testing.T) {
	needESP(t)
	ns := freshNS(t)
	h := nsHandle(t, ns)
	d := newKernelDP(t, ns, nil)
	espPair(t, d, nil)
	kill(d)
	if sts, pols := kernelDB(t, h); len(sts) != 2 || len(pols) != 3 {
		t.Fatalf("before restart: states %v policies %v", sts, pols)
	}
	d = newKernelDP(t, ns, nil)
	if sts, pols := kernelDB(t, h); len(sts) != 0 || len(pols) != 0 {
		t.Fatalf("after restart: states %v policies %v", sts, pols)
	}
	must(t, d.Close())
}

func TestKernelExpire(t *testing.T) {
	needESP(t)
	ns := freshNS(t)
	h := nsHandle(t, ns)
	d := newKernelDP(t, ns, nil)
	defer d.Close()
	sa := outSA(0x1000)
	sa.Lifetime.HardTime = time.Second
	must(t, d.AddSA(bgCtx, sa))
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-d.Events():
			if ev.Kind == offload.SoftExpire {
				continue
			}
			want := offload.Event{Kind: offload.HardExpire, Conn: "site-b", Child: "net", SPI: 0x1000, Dir: offload.Out}
			if ev != want {
				t.Fatalf("event %+v, want %+v", ev, want)
			}
			if sts, _ := kernelDB(t, h); len(sts) != 0 {
				t.Fatalf("state still there: %v", sts)
			}
			// DelSA of an expired SA succeeds: it is gone already.
			must(t, d.DelSA(bgCtx, 0x1000, offload.Out))
			return
		case <-deadline:
			t.Fatal("no hard expire within 10 s")
		}
	}
}

func TestKernelOffloadFallback(t *testing.T) {
	needESP(t)
	ns := freshNS(t)
	h := nsHandle(t, ns)
	testLink(t, h, "wan0")
	// A dummy or veth device has no IPsec offload: the SA runs in software, or
	// fails when offload is required.
	core, logs := observer.New(zap.WarnLevel)
	d, err := New(Options{Logger: zap.New(core), NetNS: ns, Offload: &OffloadConfig{Dev: "wan0", Type: OffloadCrypto}})
	must(t, err)
	defer d.Close()
	must(t, d.AddSA(bgCtx, outSA(0x1000)))
	st, err := d.Stats(bgCtx)
	must(t, err)
	if st.Mode != "xfrm-offload" || st.SAs[0].OffloadInEffect != "" {
		t.Fatalf("stats %+v", st)
	}
	if logs.Len() == 0 {
		t.Error("no warning about the refused offload")
	}
	d2, err := New(Options{NetNS: ns, ReqIDBase: DefaultReqIDBase + reqIDSpan,
		Offload: &OffloadConfig{Dev: "wan0", Type: OffloadPacket, Required: true}})
	must(t, err)
	defer d2.Close()
	if err := d2.AddSA(bgCtx, outSA(0x1001)); err == nil {
		t.Fatal("required offload on a dummy device accepted")
	}
}

// TestKernelRoutes: an outbound protect policy (a trap too) gives its
// destination a route towards the peer, with a source address from the
// local selector; the last policy going removes it; a destination with a
// route of its own is left alone; Close and a restart leave none of ours.
func TestKernelRoutes(t *testing.T) {
	ns := freshNS(t)
	h := nsHandle(t, ns)
	wan := testLink(t, h, "wan0")
	lan := testLink(t, h, "lan0")
	must(t, h.AddrAdd(wan, &netlink.Addr{IPNet: ipNetOfAddr(gwA.String() + "/24")}))
	must(t, h.AddrAdd(lan, &netlink.Addr{IPNet: ipNetOfAddr("10.1.0.1/24")}))
	foreign := netip.MustParsePrefix("10.3.0.0/24")
	must(t, h.RouteAdd(&netlink.Route{Dst: prefixNet(foreign), LinkIndex: wan.Attrs().Index}))

	ours := func() []netlink.Route {
		rs, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: offload.RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
		must(t, err)
		return rs
	}
	d := newKernelDP(t, ns, nil)
	trap := outPolicy(0)
	must(t, d.AddPolicy(t.Context(), trap))
	rs := ours()
	if len(rs) != 1 || rs[0].Dst.String() != lanB.String() || rs[0].LinkIndex != wan.Attrs().Index ||
		!rs[0].Src.Equal(net.ParseIP("10.1.0.1")) {
		t.Fatalf("routes after the trap: %+v", rs)
	}
	// The policy moving to an SA keeps the route (no SA needed for a
	// policy at this level: replace the trap with another trap).
	must(t, d.AddPolicy(t.Context(), trap))
	if len(ours()) != 1 {
		t.Fatalf("routes after replacing the policy: %+v", ours())
	}
	other := outPolicy(0)
	other.Dst = foreign
	must(t, d.AddPolicy(t.Context(), other))
	if len(ours()) != 1 {
		t.Errorf("a destination with its own route got ours too: %+v", ours())
	}
	must(t, d.DelPolicy(t.Context(), other))
	if rs, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: prefixNet(foreign)}, netlink.RT_FILTER_DST); err != nil || len(rs) != 1 {
		t.Errorf("the foreign route went with our policy: %+v, %v", rs, err)
	}
	must(t, d.DelPolicy(t.Context(), trap))
	if len(ours()) != 0 {
		t.Errorf("route left after its policy: %+v", ours())
	}

	must(t, d.AddPolicy(t.Context(), trap))
	kill(d)
	d = newKernelDP(t, ns, nil)
	if len(ours()) != 0 {
		t.Errorf("a killed predecessor's route survived New: %+v", ours())
	}
	must(t, d.AddPolicy(t.Context(), trap))
	must(t, d.Close())
	if len(ours()) != 0 {
		t.Errorf("route left after Close: %+v", ours())
	}
}
