package loader

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"

	"github.com/xdpsec/xdpsec/internal/netlab"
)

const (
	spiKnown   = 0xc0ffee01
	spiUnknown = 0xdead0001
)

var (
	gwWAN   = netip.MustParseAddr("192.0.2.1")
	peerWAN = netip.MustParseAddr("192.0.2.2")
)

// lab is a gateway namespace with a WAN veth to a peer namespace and a
// LAN veth to a host namespace; all names carry a random part.
type lab struct {
	prefix         string
	gw, peer, host *netlab.NS
	wan, lan       string // the gateway's interfaces
}

func newLab(t *testing.T) *lab {
	t.Helper()
	netlab.RequireRoot(t)
	p := netlab.RandomPrefix("xl")
	l := &lab{prefix: p, wan: "w-" + p, lan: "l-" + p}
	l.gw = netlab.NewTestNS(t, p, "gw")
	l.peer = netlab.NewTestNS(t, p, "peer")
	l.host = netlab.NewTestNS(t, p, "host")
	steps := []error{
		netlab.AddVeth(netlab.Veth{A: l.gw, B: l.peer, AName: l.wan, BName: "p-" + p}),
		netlab.AddVeth(netlab.Veth{A: l.gw, B: l.host, AName: l.lan, BName: "h-" + p}),
	}
	for _, err := range steps {
		if err != nil {
			t.Fatal(err)
		}
	}
	steps = []error{
		l.gw.AddAddr(l.wan, netip.PrefixFrom(gwWAN, 24)),
		l.peer.AddAddr("p-"+p, netip.PrefixFrom(peerWAN, 24)),
		l.gw.AddAddr(l.lan, netip.MustParsePrefix("10.1.0.1/24")),
		l.host.AddAddr("h-"+p, netip.MustParsePrefix("10.1.0.10/24")),
	}
	for _, err := range steps {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := l.host.AddRoute(netip.MustParsePrefix("10.0.0.0/8"), netip.MustParseAddr("10.1.0.1")); err != nil {
		t.Fatal(err)
	}
	return l
}

// open runs Open in the gateway namespace, where the interfaces are.
func (l *lab) open(t *testing.T) *Loader {
	t.Helper()
	var ld *Loader
	err := l.gw.Do(func() error {
		var err error
		ld, err = Open(Options{Instance: l.prefix, WAN: l.wan, LAN: l.lan, Logger: zaptest.NewLogger(t)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return ld
}

// xdpProg returns the id of the XDP program attached to the gateway's
// interface, 0 when none.
func (l *lab) xdpProg(t *testing.T, ifname string) uint32 {
	t.Helper()
	lk, err := l.gw.Handle().LinkByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	if x := lk.Attrs().Xdp; x != nil && x.Attached {
		return x.ProgId
	}
	return 0
}

// sendUDP sends each payload from ns to dst (from srcPort, 0 = any). The
// socket is unconnected: nothing listens at dst, and the ICMP errors would
// fail the writes of a connected one.
func sendUDP(ns *netlab.NS, srcPort int, dst netip.AddrPort, payloads ...[]byte) error {
	return ns.Do(func() error {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{Port: srcPort})
		if err != nil {
			return err
		}
		defer c.Close()
		for _, p := range payloads {
			if _, err := c.WriteToUDPAddrPort(p, dst); err != nil {
				return err
			}
		}
		return nil
	})
}

// sendESP sends raw ESP (IP protocol 50) packets from ns.
func sendESP(ns *netlab.NS, dst netip.Addr, payloads ...[]byte) error {
	return ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ESP)
		if err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		defer unix.Close(fd)
		sa := &unix.SockaddrInet4{Addr: dst.As4()}
		for _, p := range payloads {
			if err := unix.Sendto(fd, p, 0, sa); err != nil {
				return err
			}
		}
		return nil
	})
}

func espPayload(spi uint32) []byte {
	b := binary.BigEndian.AppendUint32(nil, spi)
	b = binary.BigEndian.AppendUint32(b, 1)
	return append(b, make([]byte, 48)...)
}

// ikePayload is an IKE_SA_INIT request header with some bytes after it.
func ikePayload() []byte {
	b := make([]byte, 64)
	copy(b, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	b[17], b[18], b[19] = 0x20, 34, 0x08
	binary.BigEndian.PutUint32(b[24:], 64)
	return b
}

func repeat(b []byte, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}

// waitCounters polls until every wanted counter has its value (they only
// grow, and the traffic is fixed) or five seconds pass, then compares.
func waitCounters(t *testing.T, read func() (map[string]uint64, error), want map[string]uint64) {
	t.Helper()
	var got map[string]uint64
	for deadline := time.Now().Add(5 * time.Second); ; {
		var err error
		if got, err = read(); err != nil {
			t.Fatal(err)
		}
		done := true
		for k, v := range want {
			if got[k] < v {
				done = false
			}
		}
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("counter %s = %d, want %d", k, got[k], v)
		}
	}
}

func TestAttachCountsTraffic(t *testing.T) {
	lb := newLab(t)
	ld := lb.open(t)
	t.Cleanup(func() {
		if err := ld.Detach(); err != nil {
			t.Errorf("detach: %v", err)
		}
	})
	if lb.xdpProg(t, lb.wan) == 0 || lb.xdpProg(t, lb.lan) == 0 {
		t.Fatal("programs not attached")
	}

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(ld.PutSA(InboundSA{SPI: spiKnown, Dst: gwWAN, Peer: peerWAN, Action: SAAfXDP}))
	must(ld.SetTrapInterval(time.Millisecond))
	src := netip.MustParsePrefix("10.1.0.0/16")
	must(ld.PutPolicy(Policy{ID: 1, Dst: netip.MustParsePrefix("10.2.0.0/16"), Src: src, Action: Protect, SPI: 0x1001}))
	must(ld.PutPolicy(Policy{ID: 2, Dst: netip.MustParsePrefix("10.3.0.0/16"), Src: src, Action: Discard}))
	must(ld.PutPolicy(Policy{ID: 3, Dst: netip.MustParsePrefix("10.4.0.0/16"), Src: src, Action: Bypass}))
	must(ld.PutPolicy(Policy{ID: 4, Dst: netip.MustParsePrefix("10.5.0.0/16"), Src: src, Proto: unix.IPPROTO_UDP, DstPort: 9, Action: Protect}))
	trap, err := ld.TrapEvents()
	must(err)
	defer trap.Close()

	// WAN: IKE, keepalives, ESP for unknown and known SPIs; the known
	// SA was negotiated as raw ESP, so its first packet passes the front
	// door (and finds no socket), the second, in UDP, is refused.
	must(sendUDP(lb.peer, 0, netip.AddrPortFrom(gwWAN, 500), repeat(ikePayload(), 3)...))
	must(sendUDP(lb.peer, 0, netip.AddrPortFrom(gwWAN, 4500), repeat([]byte{0xff}, 2)...))
	must(sendESP(lb.peer, gwWAN, repeat(espPayload(spiUnknown), 4)...))
	must(sendESP(lb.peer, gwWAN, espPayload(spiKnown)))
	waitCounters(t, ld.WANCounters, map[string]uint64{"drop_xsk_miss": 1})
	must(sendUDP(lb.peer, 4500, netip.AddrPortFrom(gwWAN, 4500), espPayload(spiKnown)))

	// LAN: protected without a socket (fail closed), discarded, bypassed,
	// trapped.
	udp := func(dst string, n int) {
		must(sendUDP(lb.host, 0, netip.MustParseAddrPort(dst), repeat([]byte("hello"), n)...))
	}
	udp("10.2.0.10:9", 2)
	udp("10.3.0.10:9", 2)
	udp("10.4.0.10:9", 1)
	udp("10.5.0.10:9", 1)

	waitCounters(t, ld.WANCounters, map[string]uint64{
		"pass_ike": 3, "drop_keepalive": 2, "drop_unknown_spi": 4, "drop_xsk_miss": 1, "drop_encap": 1,
	})
	waitCounters(t, ld.LANCounters, map[string]uint64{
		"drop_xsk_miss": 2, "drop_discard": 2, "pass_bypass": 1, "drop_trap": 1, "event_trap": 1,
	})

	trap.SetDeadline(time.Now().Add(time.Second))
	tev, err := trap.Read()
	must(err)
	if tev.PolicyID != 4 || tev.Proto != unix.IPPROTO_UDP || tev.Dst != netip.MustParseAddrPort("10.5.0.10:9") ||
		tev.Src.Addr() != netip.MustParseAddr("10.1.0.10") {
		t.Errorf("trap event %+v", tev)
	}
}

func TestRestartKeepsPinnedState(t *testing.T) {
	lb := newLab(t)
	ld := lb.open(t)
	detached := false
	t.Cleanup(func() {
		if !detached {
			ld.Detach()
		}
	})
	dst := netip.MustParsePrefix("10.2.0.0/16")
	pol := Policy{ID: 7, Dst: dst, Src: netip.MustParsePrefix("10.1.0.0/24"), Proto: unix.IPPROTO_TCP,
		DstPort: 443, Action: Protect, SPI: 0x2002, MSS: 1360}
	for _, err := range []error{ld.PutSA(InboundSA{SPI: spiKnown, Dst: gwWAN, Peer: peerWAN, Action: SAXfrm}), ld.PutPolicy(pol)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	ike := netip.AddrPortFrom(gwWAN, 500)
	if err := sendUDP(lb.peer, 0, ike, repeat(ikePayload(), 2)...); err != nil {
		t.Fatal(err)
	}
	waitCounters(t, ld.WANCounters, map[string]uint64{"pass_ike": 2})
	progBefore := lb.xdpProg(t, lb.wan)
	pinDir := ld.PinDir()

	// The daemon goes away without detaching: programs keep running on
	// the pinned links and keep counting into the pinned maps.
	if err := ld.Close(); err != nil {
		t.Fatal(err)
	}
	if lb.xdpProg(t, lb.wan) != progBefore {
		t.Fatal("program detached by Close")
	}
	if err := sendUDP(lb.peer, 0, ike, repeat(ikePayload(), 3)...); err != nil {
		t.Fatal(err)
	}

	ld = lb.open(t)
	waitCounters(t, ld.WANCounters, map[string]uint64{"pass_ike": 5})
	if a, err := ld.SA(spiKnown, gwWAN); err != nil || a != SAXfrm {
		t.Errorf("SA after restart: %v, %v; want %v", a, err, SAXfrm)
	}
	if got, err := ld.Policy(dst); err != nil || got != pol {
		t.Errorf("policy after restart: %+v, %v; want %+v", got, err, pol)
	}
	if _, err := ld.SA(spiUnknown, gwWAN); !errors.Is(err, ErrNotFound) {
		t.Errorf("absent SA: %v, want ErrNotFound", err)
	}
	// The new run's program replaced the old one on the same link.
	if after := lb.xdpProg(t, lb.wan); after == 0 || after == progBefore {
		t.Errorf("program id after restart %d, before %d: want a new program", after, progBefore)
	}

	detached = true
	if err := ld.Detach(); err != nil {
		t.Fatal(err)
	}
	if id := lb.xdpProg(t, lb.wan); id != 0 {
		t.Errorf("program %d still attached after Detach", id)
	}
	if id := lb.xdpProg(t, lb.lan); id != 0 {
		t.Errorf("program %d still attached to LAN after Detach", id)
	}
	if _, err := os.Stat(pinDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin dir %s after Detach: %v", pinDir, err)
	}
}

// TestRemoveLeftoverInstance: what a crashed daemon left attached and
// pinned goes away without an Open.
func TestRemoveLeftoverInstance(t *testing.T) {
	lb := newLab(t)
	ld := lb.open(t)
	if err := ld.PutSA(InboundSA{SPI: spiKnown, Dst: gwWAN, Peer: peerWAN, Action: SAAfXDP}); err != nil {
		t.Fatal(err)
	}
	if err := ld.Close(); err != nil {
		t.Fatal(err)
	}
	if lb.xdpProg(t, lb.wan) == 0 {
		t.Fatal("program gone after Close")
	}
	for i := 0; i < 2; i++ { // the second time finds nothing to remove
		if err := Remove("", lb.prefix); err != nil {
			t.Fatalf("remove %d: %v", i, err)
		}
	}
	if id := lb.xdpProg(t, lb.wan); id != 0 {
		t.Errorf("program %d still attached after Remove", id)
	}
	if _, err := os.Stat(DefaultPinRoot + "/" + lb.prefix); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin dir after Remove: %v", err)
	}
	if err := Remove("", "../etc"); err == nil {
		t.Error("Remove accepted a path as instance name")
	}
}

// TestDroppedSideIsDetached: a restart without the LAN interface leaves
// no stale program on it, and the WAN side carries on.
func TestDroppedSideIsDetached(t *testing.T) {
	lb := newLab(t)
	ld := lb.open(t)
	if err := ld.Close(); err != nil {
		t.Fatal(err)
	}
	err := lb.gw.Do(func() error {
		var err error
		ld, err = Open(Options{Instance: lb.prefix, WAN: lb.wan, Logger: zaptest.NewLogger(t)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := ld.Detach(); err != nil {
			t.Errorf("detach: %v", err)
		}
	}()
	if id := lb.xdpProg(t, lb.lan); id != 0 {
		t.Errorf("LAN program %d still attached", id)
	}
	if lb.xdpProg(t, lb.wan) == 0 {
		t.Error("WAN program not attached")
	}
}

// TestOlderPinsReplaced: a crashed daemon of an older build left its maps
// pinned, one of them (sa_in) with another layout. The next start replaces
// that pin, keeps the compatible ones, says so, and works with the new map.
func TestOlderPinsReplaced(t *testing.T) {
	lb := newLab(t)
	ld := lb.open(t)
	if err := ld.Close(); err != nil { // a crash: the pins stay
		t.Fatal(err)
	}
	dir := filepath.Join(DefaultPinRoot, lb.prefix)
	old, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 20, ValueSize: 4, MaxEntries: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := os.Remove(filepath.Join(dir, "sa_in")); err != nil {
		t.Fatal(err)
	}
	if err := old.Pin(filepath.Join(dir, "sa_in")); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.WarnLevel)
	var ld2 *Loader
	err = lb.gw.Do(func() error {
		var err error
		ld2, err = Open(Options{Instance: lb.prefix, WAN: lb.wan, LAN: lb.lan, Logger: zap.New(core)})
		return err
	})
	if err != nil {
		t.Fatalf("Open over an older build's pins: %v", err)
	}
	t.Cleanup(func() { ld2.Detach() })
	if e := logs.FilterMessageSnippet("older xdpsec version").All(); len(e) != 1 || fmt.Sprint(e[0].ContextMap()["maps"]) != "[sa_in]" {
		t.Errorf("warning %+v, want one naming sa_in only", e)
	}
	if err := ld2.PutSA(InboundSA{SPI: spiKnown, Dst: gwWAN, Peer: peerWAN, Action: SAAfXDP}); err != nil {
		t.Errorf("the new sa_in takes an SA: %v", err)
	}
}
