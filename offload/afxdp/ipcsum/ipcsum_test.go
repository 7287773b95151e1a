package ipcsum

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
)

// packet builds an IPv4 or IPv6 packet carrying a TCP or UDP segment with
// a correct checksum, computed here the long way (RFC 793/768/8200).
func packet(t *testing.T, src, dst string, proto uint8, payload int) (pkt []byte, at int) {
	t.Helper()
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	hl := 8
	if proto == protoTCP {
		hl = 20
	}
	seg := make([]byte, hl+payload)
	binary.BigEndian.PutUint16(seg[0:], 40000)
	binary.BigEndian.PutUint16(seg[2:], 443)
	for i := hl; i < len(seg); i++ {
		seg[i] = byte(i * 7)
	}
	var ip, ph []byte
	if s.Is4() {
		ip = make([]byte, 20)
		ip[0], ip[8], ip[9] = 0x45, 64, proto
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(seg)))
		a, b := s.As4(), d.As4()
		copy(ip[12:], a[:])
		copy(ip[16:], b[:])
		ph = append(append(ph, a[:]...), b[:]...)
		ph = append(ph, 0, proto, byte(len(seg)>>8), byte(len(seg)))
	} else {
		ip = make([]byte, 40)
		ip[0], ip[6], ip[7] = 0x60, proto, 64
		binary.BigEndian.PutUint16(ip[4:], uint16(len(seg)))
		a, b := s.As16(), d.As16()
		copy(ip[8:], a[:])
		copy(ip[24:], b[:])
		ph = append(append(ph, a[:]...), b[:]...)
		ph = append(ph, 0, 0, byte(len(seg)>>8), byte(len(seg)), 0, 0, 0, proto)
	}
	at = len(ip) + 6
	if proto == protoTCP {
		at = len(ip) + 16
		seg[12] = 5 << 4
	} else {
		binary.BigEndian.PutUint16(seg[4:], uint16(len(seg)))
	}
	var sum uint32
	for _, b := range [][]byte{ph, seg} {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	c := ^uint16(sum)
	if c == 0 && proto == protoUDP {
		c = 0xffff
	}
	pkt = append(ip, seg...)
	binary.BigEndian.PutUint16(pkt[at:], c)
	return pkt, at
}

// partial turns the finished checksum at into what a sender with TX
// checksum offload leaves: the folded pseudo-header sum, as the kernel's
// __tcp_v4_send_check and udp4_hwcsum write it.
func partial(pkt []byte, at int) {
	_, _, _, pseudo, _ := l4(pkt)
	binary.BigEndian.PutUint16(pkt[at:], Fold(pseudo))
}

func TestCompletePartial(t *testing.T) {
	for _, c := range []struct {
		name     string
		src, dst string
		proto    uint8
		payload  int
	}{
		{"tcp4", "10.1.0.10", "10.2.0.10", protoTCP, 1000},
		{"tcp4 odd", "10.1.0.10", "10.2.0.10", protoTCP, 1},
		{"udp4", "10.1.0.10", "10.2.0.10", protoUDP, 333},
		{"tcp6", "fd00:1::10", "fd00:2::10", protoTCP, 1400},
		{"udp6 odd", "fd00:1::10", "fd00:2::10", protoUDP, 77},
	} {
		t.Run(c.name, func(t *testing.T) {
			want, at := packet(t, c.src, c.dst, c.proto, c.payload)
			got := append([]byte(nil), want...)
			if CompletePartial(got) {
				t.Error("completed a packet whose checksum was finished")
			}
			partial(got, at)
			if !CompletePartial(got) {
				t.Fatal("partial checksum not completed")
			}
			if g, w := binary.BigEndian.Uint16(got[at:]), binary.BigEndian.Uint16(want[at:]); g != w {
				t.Errorf("completed checksum %#04x, want %#04x", g, w)
			}
			// Neither a fragment nor a corrupt checksum is touched.
			bad := append([]byte(nil), want...)
			bad[at] ^= 0x10
			if CompletePartial(bad) {
				t.Error("completed a wrong checksum that is not the pseudo-header sum")
			}
		})
	}
	frag, at := packet(t, "10.1.0.10", "10.2.0.10", protoUDP, 100)
	partial(frag, at)
	frag[6] = 0x20 // more fragments
	if CompletePartial(frag) {
		t.Error("completed the checksum of a fragment, which covers the whole datagram")
	}
}

func TestCompletePartialNoAlloc(t *testing.T) {
	pkt, at := packet(t, "10.1.0.10", "10.2.0.10", protoTCP, 1400)
	if n := testing.AllocsPerRun(100, func() {
		partial(pkt, at)
		CompletePartial(pkt)
	}); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

// sumRef is Sum as RFC 1071 writes it: big-endian 16-bit words.
func sumRef(b []byte, acc uint64) uint64 {
	for len(b) >= 2 {
		acc += uint64(b[0])<<8 | uint64(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint64(b[0]) << 8
	}
	return acc
}

// TestSumMatchesRFC1071 compares Sum with the plain word sum on every
// length up to 300 bytes, at every alignment, with random and with
// all-0xff data (the carries), and folded after an accumulator.
func TestSumMatchesRFC1071(t *testing.T) {
	rnd := make([]byte, 320)
	for i := range rnd {
		rnd[i] = byte(i*131 + i>>3)
	}
	ones := bytes.Repeat([]byte{0xff}, 320)
	for _, data := range [][]byte{rnd, ones} {
		for off := range 8 {
			for n := 0; off+n <= 300; n++ {
				b := data[off : off+n]
				for _, acc := range []uint64{0, 0x1234, 1<<40 + 7} {
					if got, want := Fold(Sum(b, acc)), Fold(sumRef(b, acc)); got != want {
						t.Fatalf("off %d len %d acc %#x: %#04x, want %#04x", off, n, acc, got, want)
					}
				}
			}
		}
	}
}

func FuzzSum(f *testing.F) {
	f.Add([]byte("0123456789abcdef0123456789abcdef0123456789"), uint64(0))
	f.Fuzz(func(t *testing.T, b []byte, acc uint64) {
		acc >>= 8 // room for the sums, as callers leave it
		if got, want := Fold(Sum(b, acc)), Fold(sumRef(b, acc)); got != want {
			t.Fatalf("len %d: %#04x, want %#04x", len(b), got, want)
		}
	})
}

func BenchmarkSum1400(b *testing.B) {
	buf := make([]byte, 1400)
	for i := range buf {
		buf[i] = byte(i)
	}
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		Sum(buf, 0)
	}
}
