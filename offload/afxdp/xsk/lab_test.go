package xsk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xdpsec/xdpsec/internal/netlab"
)

// xskPort is the UDP port the test XDP program redirects to the sockets;
// everything else (ARP, other ports) passes to the stack.
const xskPort = 9999

// lab is a veth pair between namespaces a and b with an XDP program on b
// that redirects UDP to xskPort into the XSKMAP entry of the RX queue.
type lab struct {
	a, b       *netlab.NS
	aIdx, bIdx int
	aMAC, bMAC net.HardwareAddr
	aIP, bIP   netip.Addr
	xsks       *ebpf.Map
	queues     int
}

// newLab builds the lab. queues 0 keeps veth's default (one real queue);
// otherwise both ends get that many RX and TX queues.
func newLab(t testing.TB, queues int) *lab {
	t.Helper()
	netlab.RequireRoot(t)
	prefix := netlab.RandomPrefix("xk")
	l := &lab{
		a:   netlab.NewTestNS(t, prefix, "a"),
		b:   netlab.NewTestNS(t, prefix, "b"),
		aIP: netip.MustParseAddr("10.77.0.1"),
		bIP: netip.MustParseAddr("10.77.0.2"),
	}
	if queues == 0 {
		if err := netlab.AddVeth(netlab.Veth{A: l.a, B: l.b, AName: "va", BName: "vb"}); err != nil {
			t.Fatalf("veth: %v", err)
		}
	} else {
		q := uint32(queues)
		err := l.a.Handle().LinkAdd(&netlink.Veth{
			LinkAttrs: netlink.LinkAttrs{Name: "va", NumTxQueues: queues, NumRxQueues: queues, TxQLen: -1},
			PeerName:  "vb", PeerNamespace: netlink.NsFd(l.b.NsHandle()),
			PeerNumTxQueues: q, PeerNumRxQueues: q, PeerTxQLen: -1,
		})
		if err != nil {
			t.Fatalf("veth: %v", err)
		}
		if err := l.a.LinkUp("va"); err != nil {
			t.Fatal(err)
		}
		if err := l.b.LinkUp("vb"); err != nil {
			t.Fatal(err)
		}
	}
	for _, x := range []struct {
		ns   *netlab.NS
		name string
		ip   netip.Addr
		idx  *int
		mac  *net.HardwareAddr
	}{{l.a, "va", l.aIP, &l.aIdx, &l.aMAC}, {l.b, "vb", l.bIP, &l.bIdx, &l.bMAC}} {
		if err := x.ns.AddAddr(x.name, netip.PrefixFrom(x.ip, 24)); err != nil {
			t.Fatalf("addr: %v", err)
		}
		lk, err := x.ns.Handle().LinkByName(x.name)
		if err != nil {
			t.Fatalf("link %s: %v", x.name, err)
		}
		*x.idx = lk.Attrs().Index
		*x.mac = lk.Attrs().HardwareAddr
	}
	// Static neighbours: no ARP round trip, so the first datagrams are
	// not held back (or dropped) while resolution runs.
	for _, x := range []struct {
		ns  *netlab.NS
		idx int
		ip  netip.Addr
		mac net.HardwareAddr
	}{{l.a, l.aIdx, l.bIP, l.bMAC}, {l.b, l.bIdx, l.aIP, l.aMAC}} {
		err := x.ns.Handle().NeighAdd(&netlink.Neigh{
			LinkIndex: x.idx, Family: unix.AF_INET, State: netlink.NUD_PERMANENT,
			IP: x.ip.AsSlice(), HardwareAddr: x.mac,
		})
		if err != nil {
			t.Fatalf("neigh: %v", err)
		}
	}
	err := l.b.Do(func() error {
		var err error
		l.queues, err = RXQueues(l.bIdx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if queues != 0 && l.queues != queues {
		t.Fatalf("RXQueues %d, veth made with %d", l.queues, queues)
	}
	l.xsks, err = ebpf.NewMap(&ebpf.MapSpec{
		Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: uint32(l.queues),
	})
	if err != nil {
		t.Fatalf("xskmap: %v", err)
	}
	t.Cleanup(func() { l.xsks.Close() })
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "xsk_test", Type: ebpf.XDP, License: "GPL",
		Instructions: redirectUDP(l.xsks.FD(), xskPort),
	})
	if err != nil {
		t.Fatalf("xdp program: %v", err)
	}
	t.Cleanup(func() { prog.Close() })
	// bpf_link resolves the ifindex in the caller's namespace.
	var xl link.Link
	err = l.b.Do(func() error {
		var err error
		xl, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: l.bIdx, Flags: link.XDPDriverMode})
		return err
	})
	if err != nil {
		t.Fatalf("attach xdp: %v", err)
	}
	t.Cleanup(func() { xl.Close() })
	return l
}

