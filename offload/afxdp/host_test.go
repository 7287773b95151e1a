package afxdp

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xdpsec/xdpsec/internal/netlab"
	"github.com/xdpsec/xdpsec/offload"
)

// pingFrom waits until from reaches dst (the FIBs resolve next hops in
// the background), then expects a clean run.
func pingFrom(t *testing.T, from *netlab.NS, dst netip.Addr) {
	t.Helper()
	ctx := t.Context()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if n, _ := from.Ping(ctx, dst, 1, 500*time.Millisecond); n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never reached %s through the tunnel", from.Name, dst)
		}
	}
	if n, err := from.Ping(ctx, dst, 5, time.Second); n < 4 {
		t.Fatalf("ping %s from %s: %d of 5 replies (%v)", dst, from.Name, n, err)
	}
}

// tunRoute returns the route to dst through s's TUN port, if any.
func tunRoute(t *testing.T, s *site, dst netip.Prefix) (netlink.Route, bool) {
	t.Helper()
	link, err := s.ns.Handle().LinkByName(s.dp.TUN())
	if err != nil {
		t.Fatalf("%s: tun link %q: %v", s.ns.Name, s.dp.TUN(), err)
	}
	routes, err := s.ns.Handle().RouteList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if r.Dst != nil && r.Dst.String() == dst.String() {
			return r, true
		}
	}
	return netlink.Route{}, false
}

// TestHostTraffic sends the gateways' own traffic through the tunnel by
// way of their TUN ports: gwA's stack to hostB, gwB's stack to gwA's
// stack (both ends TUN), and a TCP transfer from gwA to hostB. The
// policies select the LANs, which contain the gateways' LAN addresses.
func TestHostTraffic(t *testing.T) {
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	ctx := t.Context()
	v4 := lab.V4
	if n, _ := lab.GwA.Ping(ctx, v4.HostB, 1, 300*time.Millisecond); n != 0 {
		t.Fatal("gwA reaches hostB without a tunnel: the lab routes between sites")
	}
	a := startSiteWith(t, lab.GwA, lab.Prefix+"-gwA", Options{TUN: "xsa%d"})
	b := startSiteWith(t, lab.GwB, lab.Prefix+"-gwB", Options{TUN: "xsb%d", TUNMTU: 1400})
	if a.dp.TUN() == "" || b.dp.TUN() == "" {
		t.Fatalf("tun ports %q and %q", a.dp.TUN(), b.dp.TUN())
	}
	for _, x := range []struct {
		s   *site
		mtu int
	}{{a, tunMTU(1500)}, {b, 1400}} {
		l, err := x.s.ns.Handle().LinkByName(x.s.dp.TUN())
		if err != nil {
			t.Fatal(err)
		}
		if l.Attrs().MTU != x.mtu || l.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("%s: tun mtu %d flags %v, want mtu %d and up", x.s.ns.Name, l.Attrs().MTU, l.Attrs().Flags, x.mtu)
		}
	}
	install(t, v4, a, b, newKeys(t, aes256gcm16), newKeys(t, aes256gcm16), nil)

	// The route's source is the gateway's address inside the local
	// selector: the WAN address (the SA's endpoint) is outside it.
	for _, x := range []struct {
		s   *site
		dst netip.Prefix
		src netip.Addr
	}{{a, v4.LANB, v4.GwALAN}, {b, v4.LANA, v4.GwBLAN}} {
		r, ok := tunRoute(t, x.s, x.dst)
		if !ok {
			t.Fatalf("%s: no route to %s through %s", x.s.ns.Name, x.dst, x.s.dp.TUN())
		}
		if src, _ := netip.AddrFromSlice(r.Src); src.Unmap() != x.src {
			t.Errorf("%s: route to %s has source %s, want %s", x.s.ns.Name, x.dst, r.Src, x.src)
		}
	}

	t.Run("gateway to host", func(t *testing.T) {
		outA := saCounters(t, a, spiAB, offload.Out).Packets
		inA := saCounters(t, a, spiBA, offload.In).Packets
		pingFrom(t, lab.GwA, v4.HostB)
		if got := saCounters(t, a, spiAB, offload.Out).Packets; got < outA+4 {
			t.Errorf("gwA's echo requests did not use the SA: %d -> %d packets", outA, got)
		}
		if got := saCounters(t, a, spiBA, offload.In).Packets; got < inA+4 {
			t.Errorf("the replies did not come back through the SA: %d -> %d packets", inA, got)
		}
	})

	t.Run("gateway to gateway", func(t *testing.T) {
		// Both ends through their TUN ports: gwB's stack sends, gwA's
		// receives and answers.
		pingFrom(t, lab.GwB, v4.GwALAN)
	})

	t.Run("lan still protected", func(t *testing.T) {
		pingThrough(t, lab, v4.HostB)
	})

	t.Run("iperf3", func(t *testing.T) {
		mbps := iperfFrom(t, lab, lab.GwA, nil, a, b)
		if mbps <= 0 {
			t.Errorf("iperf3 from gwA: %.0f Mbit/s", mbps)
		}
		// Everything the host sent was selected by a policy and every
		// packet for it reached its stack.
		for _, s := range []*site{a, b} {
			d := drops(t, s)
			if d["no_sa"] != 0 || d["tun_error"] != 0 || d["malformed"] != 0 {
				t.Errorf("%s: drops %v", s.ns.Name, d)
			}
		}
	})

	t.Run("policy removed", func(t *testing.T) {
		p := offload.Policy{Conn: "lab", Child: "net", Dir: offload.Out, Src: v4.LANA, Dst: v4.LANB,
			Action: offload.Protect, SPI: spiAB, Mode: offload.Tunnel}
		if err := a.dp.DelPolicy(ctx, p); err != nil {
			t.Fatal(err)
		}
		if _, ok := tunRoute(t, a, v4.LANB); ok {
			t.Errorf("route to %s left after its policy went", v4.LANB)
		}
		if n, _ := lab.GwA.Ping(ctx, v4.HostB, 1, 300*time.Millisecond); n != 0 {
			t.Error("gwA reaches hostB without its policy")
		}
		if err := a.dp.AddPolicy(ctx, p); err != nil {
			t.Fatal(err)
		}
		if _, ok := tunRoute(t, a, v4.LANB); !ok {
			t.Errorf("route to %s not restored with its policy", v4.LANB)
		}
		pingFrom(t, lab.GwA, v4.HostB)
	})

	t.Run("path mtu", func(t *testing.T) {
		// A smaller MTU towards gwB than the TUN port's assumes: the
		// host's DF packets no longer fit and its stack must learn the
		// tunnel's MTU from the worker's ICMP error.
		wan, err := lab.GwA.Handle().LinkByName(netlab.WANIf)
		if err != nil {
			t.Fatal(err)
		}
		r := &netlink.Route{LinkIndex: wan.Attrs().Index, Dst: prefixIPNet(netip.PrefixFrom(v4.GwBWAN, 32)), MTU: 1300}
		if err := lab.GwA.Handle().RouteAdd(r); err != nil {
			t.Fatal(err)
		}
		defer lab.GwA.Handle().RouteDel(r)
		abOut, _ := saPair(spiAB, newKeys(t, aes256gcm16), v4.GwAWAN, v4.GwBWAN, v4.LANA, v4.LANB, nil)
		want := tunnelMTU(t, abOut) - 200
		before := drops(t, a)["mtu"]
		if got := hostPathMTU(t, lab.GwA, v4.HostB, tunMTU(1500)); got != want {
			t.Errorf("gwA learnt path MTU %d, want %d", got, want)
		}
		if got := drops(t, a)["mtu"]; got <= before {
			t.Errorf("mtu drops on gwA %d -> %d", before, got)
		}
		pingFrom(t, lab.GwA, v4.HostB)
	})

	t.Run("close", func(t *testing.T) {
		for _, s := range []*site{a, b} {
			name := s.dp.TUN()
			if err := s.dp.Close(); err != nil {
				t.Errorf("close %s: %v", s.ns.Name, err)
			}
			if _, err := s.ns.Handle().LinkByName(name); err == nil {
				t.Errorf("%s: tun %s left after close", s.ns.Name, name)
			}
		}
		routes, err := lab.GwA.Handle().RouteGet(v4.HostB.AsSlice())
		if err == nil && len(routes) > 0 {
			t.Errorf("gwA still routes to hostB after close: %+v", routes[0])
		}
	})
}

