package crypto

import (
	"fmt"
)

// aeadSaltLen is the implicit salt that follows the cipher key in the
// keying material for AES-GCM (RFC 4106 8.1, RFC 5282) and for
// ChaCha20-Poly1305 (RFC 7634 2).
const aeadSaltLen = 4

// spiLen is the length of an IKE SPI.
const spiLen = 8

// IsAEAD reports whether encr is a combined-mode cipher, which must be
// negotiated without an integrity transform.
func IsAEAD(encr uint16) bool {
	return encr == EncrAESGCM16 || encr == EncrChaCha20Poly1305
}

// EncrKeyLen returns how many bytes of keying material an encryption
// transform takes, given its Key Length attribute in bits. For the AEAD
// ciphers this includes the 4-byte salt, so the same length serves for
// SK_ei/SK_er and for ESP KEYMAT. ChaCha20-Poly1305 has a fixed 256-bit key
// and is negotiated without a Key Length attribute (RFC 7634), so 0 is
// its normal keyBits; 256 is tolerated.
func EncrKeyLen(encr uint16, keyBits int) (int, error) {
	switch encr {
	case EncrAESCBC, EncrAESGCM16:
		switch keyBits {
		case 128, 192, 256:
		default:
			return 0, fmt.Errorf("encryption %d key length %d bits: %w", encr, keyBits, ErrUnsupported)
		}
		if encr == EncrAESGCM16 {
			return keyBits/8 + aeadSaltLen, nil
		}
		return keyBits / 8, nil
	case EncrChaCha20Poly1305:
		if keyBits != 0 && keyBits != 256 {
			return 0, fmt.Errorf("encryption %d key length %d bits: %w", encr, keyBits, ErrUnsupported)
		}
		return 32 + aeadSaltLen, nil
	}
	return 0, fmt.Errorf("encryption %d: %w", encr, ErrUnsupported)
}

// Suite is a negotiated set of transforms. PRF is used for IKE SAs only;
// Child SA suites leave it zero.
type Suite struct {
	Encr    uint16 // Encr* transform ID
	KeyBits int    // Key Length attribute in bits; 0 for ChaCha20-Poly1305
	Integ   uint16 // Integ* transform ID; IntegNone with an AEAD cipher
	PRF     uint16 // PRF* transform ID (IKE SA only)
}

// keyLens validates the cipher/integrity combination and returns the
// encryption and integrity key lengths.
func (s Suite) keyLens() (encLen, integLen int, err error) {
	encLen, err = EncrKeyLen(s.Encr, s.KeyBits)
	if err != nil {
		return 0, 0, err
	}
	if IsAEAD(s.Encr) {
		// RFC 5282, RFC 7634: an AEAD cipher carries its own
		// integrity, a separate integrity transform must not be used.
		if s.Integ != IntegNone {
			return 0, 0, fmt.Errorf("aead cipher %d with integrity %d: %w", s.Encr, s.Integ, ErrUnsupported)
		}
		return encLen, 0, nil
	}
	if s.Integ == IntegNone {
		return 0, 0, fmt.Errorf("cipher %d without integrity: %w", s.Encr, ErrUnsupported)
	}
	integLen, err = IntegKeyLen(s.Integ)
	if err != nil {
		return 0, 0, err
	}
	return encLen, integLen, nil
}

// IKEKeys holds the seven secrets of an IKE SA (RFC 7296 2.14). SKai and
// SKar are empty with an AEAD cipher; SKei and SKer then include the salt.
type IKEKeys struct {
	SKd, SKai, SKar, SKei, SKer, SKpi, SKpr []byte
}

// SKEYSEED computes prf(Ni | Nr, g^ir) for a new IKE SA (RFC 7296 2.14).
// HMAC accepts the variable-length nonce key as is (RFC 4868 2.1.2).
func SKEYSEED(prfID uint16, gir, ni, nr []byte) ([]byte, error) {
	p, err := NewPRF(prfID)
	if err != nil {
		return nil, err
	}
	if len(gir) == 0 || len(ni) == 0 || len(nr) == 0 {
		return nil, fmt.Errorf("skeyseed: empty input: %w", ErrMalformed)
	}
	key := make([]byte, 0, len(ni)+len(nr))
	key = append(append(key, ni...), nr...)
	return p.Compute(key, gir), nil
}

// RekeySKEYSEED computes prf(SK_d (old), g^ir (new) | Ni | Nr) for an IKE
// SA rekey (RFC 7296 2.18). oldPRF is the PRF of the IKE SA being rekeyed:
// the rekey exchange belongs to the old SA, so its PRF computes SKEYSEED
// even when the new SA negotiated a different one.
func RekeySKEYSEED(oldPRF uint16, oldSKd, gir, ni, nr []byte) ([]byte, error) {
	p, err := NewPRF(oldPRF)
	if err != nil {
		return nil, err
	}
	if len(oldSKd) == 0 || len(gir) == 0 || len(ni) == 0 || len(nr) == 0 {
		return nil, fmt.Errorf("rekey skeyseed: empty input: %w", ErrMalformed)
	}
	return p.Compute(oldSKd, gir, ni, nr), nil
}

