package crypto

import (
	"bytes"
	"crypto/ecdh"
	"errors"
	"fmt"
	"math/big"
	"testing"
)

func TestECPRFC5903(t *testing.T) {
	var f struct {
		Vectors []struct {
			Group                          uint16
			I, Gix, Giy, R, Grx, Gry, Girx string
		}
	}
	loadVectors(t, "rfc5903_ecp.json", &f)
	if len(f.Vectors) != 3 {
		t.Fatalf("loaded %d ecp vectors, want 3", len(f.Vectors))
	}
	for _, v := range f.Vectors {
		t.Run(fmt.Sprint(v.Group), func(t *testing.T) {
			ki, err := NewKeyExchangeFromPrivate(v.Group, unhex(t, v.I))
			if err != nil {
				t.Fatal(err)
			}
			kr, err := NewKeyExchangeFromPrivate(v.Group, unhex(t, v.R))
			if err != nil {
				t.Fatal(err)
			}
			// KE payload Key Exchange Data is x | y (RFC 5903 7 and the
			// KEi/KEr payloads of section 8).
			mustEqualHex(t, "KEi data", ki.PublicKey(), v.Gix+v.Giy)
			mustEqualHex(t, "KEr data", kr.PublicKey(), v.Grx+v.Gry)
			if n, _ := PublicKeyLen(v.Group); n != len(ki.PublicKey()) {
				t.Errorf("PublicKeyLen = %d, public key %d", n, len(ki.PublicKey()))
			}
			si, err := ki.SharedSecret(unhex(t, v.Grx+v.Gry))
			if err != nil {
				t.Fatal(err)
			}
			sr, err := kr.SharedSecret(unhex(t, v.Gix+v.Giy))
			if err != nil {
				t.Fatal(err)
			}
			mustEqualHex(t, "g^ir (initiator)", si, v.Girx)
			mustEqualHex(t, "g^ir (responder)", sr, v.Girx)
			if ki.Group() != v.Group {
				t.Errorf("Group() = %d", ki.Group())
			}

			// Point validation: off-curve, wrong length, SEC1-prefixed
			// and the all-zero encoding are all refused.
			bad := unhex(t, v.Grx+v.Gry)
			bad[len(bad)-1] ^= 1
			prefixed := append([]byte{4}, unhex(t, v.Grx+v.Gry)...)
			for name, peer := range map[string][]byte{
				"off curve": bad,
				"short":     unhex(t, v.Grx+v.Gry)[1:],
				"sec1":      prefixed,
				"zero":      make([]byte, len(bad)),
				"empty":     nil,
			} {
				if _, err := ki.SharedSecret(peer); !errors.Is(err, ErrInvalidPublicKey) {
					t.Errorf("%s: err %v, want ErrInvalidPublicKey", name, err)
				}
			}
		})
	}
}

func TestX25519RFC7748(t *testing.T) {
	var f struct {
		Scalarmult []struct{ Scalar, U, Out string }
		Iterated   []struct {
			Iterations int
			Out        string
		}
		DH struct {
			AlicePriv string `json:"alice_priv"`
			AlicePub  string `json:"alice_pub"`
			BobPriv   string `json:"bob_priv"`
			BobPub    string `json:"bob_pub"`
			Shared    string
		}
	}
	loadVectors(t, "rfc7748_x25519.json", &f)
	if len(f.Scalarmult) != 2 || len(f.Iterated) != 2 {
		t.Fatal("x25519 vectors missing")
	}
	for i, v := range f.Scalarmult {
		k, err := NewKeyExchangeFromPrivate(GroupCurve25519, unhex(t, v.Scalar))
		if err != nil {
			t.Fatal(err)
		}
		s, err := k.SharedSecret(unhex(t, v.U))
		if err != nil {
			t.Fatal(err)
		}
		mustEqualHex(t, fmt.Sprintf("5.2 vector %d", i+1), s, v.Out)
	}
	// 5.2 iteration: k, u = X25519(k, u), k starting as u = 9.
	k := make([]byte, 32)
	k[0] = 9
	u := bytes.Clone(k)
	done := 0
	for _, it := range f.Iterated {
		for ; done < it.Iterations; done++ {
			kx, err := NewKeyExchangeFromPrivate(GroupCurve25519, k)
			if err != nil {
				t.Fatal(err)
			}
			r, err := kx.SharedSecret(u)
			if err != nil {
				t.Fatal(err)
			}
			u, k = k, r
		}
		mustEqualHex(t, fmt.Sprintf("after %d iterations", it.Iterations), k, it.Out)
	}

	a, _ := NewKeyExchangeFromPrivate(GroupCurve25519, unhex(t, f.DH.AlicePriv))
	b, _ := NewKeyExchangeFromPrivate(GroupCurve25519, unhex(t, f.DH.BobPriv))
	mustEqualHex(t, "alice public", a.PublicKey(), f.DH.AlicePub)
	mustEqualHex(t, "bob public", b.PublicKey(), f.DH.BobPub)
	sa, err := a.SharedSecret(b.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	sb, err := b.SharedSecret(a.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	mustEqualHex(t, "6.1 shared (alice)", sa, f.DH.Shared)
	mustEqualHex(t, "6.1 shared (bob)", sb, f.DH.Shared)
}

// TestX25519LowOrder: points of small order give an all-zero secret,
// which RFC 8031 2.3 requires the receiver to reject.
func TestX25519LowOrder(t *testing.T) {
	k, err := NewKeyExchange(GroupCurve25519)
	if err != nil {
		t.Fatal(err)
	}
	one := make([]byte, 32)
	one[0] = 1
	for name, p := range map[string][]byte{"zero": make([]byte, 32), "one": one, "short": make([]byte, 31)} {
		if _, err := k.SharedSecret(p); !errors.Is(err, ErrInvalidPublicKey) {
			t.Errorf("%s: err %v, want ErrInvalidPublicKey", name, err)
		}
	}
}

func TestMODPPrimes(t *testing.T) {
	for id, bits := range map[uint16]int{GroupMODP2048: 2048, GroupMODP3072: 3072, GroupMODP4096: 4096} {
		g, err := lookupMODP(id)
		if err != nil {
			t.Fatal(err)
		}
		if g.p.BitLen() != bits || g.size != bits/8 {
			t.Errorf("group %d: %d bits, %d octets", id, g.p.BitLen(), g.size)
		}
		// A typo in the hex would destroy safe primality.
		q := new(big.Int).Rsh(g.p, 1)
		if !g.p.ProbablyPrime(2) || !q.ProbablyPrime(2) {
			t.Errorf("group %d: p is not a safe prime", id)
		}
		// RFC 3526: the top and bottom 64 bits are all ones.
		ones := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 64), big.NewInt(1))
		if new(big.Int).And(g.p, ones).Cmp(ones) != 0 || new(big.Int).Rsh(g.p, uint(bits-64)).Cmp(ones) != 0 {
			t.Errorf("group %d: outer 64-bit words are not all ones", id)
		}
	}
}

