package crypto

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
)

// skSuites are the IKE SA suites xdpsec negotiates, one per SK code path
// and key size.
var skSuites = []Suite{
	{Encr: EncrAESCBC, KeyBits: 128, Integ: IntegHMACSHA256_128, PRF: PRFHMACSHA256},
	{Encr: EncrAESCBC, KeyBits: 256, Integ: IntegHMACSHA384_192, PRF: PRFHMACSHA384},
	{Encr: EncrAESCBC, KeyBits: 192, Integ: IntegHMACSHA512_256, PRF: PRFHMACSHA512},
	{Encr: EncrAESGCM16, KeyBits: 128, PRF: PRFHMACSHA256},
	{Encr: EncrAESGCM16, KeyBits: 256, PRF: PRFHMACSHA384},
	{Encr: EncrChaCha20Poly1305, PRF: PRFHMACSHA256},
}

func suiteName(s Suite) string { return fmt.Sprintf("encr%d-%d-integ%d", s.Encr, s.KeyBits, s.Integ) }

// testKeys derives a fixed set of IKE SA keys for s.
func testKeys(t testing.TB, s Suite) *IKEKeys {
	t.Helper()
	k, err := DeriveIKEKeys(s, []byte("shared secret g^ir"), []byte("initiator nonce!"), []byte("responder nonce!"),
		[]byte{1, 2, 3, 4, 5, 6, 7, 8}, []byte{9, 10, 11, 12, 13, 14, 15, 16})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// ikeHeader builds an IKE header plus SK payload header whose length
// fields account for a body of bodyLen octets, as a caller must before
// sealing. skf selects the 8-octet SKF header of RFC 7383.
func ikeHeader(bodyLen int, skf bool) []byte {
	h := make([]byte, 28, 36)
	copy(h[0:8], "SPIiSPIi")
	copy(h[8:16], "SPIrSPIr")
	h[17] = 0x20
	h[18] = 37 // INFORMATIONAL
	h[19] = 0x08
	binary.BigEndian.PutUint32(h[20:24], 7)
	skHdr := 4
	h[16] = 46 // SK
	if skf {
		skHdr = 8
		h[16] = 53 // SKF
	}
	binary.BigEndian.PutUint32(h[24:28], uint32(28+skHdr+bodyLen))
	p := make([]byte, skHdr)
	p[0] = 41 // Notify
	binary.BigEndian.PutUint16(p[2:4], uint16(skHdr+bodyLen))
	if skf {
		binary.BigEndian.PutUint16(p[4:6], 2) // fragment number
		binary.BigEndian.PutUint16(p[6:8], 3) // total fragments
	}
	return append(h, p...)
}

func TestSKChaCha20Poly1305RFC7634(t *testing.T) {
	var v struct{ Key, Salt, IV, AAD, Plaintext, Ciphertext string }
	loadVectors(t, "rfc7634_ikev2.json", &v)
	c, err := NewSKCipher(EncrChaCha20Poly1305, 0, IntegNone, unhex(t, v.Key+v.Salt), nil)
	if err != nil {
		t.Fatal(err)
	}
	aad := unhex(t, v.AAD)
	body := unhex(t, v.IV+v.Ciphertext)
	if got := binary.BigEndian.Uint32(aad[24:28]); int(got) != len(aad)+len(body) {
		t.Fatalf("vector IKE length %d, message %d", got, len(aad)+len(body))
	}
	// The plaintext ends with Pad Length 0; Open strips it.
	pt := unhex(t, v.Plaintext)
	inner := pt[:len(pt)-1]
	got, err := c.Open(nil, aad, body)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, inner) {
		t.Fatalf("Open = %x, want %x", got, inner)
	}
	// Seal reproduces the message when the IV counter sits at the
	// vector's IV.
	a := c.(*skAEAD)
	a.ivBase = binary.BigEndian.Uint64(unhex(t, v.IV))
	sealed, err := c.Seal(nil, aad, inner)
	if err != nil {
		t.Fatal(err)
	}
	mustEqualHex(t, "Seal", sealed, v.IV+v.Ciphertext)
	if c.SealedLen(len(inner)) != len(body) {
		t.Errorf("SealedLen(%d) = %d, want %d", len(inner), c.SealedLen(len(inner)), len(body))
	}
}

// TestSKGCMKnownAnswer checks the key|salt split and the salt | IV nonce
// of ENCR_AES_GCM_16 against the GCM specification's test cases.
func TestSKGCMKnownAnswer(t *testing.T) {
	var f struct {
		Vectors []struct{ Name, Key, IV, AAD, Plaintext, Ciphertext string }
	}
	loadVectors(t, "gcm_mcgrew_viega.json", &f)
	if len(f.Vectors) != 4 {
		t.Fatalf("loaded %d gcm vectors, want 4", len(f.Vectors))
	}
	for _, v := range f.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			key := unhex(t, v.Key)
			c, err := NewSKCipher(EncrAESGCM16, (len(key)-4)*8, IntegNone, key, nil)
			if err != nil {
				t.Fatal(err)
			}
			a := c.(*skAEAD)
			iv, aad, pt := unhex(t, v.IV), unhex(t, v.AAD), unhex(t, v.Plaintext)
			nonce := a.nonce(iv)
			mustEqualHex(t, "ciphertext", a.aead.Seal(nil, nonce[:], pt, aad), v.Ciphertext)

			// Through Open: the tag verifies, then the last plaintext
			// octet is taken as Pad Length (0x55 in TC3/TC15 is too
			// long for 64 octets, 0x39 in TC4/TC16 leaves 2 octets).
			out, err := c.Open(nil, aad, append(append([]byte{}, iv...), unhex(t, v.Ciphertext)...))
			padLen := int(pt[len(pt)-1])
			if padLen+1 > len(pt) {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("Open err %v, want ErrMalformed after a good tag", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := pt[:len(pt)-padLen-1]; !bytes.Equal(out, want) {
				t.Fatalf("Open = %x, want %x", out, want)
			}
		})
	}
}

// TestSKGCMCrossCheck decrypts Seal's output with crypto/cipher directly,
// following RFC 5282 by hand: nonce = salt | IV, AAD = header, plaintext
// = payloads | Pad Length 0.
func TestSKGCMCrossCheck(t *testing.T) {
	for _, bits := range []int{128, 256} {
		s := Suite{Encr: EncrAESGCM16, KeyBits: bits, PRF: PRFHMACSHA256}
		k := testKeys(t, s)
		seal, _, err := k.SKCiphers(s, true)
		if err != nil {
			t.Fatal(err)
		}
		inner := []byte("inner payload chain of odd length")
		aad := ikeHeader(seal.SealedLen(len(inner)), false)
		body, err := seal.Seal(nil, aad, inner)
		if err != nil {
			t.Fatal(err)
		}
		block, _ := aes.NewCipher(k.SKei[:bits/8])
		g, _ := cipher.NewGCM(block)
		nonce := append(append([]byte{}, k.SKei[bits/8:]...), body[:8]...)
		pt, err := g.Open(nil, nonce, body[8:], aad)
		if err != nil {
			t.Fatalf("%d: independent GCM open: %v", bits, err)
		}
		if want := append(append([]byte{}, inner...), 0); !bytes.Equal(pt, want) {
			t.Fatalf("%d: plaintext %x, want %x", bits, pt, want)
		}
	}
}

// TestSKCBCCrossCheck verifies Seal's AES-CBC + HMAC output by hand per
// RFC 7296 3.14: the ICV covers the message from the IKE header through
// the ciphertext, the plaintext is payloads | padding | Pad Length.
func TestSKCBCCrossCheck(t *testing.T) {
	s := Suite{Encr: EncrAESCBC, KeyBits: 128, Integ: IntegHMACSHA256_128, PRF: PRFHMACSHA256}
	k := testKeys(t, s)
	seal, _, err := k.SKCiphers(s, false) // responder sends with SK_er/SK_ar
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < 40; n++ {
		inner := bytes.Repeat([]byte{byte(n)}, n)
		aad := ikeHeader(seal.SealedLen(n), false)
		body, err := seal.Seal(nil, aad, inner)
		if err != nil {
			t.Fatal(err)
		}
		if len(body) != seal.SealedLen(n) || (len(body)-16-16)%16 != 0 {
			t.Fatalf("n=%d: body %d octets", n, len(body))
		}
		m := hmac.New(sha256.New, k.SKar)
		m.Write(aad)
		m.Write(body[:len(body)-16])
		if !bytes.Equal(m.Sum(nil)[:16], body[len(body)-16:]) {
			t.Fatalf("n=%d: ICV is not HMAC-SHA-256-128 over header | IV | ciphertext", n)
		}
		block, _ := aes.NewCipher(k.SKer)
		ct := body[16 : len(body)-16]
		pt := make([]byte, len(ct))
		cipher.NewCBCDecrypter(block, body[:16]).CryptBlocks(pt, ct)
		padLen := int(pt[len(pt)-1])
		if padLen != len(pt)-n-1 || padLen >= 16 {
			t.Fatalf("n=%d: pad length %d, ciphertext %d", n, padLen, len(ct))
		}
		if !bytes.Equal(pt[:n], inner) {
			t.Fatalf("n=%d: plaintext mismatch", n)
		}
	}
}

func TestSKRoundTrip(t *testing.T) {
	for _, s := range skSuites {
		t.Run(suiteName(s), func(t *testing.T) {
			k := testKeys(t, s)
			iSeal, iOpen, err := k.SKCiphers(s, true)
			if err != nil {
				t.Fatal(err)
			}
			rSeal, rOpen, err := k.SKCiphers(s, false)
			if err != nil {
				t.Fatal(err)
			}
			for _, skf := range []bool{false, true} {
				for _, n := range []int{0, 1, 15, 16, 17, 100, 1300} {
					inner := make([]byte, n)
					for i := range inner {
						inner[i] = byte(i * 7)
					}
					for _, dir := range []struct {
						name       string
						seal, open SKCipher
						wrong      SKCipher
					}{{"i->r", iSeal, rOpen, iOpen}, {"r->i", rSeal, iOpen, rOpen}} {
						aad := ikeHeader(dir.seal.SealedLen(n), skf)
						prefix := []byte("prefix")
						msg, err := dir.seal.Seal(prefix, aad, inner)
						if err != nil {
							t.Fatal(err)
						}
						if !bytes.HasPrefix(msg, []byte("prefix")) {
							t.Fatal("Seal did not append to dst")
						}
						body := msg[len(prefix):]
						if len(body) != dir.seal.SealedLen(n) {
							t.Fatalf("%s n=%d: body %d, SealedLen %d", dir.name, n, len(body), dir.seal.SealedLen(n))
						}
						if got := dir.seal.MaxPlaintextLen(len(body)); got < n {
							t.Fatalf("%s n=%d: MaxPlaintextLen(%d) = %d", dir.name, n, len(body), got)
						}
						got, err := dir.open.Open([]byte("x"), aad, body)
						if err != nil {
							t.Fatalf("%s skf=%v n=%d: %v", dir.name, skf, n, err)
						}
						if !bytes.Equal(got, append([]byte("x"), inner...)) {
							t.Fatalf("%s skf=%v n=%d: round trip mismatch", dir.name, skf, n)
						}
						// The other direction's key must not open it.
						if _, err := dir.wrong.Open(nil, aad, body); !errors.Is(err, ErrAuth) {
							t.Fatalf("%s: opened with the wrong direction's key: %v", dir.name, err)
						}
					}
				}
			}
		})
	}
}

// TestSKTamper flips every bit position class of header and body: each
// change must fail authentication, never decrypt.
func TestSKTamper(t *testing.T) {
	for _, s := range skSuites {
		t.Run(suiteName(s), func(t *testing.T) {
			k := testKeys(t, s)
			seal, _, _ := k.SKCiphers(s, true)
			_, open, _ := k.SKCiphers(s, false)
			inner := []byte("a notify payload, say")
			for _, skf := range []bool{false, true} {
				aad := ikeHeader(seal.SealedLen(len(inner)), skf)
				body, err := seal.Seal(nil, aad, inner)
				if err != nil {
					t.Fatal(err)
				}
				for i := range aad {
					a := bytes.Clone(aad)
					a[i] ^= 0x80
					if _, err := open.Open(nil, a, body); !errors.Is(err, ErrAuth) {
						t.Fatalf("skf=%v header octet %d modified: err %v", skf, i, err)
					}
				}
				for i := range body {
					b := bytes.Clone(body)
					b[i] ^= 0x01
					if _, err := open.Open(nil, aad, b); !errors.Is(err, ErrAuth) {
						t.Fatalf("skf=%v body octet %d modified: err %v", skf, i, err)
					}
				}
				// A body one octet short must not open either.
				if _, err := open.Open(nil, aad, body[:len(body)-1]); err == nil {
					t.Fatal("truncated body opened")
				}
			}
		})
	}
}

func TestSKShortInput(t *testing.T) {
	for _, s := range skSuites {
		k := testKeys(t, s)
		_, open, _ := k.SKCiphers(s, true)
		minLen := open.IVLen() + open.ICVLen() + 1
		if s.Encr == EncrAESCBC {
			minLen = open.IVLen() + aes.BlockSize + open.ICVLen()
		}
		for n := 0; n < minLen; n++ {
			if _, err := open.Open(nil, nil, make([]byte, n)); !errors.Is(err, ErrMalformed) {
				t.Errorf("%s: %d-octet body: err %v, want ErrMalformed", suiteName(s), n, err)
			}
		}
		if open.MaxPlaintextLen(minLen-1) != -1 || open.MaxPlaintextLen(minLen) < 0 {
			t.Errorf("%s: MaxPlaintextLen around minimum %d wrong", suiteName(s), minLen)
		}
	}
}

// cbcForge builds a CBC body with a valid ICV around an arbitrary
// plaintext, to reach the checks behind authentication.
func cbcForge(t *testing.T, c *cbcHMAC, aad, pt []byte) []byte {
	t.Helper()
	iv := bytes.Repeat([]byte{0x42}, aes.BlockSize)
	ct := make([]byte, len(pt))
	cipher.NewCBCEncrypter(c.block, iv).CryptBlocks(ct, pt)
	body := append(iv, ct...)
	return c.mac.Sum(body, aad, body)
}

func TestSKCBCPadding(t *testing.T) {
	s := Suite{Encr: EncrAESCBC, KeyBits: 256, Integ: IntegHMACSHA256_128, PRF: PRFHMACSHA256}
	k := testKeys(t, s)
	c, err := NewSKCipher(s.Encr, s.KeyBits, s.Integ, k.SKei, k.SKai)
	if err != nil {
		t.Fatal(err)
	}
	cb := c.(*cbcHMAC)
	aad := ikeHeader(64, false)

	// Non-minimal padding (a whole extra block) must be accepted
	// (RFC 7296 3.14); padding content is not checked.
	pt := make([]byte, 32)
	copy(pt, "ten octets")
	for i := 10; i < 31; i++ {
		pt[i] = 0xee
	}
	pt[31] = 21
	got, err := c.Open(nil, aad, cbcForge(t, cb, aad, pt))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "ten octets" {
		t.Fatalf("Open = %q", got)
	}

	// Pad Length pointing before the start is malformed.
	pt[31] = 32
	if _, err := c.Open(nil, aad, cbcForge(t, cb, aad, pt)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("pad length 32 of 32: err %v, want ErrMalformed", err)
	}
	pt[31] = 31 // all padding, empty payload chain: allowed
	if got, err := c.Open(nil, aad, cbcForge(t, cb, aad, pt)); err != nil || len(got) != 0 {
		t.Fatalf("pad length 31 of 32: %q, %v", got, err)
	}

	// A ciphertext that is not a block multiple but carries a valid ICV.
	iv := bytes.Repeat([]byte{1}, 16)
	body := append(iv, make([]byte, 20)...)
	body = cb.mac.Sum(body, aad, body)
	if _, err := c.Open(nil, aad, body); !errors.Is(err, ErrMalformed) {
		t.Fatalf("ragged ciphertext: err %v, want ErrMalformed", err)
	}
}

// TestSKAEADIVCounter checks that sealing never repeats an IV: IVs are
// consecutive from the random base, and the sealer refuses to wrap.
func TestSKAEADIVCounter(t *testing.T) {
	for _, s := range skSuites[3:] {
		k := testKeys(t, s)
		seal, _, _ := k.SKCiphers(s, true)
		seen := map[uint64]bool{}
		var first uint64
		for i := 0; i < 1000; i++ {
			body, err := seal.Seal(nil, nil, []byte("x"))
			if err != nil {
				t.Fatal(err)
			}
			iv := binary.BigEndian.Uint64(body[:8])
			if i == 0 {
				first = iv
			}
			if seen[iv] || iv != first+uint64(i) {
				t.Fatalf("%s: IV %d is %x, first %x", suiteName(s), i, iv, first)
			}
			seen[iv] = true
		}
		a := seal.(*skAEAD)
		a.ivUsed.Store(^uint64(0) - 1)
		if _, err := seal.Seal(nil, nil, nil); err != nil {
			t.Fatalf("last IV: %v", err)
		}
		for range 2 {
			if _, err := seal.Seal(nil, nil, nil); !errors.Is(err, ErrIVExhausted) {
				t.Fatalf("after the last IV: err %v, want ErrIVExhausted", err)
			}
		}
		// Two sealers for one key start at independent random offsets.
		other, _, _ := k.SKCiphers(s, true)
		if other.(*skAEAD).ivBase == a.ivBase {
			t.Errorf("%s: two sealers share an IV base", suiteName(s))
		}
	}
}

func TestNewSKCipherRejects(t *testing.T) {
	cases := []struct {
		encr     uint16
		bits     int
		integ    uint16
		enc, int []byte
		want     error
	}{
		{EncrAESCBC, 128, IntegHMACSHA256_128, make([]byte, 15), make([]byte, 32), ErrMalformed},
		{EncrAESCBC, 128, IntegHMACSHA256_128, make([]byte, 16), make([]byte, 31), ErrMalformed},
		{EncrAESGCM16, 128, IntegNone, make([]byte, 16), nil, ErrMalformed}, // salt missing
		{EncrChaCha20Poly1305, 0, IntegNone, make([]byte, 32), nil, ErrMalformed},
		{EncrAESGCM16, 128, IntegHMACSHA256_128, make([]byte, 20), make([]byte, 32), ErrUnsupported},
		{2, 0, IntegHMACSHA256_128, make([]byte, 8), make([]byte, 32), ErrUnsupported}, // ENCR_DES
	}
	for _, c := range cases {
		if _, err := NewSKCipher(c.encr, c.bits, c.integ, c.enc, c.int); !errors.Is(err, c.want) {
			t.Errorf("%+v: err %v, want %v", c, err, c.want)
		}
	}
}

// TestSKConcurrentSeal: concurrent senders on one SA still get distinct
// IVs (run with -race to check the sealers' shared state).
func TestSKConcurrentSeal(t *testing.T) {
	for _, s := range skSuites {
		k := testKeys(t, s)
		seal, _, _ := k.SKCiphers(s, true)
		_, open, _ := k.SKCiphers(s, false)
		const workers, each = 4, 100
		ivs := make(chan string, workers*each)
		errs := make(chan error, workers)
		for w := range workers {
			go func() {
				inner := []byte{byte(w)}
				aad := ikeHeader(seal.SealedLen(1), false)
				for range each {
					body, err := seal.Seal(nil, aad, inner)
					if err == nil {
						_, err = open.Open(nil, aad, body)
					}
					if err != nil {
						errs <- err
						return
					}
					ivs <- string(body[:seal.IVLen()])
				}
				errs <- nil
			}()
		}
		for range workers {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		close(ivs)
		seen := map[string]bool{}
		for iv := range ivs {
			if seen[iv] {
				t.Fatalf("%s: IV repeated under concurrency", suiteName(s))
			}
			seen[iv] = true
		}
	}
}
