package ike

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpsec/xdpsec/ike/message"
	"github.com/xdpsec/xdpsec/internal/netlab"
)

// TestKeepaliveSelection drives sendKeepalives by hand on an engine whose
// own loop is off, with SAs in every state that matters, and reads what
// leaves on the wire with a plain UDP socket.
func TestKeepaliveSelection(t *testing.T) {
	netlab.RequireRoot(t)
	ns, err := netlab.NewNS(netlab.RandomPrefix("xk") + "-ka")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Close() })
	lo := netip.MustParseAddr("127.0.0.1")
	var (
		e    *Engine
		peer *net.UDPConn
	)
	err = ns.Do(func() error {
		var err error
		if e, err = New(Options{Listen: []netip.Addr{lo}, KeepaliveInterval: -1}); err != nil {
			return err
		}
		peer, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Run is never called: this test is the only sender, and cleans up
	// what Run would.
	t.Cleanup(func() { e.closeSockets(); e.probe.close(); e.cancel(); _ = peer.Close() })

	local := netip.AddrPortFrom(lo, DefaultNATPort)
	remote := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	other := netip.AddrPortFrom(lo, remote.Port()+1) // nobody listens; UDP does not care
	const idle = time.Second
	now := time.Now()
	long := now.Add(-time.Hour)
	mk := func(spi uint64, state saState, natLocal, natRemote, natt bool, to netip.AddrPort, last time.Time) *ikeSA {
		sa := &ikeSA{e: e, initiator: true, spii: spi, state: state, natLocal: natLocal, natRemote: natRemote,
			natt: natt, local: local, remote: to, lastSent: last}
		e.sas[spi] = sa
		return sa
	}
	due := mk(1, stateEstablished, true, false, true, remote, long)
	twin := mk(2, stateEstablished, true, true, true, remote, long) // same mapping as due
	mk(3, stateEstablished, false, true, true, other, long)         // peer behind NAT, or ForceEncap
	mk(4, stateEstablished, false, false, true, other, long)        // ForceEncap on both ends
	mk(5, stateConnecting, true, false, true, other, long)
	mk(6, stateDeleting, true, false, true, other, long)
	mk(7, stateEstablished, true, false, false, other, long) // not floated: no NAT-T socket to use
	recent := mk(8, stateEstablished, true, false, true, other, now.Add(-idle/2))
	gone := mk(9, stateEstablished, true, false, true, other, long)
	gone.gone = true

	scratch := e.sendKeepalives(nil, now, idle)
	if len(scratch) != 0 {
		t.Errorf("scratch returned with %d entries, want empty", len(scratch))
	}
	if got := e.Stats().KeepalivesSent; got != 1 {
		t.Fatalf("KeepalivesSent %d after the first walk, want 1 (one due mapping)", got)
	}
	buf := make([]byte, 64)
	_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := peer.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 || buf[0] != 0xFF || from != local {
		t.Errorf("keepalive on the wire: % x from %v, want ff from %v", buf[:n], from, local)
	}
	for _, sa := range []*ikeSA{due, twin} {
		if !sa.lastSent.Equal(now) {
			t.Errorf("SA %d: lastSent %v, want the walk's time %v", sa.spii, sa.lastSent, now)
		}
	}
	if !recent.lastSent.Equal(now.Add(-idle / 2)) {
		t.Errorf("SA that sent recently: lastSent changed to %v", recent.lastSent)
	}
	// It would be due in the later walks, which look at due and twin.
	delete(e.sas, recent.spii)

	// Nothing is due again until idle has passed since the keepalive.
	e.sendKeepalives(scratch, now.Add(idle/2), idle)
	if got := e.Stats().KeepalivesSent; got != 1 {
		t.Errorf("KeepalivesSent %d half an interval later, want still 1", got)
	}
	// IKE traffic of the SA defers its keepalive.
	due.mu.Lock()
	due.send(due.local, due.remote, [][]byte{{0, 0, 0, 0, 1}})
	sentAt := due.lastSent
	due.mu.Unlock()
	if !sentAt.After(now) {
		t.Fatalf("send did not note the time: lastSent %v", sentAt)
	}
	twin.mu.Lock()
	twin.lastSent = sentAt // as if twin had sent it
	twin.mu.Unlock()
	e.sendKeepalives(scratch, sentAt.Add(idle/2), idle)
	if got := e.Stats().KeepalivesSent; got != 1 {
		t.Errorf("KeepalivesSent %d after IKE traffic, want still 1", got)
	}
	e.sendKeepalives(scratch, sentAt.Add(idle), idle)
	if got := e.Stats().KeepalivesSent; got != 2 {
		t.Errorf("KeepalivesSent %d an interval after the IKE traffic, want 2", got)
	}
	var got [][]byte
	for len(got) < 2 {
		_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := peer.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, append([]byte(nil), buf[:n]...))
	}
	if len(got[0]) != 5 || !isNATKeepalive(got[1]) {
		t.Errorf("datagrams after the first keepalive: % x and % x, want the 5-byte IKE one and then ff", got[0], got[1])
	}
}