func TestMODPAgreement(t *testing.T) {
	for _, id := range []uint16{GroupMODP2048, GroupMODP3072, GroupMODP4096} {
		a, err := NewKeyExchange(id)
		if err != nil {
			t.Fatal(err)
		}
		b, err := NewKeyExchange(id)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := PublicKeyLen(id)
		if len(a.PublicKey()) != n || len(b.PublicKey()) != n || a.Group() != id {
			t.Fatalf("group %d: public lengths %d/%d, want %d", id, len(a.PublicKey()), len(b.PublicKey()), n)
		}
		sa, err := a.SharedSecret(b.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		sb, err := b.SharedSecret(a.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sa, sb) || len(sa) != n {
			t.Fatalf("group %d: secrets differ or have wrong length %d", id, len(sa))
		}

		g, _ := lookupMODP(id)
		pm1 := g.pMinus1.FillBytes(make([]byte, n))
		p := g.p.FillBytes(make([]byte, n))
		one := make([]byte, n)
		one[n-1] = 1
		for name, y := range map[string][]byte{
			"y=0": make([]byte, n), "y=1": one, "y=p-1": pm1, "y=p": p,
			"short": b.PublicKey()[1:], "long": append([]byte{0}, b.PublicKey()...),
		} {
			if _, err := a.SharedSecret(y); !errors.Is(err, ErrInvalidPublicKey) {
				t.Errorf("group %d %s: err %v, want ErrInvalidPublicKey", id, name, err)
			}
		}
	}
}

// TestMODPFixed checks the deterministic constructor and the left padding
// of public value and shared secret: with x = 2 the public value is 4.
func TestMODPFixed(t *testing.T) {
	a, err := NewKeyExchangeFromPrivate(GroupMODP2048, []byte{2})
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 256)
	want[255] = 4
	if !bytes.Equal(a.PublicKey(), want) {
		t.Fatalf("2^2 mod p = %x", a.PublicKey())
	}
	b, _ := NewKeyExchangeFromPrivate(GroupMODP2048, []byte{3})
	s, err := a.SharedSecret(b.PublicKey()) // (2^3)^2 = 64
	if err != nil {
		t.Fatal(err)
	}
	want[255] = 64
	if !bytes.Equal(s, want) {
		t.Fatalf("shared = %x, want 64 left-padded to 256 octets", s)
	}
	for _, x := range [][]byte{nil, {1}, {0, 1}} {
		if _, err := NewKeyExchangeFromPrivate(GroupMODP2048, x); !errors.Is(err, ErrMalformed) {
			t.Errorf("x=%x: err %v, want ErrMalformed", x, err)
		}
	}
}

func TestKeyExchangeUnsupported(t *testing.T) {
	// 1, 2, 5: MODP-768/1024/1536; 22: MODP-1024 with 160-bit subgroup;
	// 24: MODP-2048 with 256-bit subgroup (RFC 5114, not offered).
	for _, g := range []uint16{0, 1, 2, 5, 22, 23, 24, 32} {
		if _, err := NewKeyExchange(g); !errors.Is(err, ErrUnsupported) {
			t.Errorf("group %d: err %v, want ErrUnsupported", g, err)
		}
		if _, err := PublicKeyLen(g); !errors.Is(err, ErrUnsupported) {
			t.Errorf("PublicKeyLen(%d): err %v, want ErrUnsupported", g, err)
		}
	}
}

func TestKeyExchangeRandomAgreement(t *testing.T) {
	for _, g := range []uint16{GroupECP256, GroupECP384, GroupECP521, GroupCurve25519} {
		a, err := NewKeyExchange(g)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := NewKeyExchange(g)
		sa, err := a.SharedSecret(b.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		sb, _ := b.SharedSecret(a.PublicKey())
		if !bytes.Equal(sa, sb) {
			t.Errorf("group %d: secrets differ", g)
		}
		// Independent check with crypto/ecdh on the SEC1 form.
		if g != GroupCurve25519 {
			curve, _ := ecdhCurve(g)
			if _, err := curve.NewPublicKey(append([]byte{4}, a.PublicKey()...)); err != nil {
				t.Errorf("group %d: public key is not a valid point: %v", g, err)
			}
		} else if _, err := ecdh.X25519().NewPublicKey(a.PublicKey()); err != nil {
			t.Error(err)
		}
	}
}
