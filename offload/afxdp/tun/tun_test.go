package tun

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpsec/xdpsec/internal/netlab"
)

var (
	tunAddr  = netip.MustParsePrefix("10.99.0.1/24")
	peerAddr = netip.MustParseAddr("10.99.0.2")
)

// modes runs f for a device without and with offloads.
func modes(t *testing.T, f func(t *testing.T, opts Options)) {
	for _, opts := range []Options{{TxQueueLen: 100}, {Offload: true}} {
		name := "plain"
		if opts.Offload {
			name = "offload"
		}
		t.Run(name, func(t *testing.T) { f(t, opts) })
	}
}

// newDevice creates a TUN device with tunAddr inside a fresh namespace.
func newDevice(t *testing.T, opts Options) (*netlab.NS, *Device) {
	t.Helper()
	netlab.RequireRoot(t)
	ns := netlab.NewTestNS(t, "", "tun")
	var d *Device
	err := ns.Do(func() error {
		var err error
		d, err = Create("xt%d", 1400, opts)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if err := ns.AddAddr(d.Name(), tunAddr); err != nil {
		t.Fatal(err)
	}
	l, err := ns.Handle().LinkByName(d.Name())
	if err != nil {
		t.Fatal(err)
	}
	if l.Attrs().MTU != 1400 || l.Attrs().Index != d.Index() || d.MTU() != 1400 || d.Offload() != opts.Offload {
		t.Fatalf("link %s: mtu %d index %d, device says mtu %d index %d",
			d.Name(), l.Attrs().MTU, l.Attrs().Index, d.MTU(), d.Index())
	}
	return ns, d
}

func csum(b []byte, sum uint32) uint16 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// ipv4 builds an IPv4 packet from src to dst around payload.
func ipv4(src, dst netip.Addr, proto uint8, payload []byte) []byte {
	p := make([]byte, 20+len(payload))
	p[0], p[8], p[9] = 0x45, 64, proto
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	s, d := src.As4(), dst.As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	binary.BigEndian.PutUint16(p[10:], csum(p[:20], 0))
	copy(p[20:], payload)
	return p
}

func udp4(src, dst netip.Addr, sport, dport uint16, data []byte) []byte {
	u := make([]byte, 8+len(data))
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(len(u)))
	copy(u[8:], data)
	s, d := src.As4(), dst.As4()
	var ph uint32
	for _, w := range [][]byte{s[:], d[:]} {
		ph += uint32(binary.BigEndian.Uint16(w[0:])) + uint32(binary.BigEndian.Uint16(w[2:]))
	}
	ph += unix.IPPROTO_UDP + uint32(len(u))
	binary.BigEndian.PutUint16(u[6:], csum(u, ph))
	return ipv4(src, dst, unix.IPPROTO_UDP, u)
}

func echo4(src, dst netip.Addr, id, seq uint16) []byte {
	m := make([]byte, 8+16)
	m[0] = 8 // echo request
	binary.BigEndian.PutUint16(m[4:], id)
	binary.BigEndian.PutUint16(m[6:], seq)
	copy(m[8:], "xdpsec tun test.")
	binary.BigEndian.PutUint16(m[2:], csum(m, 0))
	return ipv4(src, dst, unix.IPPROTO_ICMP, m)
}

// readUntil reads from d until match accepts a packet, skipping others
// (the kernel may send its own, such as IPv6 solicitations).
func readUntil(t *testing.T, d *Device, match func([]byte) bool) []byte {
	t.Helper()
	type res struct {
		pkt []byte
		err error
	}
	done := make(chan res, 1)
	go func() {
		bufs := [][]byte{make([]byte, 2048), make([]byte, 2048), make([]byte, 2048)}
		sizes := make([]int, len(bufs))
		for {
			n, err := d.Read(bufs, sizes, 0)
			if err != nil {
				done <- res{err: err}
				return
			}
			for i := range n {
				if p := bufs[i][:sizes[i]]; match(p) {
					done <- res{pkt: append([]byte(nil), p...)}
					return
				}
			}
		}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.pkt
	case <-time.After(5 * time.Second):
		d.Close() // ends the reader
		t.Fatal("expected packet never read from the tun device")
		return nil
	}
}

func TestReadSeesHostPacket(t *testing.T) { modes(t, testReadSeesHostPacket) }

func testReadSeesHostPacket(t *testing.T, opts Options) {
	ns, d := newDevice(t, opts)
	payload := []byte("hello through tun")
	err := ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, payload, 0, &unix.SockaddrInet4{Port: 4242, Addr: peerAddr.As4()})
	})
	if err != nil {
		t.Fatal(err)
	}
	pkt := readUntil(t, d, func(p []byte) bool { return len(p) >= 28 && p[0]>>4 == 4 && p[9] == unix.IPPROTO_UDP })
	if got := netip.AddrFrom4([4]byte(pkt[16:20])); got != peerAddr {
		t.Errorf("udp packet to %s, want %s", got, peerAddr)
	}
	if got := netip.AddrFrom4([4]byte(pkt[12:16])); got != tunAddr.Addr() {
		t.Errorf("udp packet from %s, want %s", got, tunAddr.Addr())
	}
	if port := binary.BigEndian.Uint16(pkt[22:24]); port != 4242 {
		t.Errorf("udp destination port %d", port)
	}
	// With offloads the host leaves the checksum to Read.
	if !l4Valid(t, pkt) {
		t.Error("udp checksum not valid")
	}
	if string(pkt[28:]) != string(payload) {
		t.Errorf("payload %q, want %q", pkt[28:], payload)
	}
}

