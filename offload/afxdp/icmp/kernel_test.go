package icmp

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpsec/xdpsec/internal/netlab"
)

// TestKernelAcceptsPMTU sends the built errors from gwA (as the gateway
// would) to hostA about a UDP datagram that a connected socket on hostA
// sent to hostB, and checks that hostA's kernel accepted them: it records
// a PMTU exception for hostB, which RTM_GETROUTE reports as the route's
// MTU. (The quoted packet needs a socket: Linux's UDP, TCP and ping error
// handlers only act for one, and plain ICMP echo has none.) A copy with a broken
// checksum and a lower MTU goes first; were it accepted, the exception
// would show its MTU, since the kernel only ever lowers a PMTU.
func TestKernelAcceptsPMTU(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{Prefix: netlab.RandomPrefix("xi")})

	udp := func(sport uint16, n int) []byte {
		h := make([]byte, 8, n)
		binary.BigEndian.PutUint16(h[0:2], sport)
		binary.BigEndian.PutUint16(h[2:4], 9)
		binary.BigEndian.PutUint16(h[4:6], uint16(n))
		return append(h, seq(n-8)...)
	}
	tests := []struct {
		name  string
		a     netlab.Addrs
		build func(orig []byte, src netip.Addr, mtu int) ([]byte, error)
		orig  func(sport uint16) []byte
		dom   int
		mtu   int
	}{
		{
			name: "v4", a: lab.V4, build: func(o []byte, s netip.Addr, m int) ([]byte, error) { return FragNeeded(nil, o, s, m) },
			orig: func(sport uint16) []byte {
				return pkt4(v4opts{src: lab.V4.HostA.String(), dst: lab.V4.HostB.String(), proto: 17, fragWord: 0x4000,
					payload: udp(sport, 1480)})
			},
			dom: unix.AF_INET, mtu: 1400,
		},
		{
			name: "v6", a: lab.V6, build: func(o []byte, s netip.Addr, m int) ([]byte, error) { return PacketTooBig(nil, o, s, m) },
			orig: func(sport uint16) []byte {
				return pkt6(v6opts{src: lab.V6.HostA.String(), dst: lab.V6.HostB.String(), next: 17,
					payload: udp(sport, 1460), plen: -1})
			},
			dom: unix.AF_INET6, mtu: 1400,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The socket whose datagram was "too big".
			var us int
			var sport uint16
			err := lab.HostA.Do(func() error {
				var err error
				us, err = unix.Socket(tt.dom, unix.SOCK_DGRAM, 0)
				if err != nil {
					return err
				}
				var to unix.Sockaddr
				if tt.dom == unix.AF_INET {
					to = &unix.SockaddrInet4{Port: 9, Addr: tt.a.HostB.As4()}
				} else {
					to = &unix.SockaddrInet6{Port: 9, Addr: tt.a.HostB.As16()}
				}
				if err := unix.Connect(us, to); err != nil {
					return err
				}
				sa, err := unix.Getsockname(us)
				if err != nil {
					return err
				}
				switch sa := sa.(type) {
				case *unix.SockaddrInet4:
					sport = uint16(sa.Port)
				case *unix.SockaddrInet6:
					sport = uint16(sa.Port)
				}
				return nil
			})
			if err != nil {
				t.Fatalf("udp socket in hostA: %v", err)
			}
			defer unix.Close(us)
			orig := tt.orig(sport)

			routeMTU := func() (int, error) {
				rs, err := lab.HostA.Handle().RouteGet(tt.a.HostB.AsSlice())
				if err != nil {
					return 0, err
				}
				if len(rs) == 0 {
					return 0, fmt.Errorf("no route to %v", tt.a.HostB)
				}
				return rs[0].MTU, nil
			}
			if m, err := routeMTU(); err != nil || m != 0 {
				t.Fatalf("before: route MTU %d, %v; want no PMTU exception", m, err)
			}

			good, err := tt.build(orig, tt.a.GwALAN, tt.mtu)
			if err != nil {
				t.Fatalf("build: %v", err)
			}
			bad, err := tt.build(orig, tt.a.GwALAN, tt.mtu-100)
			if err != nil {
				t.Fatalf("build: %v", err)
			}
			icmpOff := 20
			if tt.dom == unix.AF_INET6 {
				icmpOff = 40
			}
			bad[icmpOff+2] ^= 0x5a // break the ICMP checksum

			var fd int
			err = lab.GwA.Do(func() error {
				var err error
				// IPPROTO_RAW: the packet carries its own IP header.
				fd, err = unix.Socket(tt.dom, unix.SOCK_RAW, unix.IPPROTO_RAW)
				return err
			})
			if err != nil {
				t.Fatalf("raw socket in gwA: %v", err)
			}
			defer unix.Close(fd)
			var to unix.Sockaddr
			if tt.dom == unix.AF_INET {
				to = &unix.SockaddrInet4{Addr: tt.a.HostA.As4()}
			} else {
				to = &unix.SockaddrInet6{Addr: tt.a.HostA.As16()}
			}
			if err := unix.Sendto(fd, bad, 0, to); err != nil {
				t.Fatalf("send corrupted: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
			if err := unix.Sendto(fd, good, 0, to); err != nil {
				t.Fatalf("send: %v", err)
			}

			deadline := time.Now().Add(5 * time.Second)
			for {
				m, err := routeMTU()
				if err != nil {
					t.Fatalf("route get: %v", err)
				}
				if m != 0 {
					if m != tt.mtu {
						t.Fatalf("hostA's PMTU to %v is %d, want %d", tt.a.HostB, m, tt.mtu)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("hostA recorded no PMTU for %v: its kernel dropped our ICMP", tt.a.HostB)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}
