package crypto

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"testing"
)

func TestPRFRFC4868(t *testing.T) {
	var f struct {
		Vectors []struct {
			Case           string
			PRF            uint16
			Key, Data, Out string
		}
	}
	loadVectors(t, "rfc4868_prf.json", &f)
	if len(f.Vectors) != 18 {
		t.Fatalf("loaded %d prf vectors, want 18", len(f.Vectors))
	}
	for _, v := range f.Vectors {
		t.Run(fmt.Sprintf("%s/%d", v.Case, v.PRF), func(t *testing.T) {
			p, err := NewPRF(v.PRF)
			if err != nil {
				t.Fatal(err)
			}
			if p.Size() != len(v.Out)/2 {
				t.Errorf("Size() = %d, want %d", p.Size(), len(v.Out)/2)
			}
			mustEqualHex(t, "prf", p.Compute(unhex(t, v.Key), unhex(t, v.Data)), v.Out)
			// Split input must give the same result as one buffer.
			d := unhex(t, v.Data)
			mustEqualHex(t, "prf split", p.Compute(unhex(t, v.Key), d[:len(d)/2], d[len(d)/2:]), v.Out)
		})
	}
}

func TestIntegrityRFC4868(t *testing.T) {
	var f struct {
		Vectors []struct {
			Case           string
			Integ          uint16
			Key, Data, ICV string
		}
	}
	loadVectors(t, "rfc4868_auth.json", &f)
	if len(f.Vectors) != 9 {
		t.Fatalf("loaded %d auth vectors, want 9", len(f.Vectors))
	}
	for _, v := range f.Vectors {
		t.Run(v.Case, func(t *testing.T) {
			a, err := NewIntegrity(v.Integ, unhex(t, v.Key))
			if err != nil {
				t.Fatal(err)
			}
			if a.ICVLen() != len(v.ICV)/2 {
				t.Errorf("ICVLen() = %d, want %d", a.ICVLen(), len(v.ICV)/2)
			}
			data := unhex(t, v.Data)
			mustEqualHex(t, "icv", a.Sum(nil, data), v.ICV)
			icv := unhex(t, v.ICV)
			if !a.Verify(icv, data) {
				t.Error("Verify rejected the published ICV")
			}
			icv[0] ^= 1
			if a.Verify(icv, data) {
				t.Error("Verify accepted a modified ICV")
			}
			if a.Verify(icv[:len(icv)-1], data) {
				t.Error("Verify accepted a short ICV")
			}
		})
	}
}

func TestIntegrityKeyLength(t *testing.T) {
	for id, n := range map[uint16]int{IntegHMACSHA256_128: 32, IntegHMACSHA384_192: 48, IntegHMACSHA512_256: 64} {
		if got, err := IntegKeyLen(id); err != nil || got != n {
			t.Errorf("IntegKeyLen(%d) = %d, %v; want %d", id, got, err, n)
		}
		if _, err := NewIntegrity(id, make([]byte, n-1)); !errors.Is(err, ErrMalformed) {
			t.Errorf("integ %d with short key: err %v, want ErrMalformed", id, err)
		}
	}
	// AUTH_HMAC_SHA1_96 (2) and AUTH_HMAC_MD5_96 (1) are never accepted.
	for _, id := range []uint16{1, 2, 5, 99} {
		if _, err := NewIntegrity(id, make([]byte, 32)); !errors.Is(err, ErrUnsupported) {
			t.Errorf("integ %d: err %v, want ErrUnsupported", id, err)
		}
	}
	if _, err := NewPRF(2); !errors.Is(err, ErrUnsupported) { // PRF_HMAC_SHA1
		t.Errorf("prf sha1: err %v, want ErrUnsupported", err)
	}
}

// refPRFPlus is an independent, literal transcription of RFC 7296 2.13.
func refPRFPlus(h func() hash.Hash, k, s []byte, n int) []byte {
	var out, t []byte
	for i := byte(1); len(out) < n; i++ {
		m := hmac.New(h, k)
		m.Write(append(append(append([]byte{}, t...), s...), i))
		t = m.Sum(nil)
		out = append(out, t...)
	}
	return out[:n]
}

func TestPRFPlusMatchesDefinition(t *testing.T) {
	hs := map[uint16]func() hash.Hash{PRFHMACSHA256: sha256.New, PRFHMACSHA384: sha512.New384, PRFHMACSHA512: sha512.New}
	key := []byte("a prf+ key of some length")
	seed := bytes.Repeat([]byte{0x5a, 0xc3}, 37)
	for id, h := range hs {
		p, _ := NewPRF(id)
		for _, n := range []int{0, 1, p.Size() - 1, p.Size(), p.Size() + 1, 3*p.Size() + 7, 255 * p.Size()} {
			got, err := p.Plus(key, seed, n)
			if err != nil {
				t.Fatalf("prf %d n=%d: %v", id, n, err)
			}
			if want := refPRFPlus(h, key, seed, n); !bytes.Equal(got, want) {
				t.Errorf("prf %d n=%d: prf+ differs from the RFC 7296 2.13 definition", id, n)
			}
		}
	}
}

func TestPRFPlusLimit(t *testing.T) {
	p, _ := NewPRF(PRFHMACSHA256)
	if _, err := p.Plus([]byte("k"), nil, 255*32); err != nil {
		t.Fatalf("255 blocks: %v", err)
	}
	if _, err := p.Plus([]byte("k"), nil, 255*32+1); !errors.Is(err, ErrPRFPlusTooLong) {
		t.Fatalf("256 blocks: err %v, want ErrPRFPlusTooLong", err)
	}
	if _, err := p.Plus([]byte("k"), nil, -1); !errors.Is(err, ErrMalformed) {
		t.Fatalf("negative length: err %v, want ErrMalformed", err)
	}
}
