package afxdp

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"

	"github.com/xdpsec/xdpsec/internal/netlab"
	"github.com/xdpsec/xdpsec/offload"
	"github.com/xdpsec/xdpsec/offload/esp"
)

const (
	spiAB = 0x0a0b0001 // gwA -> gwB
	spiBA = 0x0b0a0001 // gwB -> gwA
)

// site is one gateway of the lab with its data plane.
type site struct {
	ns  *netlab.NS
	dp  *Dataplane
	pin string
}

func startSite(t *testing.T, ns *netlab.NS, instance string) *site {
	t.Helper()
	return startSiteWith(t, ns, instance, Options{})
}

// startSiteWith is startSite with more options; the ports, instance and
// logger are filled in.
func startSiteWith(t *testing.T, ns *netlab.NS, instance string, opts Options) *site {
	t.Helper()
	s := &site{ns: ns}
	opts.WAN, opts.LAN, opts.Instance = netlab.WANIf, netlab.LANIf, instance
	opts.Logger = zaptest.NewLogger(t).Named(instance)
	err := ns.Do(func() error {
		var err error
		s.dp, err = New(t.Context(), opts)
		return err
	})
	if err != nil {
		t.Fatalf("new data plane in %s: %v", ns.Name, err)
	}
	s.pin = s.dp.ld.PinDir()
	t.Cleanup(func() { s.dp.Close() })
	return s
}

// transform is an SA's algorithms; keys adds its keying material.
type transform struct {
	name    string
	encr    uint16
	keyBits int
	integ   uint16
}

type keys struct {
	tr          transform
	encr, integ offload.Key
}

var (
	aes256gcm16  = transform{"aes256gcm16", offload.EncrAESGCM16, 256, offload.IntegNone}
	chacha20     = transform{"chacha20poly1305", offload.EncrChaCha20Poly1305, 256, offload.IntegNone}
	aes128sha256 = transform{"aes128-sha256", offload.EncrAESCBC, 128, offload.IntegHMACSHA256_128}
)

func newKeys(t testing.TB, tr transform) keys {
	t.Helper()
	k := keys{tr: tr, encr: make(offload.Key, tr.keyBits/8)}
	if tr.integ == offload.IntegNone {
		k.encr = append(k.encr, make(offload.Key, aeadSaltLen)...)
	} else {
		k.integ = make(offload.Key, 32)
		if _, err := rand.Read(k.integ); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := rand.Read(k.encr); err != nil {
		t.Fatal(err)
	}
	return k
}

// saPair returns gwA's and gwB's views of the SA carrying traffic from
// site a (outer address aOuter, inner prefix aNet) to site b.
func saPair(spi uint32, k keys, aOuter, bOuter netip.Addr, aNet, bNet netip.Prefix, encap *offload.Encap) (out, in offload.SA) {
	out = offload.SA{
		Conn: "lab", Child: "net", SPI: spi, Dir: offload.Out,
		Encr: k.tr.encr, KeyBits: k.tr.keyBits, EncrKey: k.encr, Integ: k.tr.integ, IntegKey: k.integ,
		Mode: offload.Tunnel, Src: aOuter, Dst: bOuter, Encap: encap,
		LocalTS: []netip.Prefix{aNet}, RemoteTS: []netip.Prefix{bNet},
	}
	in = out
	in.Dir = offload.In
	in.Lifetime = offload.Lifetime{SoftPackets: 3}
	in.LocalTS, in.RemoteTS = out.RemoteTS, out.LocalTS
	return out, in
}

// install sets up both directions between gwA and gwB: SAs first, then the
// policies that steer traffic into them.
func install(t *testing.T, v4 netlab.Addrs, a, b *site, keyAB, keyBA keys, encap *offload.Encap) {
	t.Helper()
	ctx := t.Context()
	abOut, abIn := saPair(spiAB, keyAB, v4.GwAWAN, v4.GwBWAN, v4.LANA, v4.LANB, encap)
	baOut, baIn := saPair(spiBA, keyBA, v4.GwBWAN, v4.GwAWAN, v4.LANB, v4.LANA, encap)
	for _, x := range []struct {
		s  *site
		sa offload.SA
	}{{a, abOut}, {b, abIn}, {b, baOut}, {a, baIn}} {
		if err := x.s.dp.AddSA(ctx, x.sa); err != nil {
			t.Fatalf("add sa %08x/%s: %v", x.sa.SPI, x.sa.Dir, err)
		}
	}
	for _, x := range []struct {
		s        *site
		dir      offload.Direction
		src, dst netip.Prefix
		spi      uint32
	}{
		{a, offload.Out, v4.LANA, v4.LANB, spiAB},
		{a, offload.In, v4.LANB, v4.LANA, spiBA},
		{b, offload.Out, v4.LANB, v4.LANA, spiBA},
		{b, offload.In, v4.LANA, v4.LANB, spiAB},
	} {
		p := offload.Policy{Conn: "lab", Child: "net", Dir: x.dir, Src: x.src, Dst: x.dst,
			Action: offload.Protect, SPI: x.spi, Mode: offload.Tunnel}
		if err := x.s.dp.AddPolicy(ctx, p); err != nil {
			t.Fatalf("add policy %s %s -> %s: %v", x.dir, x.src, x.dst, err)
		}
	}
}

// pingThrough waits until hostA reaches hostB (a fresh lab's first echo
// waits for the gateways' next hops; TestFirstPacketsHeld checks that it
// is not lost), then expects a clean run.
func pingThrough(t *testing.T, lab *netlab.Lab, dst netip.Addr) {
	t.Helper()
	ctx := t.Context()
	deadline := time.Now().Add(15 * time.Second)
	for {
		n, _ := lab.HostA.Ping(ctx, dst, 1, 500*time.Millisecond)
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("hostA never reached hostB through the tunnel")
		}
	}
	n, err := lab.HostA.Ping(ctx, dst, 5, time.Second)
	if n < 4 {
		t.Fatalf("ping through the tunnel: %d of 5 replies (%v)", n, err)
	}
}

