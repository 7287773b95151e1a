package fib

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"

	"github.com/xdpsec/xdpsec/internal/netlab"
)

// waitFor polls cond until it holds or timeout passes; the last message
// explains a failure.
func waitFor(t *testing.T, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v: %s", timeout, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func linkOf(t *testing.T, ns *netlab.NS, name string) netlink.Link {
	t.Helper()
	l, err := ns.Handle().LinkByName(name)
	if err != nil {
		t.Fatalf("link %s in %s: %v", name, ns.Name, err)
	}
	return l
}

func mac6(t *testing.T, hw net.HardwareAddr) [6]byte {
	t.Helper()
	if len(hw) != 6 {
		t.Fatalf("hardware address %v is not 6 bytes", hw)
	}
	return [6]byte(hw)
}

// lookupEventually expects a first miss for a new destination, then a hit
// once the background goroutine has resolved route and neighbour.
func lookupEventually(t *testing.T, f *FIB, dst netip.Addr, want func(NextHop) string) NextHop {
	t.Helper()
	var nh NextHop
	waitFor(t, 10*time.Second, func() (bool, string) {
		var ok bool
		nh, ok = f.Lookup(dst)
		if !ok {
			return false, fmt.Sprintf("Lookup(%v) misses", dst)
		}
		if msg := want(nh); msg != "" {
			return false, fmt.Sprintf("Lookup(%v) = %+v: %s", dst, nh, msg)
		}
		return true, ""
	})
	return nh
}

