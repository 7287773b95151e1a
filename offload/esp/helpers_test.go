package esp

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"os"
	"strings"
	"testing"
)

// vector is one block of "name value" lines from a testdata file.
type vector map[string]string

func (v vector) bytes(t *testing.T, k string) []byte {
	t.Helper()
	b, err := hex.DecodeString(v[k])
	if err != nil {
		t.Fatalf("%s: %v", k, err)
	}
	return b
}

// readVectors parses blank-line separated blocks of "name hex" lines.
func readVectors(t *testing.T, path string) []vector {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var vs []vector
	cur := vector{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "#"):
		case line == "":
			if len(cur) > 0 {
				vs = append(vs, cur)
				cur = vector{}
			}
		default:
			k, v, _ := strings.Cut(line, " ")
			cur[k] = v
		}
	}
	if len(cur) > 0 {
		vs = append(vs, cur)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(vs) == 0 {
		t.Fatalf("%s: no vectors", path)
	}
	return vs
}

// newPacket puts b in a buffer with room on both sides.
func newPacket(b []byte) *Packet {
	buf := make([]byte, MaxHeadroom+len(b)+MaxTailroom)
	copy(buf[MaxHeadroom:], b)
	return &Packet{Buf: buf, Off: MaxHeadroom, Len: len(b)}
}

// ipv4 builds an IPv4 packet with a valid header checksum.
func ipv4(src, dst string, proto, tos uint8, payload []byte) []byte {
	h := make([]byte, ipv4HeaderLen, ipv4HeaderLen+len(payload))
	h[0], h[1] = 0x45, tos
	binary.BigEndian.PutUint16(h[2:4], uint16(ipv4HeaderLen+len(payload)))
	binary.BigEndian.PutUint16(h[4:6], 0x1234)
	h[6] = 0x40
	h[8], h[9] = 64, proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(h[12:16], s[:])
	copy(h[16:20], d[:])
	setIPv4Checksum(h)
	return append(h, payload...)
}

// ipv6 builds an IPv6 packet.
func ipv6(src, dst string, nh, tc uint8, payload []byte) []byte {
	h := make([]byte, ipv6HeaderLen, ipv6HeaderLen+len(payload))
	binary.BigEndian.PutUint32(h[0:4], 6<<28|uint32(tc)<<20|0x12345)
	binary.BigEndian.PutUint16(h[4:6], uint16(len(payload)))
	h[6], h[7] = nh, 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(h[8:24], s[:])
	copy(h[24:40], d[:])
	return append(h, payload...)
}

// udpPayload builds a UDP header and payload with ports sp and dp (the
// checksum is left 0; nothing here checks inner checksums).
func udpPayload(sp, dp uint16, n int) []byte {
	b := make([]byte, 8+n)
	binary.BigEndian.PutUint16(b[0:2], sp)
	binary.BigEndian.PutUint16(b[2:4], dp)
	binary.BigEndian.PutUint16(b[4:6], uint16(8+n))
	for i := range n {
		b[8+i] = byte(i*7 + 3)
	}
	return b
}

// inbound turns the config of an outbound SA into that of the peer's
// inbound SA for the same packets, as offload/afxdp does for Dir In: its
// local address is their destination and the peer's port their source.
func inbound(c Config) Config {
	c.Local, c.Remote = c.Remote, c.Local
	c.EncapSrcPort, c.EncapDstPort = c.EncapDstPort, c.EncapSrcPort
	return c
}

func mustSA(t testing.TB, c Config) *SA {
	t.Helper()
	sa, err := NewSA(c)
	if err != nil {
		t.Fatal(err)
	}
	return sa
}

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// readLines returns the lines of a file that are neither blank nor comments.
func readLines(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out, nil
}