func saCounters(t *testing.T, s *site, spi uint32, dir offload.Direction) offload.SACounters {
	t.Helper()
	st, err := s.dp.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range st.SAs {
		if c.SPI == spi && c.Dir == dir {
			return c
		}
	}
	t.Fatalf("sa %08x/%s missing from stats %+v", spi, dir, st.SAs)
	return offload.SACounters{}
}

func drops(t *testing.T, s *site) map[string]uint64 {
	t.Helper()
	st, err := s.dp.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return st.Drops
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sendRaw sends the complete IPv4 packet pkt from inside ns; the kernel
// routes it and fills in the header checksum.
func sendRaw(ns *netlab.NS, pkt []byte, dst netip.Addr) error {
	return ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		defer unix.Close(fd)
		if err := unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: dst.As4()}); err != nil {
			return fmt.Errorf("sendto: %w", err)
		}
		return nil
	})
}

// sendUDPWithTTL sends one UDP datagram from ns to dst with the given TTL.
func sendUDPWithTTL(ns *netlab.NS, dst netip.Addr, ttl int) error {
	return ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TTL, ttl); err != nil {
			return err
		}
		return unix.Sendto(fd, []byte("ttl"), 0, &unix.SockaddrInet4{Port: 9, Addr: dst.As4()})
	})
}

// forgeESP builds the outer packet of an ESP packet with an unknown SPI:
// nothing but the headers xdp_wan classifies by.
func forgeESP(src, dst netip.Addr, encap bool) []byte {
	body := make([]byte, 8+16+16)
	copy(body, []byte{0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1})
	var l4 []byte
	proto := uint8(50)
	if encap {
		proto = 17
		l4 = make([]byte, 8)
		l4[0], l4[1], l4[2], l4[3] = 0x11, 0x94, 0x11, 0x94 // 4500 -> 4500
		l4[4], l4[5] = 0, byte(8+len(body))
	}
	pkt := make([]byte, 20, 20+len(l4)+len(body))
	pkt[0], pkt[8], pkt[9] = 0x45, 64, proto
	s, d := src.As4(), dst.As4()
	copy(pkt[12:16], s[:])
	copy(pkt[16:20], d[:])
	pkt = append(append(pkt, l4...), body...)
	pkt[2], pkt[3] = byte(len(pkt)>>8), byte(len(pkt))
	return pkt
}

// replayFirst rebuilds the first packet gwA sent on the A->B SA: same key,
// sequence number 1, which gwB's replay window has already seen.
func replayFirst(t *testing.T, sa offload.SA) []byte {
	t.Helper()
	return encryptAt(t, sa, 1)
}

