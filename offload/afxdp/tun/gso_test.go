package tun

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpsec/xdpsec/offload/afxdp/ipcsum"
)

// l4Valid checks the IP header checksum (IPv4) and the TCP or UDP
// checksum of pkt.
func l4Valid(t *testing.T, pkt []byte) bool {
	t.Helper()
	var l4 []byte
	var acc uint64
	var proto uint8
	if pkt[0]>>4 == 4 {
		ihl := int(pkt[0]&0x0f) * 4
		if ipcsum.Fold(ipcsum.Sum(pkt[:ihl], 0)) != 0xffff {
			t.Errorf("bad IPv4 header checksum")
			return false
		}
		proto, l4 = pkt[9], pkt[ihl:binary.BigEndian.Uint16(pkt[2:4])]
		acc = ipcsum.Sum(pkt[12:20], 0)
	} else {
		proto, l4 = pkt[6], pkt[40:40+int(binary.BigEndian.Uint16(pkt[4:6]))]
		acc = ipcsum.Sum(pkt[8:40], 0)
	}
	return ipcsum.Fold(ipcsum.Sum(l4, acc+uint64(proto)+uint64(len(l4)))) == 0xffff
}

func vnetBytes(h vnetHdr) []byte {
	b := make([]byte, VnetHdrLen)
	b[0], b[1] = h.flags, h.gsoType
	binary.NativeEndian.PutUint16(b[4:], h.gsoSize)
	binary.NativeEndian.PutUint16(b[6:], h.csumStart)
	binary.NativeEndian.PutUint16(b[8:], h.csumOffset)
	return b
}

// superPacket builds what the kernel hands a device with offloads: one
// TCP or UDP packet with a payload of n bytes, its checksum field holding
// the pseudo-header sum only.
func superPacket(v6 bool, proto uint8, n int, tcpFlags uint8) []byte {
	src4, dst4 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	src6, dst6 := netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2")
	l4Len := 8
	if proto == protoTCP {
		l4Len = 32 // with 12 bytes of options
	}
	ipLen := 20
	if v6 {
		ipLen = 40
	}
	p := make([]byte, ipLen+l4Len+n)
	if v6 {
		p[0], p[6], p[7] = 0x60, proto, 64
		binary.BigEndian.PutUint16(p[4:], uint16(l4Len+n))
		copy(p[8:], src6.AsSlice())
		copy(p[24:], dst6.AsSlice())
	} else {
		p[0], p[8], p[9] = 0x45, 64, proto
		binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
		binary.BigEndian.PutUint16(p[4:], 0xfffe) // the IDs wrap
		copy(p[12:], src4.AsSlice())
		copy(p[16:], dst4.AsSlice())
		binary.BigEndian.PutUint16(p[10:], ^ipcsum.Fold(ipcsum.Sum(p[:20], 0)))
	}
	l4 := p[ipLen:]
	binary.BigEndian.PutUint16(l4[0:], 40000)
	binary.BigEndian.PutUint16(l4[2:], 5001)
	csumAt := 6
	if proto == protoTCP {
		binary.BigEndian.PutUint32(l4[4:], 0xfffff000) // the sequence wraps
		binary.BigEndian.PutUint32(l4[8:], 77)
		l4[12], l4[13] = 8<<4, tcpFlags
		binary.BigEndian.PutUint16(l4[14:], 512)
		csumAt = 16
	} else {
		binary.BigEndian.PutUint16(l4[4:], uint16(8+n))
	}
	for i := range n {
		l4[l4Len+i] = byte(i * 7)
	}
	var acc uint64
	if v6 {
		acc = ipcsum.Sum(p[8:40], 0)
	} else {
		acc = ipcsum.Sum(p[12:20], 0)
	}
	binary.BigEndian.PutUint16(l4[csumAt:], ipcsum.Fold(acc+uint64(proto)+uint64(len(l4))))
	return p
}