func TestWriteReachesSocket(t *testing.T) { modes(t, testWriteReachesSocket) }

func testWriteReachesSocket(t *testing.T, opts Options) {
	ns, d := newDevice(t, opts)
	var fd int
	err := ns.Do(func() error {
		var err error
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 3}); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrInet4{Port: 5353, Addr: tunAddr.Addr().As4()})
	})
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	pkt := append(make([]byte, VnetHdrLen), udp4(peerAddr, tunAddr.Addr(), 1234, 5353, []byte("from userspace"))...)
	if n, err := d.Write([][]byte{pkt}, VnetHdrLen); n != 1 || err != nil {
		t.Fatalf("write: %d, %v", n, err)
	}
	buf := make([]byte, 100)
	n, from, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		t.Fatalf("socket got nothing: %v", err)
	}
	if string(buf[:n]) != "from userspace" {
		t.Errorf("socket got %q", buf[:n])
	}
	if sa, ok := from.(*unix.SockaddrInet4); !ok || netip.AddrFrom4(sa.Addr) != peerAddr || sa.Port != 1234 {
		t.Errorf("datagram from %+v", from)
	}
}

func isEchoReply(p []byte) bool {
	return len(p) >= 28 && p[0] == 0x45 && p[9] == unix.IPPROTO_ICMP && p[20] == 0 &&
		netip.AddrFrom4([4]byte(p[16:20])) == peerAddr
}

func TestWriteEchoGetsReply(t *testing.T) { modes(t, testWriteEchoGetsReply) }

func testWriteEchoGetsReply(t *testing.T, opts Options) {
	_, d := newDevice(t, opts)
	// The offset leaves room a caller may use for its own headers.
	const off = 16
	pkt := append(make([]byte, off), echo4(peerAddr, tunAddr.Addr(), 7, 1)...)
	if n, err := d.Write([][]byte{pkt}, off); n != 1 || err != nil {
		t.Fatalf("write: %d, %v", n, err)
	}
	reply := readUntil(t, d, isEchoReply)
	if id := binary.BigEndian.Uint16(reply[24:26]); id != 7 {
		t.Errorf("echo reply id %d, want 7", id)
	}
}

func TestCloseUnblocksRead(t *testing.T) { modes(t, testCloseUnblocksRead) }

func testCloseUnblocksRead(t *testing.T, opts Options) {
	_, d := newDevice(t, opts)
	errc := make(chan error, 1)
	go func() {
		bufs := [][]byte{make([]byte, 2048)}
		sizes := make([]int, 1)
		for {
			// Skip whatever the kernel sends on its own.
			if _, err := d.Read(bufs, sizes, 0); err != nil {
				errc <- err
				return
			}
		}
	}()
	time.Sleep(100 * time.Millisecond)
	select {
	case err := <-errc:
		t.Fatalf("read returned before close: %v", err)
	default:
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, os.ErrClosed) {
			t.Errorf("read after close: %v, want os.ErrClosed", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("close did not unblock read")
	}
	if err := d.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if _, err := d.Write([][]byte{make([]byte, 40)}, VnetHdrLen); !errors.Is(err, os.ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
}

func TestCloseDeletesLink(t *testing.T) { modes(t, testCloseDeletesLink) }

func testCloseDeletesLink(t *testing.T, opts Options) {
	ns, d := newDevice(t, opts)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ns.Handle().LinkByName(d.Name()); err == nil {
		t.Errorf("link %s still exists after close", d.Name())
	}
}

func TestCreateErrors(t *testing.T) {
	if _, err := Create("xt%d", 20, Options{}); err == nil {
		t.Error("mtu 20 accepted")
	}
	if _, err := Create("a-name-much-too-long-for-an-interface", 1400, Options{}); err == nil {
		t.Error("overlong name accepted")
	}
}

// TestZeroAllocs writes echo requests and reads the replies with buffers
// the caller owns: the path must not allocate.
func TestZeroAllocs(t *testing.T) { modes(t, testZeroAllocs) }

func testZeroAllocs(t *testing.T, opts Options) {
	_, d := newDevice(t, opts)
	out := [][]byte{append(make([]byte, VnetHdrLen), echo4(peerAddr, tunAddr.Addr(), 9, 1)...)}
	in := [][]byte{make([]byte, 2048), make([]byte, 2048)}
	sizes := make([]int, len(in))
	allocs := testing.AllocsPerRun(200, func() {
		if n, err := d.Write(out, VnetHdrLen); n != 1 || err != nil {
			t.Fatalf("write: %d, %v", n, err)
		}
		if _, err := d.Read(in, sizes, 0); err != nil {
			t.Fatalf("read: %v", err)
		}
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per write+read, want 0", allocs)
	}
	// Nothing may be left over beyond what the loop did not consume.
	n, err := d.TryRead(in, sizes, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if !isEchoReply(in[i][:sizes[i]]) && in[i][0]>>4 != 6 {
			t.Errorf("unexpected packet %x", in[i][:sizes[i]])
		}
	}
}
