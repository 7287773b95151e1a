package esp

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
)

// algo is one cipher suite with its keys.
type algo struct {
	name   string
	cipher Cipher
	integ  Integrity
	encLen int
}

var algos = []algo{
	{"aes128gcm", AESGCM16, IntegrityNone, 16 + 4},
	{"aes256gcm", AESGCM16, IntegrityNone, 32 + 4},
	{"chacha20poly1305", ChaCha20Poly1305, IntegrityNone, 32 + 4},
	{"aes128cbc-sha256", AESCBC, HMACSHA256128, 16},
	{"aes256cbc-sha256", AESCBC, HMACSHA256128, 32},
	{"aes256cbc-sha384", AESCBC, HMACSHA384192, 32},
	{"aes256cbc-sha512", AESCBC, HMACSHA512256, 32},
}

func (a algo) keys() (enc, auth []byte) {
	enc = make([]byte, a.encLen)
	rand.Read(enc)
	if a.integ != IntegrityNone {
		auth = make([]byte, a.integ.keyLen())
		rand.Read(auth)
	}
	return enc, auth
}

// setup is one combination of the round-trip matrix.
type setup struct {
	algo  algo
	mode  Mode
	inner int // 4 or 6
	outer int // 4 or 6; tunnel mode only
	encap bool
	esn   bool
}

func (s setup) String() string {
	e := "raw"
	if s.encap {
		e = "udp"
	}
	return fmt.Sprintf("%s/%v/in%d/out%d/%s/esn=%v", s.algo.name, s.mode, s.inner, s.outer, e, s.esn)
}

// pair returns an outbound and an inbound SA with the same keys, each with
// the addresses and ports seen from its own end.
func (s setup) pair(t testing.TB) (out, in *SA) {
	c := s.config()
	return mustSA(t, c), mustSA(t, inbound(c))
}

// config returns the config of the outbound SA, with fresh keys.
func (s setup) config() Config {
	enc, auth := s.algo.keys()
	c := Config{
		SPI: 0x1000, Cipher: s.algo.cipher, Integrity: s.algo.integ, EncKey: enc, AuthKey: auth,
		Mode: s.mode, ESN: s.esn, LocalTS: AllTraffic(), RemoteTS: AllTraffic(),
	}
	if s.mode == Tunnel {
		if s.outer == 4 {
			c.Local, c.Remote = netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.2")
		} else {
			c.Local, c.Remote = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8:1::2")
		}
	}
	if s.encap {
		c.EncapSrcPort, c.EncapDstPort = 4500, 4500
	}
	return c
}

// innerPkt builds a UDP packet of total length n (at least a header).
func (s setup) innerPkt(n int, tos uint8) []byte {
	if s.inner == 4 {
		return ipv4("10.1.0.10", "10.2.0.10", protoUDP, tos, udpPayload(1234, 53, max(n-28, 0)))
	}
	return ipv6("fd00:1::10", "fd00:2::10", protoUDP, tos, udpPayload(1234, 53, max(n-48, 0)))
}

func matrix() []setup {
	var all []setup
	for _, a := range algos {
		for _, mode := range []Mode{Tunnel, Transport} {
			for _, inner := range []int{4, 6} {
				outers := []int{4, 6}
				if mode == Transport {
					outers = []int{inner}
				}
				for _, outer := range outers {
					for _, encap := range []bool{false, true} {
						for _, esn := range []bool{false, true} {
							all = append(all, setup{a, mode, inner, outer, encap, esn})
						}
					}
				}
			}
		}
	}
	return all
}

// checkOuter verifies the headers Encrypt wrote.
func checkOuter(t *testing.T, s setup, sa *SA, pkt, inner []byte) {
	t.Helper()
	v := int(pkt[0] >> 4)
	if v != s.outer {
		t.Fatalf("outer version %d", v)
	}
	ipLen, proto := ipv6HeaderLen, pkt[6]
	if v == 4 {
		ipLen, proto = int(pkt[0]&0xf)*4, pkt[9]
		if int(binary.BigEndian.Uint16(pkt[2:4])) != len(pkt) || checksumFold(checksumAdd(0, pkt[:ipLen])) != 0 {
			t.Fatalf("bad IPv4 header %x", pkt[:ipLen])
		}
	} else if int(binary.BigEndian.Uint16(pkt[4:6])) != len(pkt)-ipv6HeaderLen {
		t.Fatalf("bad IPv6 payload length")
	}
	if s.mode == Tunnel {
		if got, want := trafficClass(pkt), trafficClass(inner); got != want {
			t.Fatalf("outer traffic class %#x, want %#x", got, want)
		}
		ttl := pkt[8]
		if v == 6 {
			ttl = pkt[7]
		}
		if ttl != 64 {
			t.Fatalf("outer ttl %d", ttl)
		}
	}
	espOff := ipLen
	if s.encap {
		if proto != protoUDP {
			t.Fatalf("protocol %d, want UDP", proto)
		}
		u := pkt[ipLen:]
		if binary.BigEndian.Uint16(u[0:2]) != 4500 || binary.BigEndian.Uint16(u[2:4]) != 4500 ||
			int(binary.BigEndian.Uint16(u[4:6])) != len(u) {
			t.Fatalf("bad UDP header %x", u[:8])
		}
		sum := binary.BigEndian.Uint16(u[6:8])
		if v == 4 && sum != 0 {
			t.Fatalf("IPv4 UDP checksum %#x, want 0", sum)
		}
		// A correct checksum makes the sum over pseudo header and datagram
		// fold to zero.
		if v == 6 && (sum == 0 || checksumFold(checksumAdd(pseudoSumV6(pkt)+uint64(len(u))+protoUDP, u)) != 0) {
			t.Fatalf("bad IPv6 UDP checksum %#x", sum)
		}
		espOff += udpHeaderLen
	} else if proto != protoESP {
		t.Fatalf("protocol %d, want ESP", proto)
	}
	if binary.BigEndian.Uint32(pkt[espOff:]) != sa.spi {
		t.Fatalf("spi %x", pkt[espOff:espOff+4])
	}
	if (len(pkt)-espOff-espHeaderLen-sa.t.ivLen-sa.t.icvLen)%sa.t.align != 0 {
		t.Fatalf("ciphertext not aligned to %d", sa.t.align)
	}
}