func TestSegment(t *testing.T) {
	const mss = 1000
	for _, tc := range []struct {
		name    string
		v6      bool
		proto   uint8
		gsoType uint8
	}{
		{"tcp4", false, protoTCP, gsoTCPv4},
		{"tcp6", true, protoTCP, gsoTCPv6 | gsoECN},
		{"udp4", false, protoUDP, gsoUDPL4},
		{"udp6", true, protoUDP, gsoUDPL4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const payload = 4*mss + 123
			flags := uint8(tcpFlagCWR | tcpFlagPSH | tcpFlagFIN | 0x10)
			p := superPacket(tc.v6, tc.proto, payload, flags)
			l4 := 20
			if tc.v6 {
				l4 = 40
			}
			csumOff := uint16(6)
			hdrLen := l4 + 8
			if tc.proto == protoTCP {
				csumOff, hdrLen = 16, l4+32
			}
			var g gsoPacket
			h := vnetHdr{flags: vnetNeedsCsum, gsoType: tc.gsoType, gsoSize: mss, csumStart: uint16(l4), csumOffset: csumOff}
			if err := g.reset(p, parseVnetHdr(vnetBytes(h))); err != nil {
				t.Fatal(err)
			}
			var got []byte
			buf := make([]byte, 1500)
			for k := 0; !g.done(); k++ {
				n, err := g.next(buf)
				if err != nil {
					t.Fatal(err)
				}
				seg := buf[:n]
				last := k == 4
				want := mss
				if last {
					want = 123
				}
				if n != hdrLen+want {
					t.Fatalf("segment %d: %d bytes, want %d", k, n, hdrLen+want)
				}
				if !l4Valid(t, seg) {
					t.Errorf("segment %d: bad checksum", k)
				}
				if tc.v6 {
					if pl := int(binary.BigEndian.Uint16(seg[4:6])); pl != n-40 {
						t.Errorf("segment %d: payload length %d", k, pl)
					}
				} else if id := binary.BigEndian.Uint16(seg[4:6]); id != uint16(0xfffe+k) {
					t.Errorf("segment %d: ip id %#x", k, id)
				}
				if tc.proto == protoTCP {
					if seq := binary.BigEndian.Uint32(seg[l4+4:]); seq != uint32(0xfffff000+k*mss) {
						t.Errorf("segment %d: seq %#x", k, seq)
					}
					f := seg[l4+13]
					if (f&tcpFlagCWR != 0) != (k == 0) || (f&(tcpFlagFIN|tcpFlagPSH) != 0) != last || f&0x10 == 0 {
						t.Errorf("segment %d: flags %#x", k, f)
					}
				} else if ul := int(binary.BigEndian.Uint16(seg[l4+4:])); ul != n-l4 {
					t.Errorf("segment %d: udp length %d", k, ul)
				}
				got = append(got, seg[hdrLen:]...)
				if k > 4 {
					t.Fatal("too many segments")
				}
			}
			if !bytes.Equal(got, p[hdrLen:]) {
				t.Error("segments do not add up to the payload")
			}
		})
	}
}

func TestCompleteChecksum(t *testing.T) {
	p := superPacket(false, protoUDP, 300, 0)
	var g gsoPacket
	if err := g.reset(p, vnetHdr{flags: vnetNeedsCsum, csumStart: 20, csumOffset: 6}); err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 1500)
	n, err := g.next(out)
	if err != nil || n != len(p) || !g.done() {
		t.Fatalf("next: %d, %v, done %v", n, err, g.done())
	}
	if !l4Valid(t, out[:n]) {
		t.Error("checksum not completed")
	}
	if _, err := g.next(out[:10]); err == nil && !g.done() {
		t.Error("short buffer accepted")
	}
}