// capture opens a packet socket on the named link inside ns.
func capture(t *testing.T, ns *netlab.NS, link string) int {
	t.Helper()
	idx := linkOf(t, ns, link).Attrs().Index
	var fd int
	err := ns.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: idx}); err != nil {
			unix.Close(fd)
			return err
		}
		tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if err != nil {
		t.Fatalf("packet socket in %s: %v", ns.Name, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// isSolicitation reports whether frame, sent from srcMAC, asks for
// target's link-layer address: an ARP request, or an ICMPv6 neighbour
// solicitation (whose IPv6 source is usually link-local, so the sender is
// recognised by its MAC).
func isSolicitation(frame []byte, srcMAC [6]byte, target netip.Addr) bool {
	if len(frame) < 14 || [6]byte(frame[6:12]) != srcMAC {
		return false
	}
	et := binary.BigEndian.Uint16(frame[12:14])
	p := frame[14:]
	if target.Is4() {
		if et != unix.ETH_P_ARP || len(p) < 28 || binary.BigEndian.Uint16(p[6:8]) != 1 {
			return false
		}
		return netip.AddrFrom4([4]byte(p[24:28])) == target
	}
	if et != unix.ETH_P_IPV6 || len(p) < 40+24 || p[6] != unix.IPPROTO_ICMPV6 {
		return false
	}
	icmp := p[40:]
	return icmp[0] == 135 && netip.AddrFrom16([16]byte(icmp[8:24])) == target
}

func TestLab(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{Prefix: netlab.RandomPrefix("xf")})
	f, err := New(t.Context(), lab.GwA.Handle(), lab.GwA.NsHandle(), zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { f.Close() })

	gwALAN := linkOf(t, lab.GwA, netlab.LANIf)
	gwBWAN := linkOf(t, lab.GwB, netlab.WANIf)
	hostA := linkOf(t, lab.HostA, netlab.HostIf)

	for _, fam := range []struct {
		name string
		a    netlab.Addrs
	}{{"v4", lab.V4}, {"v6", lab.V6}} {
		a := fam.a
		t.Run(fam.name, func(t *testing.T) {
			t.Run("gateway", func(t *testing.T) {
				if nh, ok := f.Lookup(a.HostB); ok {
					t.Fatalf("first Lookup(%v) = %+v, want a miss on an empty cache", a.HostB, nh)
				}
				// MACs are read now: an earlier family's subtests changed them.
				want := mac6(t, linkOf(t, lab.GwB, netlab.WANIf).Attrs().HardwareAddr)
				gwAWAN := linkOf(t, lab.GwA, netlab.WANIf)
				lookupEventually(t, f, a.HostB, func(nh NextHop) string {
					switch {
					case nh.IfIndex != gwAWAN.Attrs().Index:
						return "wrong interface"
					case nh.Gateway != a.GwBWAN:
						return "wrong gateway"
					case nh.DstMAC != want:
						return "wrong destination MAC"
					case nh.SrcMAC != mac6(t, gwAWAN.Attrs().HardwareAddr):
						return "wrong source MAC"
					case nh.Src != a.GwAWAN:
						return "wrong source address"
					case nh.MTU != gwAWAN.Attrs().MTU:
						return "wrong MTU"
					}
					return ""
				})
			})

			t.Run("onlink-solicits", func(t *testing.T) {
				// Forget hostA on gwA so only a fresh solicitation can
				// teach gwA its MAC, and watch for it on hostA's wire.
				fd := capture(t, lab.HostA, netlab.HostIf)
				err := lab.GwA.Handle().NeighDel(&netlink.Neigh{
					LinkIndex: gwALAN.Attrs().Index, IP: a.HostA.AsSlice(),
				})
				if err != nil && !errors.Is(err, unix.ENOENT) {
					t.Fatalf("delete neighbour: %v", err)
				}
				if _, ok := f.Lookup(a.HostA); ok {
					t.Fatalf("first Lookup(%v) hit without a neighbour", a.HostA)
				}
				saw := false
				buf := make([]byte, 2048)
				deadline := time.Now().Add(5 * time.Second)
				for !saw && time.Now().Before(deadline) {
					n, _, err := unix.Recvfrom(fd, buf, 0)
					if err != nil {
						continue
					}
					saw = isSolicitation(buf[:n], mac6(t, gwALAN.Attrs().HardwareAddr), a.HostA)
				}
				if !saw {
					t.Fatalf("no ARP/ND solicitation from gwA for %v seen on hostA", a.HostA)
				}
				wantMAC := mac6(t, hostA.Attrs().HardwareAddr)
				lookupEventually(t, f, a.HostA, func(nh NextHop) string {
					switch {
					case nh.IfIndex != gwALAN.Attrs().Index:
						return "wrong interface"
					case nh.Gateway.IsValid():
						return "on-link destination has a gateway"
					case nh.DstMAC != wantMAC:
						return "wrong destination MAC"
					case nh.Src != a.GwALAN:
						return "wrong source address"
					}
					return ""
				})
			})

			t.Run("allocs", func(t *testing.T) {
				if _, ok := f.Lookup(a.HostB); !ok {
					t.Fatalf("Lookup(%v) misses", a.HostB)
				}
				if n := testing.AllocsPerRun(1000, func() { f.Lookup(a.HostB) }); n != 0 {
					t.Fatalf("Lookup hit allocates %v times", n)
				}
			})

			t.Run("mac-change", func(t *testing.T) {
				// A real router announces a new MAC with gratuitous ARP or
				// an unsolicited NA; make gwB do so.
				for _, kv := range [][2]string{
					{"net.ipv4.conf." + netlab.WANIf + ".arp_notify", "1"},
					{"net.ipv6.conf." + netlab.WANIf + ".ndisc_notify", "1"},
				} {
					if err := lab.GwB.SetSysctl(kv[0], kv[1]); err != nil {
						t.Fatalf("sysctl %s: %v", kv[0], err)
					}
				}
				newMAC := net.HardwareAddr{0x02, 0x5a, byte(rand.Uint32()), byte(rand.Uint32()), byte(rand.Uint32()), 0x01}
				if err := lab.GwB.Handle().LinkSetHardwareAddr(gwBWAN, newMAC); err != nil {
					t.Fatalf("set gwB MAC: %v", err)
				}
				lookupEventually(t, f, a.HostB, func(nh NextHop) string {
					if !bytes.Equal(nh.DstMAC[:], newMAC) {
						return fmt.Sprintf("destination MAC is not the new %v", newMAC)
					}
					return ""
				})
			})

			t.Run("route-change", func(t *testing.T) {
				rt := &netlink.Route{Dst: prefixNet(a.LANB), Gw: a.GwBWAN.AsSlice()}
				if err := lab.GwA.Handle().RouteDel(rt); err != nil {
					t.Fatalf("delete route: %v", err)
				}
				waitFor(t, 5*time.Second, func() (bool, string) {
					nh, ok := f.Lookup(a.HostB)
					return !ok, fmt.Sprintf("Lookup(%v) = %+v after its route was deleted", a.HostB, nh)
				})
				if err := lab.GwA.AddRoute(a.LANB, a.GwBWAN); err != nil {
					t.Fatalf("restore route: %v", err)
				}
				lookupEventually(t, f, a.HostB, func(nh NextHop) string {
					if nh.Gateway != a.GwBWAN {
						return "wrong gateway"
					}
					return ""
				})
			})

			t.Run("route-mtu", func(t *testing.T) {
				h := lab.GwA.Handle()
				wan := linkOf(t, lab.GwA, netlab.WANIf).Attrs().Index
				rt := netlink.Route{Dst: prefixNet(a.LANB), Gw: a.GwBWAN.AsSlice(), LinkIndex: wan}
				withMTU := rt
				withMTU.MTU = 1380
				if err := h.RouteReplace(&withMTU); err != nil {
					t.Fatalf("replace route: %v", err)
				}
				lookupEventually(t, f, a.HostB, func(nh NextHop) string {
					if nh.MTU != 1380 {
						return "route MTU not applied"
					}
					return ""
				})
				if err := h.RouteReplace(&rt); err != nil {
					t.Fatalf("restore route: %v", err)
				}
				lookupEventually(t, f, a.HostB, func(nh NextHop) string {
					if nh.MTU != linkOf(t, lab.GwA, netlab.WANIf).Attrs().MTU {
						return "route MTU removal not seen"
					}
					return ""
				})
			})

			t.Run("link-change", func(t *testing.T) {
				h := lab.GwA.Handle()
				wan := linkOf(t, lab.GwA, netlab.WANIf)
				oldMTU := wan.Attrs().MTU
				if err := h.LinkSetMTU(wan, 1400); err != nil {
					t.Fatalf("set MTU: %v", err)
				}
				t.Cleanup(func() {
					if err := h.LinkSetMTU(wan, oldMTU); err != nil {
						t.Errorf("restore MTU: %v", err)
					}
				})
				newMAC := net.HardwareAddr{0x02, 0x5b, byte(rand.Uint32()), byte(rand.Uint32()), byte(rand.Uint32()), 0x02}
				if err := h.LinkSetHardwareAddr(wan, newMAC); err != nil {
					t.Fatalf("set MAC: %v", err)
				}
				lookupEventually(t, f, a.HostB, func(nh NextHop) string {
					switch {
					case nh.MTU != 1400:
						return "MTU change not seen"
					case !bytes.Equal(nh.SrcMAC[:], newMAC):
						return "source MAC change not seen"
					}
					return ""
				})
			})
		})
	}
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