func TestRoundTrip(t *testing.T) {
	w := NewWorker()
	for _, s := range matrix() {
		t.Run(s.String(), func(t *testing.T) {
			out, in := s.pair(t)
			if s.esn {
				// Cross the 2^32 boundary during the test.
				out.seqOut.Store(1<<32 - 3)
				in.replay.top.Store(1<<32 - 4)
			}
			for i, n := range []int{48, 49, 50, 51, 64, 100, 512, 1400} {
				tos := uint8(i*4) | uint8(i%3) // DSCP and ECN vary
				plain := s.innerPkt(n, tos)
				p := newPacket(plain)
				if r := w.Encrypt(out, p); r != Accept {
					t.Fatalf("encrypt %d: %v", n, r)
				}
				if len(p.Bytes()) != len(plain)+out.Headroom()+paddedExtra(out, plain, s) {
					t.Fatalf("encrypt %d: length %d", n, len(p.Bytes()))
				}
				checkOuter(t, s, out, p.Bytes(), plain)
				if bytes.Contains(p.Bytes(), plain[len(plain)-16:]) {
					t.Fatalf("encrypt %d: plaintext visible", n)
				}
				if r := w.Decrypt(in, p); r != Accept {
					t.Fatalf("decrypt %d: %v", n, r)
				}
				if !bytes.Equal(p.Bytes(), plain) {
					t.Fatalf("decrypt %d:\n got %x\nwant %x", n, p.Bytes(), plain)
				}
			}
			if st := in.Stats(); st.PacketsIn != 8 || st.Drops != (DropCounts{}) {
				t.Fatalf("inbound stats %+v", st)
			}
			if st := out.Stats(); st.PacketsOut != 8 {
				t.Fatalf("outbound stats %+v", st)
			}
		})
	}
}

// paddedExtra is what Encrypt adds behind the packet, less what the
// transport mode header move saves in front.
func paddedExtra(sa *SA, plain []byte, s setup) int {
	body := len(plain)
	front := 0
	if s.mode == Transport {
		front = ipv4HeaderLen
		if s.inner == 6 {
			front = ipv6HeaderLen
		}
		body -= front
	}
	pad := (sa.t.align - (body+2)%sa.t.align) % sa.t.align
	return pad + 2 + sa.t.icvLen
}

// TestBitFlips flips every bit of the outer IPv4 header and of the ESP
// packet and expects every copy to be refused.
func TestBitFlips(t *testing.T) {
	w := NewWorker()
	for _, a := range algos {
		for _, esn := range []bool{false, true} {
			s := setup{algo: a, mode: Tunnel, inner: 4, outer: 4, esn: esn}
			t.Run(s.String(), func(t *testing.T) {
				out, in := s.pair(t)
				p := newPacket(s.innerPkt(100, 0))
				if r := w.Encrypt(out, p); r != Accept {
					t.Fatal(r)
				}
				wire := append([]byte(nil), p.Bytes()...)
				for bit := range len(wire) * 8 {
					// The ECN bits may change in transit; a CE mark is
					// checked by TestECN.
					if bit == 14 || bit == 15 {
						continue
					}
					b := append([]byte(nil), wire...)
					b[bit/8] ^= 0x80 >> (bit % 8)
					if r := w.Decrypt(in, newPacket(b)); r == Accept {
						t.Fatalf("flipped bit %d accepted", bit)
					}
				}
				if st := in.Stats(); st.PacketsIn != 0 {
					t.Fatalf("stats %+v", st)
				}
				// The original is still good: no flip moved the window.
				if r := w.Decrypt(in, newPacket(wire)); r != Accept {
					t.Fatalf("original: %v", r)
				}
			})
		}
	}
}