func TestSegmentRejects(t *testing.T) {
	p := superPacket(false, protoTCP, 3000, 0)
	for _, h := range []vnetHdr{
		{gsoType: gsoTCPv4, gsoSize: 0, csumStart: 20, csumOffset: 16},    // no segment size
		{gsoType: gsoTCPv6, gsoSize: 1000, csumStart: 20, csumOffset: 16}, // family mismatch
		{gsoType: 9, gsoSize: 1000, csumStart: 20, csumOffset: 16},        // unknown type
		{gsoType: gsoTCPv4, gsoSize: 1000, csumStart: 4000},               // past the end
		{flags: vnetNeedsCsum, csumStart: 3050, csumOffset: 6},            // field past the end
	} {
		var g gsoPacket
		if err := g.reset(p, h); !errors.Is(err, errBadGSO) {
			t.Errorf("%+v: %v, want errBadGSO", h, err)
		}
	}
	var g gsoPacket
	if err := g.reset(p, vnetHdr{gsoType: gsoTCPv4, gsoSize: 1000, csumStart: 20, csumOffset: 16}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.next(make([]byte, 500)); err == nil {
		t.Error("segment into a buffer too small accepted")
	}
}

// TestUDPSegmentation sends one 10 kB UDP_SEGMENT write through a device
// with offloads: the kernel hands it over whole (USO) or in segments, and
// Read must return valid datagrams of the segment size either way.
func TestUDPSegmentation(t *testing.T) {
	ns, d := newDevice(t, Options{Offload: true})
	const seg, total = 1000, 10*1000 + 321
	data := make([]byte, total)
	for i := range data {
		data[i] = byte(i * 13)
	}
	err := ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_SEGMENT, seg); err != nil {
			return err
		}
		return unix.Sendto(fd, data, 0, &unix.SockaddrInet4{Port: 6000, Addr: peerAddr.As4()})
	})
	if err != nil {
		t.Fatal(err)
	}
	bufs := make([][]byte, 4) // fewer than the segments: the rest waits
	for i := range bufs {
		bufs[i] = make([]byte, d.MTU())
	}
	sizes := make([]int, len(bufs))
	pkts := make(chan []byte, 64)
	go func() {
		defer close(pkts)
		for have := 0; have < total; {
			n, err := d.Read(bufs, sizes, 0)
			if err != nil {
				return
			}
			for i := range n {
				if p := bufs[i][:sizes[i]]; len(p) > 28 && p[0] == 0x45 && p[9] == protoUDP {
					have += len(p) - 28
					pkts <- append([]byte(nil), p...)
				}
			}
		}
	}()
	var got []byte
	timeout := time.After(5 * time.Second)
	for len(got) < total {
		var pkt []byte
		select {
		case pkt = <-pkts:
		case <-timeout:
			d.Close()
			t.Fatalf("read %d of %d bytes", len(got), total)
		}
		if pkt == nil {
			t.Fatalf("reader stopped after %d of %d bytes", len(got), total)
		}
		if !l4Valid(t, pkt) {
			t.Fatalf("datagram %d: bad checksum", len(got)/seg)
		}
		if n := len(pkt) - 28; n != min(seg, total-len(got)) {
			t.Fatalf("datagram %d: %d bytes", len(got)/seg, n)
		}
		got = append(got, pkt[28:]...)
	}
	if !bytes.Equal(got, data) {
		t.Error("datagrams do not add up to what was sent")
	}
}

// FuzzGSO feeds arbitrary reads to the segmentation: it must reject them
// or emit packets within the buffer, never panic or loop.
func FuzzGSO(f *testing.F) {
	for _, v6 := range []bool{false, true} {
		for _, proto := range []uint8{protoTCP, protoUDP} {
			p := superPacket(v6, proto, 600, 0)
			l4, gt := uint16(20), uint8(gsoTCPv4)
			if v6 {
				l4, gt = 40, gsoTCPv6
			}
			if proto == protoUDP {
				gt = gsoUDPL4
			}
			f.Add(append(vnetBytes(vnetHdr{flags: vnetNeedsCsum, gsoType: gt, gsoSize: 200, csumStart: l4, csumOffset: 16}), p...))
		}
	}
	f.Fuzz(func(t *testing.T, read []byte) {
		if len(read) < VnetHdrLen || len(read) > maxPacket {
			return // the kernel's reads are never outside these bounds
		}
		var g gsoPacket
		if err := g.reset(read[VnetHdrLen:], parseVnetHdr(read)); err != nil {
			return
		}
		out := make([]byte, 1500)
		for k := 0; !g.done(); k++ {
			n, err := g.next(out)
			if err != nil {
				return
			}
			if n > len(out) || k > len(read) {
				t.Fatalf("segment %d: %d bytes", k, n)
			}
		}
	})
}
