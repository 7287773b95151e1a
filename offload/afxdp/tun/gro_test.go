package tun

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// segments cuts a TCP super-packet with payload bytes of payload, as the
// kernel's segmentation sends it, into mss-sized segments.
func segments(t *testing.T, v6 bool, payload, mss int, flags uint8) [][]byte {
	t.Helper()
	p := superPacket(v6, protoTCP, payload, flags)
	l4, gt := 20, uint8(gsoTCPv4)
	if v6 {
		l4, gt = 40, gsoTCPv6
	}
	h := vnetHdr{flags: vnetNeedsCsum, gsoType: gt, gsoSize: uint16(mss), csumStart: uint16(l4), csumOffset: 16}
	return split(t, append(vnetBytes(h), p...))
}

// split reads one device write (virtio header and packet) back into the
// packets it stands for, as the kernel would segment it.
func split(t *testing.T, w []byte) [][]byte {
	t.Helper()
	var g gsoPacket
	if err := g.reset(w[VnetHdrLen:], parseVnetHdr(w[:VnetHdrLen])); err != nil {
		t.Fatalf("write with a bad virtio header: %v", err)
	}
	var out [][]byte
	for !g.done() {
		buf := make([]byte, 65536)
		n, err := g.next(buf)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, buf[:n])
	}
	return out
}

// capture makes c write into a list of writes instead of a device.
func capture(c *Coalescer) *[][]byte {
	var writes [][]byte
	c.writeTo = func(bufs [][]byte) error {
		writes = append(writes, bytes.Join(bufs, nil))
		return nil
	}
	return &writes
}

func clones(pkts [][]byte) [][]byte {
	out := make([][]byte, len(pkts))
	for i, p := range pkts {
		out[i] = bytes.Clone(p)
	}
	return out
}

// TestCoalesce feeds segments of TCP flows, and packets that must not be
// merged, through a Coalescer: each write must be one super-packet or one
// packet, what the kernel cuts the writes into must be exactly what went
// in, in order within each flow, and the number of writes shows what was
// merged.
func TestCoalesce(t *testing.T) {
	const mss = 1000
	ack := uint8(0x10)
	for _, tc := range []struct {
		name   string
		pkts   func() [][]byte
		writes int
	}{
		{"one flow v4", func() [][]byte { return segments(t, false, 5*mss+77, mss, ack|tcpFlagPSH) }, 1},
		{"one flow v6", func() [][]byte { return segments(t, true, 5*mss+77, mss, ack|tcpFlagPSH) }, 1},
		{"full segments only", func() [][]byte { return segments(t, false, 4*mss, mss, ack) }, 1},
		{"64 KiB cap", func() [][]byte { return segments(t, false, 100*mss, mss, ack) }, 2},
		{"a gap", func() [][]byte {
			s := segments(t, false, 6*mss, mss, ack)
			return append(s[:2:2], s[3:]...)
		}, 2},
		{"a short segment ends it", func() [][]byte {
			a := segments(t, false, 2*mss+10, mss, ack)
			b := segments(t, false, 2*mss, mss, ack)
			// b continues a's sequence space after a's short segment.
			for _, p := range b {
				seq := binary.BigEndian.Uint32(p[24:28]) + uint32(2*mss+10)
				binary.BigEndian.PutUint32(p[24:28], seq)
				fixTCPChecksum(p, 20, false)
			}
			return append(a, b...)
		}, 2},
		{"two flows interleaved", func() [][]byte {
			a := segments(t, false, 4*mss, mss, ack)
			b := segments(t, false, 4*mss, mss, ack)
			for _, p := range b {
				binary.BigEndian.PutUint16(p[20:22], 40001) // another source port
				fixTCPChecksum(p, 20, false)
			}
			var out [][]byte
			for i := range a {
				out = append(out, a[i], b[i])
			}
			return out
		}, 2},
		{"FIN is written alone", func() [][]byte { return segments(t, false, 3*mss+5, mss, ack|tcpFlagFIN) }, 2},
		{"a bad checksum is written alone", func() [][]byte {
			s := segments(t, false, 4*mss, mss, ack)
			s[2][len(s[2])-1] ^= 0xff
			return s
		}, 3},
		{"UDP is written alone", func() [][]byte {
			s := segments(t, false, 2*mss, mss, ack)
			u := superPacket(false, protoUDP, 100, 0)
			return append(s, u)
		}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.pkts()
			want := clones(in)
			c := &Coalescer{}
			writes := capture(c)
			for _, p := range in {
				c.Add(p)
			}
			n, err := c.Flush()
			if err != nil || n != len(in) {
				t.Fatalf("Flush: %d, %v; want %d", n, err, len(in))
			}
			if len(*writes) != tc.writes {
				t.Errorf("%d writes, want %d", len(*writes), tc.writes)
			}
			var got [][]byte
			for _, w := range *writes {
				got = append(got, split(t, w)...)
			}
			if len(got) != len(want) {
				t.Fatalf("the writes stand for %d packets, want %d", len(got), len(want))
			}
			// Per flow (source port), in order.
			for _, port := range []uint16{40000, 40001} {
				g, w := byPort(got, port), byPort(want, port)
				for i := range w {
					if !bytes.Equal(g[i], w[i]) {
						t.Fatalf("port %d packet %d differs:\n got % x\nwant % x", port, i, g[i][:60], w[i][:60])
					}
				}
			}
			if len(c.items) != 0 {
				t.Error("Flush left items queued")
			}
		})
	}
}