// redirectUDP is
//
//	if (eth.proto == IPv4 && ip.ihl == 5 && ip.proto == UDP && udp.dest == port)
//		return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
//	return XDP_PASS;
func redirectUDP(mapFD int, port uint16) asm.Instructions {
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R2, asm.R1, 0, asm.Word), // ctx->data
		asm.LoadMem(asm.R3, asm.R1, 4, asm.Word), // ctx->data_end
	}
	insns = append(insns, netlab.MatchIPv4UDPPort(asm.R2, asm.R3, port, "pass")...)
	return append(insns,
		asm.LoadMem(asm.R2, asm.R6, 16, asm.Word), // ctx->rx_queue_index
		asm.LoadMapPtr(asm.R1, mapFD),
		asm.Mov.Imm(asm.R3, 2), // XDP_PASS when the slot is empty
		asm.FnRedirectMap.Call(),
		asm.Return(),
		asm.Mov.Imm(asm.R0, 2).WithSymbol("pass"),
		asm.Return(),
	)
}

// openB opens one socket per RX queue of b's veth and registers each in
// the XSKMAP.
func (l *lab) openB(t testing.TB, cfg Config) []*Socket {
	t.Helper()
	var socks []*Socket
	err := l.b.Do(func() error {
		var err error
		socks, err = OpenAll(l.bIdx, cfg)
		return err
	})
	if err != nil {
		t.Fatalf("open sockets: %v", err)
	}
	t.Cleanup(func() { CloseAll(socks) })
	if len(socks) != l.queues {
		t.Fatalf("%d sockets for %d queues", len(socks), l.queues)
	}
	for q, s := range socks {
		if err := l.xsks.Put(uint32(q), uint32(s.FD())); err != nil {
			t.Fatalf("xskmap put %d: %v", q, err)
		}
	}
	return socks
}

// udpIn opens a UDP socket inside ns, bound to ip:port.
func udpIn(t testing.TB, ns *netlab.NS, ip netip.Addr, port uint16) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := ns.Do(func() error {
		var err error
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, port)))
		return err
	})
	if err != nil {
		t.Fatalf("udp socket: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// payload returns the test payload for sequence number seq: the number
// and a pattern derived from it, so a corrupted byte anywhere is seen.
func payload(buf []byte, seq uint32, size int) []byte {
	p := buf[:size]
	binary.BigEndian.PutUint32(p, seq)
	for i := 4; i < size; i++ {
		p[i] = byte(seq*7 + uint32(i))
	}
	return p
}

// checkPayload returns the sequence number of a payload made by payload.
func checkPayload(p []byte, size int) (uint32, error) {
	if len(p) != size {
		return 0, fmt.Errorf("payload of %d bytes, want %d", len(p), size)
	}
	seq := binary.BigEndian.Uint32(p)
	for i := 4; i < size; i++ {
		if p[i] != byte(seq*7+uint32(i)) {
			return seq, fmt.Errorf("payload %d: byte %d is %#x", seq, i, p[i])
		}
	}
	return seq, nil
}

// buildUDP4 writes an Ethernet/IPv4/UDP frame into b and returns its
// length. Both checksums are computed.
func buildUDP4(b []byte, src, dst net.HardwareAddr, sip, dip netip.Addr, sport, dport uint16, p []byte) int {
	n := 14 + 20 + 8 + len(p)
	b = b[:n]
	copy(b[0:6], dst)
	copy(b[6:12], src)
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:34]
	ip[0] = 0x45
	ip[1] = 0
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(p)))
	binary.BigEndian.PutUint16(ip[4:], 0)      // id
	binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
	ip[8] = 64
	ip[9] = unix.IPPROTO_UDP
	binary.BigEndian.PutUint16(ip[10:], 0)
	s4, d4 := sip.As4(), dip.As4()
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	binary.BigEndian.PutUint16(ip[10:], ^fold(sum(0, ip)))
	udp := b[34:n]
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(p)))
	binary.BigEndian.PutUint16(udp[6:], 0)
	copy(udp[8:], p)
	// Pseudo-header: addresses, protocol, UDP length.
	c := sum(0, ip[12:20])
	c += unix.IPPROTO_UDP + uint32(8+len(p))
	c = sum(c, udp)
	ck := ^fold(c)
	if ck == 0 {
		ck = 0xffff // 0 means "no checksum" in UDP over IPv4
	}
	binary.BigEndian.PutUint16(udp[6:], ck)
	return n
}