// TestKeepaliveReceive feeds the NAT-T handler datagrams that look like a
// keepalive and some that do not.
func TestKeepaliveReceive(t *testing.T) {
	e := newEngine(Options{})
	from := netip.MustParseAddrPort("192.0.2.1:4500")
	local := netip.MustParseAddrPort("192.0.2.2:4500")
	cases := []struct {
		name       string
		b          []byte
		natt       bool
		keepalives uint64
		drop       DropReason
	}{
		{"keepalive", []byte{0xFF}, true, 1, DropNonIKE},
		{"zero byte", []byte{0x00}, true, 0, DropNonIKE},
		{"two bytes", []byte{0xFF, 0xFF}, true, 0, DropNonIKE},
		{"ESP", []byte{0, 0, 0x10, 0, 0, 0, 0, 1}, true, 0, DropNonIKE},
		{"on the IKE port", []byte{0xFF}, false, 0, DropMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.Stats()
			e.handlePacket(tc.b, from, local, tc.natt)
			after := e.Stats()
			if d := after.KeepalivesReceived - before.KeepalivesReceived; d != tc.keepalives {
				t.Errorf("KeepalivesReceived +%d, want +%d", d, tc.keepalives)
			}
			if d := after.Dropped[tc.drop] - before.Dropped[tc.drop]; d != 1 {
				t.Errorf("Dropped[%s] +%d, want +1", tc.drop, d)
			}
		})
	}
}

// dgram is a datagram an engine received.
type dgram struct {
	b           []byte
	from, local netip.AddrPort
}

func (d dgram) String() string { return fmt.Sprintf("% x from %v to %v", d.b, d.from, d.local) }