// TestTUNMTUWithoutTUN checks that a TUN MTU alone is refused.
func TestTUNMTUWithoutTUN(t *testing.T) {
	_, err := New(context.Background(), Options{WAN: "a", LAN: "b", TUNMTU: 1400})
	if err == nil {
		t.Fatal("tun mtu without a tun port accepted")
	}
}

// TestHostTrafficIPv6 is the gateway-to-host ping of TestHostTraffic over
// IPv6.
func TestHostTrafficIPv6(t *testing.T) {
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	v6 := lab.V6
	a := startSiteWith(t, lab.GwA, lab.Prefix+"-gwA", Options{TUN: "xsa%d"})
	b := startSiteWith(t, lab.GwB, lab.Prefix+"-gwB", Options{TUN: "xsb%d"})
	install(t, v6, a, b, newKeys(t, aes256gcm16), newKeys(t, aes256gcm16), nil)
	r, ok := tunRoute(t, a, v6.LANB)
	if !ok {
		t.Fatalf("no route to %s through %s", v6.LANB, a.dp.TUN())
	}
	if src, _ := netip.AddrFromSlice(r.Src); src != v6.GwALAN {
		t.Errorf("route to %s has source %s, want %s", v6.LANB, r.Src, v6.GwALAN)
	}
	pingFrom(t, lab.GwA, v6.HostB)
	pingFrom(t, lab.GwB, v6.GwALAN)
	if c := saCounters(t, a, spiBA, offload.In); c.Packets < 8 {
		t.Errorf("sa %08x/in on gwA: %d packets after the pings", spiBA, c.Packets)
	}
}

// hostPathMTU sends DF datagrams that fill from's current path MTU to dst
// (which starts at the TUN port's MTU, start) until the kernel learns a
// smaller one, and returns it (start if none came).
func hostPathMTU(t *testing.T, from *netlab.NS, dst netip.Addr, start int) int {
	t.Helper()
	pmtu := 0
	err := from.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO); err != nil {
			return err
		}
		if err := unix.Connect(fd, &unix.SockaddrInet4{Port: 9, Addr: dst.As4()}); err != nil {
			return err
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			if pmtu, err = unix.GetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU); err != nil {
				return err
			}
			if pmtu < start || time.Now().After(deadline) {
				return nil
			}
			// EMSGSIZE once the kernel knows better; that is the point.
			_, _ = unix.Write(fd, make([]byte, pmtu-28))
			time.Sleep(50 * time.Millisecond)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return pmtu
}