// DeriveIKEKeys derives the keys of a new IKE SA from the IKE_SA_INIT
// exchange: SKEYSEED = prf(Ni | Nr, g^ir), then
// {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} =
// prf+(SKEYSEED, Ni | Nr | SPIi | SPIr) (RFC 7296 2.14).
func DeriveIKEKeys(s Suite, gir, ni, nr, spii, spir []byte) (*IKEKeys, error) {
	seed, err := SKEYSEED(s.PRF, gir, ni, nr)
	if err != nil {
		return nil, err
	}
	return expandIKEKeys(s, seed, ni, nr, spii, spir)
}

// DeriveRekeyedIKEKeys derives the keys of the IKE SA that replaces an
// existing one in a CREATE_CHILD_SA exchange (RFC 7296 2.18). s is the new
// SA's suite (its PRF runs prf+); oldPRF and oldSKd come from the SA being
// rekeyed; spii and spir are the new SA's SPIs.
func DeriveRekeyedIKEKeys(oldPRF uint16, oldSKd []byte, s Suite, gir, ni, nr, spii, spir []byte) (*IKEKeys, error) {
	seed, err := RekeySKEYSEED(oldPRF, oldSKd, gir, ni, nr)
	if err != nil {
		return nil, err
	}
	return expandIKEKeys(s, seed, ni, nr, spii, spir)
}

func expandIKEKeys(s Suite, skeyseed, ni, nr, spii, spir []byte) (*IKEKeys, error) {
	if len(spii) != spiLen || len(spir) != spiLen {
		return nil, fmt.Errorf("ike spi lengths %d/%d, want %d: %w", len(spii), len(spir), spiLen, ErrMalformed)
	}
	p, err := NewPRF(s.PRF)
	if err != nil {
		return nil, err
	}
	encLen, integLen, err := s.keyLens()
	if err != nil {
		return nil, err
	}
	// SK_d, SK_pi and SK_pr take the PRF's preferred key length, which for
	// the HMAC PRFs is the output length (RFC 7296 2.14, RFC 4868 2.1.2).
	prfLen := p.Size()
	total := 3*prfLen + 2*integLen + 2*encLen
	seed := make([]byte, 0, len(ni)+len(nr)+2*spiLen)
	seed = append(append(append(append(seed, ni...), nr...), spii...), spir...)
	km, err := p.Plus(skeyseed, seed, total)
	if err != nil {
		return nil, err
	}
	next := func(n int) []byte {
		k := km[:n:n]
		km = km[n:]
		return k
	}
	k := &IKEKeys{}
	k.SKd = next(prfLen)
	k.SKai = next(integLen)
	k.SKar = next(integLen)
	k.SKei = next(encLen)
	k.SKer = next(encLen)
	k.SKpi = next(prfLen)
	k.SKpr = next(prfLen)
	return k, nil
}

// ChildKeys holds the ESP keying material of a Child SA pair. Initiator*
// protect traffic from the initiator to the responder, Responder* the
// reverse. Encryption keys of AEAD ciphers end with the 4-byte salt
// (RFC 4106 8.1, RFC 7634 2); integrity keys are then empty.
type ChildKeys struct {
	InitiatorEncr, InitiatorInteg []byte
	ResponderEncr, ResponderInteg []byte
}

// DeriveChildKeys derives KEYMAT = prf+(SK_d, [g^ir (new)] | Ni | Nr) for a
// Child SA (RFC 7296 2.17) and splits it: all keys for initiator-to-
// responder traffic first, then those for the reverse direction, each
// direction taking its encryption key before its integrity key. gir is
// the shared secret of an optional CREATE_CHILD_SA key exchange (PFS) and
// nil without one; ni and nr are the nonces of the exchange that created
// the Child SA. esp.PRF is ignored: the IKE SA's PRF (prfID) is used.
func DeriveChildKeys(prfID uint16, skd []byte, esp Suite, gir, ni, nr []byte) (*ChildKeys, error) {
	p, err := NewPRF(prfID)
	if err != nil {
		return nil, err
	}
	if len(skd) == 0 || len(ni) == 0 || len(nr) == 0 {
		return nil, fmt.Errorf("child keymat: empty input: %w", ErrMalformed)
	}
	encLen, integLen, err := esp.keyLens()
	if err != nil {
		return nil, err
	}
	seed := make([]byte, 0, len(gir)+len(ni)+len(nr))
	seed = append(append(append(seed, gir...), ni...), nr...)
	km, err := p.Plus(skd, seed, 2*(encLen+integLen))
	if err != nil {
		return nil, err
	}
	next := func(n int) []byte {
		k := km[:n:n]
		km = km[n:]
		return k
	}
	c := &ChildKeys{}
	c.InitiatorEncr = next(encLen)
	c.InitiatorInteg = next(integLen)
	c.ResponderEncr = next(encLen)
	c.ResponderInteg = next(integLen)
	return c, nil
}
