package netlab

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// ping asserts that from reaches dst, with a bounded wait like
// `ping -c 2 -W 1`.
func ping(t *testing.T, ctx context.Context, from *NS, dst netip.Addr) {
	t.Helper()
	if _, err := from.Ping(ctx, dst, 2, time.Second); err != nil {
		t.Error(err)
	}
}

func TestLabPlainRouting(t *testing.T) {
	RequireRoot(t)
	t.Run("routed", func(t *testing.T) {
		l := NewTestLab(t, LabOptions{})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		ping(t, ctx, l.HostA, l.V4.HostB)
		ping(t, ctx, l.HostA, l.V6.HostB)
		ping(t, ctx, l.HostB, l.V4.HostA)
		ping(t, ctx, l.GwA, l.V6.GwBWAN)
		for _, h := range []*NS{l.HostA, l.HostB} {
			if on, err := h.TxChecksumOffload(HostIf); err != nil || on {
				t.Errorf("%s %s: tx checksum offload on=%v (%v), want off", h.Name, HostIf, on, err)
			}
		}
		if on, err := l.GwA.TxChecksumOffload(WANIf); err != nil || !on {
			t.Errorf("gwA %s: tx checksum offload on=%v (%v), want the veth default (on)", WANIf, on, err)
		}
	})
	t.Run("nat", func(t *testing.T) {
		l := NewTestLab(t, LabOptions{NAT: true})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		ping(t, ctx, l.HostA, l.V4.HostB)
		ping(t, ctx, l.HostA, l.V6.HostB)
		ping(t, ctx, l.GwA, l.V4.GwBWAN)

		// gwB must see gwA's UDP (as IKE would be) from the NAT box's
		// outside address, not from gwA's own.
		src := udpSource(t, l.GwA, l.GwB, l.V4.GwBWAN)
		if src != l.V4.NATOutside {
			t.Errorf("gwB saw gwA's UDP from %s, want NAT address %s (gwA is %s)", src, l.V4.NATOutside, l.V4.GwAWAN)
		}
	})
	t.Run("no-gateway-routes", func(t *testing.T) {
		l := NewTestLab(t, LabOptions{NoGatewayRoutes: true})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		// Gateways still reach each other and their own hosts, but the
		// sites are cut apart until something (a tunnel) joins them.
		ping(t, ctx, l.GwA, l.V4.GwBWAN)
		ping(t, ctx, l.HostA, l.V4.GwALAN)
		if _, err := l.HostA.Ping(ctx, l.V4.HostB, 1, 500*time.Millisecond); err == nil {
			t.Error("hostA reached hostB without gateway routes")
		}
	})
}

// udpSource sends one datagram from a socket in from to dst:port in to and
// returns the source address the receiver saw.
func udpSource(t *testing.T, from, to *NS, dst netip.Addr) netip.Addr {
	t.Helper()
	var rx, tx net.PacketConn
	if err := to.Do(func() (err error) {
		rx, err = net.ListenPacket("udp4", net.JoinHostPort(dst.String(), "0"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	if err := from.Do(func() (err error) {
		tx, err = net.ListenPacket("udp4", ":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	if _, err := tx.WriteTo([]byte("hello"), rx.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	rx.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 64)
	_, addr, err := rx.ReadFrom(buf)
	if err != nil {
		t.Fatalf("gwB received nothing: %v", err)
	}
	return addr.(*net.UDPAddr).AddrPort().Addr().Unmap()
}

func TestCleanup(t *testing.T) {
	RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prefix := RandomPrefix("xs")
	l, err := NewLab(ctx, LabOptions{Prefix: prefix, NAT: true})
	if err != nil {
		t.Fatal(err)
	}
	// Keep our own reference to gwA's namespace so it outlives Close and
	// we can look inside: its veths must be gone, not merely unreachable.
	gwA, err := netns.GetFromName(l.GwA.Name)
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	defer gwA.Close()
	sleep := exec.Command("sleep", "300")
	p, err := l.GwB.Start(sleep, nil)
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	names := make([]string, 0, 5)
	for _, n := range l.Namespaces() {
		names = append(names, n.Name)
	}
	if len(names) != 5 {
		t.Errorf("lab with NAT has %d namespaces, want 5", len(names))
	}

	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	for _, name := range names {
		if Exists(name) {
			t.Errorf("namespace %s still exists after Close", name)
		}
		if !strings.HasPrefix(name, prefix+"-") {
			t.Errorf("namespace %s lacks prefix %s", name, prefix)
		}
	}
	select {
	case <-p.Done():
	default:
		t.Errorf("process %d still running after Close", p.Pid())
	}
	h, err := netlink.NewHandleAt(gwA)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, lk := range links {
		left = append(left, lk.Attrs().Name)
	}
	if !slices.Equal(left, []string{"lo"}) {
		t.Errorf("links left in gwA's namespace after Close: %v, want only lo", left)
	}
}

func TestNSDoRestoresThread(t *testing.T) {
	n := NewTestNS(t, "", "do")
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	var inside netns.NsHandle
	if err := n.Do(func() (err error) {
		inside, err = netns.Get()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer inside.Close()
	if !inside.Equal(n.NsHandle()) {
		t.Error("Do did not run in the namespace")
	}
	now, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer now.Close()
	if !now.Equal(orig) {
		t.Error("calling thread left in another namespace")
	}
	if err := n.SetSysctl("net.ipv4.ip_forward", "1"); err != nil {
		t.Fatal(err)
	}
}
