package esp

import (
	"crypto/hmac"
	"encoding/binary"
	"strconv"
	"testing"
	"time"
)

// benchRing is how many distinct packets the decrypt and open rows cycle
// through; after each round the inbound replay window is reset.
const benchRing = 64

var benchSuites = []algo{algos[1], algos[0], algos[2], algos[4]}

var benchOps = []string{"encrypt", "decrypt", "raw-seal", "raw-open"}

// BenchmarkESP measures Encrypt and Decrypt of IPv4-in-IPv4 tunnel packets
// of the given size against the bare primitives on the same payload at the
// same buffer offset, so the ratio comes from one run. Every row, raw ones
// included, first copies its packet into the work buffer, because in-place
// operations consume their input. For AES-CBC the raw rows are the block mode
// plus HMAC-SHA-256-128.
func BenchmarkESP(b *testing.B) {
	for opIdx, op := range benchOps {
		b.Run(op, func(b *testing.B) {
			for _, a := range benchSuites {
				b.Run(a.name, func(b *testing.B) {
					for _, size := range []int{64, 512, 1400} {
						b.Run(strconv.Itoa(size), func(b *testing.B) {
							f := newBenchOps(b, benchSetup(a, false), size)[opIdx]
							b.SetBytes(int64(size))
							b.ReportAllocs()
							b.ResetTimer()
							for b.Loop() {
								f()
							}
						})
					}
				})
			}
		})
	}
}

// BenchmarkESPRatio interleaves the four operations of BenchmarkESP in short
// rounds and reports the best round of each as a ratio, which other load on
// the machine disturbs far less than rows run one after the other.
func BenchmarkESPRatio(b *testing.B) {
	const round = 32
	for _, a := range benchSuites {
		b.Run(a.name+"/1400", func(b *testing.B) {
			ops := newBenchOps(b, benchSetup(a, false), 1400)
			var best [4]time.Duration
			for i := range best {
				best[i] = 1 << 62
			}
			for b.Loop() {
				for i, f := range ops {
					start := time.Now()
					for range round {
						f()
					}
					best[i] = min(best[i], time.Since(start))
				}
			}
			b.ReportMetric(float64(best[2])/float64(best[0]), "encrypt/raw-seal")
			b.ReportMetric(float64(best[3])/float64(best[1]), "decrypt/raw-open")
		})
	}
}

// BenchmarkDecryptUDP is the decrypt row of BenchmarkESP for
// UDP-encapsulated SAs, whose packets also pass the peer's NAT rebinding
// check.
func BenchmarkDecryptUDP(b *testing.B) {
	for _, a := range benchSuites[:2] {
		for _, size := range []int{64, 1400} {
			b.Run(a.name+"/"+strconv.Itoa(size), func(b *testing.B) {
				f := newBenchOps(b, benchSetup(a, true), size)[1]
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					f()
				}
			})
		}
	}
}

// benchSetup is the IPv4-in-IPv4 tunnel of the benchmarks.
func benchSetup(a algo, encap bool) setup {
	return setup{algo: a, mode: Tunnel, inner: 4, outer: 4, encap: encap}
}

// newBenchOps returns encrypt, decrypt, raw-seal and raw-open of one
// packet each, on state prepared for setup s and packet size size.
func newBenchOps(b *testing.B, s setup, size int) [4]func() {
	out, in := s.pair(b)
	plain := s.innerPkt(size, 0)
	w := NewWorker()
	// Room for the larger of the plaintext and the ciphertext.
	work := make([]byte, 2*MaxHeadroom+size+MaxTailroom)
	var ring [benchRing][]byte
	for i := range ring {
		p := newPacket(plain)
		if w.Encrypt(out, p) != Accept {
			b.Fatal("encrypt failed")
		}
		ring[i] = append([]byte(nil), p.Bytes()...)
	}
	next := 0
	encrypt := func() {
		copy(work[MaxHeadroom:], plain)
		p := Packet{Buf: work, Off: MaxHeadroom, Len: size}
		if w.Encrypt(out, &p) != Accept {
			b.Fatal("encrypt failed")
		}
	}
	decrypt := func() {
		if next == benchRing {
			next = 0
			resetWindow(in.replay)
		}
		n := copy(work[MaxHeadroom:], ring[next])
		p := Packet{Buf: work, Off: MaxHeadroom, Len: n}
		if w.Decrypt(in, &p) != Accept {
			b.Fatal("decrypt failed")
		}
		next++
	}
	// The raw rows work at the offset of the engine's ciphertext, so that
	// alignment does not tilt the comparison.
	seal, open := rawOps(b, out.t, plain, work[MaxHeadroom:])
	return [4]func(){encrypt, decrypt, seal, open}
}

// resetWindow rewinds the window for the next round of the ring. Only the
// few blocks in use are written: each atomic store is a full barrier, and
// clearing every block would charge the decrypt rows for the benchmark's own
// bookkeeping.
func resetWindow(r *replayWindow) {
	for i := range r.blocks {
		if r.blocks[i].Load() != 0 {
			r.blocks[i].Store(0)
		}
	}
	r.top.Store(0)
}

// rawOps returns the bare primitive on plain in work: AEAD Seal or Open in
// place with an 8-byte AAD, or for CBC the block mode with HMAC, IVs from the
// same buffered random source as the engine.
func rawOps(b *testing.B, t *transform, plain, work []byte) (seal, open func()) {
	n := len(plain) + (t.align-len(plain)%t.align)%t.align
	var ring [benchRing][]byte
	next := 0
	if t.aead != nil {
		nonce := make([]byte, 12)
		aad := make([]byte, 8)
		for i := range ring {
			binary.BigEndian.PutUint64(nonce[4:], uint64(i))
			ring[i] = t.aead.Seal(nil, nonce, plain, aad)
		}
		seal = func() {
			copy(work, plain)
			binary.BigEndian.PutUint64(nonce[4:], uint64(next))
			t.aead.Seal(work[:0], nonce, work[:len(plain)], aad)
		}
		open = func() {
			if next == benchRing {
				next = 0
			}
			copy(work, ring[next])
			binary.BigEndian.PutUint64(nonce[4:], uint64(next))
			if _, err := t.aead.Open(work[:0], nonce, work[:len(ring[next])], aad); err != nil {
				b.Fatal(err)
			}
			next++
		}
		return seal, open
	}
	s, err := newCBCState(t)
	if err != nil {
		b.Fatal(err)
	}
	sum := make([]byte, 0, 64)
	encrypt := func(dst []byte) {
		s.ivSet.SetIV(s.iv())
		s.enc.CryptBlocks(dst[:n], dst[:n])
		s.mac.Reset()
		s.mac.Write(dst[:n])
		copy(dst[n:], s.mac.Sum(sum[:0])[:t.icvLen])
	}
	for i := range ring {
		ring[i] = make([]byte, n+t.icvLen)
		copy(ring[i], plain)
		encrypt(ring[i])
	}
	iv := make([]byte, 16)
	seal = func() {
		copy(work, plain)
		encrypt(work)
	}
	open = func() {
		if next == benchRing {
			next = 0
		}
		copy(work, ring[next])
		s.mac.Reset()
		s.mac.Write(work[:n])
		if !hmac.Equal(s.mac.Sum(sum[:0])[:t.icvLen], work[n:n+t.icvLen]) {
			b.Fatal("icv mismatch")
		}
		s.dvSet.SetIV(iv)
		s.dec.CryptBlocks(work[:n], work[:n])
		next++
	}
	return seal, open
}