// TestNATKeepalives runs two engines with a short keepalive interval: only
// the gateway behind the NAT sends keepalives, the other receives them on
// its NAT-T socket from the address and port its IKE SA uses, and nobody
// sends any without a NAT, forced encapsulation included.
func TestNATKeepalives(t *testing.T) {
	netlab.RequireRoot(t)
	const interval = 200 * time.Millisecond
	cases := []struct {
		name       string
		nat, force bool
	}{
		{"nat", true, false},
		{"plain", false, false},
		{"force-encap", false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lab := netlab.NewTestLab(t, netlab.LabOptions{Prefix: netlab.RandomPrefix("xk"), NoGatewayRoutes: true, NAT: tc.nat})
			ca, cb := siteConns(t, lab.V4, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
			ca.ForceEncap = tc.force
			opts := fastOpts()
			opts.KeepaliveInterval = interval

			// Every datagram on gwB's NAT-T socket that is not IKE: with
			// no ESP in this test, these can only be keepalives.
			var (
				mu     sync.Mutex
				nonIKE []dgram
			)
			hook := func(e *Engine) {
				e.rxHook = func(b []byte, from, local netip.AddrPort, natt bool) {
					if _, ok := message.StripNonESPMarker(b); !natt || ok {
						return
					}
					mu.Lock()
					nonIKE = append(nonIKE, dgram{append([]byte(nil), b...), from, local})
					mu.Unlock()
				}
			}
			a := startEngine(t, lab.GwA, "gwA", opts, 0x1000)
			b := startEngine(t, lab.GwB, "gwB", opts, 0x2000, hook)
			a.e.SetConns([]Conn{ca})
			b.e.SetConns([]Conn{cb})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := a.e.Initiate(ctx, "s2s"); err != nil {
				t.Fatal(err)
			}
			_, y := checkPair(t, a, b)
			if got := a.e.SAs()[0].NATLocal; got != tc.nat {
				t.Fatalf("gwA NATLocal %v, want %v", got, tc.nat)
			}

			if !tc.nat {
				time.Sleep(5 * interval)
				for _, s := range []*side{a, b} {
					if st := s.e.Stats(); st.KeepalivesSent != 0 || st.KeepalivesReceived != 0 {
						t.Errorf("no NAT, yet keepalives: sent %d, received %d", st.KeepalivesSent, st.KeepalivesReceived)
					}
				}
				mu.Lock()
				defer mu.Unlock()
				if len(nonIKE) != 0 {
					t.Errorf("no NAT, yet gwB got non-IKE datagrams on 4500: %v", nonIKE)
				}
				return
			}

			waitFor(t, 5*time.Second, "a first keepalive at gwB", func() bool { return b.e.Stats().KeepalivesReceived >= 1 })
			logsBefore := a.logs.Len()
			sentBefore := a.e.Stats().KeepalivesSent
			waitFor(t, 5*time.Second, "three more keepalives at gwB", func() bool { return b.e.Stats().KeepalivesReceived >= 4 })
			sa, sb := a.e.Stats(), b.e.Stats()
			if sa.KeepalivesSent < sentBefore+3 || sa.KeepalivesSent < sb.KeepalivesReceived {
				t.Errorf("gwA sent %d keepalives (%d before), gwB received %d", sa.KeepalivesSent, sentBefore, sb.KeepalivesReceived)
			}
			if sb.KeepalivesSent != 0 || sa.KeepalivesReceived != 0 {
				t.Errorf("gwB is not behind the NAT but sent %d keepalives (gwA received %d)", sb.KeepalivesSent, sa.KeepalivesReceived)
			}
			if sb.Dropped[DropNonIKE] < sb.KeepalivesReceived {
				t.Errorf("gwB non_ike drops %d < keepalives received %d", sb.Dropped[DropNonIKE], sb.KeepalivesReceived)
			}
			if n := a.logs.Len(); n != logsBefore {
				t.Errorf("gwA logged %d lines while sending keepalives, want none: %v", n-logsBefore, a.logs.All()[logsBefore:])
			}
			mu.Lock()
			if uint64(len(nonIKE)) < sb.KeepalivesReceived {
				t.Errorf("gwB's hook saw %d non-IKE datagrams, its counter says %d keepalives", len(nonIKE), sb.KeepalivesReceived)
			}
			for _, d := range nonIKE {
				if !isNATKeepalive(d.b) || d.from != y.Remote || d.local.Port() != DefaultNATPort {
					t.Errorf("gwB got % x from %v on %v; want ff from %v (gwA's NAT mapping) on port %d",
						d.b, d.from, d.local, y.Remote, DefaultNATPort)
				}
			}
			mu.Unlock()

			// The keepalives stop with the SA.
			a.e.SetConns(nil)
			waitFor(t, 5*time.Second, "gwA's IKE SA to go", func() bool { return len(a.e.SAs()) == 0 })
			stopped := a.e.Stats().KeepalivesSent
			time.Sleep(5 * interval)
			if got := a.e.Stats().KeepalivesSent; got != stopped {
				t.Errorf("gwA sent %d keepalives after its IKE SA was deleted", got-stopped)
			}
		})
	}
}

// TestKernelESPInUDPSocket: for the kernel data planes the NAT-T socket is
// marked UDP_ENCAP_ESPINUDP (the kernel takes ESP-in-UDP off it); the IKE
// port's socket, and every socket of the AF_XDP data plane, is not.
func TestKernelESPInUDPSocket(t *testing.T) {
	for _, tc := range []struct {
		natt, kernelESP bool
		want            int
	}{
		{true, true, udpEncapESPInUDP},
		{false, true, 0},
		{true, false, 0},
	} {
		s, err := listenUDP(netip.MustParseAddr("127.0.0.1"), 0, tc.natt, tc.kernelESP, 0)
		if err != nil {
			t.Fatalf("natt %v kernelESP %v: %v", tc.natt, tc.kernelESP, err)
		}
		rc, err := s.conn.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var got int
		var gerr error
		_ = rc.Control(func(fd uintptr) { got, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_ENCAP) })
		_ = s.conn.Close()
		if gerr != nil {
			t.Fatalf("getsockopt UDP_ENCAP: %v", gerr)
		}
		if got != tc.want {
			t.Errorf("natt %v kernelESP %v: UDP_ENCAP %d, want %d", tc.natt, tc.kernelESP, got, tc.want)
		}
	}
}