func byPort(pkts [][]byte, port uint16) [][]byte {
	var out [][]byte
	for _, p := range pkts {
		l4 := 20
		if p[0]>>4 == 6 {
			l4 = 40
		}
		if binary.BigEndian.Uint16(p[l4:]) == port {
			out = append(out, p)
		}
	}
	return out
}

// fixTCPChecksum recomputes the TCP checksum of the segment p.
func fixTCPChecksum(p []byte, l4 int, v6 bool) {
	p[l4+16], p[l4+17] = 0, 0
	srcDst := p[12:20]
	if v6 {
		srcDst = p[8:40]
	}
	sum := uint32(0)
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(srcDst)
	sum += uint32(protoTCP) + uint32(len(p)-l4)
	add(p[l4:])
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(p[l4+16:], ^uint16(sum))
}

// FuzzCoalesce adds arbitrary packets (the input cut at the lengths its
// first bytes give) next to real segments: nothing may panic, every write
// must be a packet or a super-packet that the kernel's rules cut back
// into as many packets as went into it.
func FuzzCoalesce(f *testing.F) {
	f.Add([]byte{3, 40, 60, 0x45, 0, 0, 40})
	seg := segments(&testing.T{}, false, 3000, 1000, 0x10)
	f.Add(append([]byte{byte(len(seg[0]) >> 4)}, seg[0]...))
	f.Fuzz(func(t *testing.T, data []byte) {
		var pkts [][]byte
		for len(data) > 1 {
			n := min(int(data[0])*4, len(data)-1)
			pkts = append(pkts, bytes.Clone(data[1:1+n]))
			data = data[1+n:]
		}
		base := segments(t, len(pkts)%2 == 1, 4000, 1000, 0x10)
		c := &Coalescer{}
		writes := capture(c)
		for i, p := range pkts {
			c.Add(p)
			if i < len(base) {
				c.Add(base[i])
			}
		}
		for _, p := range base[min(len(pkts), len(base)):] {
			c.Add(p)
		}
		n, err := c.Flush()
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		for _, w := range *writes {
			if w[1] == gsoNone {
				total++
				continue
			}
			total += len(split(t, w))
		}
		if total != n {
			t.Fatalf("Flush wrote %d packets, the writes stand for %d", n, total)
		}
	})
}

// TestAddTCP: TCP data, FIN and RST go to the coalescer; pure ACKs, UDP
// and anything unparsable do not.
func TestAddTCP(t *testing.T) {
	data := segments(t, false, 1000, 1000, 0x10)[0]
	pureACK := superPacket(false, protoTCP, 0, 0x10)
	fin := superPacket(true, protoTCP, 0, 0x10|tcpFlagFIN)
	rst := superPacket(false, protoTCP, 0, tcpFlagRST)
	udp := superPacket(false, protoUDP, 100, 0)
	for _, c := range []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"data", data, true}, {"pure ack", pureACK, false}, {"fin", fin, true}, {"rst", rst, true},
		{"udp", udp, false}, {"truncated", data[:30], false}, {"empty", nil, false},
	} {
		co := &Coalescer{}
		if got := co.AddTCP(c.pkt); got != c.want || len(co.items) != btoi(got) {
			t.Errorf("%s: %v with %d queued, want %v", c.name, got, len(co.items), c.want)
		}
	}
}

// TestCoalesceECNMark: a segment of the flow with another TOS (a CE mark)
// is not merged into its neighbours, which would lose the mark; it goes
// alone, in its place, and the segments after it merge among themselves.
func TestCoalesceECNMark(t *testing.T) {
	in := segments(t, false, 4000, 1000, 0x10)
	in[1][1] = 0x03 // CE
	in[1][10], in[1][11] = 0, 0
	sum := uint32(0)
	for i := 0; i < 20; i += 2 {
		sum += uint32(in[1][i])<<8 | uint32(in[1][i+1])
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(in[1][10:], ^uint16(sum))
	want := clones(in)
	c := &Coalescer{}
	writes := capture(c)
	for _, p := range in {
		c.Add(p)
	}
	if _, err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	var got [][]byte
	for _, w := range *writes {
		got = append(got, split(t, w)...)
	}
	if len(*writes) != 3 || len(got) != len(want) {
		t.Fatalf("%d writes for %d packets, want 3 writes (1, the marked one, 2-3)", len(*writes), len(got))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("packet %d out of order or changed", i)
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
