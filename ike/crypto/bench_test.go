package crypto

import (
	"fmt"
	"testing"
)

func BenchmarkKeyExchange(b *testing.B) {
	for _, g := range []struct {
		name string
		id   uint16
	}{{"X25519", GroupCurve25519}, {"ECP256", GroupECP256}, {"ECP384", GroupECP384}, {"MODP2048", GroupMODP2048}} {
		peer, err := NewKeyExchange(g.id)
		if err != nil {
			b.Fatal(err)
		}
		pub := peer.PublicKey()
		// One full side of an exchange: key generation plus agreement.
		b.Run(g.name, func(b *testing.B) {
			for b.Loop() {
				k, err := NewKeyExchange(g.id)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := k.SharedSecret(pub); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSK(b *testing.B) {
	for _, s := range []Suite{skSuites[0], skSuites[4], skSuites[5]} {
		k := testKeys(b, s)
		seal, _, _ := k.SKCiphers(s, true)
		_, open, _ := k.SKCiphers(s, false)
		for _, n := range []int{100, 1200} {
			inner := make([]byte, n)
			aad := ikeHeader(seal.SealedLen(n), false)
			buf := make([]byte, 0, seal.SealedLen(n))
			b.Run(fmt.Sprintf("Seal/%s/%d", suiteName(s), n), func(b *testing.B) {
				b.SetBytes(int64(n))
				for b.Loop() {
					if _, err := seal.Seal(buf[:0], aad, inner); err != nil {
						b.Fatal(err)
					}
				}
			})
			body, _ := seal.Seal(nil, aad, inner)
			out := make([]byte, 0, len(body))
			b.Run(fmt.Sprintf("Open/%s/%d", suiteName(s), n), func(b *testing.B) {
				b.SetBytes(int64(n))
				for b.Loop() {
					if _, err := open.Open(out[:0], aad, body); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkDeriveIKEKeys(b *testing.B) {
	s := Suite{Encr: EncrAESGCM16, KeyBits: 256, PRF: PRFHMACSHA384}
	gir, ni, nr, spi := make([]byte, 97), make([]byte, 32), make([]byte, 32), make([]byte, 8)
	for b.Loop() {
		if _, err := DeriveIKEKeys(s, gir, ni, nr, spi, spi); err != nil {
			b.Fatal(err)
		}
	}
}