// encryptAt builds the packet with sequence number seq of an SA that
// shares sa's keys, as an attacker who recorded traffic would have it.
func encryptAt(t *testing.T, sa offload.SA, seq int) []byte {
	t.Helper()
	c, err := espConfig(sa)
	if err != nil {
		t.Fatal(err)
	}
	engine, err := esp.NewSA(c)
	if err != nil {
		t.Fatal(err)
	}
	inner := ipv4Packet(64, 64, false)
	buf := make([]byte, esp.MaxHeadroom+len(inner)+esp.MaxTailroom)
	copy(buf[esp.MaxHeadroom:], inner)
	w := esp.NewWorker()
	var p esp.Packet
	for range seq {
		copy(buf[esp.MaxHeadroom:], inner)
		p = esp.Packet{Buf: buf, Off: esp.MaxHeadroom, Len: len(inner)}
		if v := w.Encrypt(engine, &p); v != esp.Accept {
			t.Fatalf("encrypt: %v", v)
		}
	}
	return p.Bytes()
}

func TestTunnel(t *testing.T) {
	netlab.RequireRoot(t)
	natt := &offload.Encap{SrcPort: 4500, DstPort: 4500}
	for _, tc := range []struct {
		name  string
		tr    transform
		encap *offload.Encap
	}{
		{"esp", aes256gcm16, nil},
		{"udp", aes256gcm16, natt},
		{"esp " + chacha20.name, chacha20, nil},
		{"udp " + aes128sha256.name, aes128sha256, natt},
	} {
		t.Run(tc.name, func(t *testing.T) { testTunnel(t, tc.tr, tc.encap) })
	}
}