func sum(c uint32, b []byte) uint32 {
	for len(b) >= 2 {
		c += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		c += uint32(b[0]) << 8
	}
	return c
}

func fold(c uint32) uint16 {
	for c > 0xffff {
		c = c>>16 + c&0xffff
	}
	return uint16(c)
}

// parseUDP4 returns the UDP payload and destination port of an
// Ethernet/IPv4/UDP frame addressed to mac, checking the IPv4 checksum and,
// with udpSum, the UDP checksum.
//
// Frames that a namespace's own stack sent over a veth carry only the
// pseudo-header sum in the UDP checksum field: veth offers TX checksum
// offload, the stack leaves CHECKSUM_PARTIAL, and an XDP redirect to an
// AF_XDP socket copies the frame before anyone completes the sum. So RX
// tests pass udpSum false.
func parseUDP4(f []byte, mac net.HardwareAddr, udpSum bool) ([]byte, uint16, error) {
	if len(f) < 42 {
		return nil, 0, errors.New("short frame")
	}
	if !bytes.Equal(f[0:6], mac) {
		return nil, 0, fmt.Errorf("frame to %v, want %v", net.HardwareAddr(f[0:6]), mac)
	}
	if binary.BigEndian.Uint16(f[12:]) != 0x0800 || f[14] != 0x45 || f[23] != unix.IPPROTO_UDP {
		return nil, 0, errors.New("not ipv4/udp")
	}
	ip := f[14:34]
	if fold(sum(0, ip)) != 0xffff {
		return nil, 0, errors.New("bad ip checksum")
	}
	tot := int(binary.BigEndian.Uint16(ip[2:]))
	if tot < 28 || 14+tot > len(f) {
		return nil, 0, errors.New("bad ip length")
	}
	udp := f[34 : 14+tot]
	if int(binary.BigEndian.Uint16(udp[4:])) != len(udp) {
		return nil, 0, errors.New("bad udp length")
	}
	if udpSum && binary.BigEndian.Uint16(udp[6:]) != 0 {
		c := sum(0, ip[12:20]) + unix.IPPROTO_UDP + uint32(len(udp))
		if fold(sum(c, udp)) != 0xffff {
			return nil, 0, errors.New("bad udp checksum")
		}
	}
	return udp[8:], binary.BigEndian.Uint16(udp[2:]), nil
}

// receiveAll polls the sockets until want packets arrived or the deadline
// passes, handing each to fn, and releases them.
func receiveAll(t testing.TB, socks []*Socket, want int, deadline time.Duration, fn func(s *Socket, d Desc)) int {
	t.Helper()
	descs := make([]Desc, 64)
	got := 0
	end := time.Now().Add(deadline)
	for got < want && time.Now().Before(end) {
		idle := true
		for _, s := range socks {
			n := s.Receive(descs)
			for _, d := range descs[:n] {
				fn(s, d)
			}
			s.Release(descs[:n])
			got += n
			if n > 0 {
				idle = false
			}
		}
		if idle {
			// Sleep in the kernel on the first socket rather than
			// spin; packets on the others are found on the next
			// pass at most 5 ms later.
			if _, err := socks[0].Poll(5 * time.Millisecond); err != nil {
				t.Fatalf("poll: %v", err)
			}
		}
	}
	return got
}

func unsafePointer(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }
