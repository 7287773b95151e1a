package crypto

import (
	"bytes"
	"errors"
	"testing"
)

type kdfVector struct {
	Name                    string
	PRF                     uint16
	GIR, Ni, Nr, SPIi, SPIr string
	SKEYSEED, DKM           string
	RekeyGIR                string `json:"rekey_gir"`
	RekeySKEYSEED           string `json:"rekey_skeyseed"`
}

func loadKDF(t *testing.T) []kdfVector {
	var f struct{ Vectors []kdfVector }
	loadVectors(t, "nist_ikev2_kdf.json", &f)
	if len(f.Vectors) != 4 {
		t.Fatalf("loaded %d kdf vectors, want 4", len(f.Vectors))
	}
	return f.Vectors
}

func TestSKEYSEEDNIST(t *testing.T) {
	for _, v := range loadKDF(t) {
		t.Run(v.Name, func(t *testing.T) {
			got, err := SKEYSEED(v.PRF, unhex(t, v.GIR), unhex(t, v.Ni), unhex(t, v.Nr))
			if err != nil {
				t.Fatal(err)
			}
			mustEqualHex(t, "SKEYSEED", got, v.SKEYSEED)
		})
	}
}

// TestDeriveIKEKeysNIST runs the whole IKE_SA_INIT derivation from g^ir,
// nonces and SPIs and compares the concatenated keys with the NIST
// derived keying material, then checks the rekey SKEYSEED (2.18) that the
// same vector set derives from SK_d.
func TestDeriveIKEKeysNIST(t *testing.T) {
	for _, v := range loadKDF(t) {
		if v.DKM == "" {
			continue
		}
		t.Run(v.Name, func(t *testing.T) {
			p, _ := NewPRF(v.PRF)
			dkm := unhex(t, v.DKM)
			got, err := p.Plus(unhex(t, v.SKEYSEED), append(append(append(unhex(t, v.Ni), unhex(t, v.Nr)...), unhex(t, v.SPIi)...), unhex(t, v.SPIr)...), len(dkm))
			if err != nil {
				t.Fatal(err)
			}
			mustEqualHex(t, "prf+ DKM", got, v.DKM)

			s := Suite{Encr: EncrAESCBC, KeyBits: 128, Integ: IntegHMACSHA256_128, PRF: v.PRF}
			k, err := DeriveIKEKeys(s, unhex(t, v.GIR), unhex(t, v.Ni), unhex(t, v.Nr), unhex(t, v.SPIi), unhex(t, v.SPIr))
			if err != nil {
				t.Fatal(err)
			}
			all := bytes.Join([][]byte{k.SKd, k.SKai, k.SKar, k.SKei, k.SKer, k.SKpi, k.SKpr}, nil)
			if !bytes.Equal(all[:len(dkm)], dkm) {
				t.Errorf("derived keys do not start with the NIST DKM")
			}
			if len(k.SKd) != p.Size() || len(k.SKpi) != p.Size() || len(k.SKai) != 32 || len(k.SKei) != 16 {
				t.Errorf("key lengths d=%d pi=%d ai=%d ei=%d", len(k.SKd), len(k.SKpi), len(k.SKai), len(k.SKei))
			}

			rs, err := RekeySKEYSEED(v.PRF, k.SKd, unhex(t, v.RekeyGIR), unhex(t, v.Ni), unhex(t, v.Nr))
			if err != nil {
				t.Fatal(err)
			}
			mustEqualHex(t, "rekey SKEYSEED", rs, v.RekeySKEYSEED)

			// DeriveRekeyedIKEKeys = prf+ of the new SA from that SKEYSEED.
			newSPIi, newSPIr := []byte("newspi-i"), []byte("newspi-r")
			nk, err := DeriveRekeyedIKEKeys(v.PRF, k.SKd, s, unhex(t, v.RekeyGIR), unhex(t, v.Ni), unhex(t, v.Nr), newSPIi, newSPIr)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := p.Plus(rs, append(append(append(unhex(t, v.Ni), unhex(t, v.Nr)...), newSPIi...), newSPIr...), p.Size())
			if !bytes.Equal(nk.SKd, want) {
				t.Error("rekeyed SK_d is not prf+(rekey SKEYSEED, Ni | Nr | SPIi | SPIr)")
			}
		})
	}
}

func TestRekeyUsesOldPRF(t *testing.T) {
	oldSKd := bytes.Repeat([]byte{1}, 32)
	gir, ni, nr := []byte("shared"), []byte("nonce-i-16octets"), []byte("nonce-r-16octets")
	s := Suite{Encr: EncrAESGCM16, KeyBits: 256, PRF: PRFHMACSHA512}
	k, err := DeriveRekeyedIKEKeys(PRFHMACSHA256, oldSKd, s, gir, ni, nr, make([]byte, 8), make([]byte, 8))
	if err != nil {
		t.Fatal(err)
	}
	old, _ := NewPRF(PRFHMACSHA256)
	seed := old.Compute(oldSKd, gir, ni, nr)
	nw, _ := NewPRF(PRFHMACSHA512)
	want, _ := nw.Plus(seed, append(append(append([]byte{}, ni...), nr...), make([]byte, 16)...), 64)
	if !bytes.Equal(k.SKd, want) {
		t.Error("rekey must compute SKEYSEED with the old PRF and expand with the new one")
	}
}

func TestKeyLengths(t *testing.T) {
	tests := []struct {
		s               Suite
		enc, integ, prf int
	}{
		{Suite{EncrAESCBC, 128, IntegHMACSHA256_128, PRFHMACSHA256}, 16, 32, 32},
		{Suite{EncrAESCBC, 192, IntegHMACSHA384_192, PRFHMACSHA384}, 24, 48, 48},
		{Suite{EncrAESCBC, 256, IntegHMACSHA512_256, PRFHMACSHA512}, 32, 64, 64},
		{Suite{EncrAESGCM16, 128, IntegNone, PRFHMACSHA256}, 20, 0, 32},
		{Suite{EncrAESGCM16, 256, IntegNone, PRFHMACSHA384}, 36, 0, 48},
		{Suite{EncrChaCha20Poly1305, 0, IntegNone, PRFHMACSHA256}, 36, 0, 32},
	}
	for _, tc := range tests {
		k, err := DeriveIKEKeys(tc.s, []byte("gir"), []byte("ni"), []byte("nr"), make([]byte, 8), make([]byte, 8))
		if err != nil {
			t.Fatalf("%+v: %v", tc.s, err)
		}
		for name, got := range map[string][]byte{"SK_d": k.SKd, "SK_pi": k.SKpi, "SK_pr": k.SKpr} {
			if len(got) != tc.prf {
				t.Errorf("%+v: %s %d octets, want %d", tc.s, name, len(got), tc.prf)
			}
		}
		if len(k.SKei) != tc.enc || len(k.SKer) != tc.enc || len(k.SKai) != tc.integ || len(k.SKar) != tc.integ {
			t.Errorf("%+v: ei/er/ai/ar = %d/%d/%d/%d, want %d/%d", tc.s, len(k.SKei), len(k.SKer), len(k.SKai), len(k.SKar), tc.enc, tc.integ)
		}
		// The seven keys are consecutive, distinct slices of one prf+ stream.
		if bytes.Equal(k.SKei, k.SKer) || bytes.Equal(k.SKpi, k.SKpr) {
			t.Errorf("%+v: directional keys are equal", tc.s)
		}
	}
}

func TestSuiteRejects(t *testing.T) {
	bad := []Suite{
		{EncrAESGCM16, 128, IntegHMACSHA256_128, PRFHMACSHA256}, // AEAD + integrity
		{EncrAESCBC, 128, IntegNone, PRFHMACSHA256},             // CBC without integrity
		{EncrAESCBC, 64, IntegHMACSHA256_128, PRFHMACSHA256},    // bad key length
		{EncrAESGCM16, 0, IntegNone, PRFHMACSHA256},             // missing key length
		{EncrChaCha20Poly1305, 128, IntegNone, PRFHMACSHA256},   // wrong key length
		{3, 0, IntegHMACSHA256_128, PRFHMACSHA256},              // ENCR_3DES
		{EncrAESCBC, 128, 2, PRFHMACSHA256},                     // AUTH_HMAC_SHA1_96
		{EncrAESCBC, 128, IntegHMACSHA256_128, 2},               // PRF_HMAC_SHA1
	}
	for _, s := range bad {
		if _, err := DeriveIKEKeys(s, []byte("g"), []byte("n"), []byte("n"), make([]byte, 8), make([]byte, 8)); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%+v: err %v, want ErrUnsupported", s, err)
		}
	}
	good := Suite{EncrAESCBC, 128, IntegHMACSHA256_128, PRFHMACSHA256}
	if _, err := DeriveIKEKeys(good, []byte("g"), []byte("n"), []byte("n"), make([]byte, 4), make([]byte, 8)); !errors.Is(err, ErrMalformed) {
		t.Errorf("short SPI: err %v, want ErrMalformed", err)
	}
	if _, err := DeriveIKEKeys(good, nil, []byte("n"), []byte("n"), make([]byte, 8), make([]byte, 8)); !errors.Is(err, ErrMalformed) {
		t.Errorf("empty g^ir: err %v, want ErrMalformed", err)
	}
}

func TestDeriveChildKeys(t *testing.T) {
	p, _ := NewPRF(PRFHMACSHA384)
	skd := bytes.Repeat([]byte{0xd}, p.Size())
	ni, nr := bytes.Repeat([]byte{0x11}, 32), bytes.Repeat([]byte{0x22}, 32)
	gir := bytes.Repeat([]byte{0x33}, 256)
	tests := []struct {
		esp        Suite
		enc, integ int
	}{
		{Suite{Encr: EncrAESGCM16, KeyBits: 128}, 20, 0},
		{Suite{Encr: EncrAESGCM16, KeyBits: 256}, 36, 0},
		{Suite{Encr: EncrChaCha20Poly1305}, 36, 0},
		{Suite{Encr: EncrAESCBC, KeyBits: 256, Integ: IntegHMACSHA256_128}, 32, 32},
		{Suite{Encr: EncrAESCBC, KeyBits: 128, Integ: IntegHMACSHA512_256}, 16, 64},
	}
	for _, tc := range tests {
		for _, pfs := range [][]byte{nil, gir} {
			c, err := DeriveChildKeys(PRFHMACSHA384, skd, tc.esp, pfs, ni, nr)
			if err != nil {
				t.Fatalf("%+v: %v", tc.esp, err)
			}
			// KEYMAT = prf+(SK_d, [g^ir] | Ni | Nr), split i->r encr,
			// i->r integ, r->i encr, r->i integ (RFC 7296 2.17).
			km, _ := p.Plus(skd, bytes.Join([][]byte{pfs, ni, nr}, nil), 2*(tc.enc+tc.integ))
			want := [][]byte{km[:tc.enc], km[tc.enc : tc.enc+tc.integ], km[tc.enc+tc.integ : 2*tc.enc+tc.integ], km[2*tc.enc+tc.integ:]}
			got := [][]byte{c.InitiatorEncr, c.InitiatorInteg, c.ResponderEncr, c.ResponderInteg}
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Errorf("%+v pfs=%v: key %d does not match KEYMAT split", tc.esp, pfs != nil, i)
				}
			}
		}
	}
	if _, err := DeriveChildKeys(PRFHMACSHA384, skd, Suite{Encr: EncrAESGCM16, KeyBits: 128, Integ: IntegHMACSHA256_128}, nil, ni, nr); !errors.Is(err, ErrUnsupported) {
		t.Errorf("gcm with integrity: err %v, want ErrUnsupported", err)
	}
	if _, err := DeriveChildKeys(PRFHMACSHA384, nil, Suite{Encr: EncrAESGCM16, KeyBits: 128}, nil, ni, nr); !errors.Is(err, ErrMalformed) {
		t.Errorf("empty SK_d: err %v, want ErrMalformed", err)
	}
}