func testTunnel(t *testing.T, tr transform, encap *offload.Encap) {
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	ctx := t.Context()
	if n, _ := lab.HostA.Ping(ctx, lab.V4.HostB, 1, 300*time.Millisecond); n != 0 {
		t.Fatal("hostA reaches hostB without a tunnel: the lab routes between sites")
	}
	a := startSite(t, lab.GwA, lab.Prefix+"-gwA")
	b := startSite(t, lab.GwB, lab.Prefix+"-gwB")
	keyAB, keyBA := newKeys(t, tr), newKeys(t, tr)
	install(t, lab.V4, a, b, keyAB, keyBA, encap)

	pingThrough(t, lab, lab.V4.HostB)
	for _, x := range []struct {
		s   *site
		spi uint32
		dir offload.Direction
	}{{a, spiAB, offload.Out}, {b, spiAB, offload.In}, {b, spiBA, offload.Out}, {a, spiBA, offload.In}} {
		if c := saCounters(t, x.s, x.spi, x.dir); c.Packets < 4 || c.Bytes < 4*44 {
			t.Errorf("sa %08x/%s: %d packets, %d bytes after the pings", x.spi, x.dir, c.Packets, c.Bytes)
		}
	}

	t.Run("unknown spi dropped by xdp", func(t *testing.T) {
		before, _, err := b.dp.XDPCounters()
		if err != nil {
			t.Fatal(err)
		}
		if err := sendRaw(lab.GwA, forgeESP(lab.V4.GwAWAN, lab.V4.GwBWAN, encap != nil), lab.V4.GwBWAN); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "xdp_wan drop_unknown_spi", func() bool {
			now, _, err := b.dp.XDPCounters()
			return err == nil && now["drop_unknown_spi"] > before["drop_unknown_spi"]
		})
		if got := drops(t, b)["unknown_spi"]; got != 0 {
			t.Errorf("forged packet reached the workers: unknown_spi %d", got)
		}
	})

	t.Run("replay dropped", func(t *testing.T) {
		abOut, _ := saPair(spiAB, keyAB, lab.V4.GwAWAN, lab.V4.GwBWAN, lab.V4.LANA, lab.V4.LANB, encap)
		before := saCounters(t, b, spiAB, offload.In)
		if err := sendRaw(lab.GwA, replayFirst(t, abOut), lab.V4.GwBWAN); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "replay drop on gwB", func() bool {
			return drops(t, b)["replay"] > 0 && saCounters(t, b, spiAB, offload.In).ReplayDrops > before.ReplayDrops
		})
		if after := saCounters(t, b, spiAB, offload.In); after.Packets != before.Packets {
			t.Errorf("replayed packet accepted: %d -> %d packets", before.Packets, after.Packets)
		}
	})

	t.Run("tampered dropped", func(t *testing.T) {
		abOut, _ := saPair(spiAB, keyAB, lab.V4.GwAWAN, lab.V4.GwBWAN, lab.V4.LANA, lab.V4.LANB, encap)
		// A sequence number ahead of the window, so only the ICV can
		// reject it; one bit of the ciphertext flipped.
		pkt := encryptAt(t, abOut, 5000)
		pkt[len(pkt)-20] ^= 0x01
		before := saCounters(t, b, spiAB, offload.In)
		if err := sendRaw(lab.GwA, pkt, lab.V4.GwBWAN); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "auth drop on gwB", func() bool { return drops(t, b)["auth"] > 0 })
		if after := saCounters(t, b, spiAB, offload.In); after.Packets != before.Packets {
			t.Errorf("tampered packet accepted: %d -> %d packets", before.Packets, after.Packets)
		}
	})

	t.Run("ttl", func(t *testing.T) {
		// Each gateway forwards, so each decrements: TTL 1 dies at gwA,
		// TTL 2 at gwB.
		for _, x := range []struct {
			ttl int
			at  *site
		}{{1, a}, {2, b}} {
			before := drops(t, x.at)["ttl"]
			if err := sendUDPWithTTL(lab.HostA, lab.V4.HostB, x.ttl); err != nil {
				t.Fatal(err)
			}
			waitFor(t, fmt.Sprintf("ttl %d drop at %s", x.ttl, x.at.ns.Name), func() bool {
				return drops(t, x.at)["ttl"] > before
			})
		}
	})

	t.Run("volume lifetime event", func(t *testing.T) {
		// install gave gwB's inbound SA a soft limit of 3 packets.
		expectEvent(t, b, offload.Event{Kind: offload.SoftExpire, Conn: "lab", Child: "net", SPI: spiAB, Dir: offload.In})
	})

	t.Run("trap acquire", func(t *testing.T) {
		p := offload.Policy{Conn: "lab", Child: "trap", Dir: offload.Out, Src: lab.V4.LANA,
			Dst: netip.MustParsePrefix("10.2.9.0/24"), Action: offload.Protect, Mode: offload.Tunnel}
		if err := a.dp.AddPolicy(ctx, p); err != nil {
			t.Fatal(err)
		}
		dst := netip.MustParseAddr("10.2.9.9")
		if n, _ := lab.HostA.Ping(ctx, dst, 1, 200*time.Millisecond); n != 0 {
			t.Error("reply through a trap policy")
		}
		expectEvent(t, a, offload.Event{Kind: offload.Acquire, Conn: "lab", Child: "trap", Dir: offload.Out,
			Src: lab.V4.HostA, Dst: dst})
		if err := a.dp.DelPolicy(ctx, p); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("time lifetime events", func(t *testing.T) {
		sa, _ := saPair(0x0a0b00ff, newKeys(t, tr), lab.V4.GwAWAN, lab.V4.GwBWAN, lab.V4.LANA, lab.V4.LANB, encap)
		sa.Lifetime = offload.Lifetime{SoftTime: 50 * time.Millisecond, HardTime: 150 * time.Millisecond}
		if err := a.dp.AddSA(ctx, sa); err != nil {
			t.Fatal(err)
		}
		ev := offload.Event{Conn: "lab", Child: "net", SPI: sa.SPI, Dir: offload.Out}
		ev.Kind = offload.SoftExpire
		expectEvent(t, a, ev)
		ev.Kind = offload.HardExpire
		expectEvent(t, a, ev)
		if err := a.dp.DelSA(ctx, sa.SPI, offload.Out); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("too big for the tunnel", func(t *testing.T) {
		abOut, _ := saPair(spiAB, keyAB, lab.V4.GwAWAN, lab.V4.GwBWAN, lab.V4.LANA, lab.V4.LANB, encap)
		want := tunnelMTU(t, abOut)
		before := drops(t, a)["mtu"]
		pmtu := pathMTU(t, lab.HostA, lab.V4.HostB)
		if pmtu != want {
			t.Errorf("hostA learnt path MTU %d, want the tunnel's %d", pmtu, want)
		}
		if got := drops(t, a)["mtu"]; got <= before {
			t.Errorf("mtu drops on gwA %d -> %d", before, got)
		}
	})

	if encap == nil && tr == aes256gcm16 {
		t.Run("iperf3", func(t *testing.T) { iperf(t, lab, a, b) })
	}

	t.Run("rekey", func(t *testing.T) {
		const spiNew = 0x0a0b0002
		out, in := saPair(spiNew, newKeys(t, tr), lab.V4.GwAWAN, lab.V4.GwBWAN, lab.V4.LANA, lab.V4.LANB, encap)
		// Make before break: the new SA exists on both ends before the
		// policy moves to it and the old one goes.
		if err := b.dp.AddSA(ctx, in); err != nil {
			t.Fatal(err)
		}
		if err := a.dp.AddSA(ctx, out); err != nil {
			t.Fatal(err)
		}
		p := offload.Policy{Conn: "lab", Child: "net", Dir: offload.Out, Src: lab.V4.LANA, Dst: lab.V4.LANB,
			Action: offload.Protect, SPI: spiNew, Mode: offload.Tunnel}
		if err := a.dp.AddPolicy(ctx, p); err != nil {
			t.Fatal(err)
		}
		if err := a.dp.DelSA(ctx, spiAB, offload.Out); err != nil {
			t.Fatal(err)
		}
		if err := b.dp.DelSA(ctx, spiAB, offload.In); err != nil {
			t.Fatal(err)
		}
		// Deleting the old child's policy must leave the new one alone.
		old := p
		old.SPI = spiAB
		if err := a.dp.DelPolicy(ctx, old); !errors.Is(err, offload.ErrNotFound) {
			t.Errorf("delete superseded policy: %v, want ErrNotFound", err)
		}
		pingThrough(t, lab, lab.V4.HostB)
		if c := saCounters(t, b, spiNew, offload.In); c.Packets < 4 {
			t.Errorf("new sa carried %d packets", c.Packets)
		}
		// Fail closed: with the policy's SA gone, nothing leaves in clear
		// and the workers count what they drop.
		if err := a.dp.DelSA(ctx, spiNew, offload.Out); err != nil {
			t.Fatal(err)
		}
		before := drops(t, a)["no_sa"]
		if n, _ := lab.HostA.Ping(ctx, lab.V4.HostB, 2, 300*time.Millisecond); n != 0 {
			t.Errorf("%d replies without an outbound SA", n)
		}
		if got := drops(t, a)["no_sa"]; got < before+2 {
			t.Errorf("no_sa drops %d -> %d, want +2", before, got)
		}
	})

	for _, s := range []*site{a, b} {
		if err := s.dp.Close(); err != nil {
			t.Errorf("close %s: %v", s.ns.Name, err)
		}
		if _, err := os.Stat(s.pin); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: pin directory %s left behind (%v)", s.ns.Name, s.pin, err)
		}
		if _, err := s.dp.Stats(ctx); !errors.Is(err, offload.ErrClosed) {
			t.Errorf("stats after close: %v", err)
		}
	}
	if n, _ := lab.HostA.Ping(ctx, lab.V4.HostB, 1, 300*time.Millisecond); n != 0 {
		t.Error("hostA still reaches hostB after the data planes closed")
	}
}

// expectEvent waits for want on s's event channel, skipping others.
func expectEvent(t *testing.T, s *site, want offload.Event) {
	t.Helper()
	timeout := time.After(3 * time.Second)
	for {
		select {
		case ev, ok := <-s.dp.Events():
			if !ok {
				t.Fatal("event channel closed")
			}
			if ev == want {
				return
			}
			t.Logf("skipping event %+v", ev)
		case <-timeout:
			t.Fatalf("no event %+v", want)
		}
	}
}

// pathMTU sends full-size UDP datagrams with DF from hostA to hostB until
// hostA's kernel learns a smaller path MTU from an ICMP error, and returns
// it (1500 if none came).
func pathMTU(t *testing.T, host *netlab.NS, dst netip.Addr) int {
	t.Helper()
	family, level, discover, do, mtuOpt := unix.AF_INET, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO, unix.IP_MTU
	var sa unix.Sockaddr
	overhead := 28
	if dst.Is6() {
		family, level, discover, do, mtuOpt = unix.AF_INET6, unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_DO, unix.IPV6_MTU
		sa = &unix.SockaddrInet6{Port: 9, Addr: dst.As16()}
		overhead = 48
	} else {
		sa = &unix.SockaddrInet4{Port: 9, Addr: dst.As4()}
	}
	pmtu := 0
	err := host.Do(func() error {
		fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.SetsockoptInt(fd, level, discover, do); err != nil {
			return err
		}
		if err := unix.Connect(fd, sa); err != nil {
			return err
		}
		payload := make([]byte, 1500-overhead)
		deadline := time.Now().Add(5 * time.Second)
		for {
			// EMSGSIZE once the kernel knows better; that is the point.
			_, _ = unix.Write(fd, payload)
			if pmtu, err = unix.GetsockoptInt(fd, level, mtuOpt); err != nil {
				return err
			}
			if pmtu < 1500 || time.Now().After(deadline) {
				return nil
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return pmtu
}

// tunnelMTU is the largest inner packet sa's engine sends within 1500 bytes.
func tunnelMTU(t *testing.T, sa offload.SA) int {
	t.Helper()
	c, err := espConfig(sa)
	if err != nil {
		t.Fatal(err)
	}
	engine, err := esp.NewSA(c)
	if err != nil {
		t.Fatal(err)
	}
	return 1500 - engine.Headroom() - engine.Tailroom()
}

// TestTunnelIPv6 carries IPv6 over IPv6: ping, counters, and ICMPv6
// "packet too big" for what does not fit.
func TestTunnelIPv6(t *testing.T) {
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	v6 := lab.V6
	if n, _ := lab.HostA.Ping(t.Context(), v6.HostB, 1, 300*time.Millisecond); n != 0 {
		t.Fatal("hostA reaches hostB without a tunnel: the lab routes between sites")
	}
	a := startSite(t, lab.GwA, lab.Prefix+"-gwA")
	b := startSite(t, lab.GwB, lab.Prefix+"-gwB")
	keyAB := newKeys(t, aes256gcm16)
	install(t, v6, a, b, keyAB, newKeys(t, aes256gcm16), nil)
	pingThrough(t, lab, v6.HostB)
	for _, x := range []struct {
		s   *site
		spi uint32
		dir offload.Direction
	}{{a, spiAB, offload.Out}, {b, spiAB, offload.In}, {b, spiBA, offload.Out}, {a, spiBA, offload.In}} {
		if c := saCounters(t, x.s, x.spi, x.dir); c.Packets < 4 {
			t.Errorf("sa %08x/%s: %d packets after the pings", x.spi, x.dir, c.Packets)
		}
	}
	abOut, _ := saPair(spiAB, keyAB, v6.GwAWAN, v6.GwBWAN, v6.LANA, v6.LANB, nil)
	want := tunnelMTU(t, abOut)
	if pmtu := pathMTU(t, lab.HostA, v6.HostB); pmtu != want {
		t.Errorf("hostA learnt path MTU %d, want the tunnel's %d", pmtu, want)
	}
}

// iperf runs a 3 s TCP transfer from hostA to hostB through the tunnel and
// logs the rate. Performance is reported, not asserted; the transfer must
// move data, though.
func iperf(t *testing.T, lab *netlab.Lab, sites ...*site) {
	iperfArgs(t, lab, nil, sites...)
}

// iperfArgs is iperf with extra client arguments.
func iperfArgs(t *testing.T, lab *netlab.Lab, extra []string, sites ...*site) {
	iperfFrom(t, lab, lab.HostA, extra, sites...)
}

// iperfFrom is iperfArgs with the client in the namespace client.
func iperfFrom(t *testing.T, lab *netlab.Lab, client *netlab.NS, extra []string, sites ...*site) float64 {
	t.Helper()
	if _, err := exec.LookPath("iperf3"); err != nil {
		t.Skip("iperf3 not installed")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	lab.HostB.StartT(t, "iperf3-s", exec.Command("iperf3", "-s", "-1", "-B", lab.V4.HostB.String()))
	var out bytes.Buffer
	var err error
	for range 20 { // the server needs a moment to listen
		out.Reset()
		err = client.Run(ctx, &out, "iperf3", append([]string{"-c", lab.V4.HostB.String(), "-t", "3", "-J"}, extra...)...)
		// iperf3 -J may exit 0 with the error in its JSON.
		if !bytes.Contains(out.Bytes(), []byte("unable to connect")) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("iperf3: %v\n%s", err, out.Bytes())
	}
	var res struct {
		End struct {
			SumReceived struct {
				Bytes         float64 `json:"bytes"`
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("iperf3 output: %v\n%s", err, out.Bytes())
	}
	if res.End.SumReceived.Bytes == 0 {
		t.Fatalf("iperf3 moved no data:\n%s", out.Bytes())
	}
	t.Logf("iperf3 TCP from %s through the tunnel: %.0f Mbit/s (%.0f MB in 3 s)",
		client.Name, res.End.SumReceived.BitsPerSecond/1e6, res.End.SumReceived.Bytes/1e6)
	for _, s := range sites {
		nonzero := map[string]uint64{}
		for k, v := range drops(t, s) {
			if v != 0 {
				nonzero[k] = v
			}
		}
		t.Logf("%s drops: %v", s.ns.Name, nonzero)
	}
	return res.End.SumReceived.BitsPerSecond / 1e6
}
