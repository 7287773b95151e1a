package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"

	"golang.org/x/crypto/chacha20poly1305"
)

// ErrIVExhausted reports that an AEAD sealer has used every 64-bit IV; the
// IKE SA must be rekeyed (it never happens in practice, but wrapping
// around would repeat a nonce).
var ErrIVExhausted = errors.New("aead iv space exhausted")

const (
	aeadIVLen  = 8  // explicit IV of RFC 5282 / RFC 7634
	aeadTagLen = 16 // ENCR_AES_GCM_16 and ChaCha20-Poly1305 tags
)

// SKCipher protects the body of an Encrypted (SK, RFC 7296 3.14) or
// Encrypted Fragment (SKF, RFC 7383) payload in one direction.
//
// The body is IV | ciphertext | ICV, where the plaintext is the inner
// payload chain followed by padding and a Pad Length octet. aad is the
// whole message in front of the IV: the IKE header, any payloads before
// the SK payload, and the SK payload header (4 octets) or the SKF header
// (8 octets, with Fragment Number and Total Fragments). Its length fields
// must already be final, so size the message with SealedLen first. The
// same aad serves as the AEAD associated data (RFC 5282, RFC 7634) and
// as the start of the data covered by the integrity checksum, which runs
// from the first octet of the IKE header to the end of the ciphertext.
//
// Implementations are safe for concurrent use.
type SKCipher interface {
	// IVLen returns the length of the IV at the start of the body.
	IVLen() int
	// ICVLen returns the length of the ICV or AEAD tag at its end.
	ICVLen() int
	// SealedLen returns the body length for n octets of inner payloads.
	SealedLen(n int) int
	// MaxPlaintextLen returns the most inner payload octets that fit in
	// a body of bodyLen octets, or -1 when none fit; used to size SKF
	// fragments.
	MaxPlaintextLen(bodyLen int) int
	// Seal encrypts and authenticates plaintext and appends the body
	// (IV | ciphertext | ICV) to dst.
	Seal(dst, aad, plaintext []byte) ([]byte, error)
	// Open checks and decrypts a body and appends the inner payloads,
	// padding removed, to dst. It fails with ErrMalformed for bodies of
	// impossible length or bad padding and with ErrAuth when the ICV does
	// not match; it never panics on any input.
	Open(dst, aad, body []byte) ([]byte, error)
}

// NewSKCipher returns the SK payload cipher for one direction of an IKE
// SA. encKey is SK_ei or SK_er, including the trailing 4-byte salt for the
// AEAD ciphers; integKey is SK_ai or SK_ar and empty for AEAD ciphers.
func NewSKCipher(encr uint16, keyBits int, integ uint16, encKey, integKey []byte) (SKCipher, error) {
	s := Suite{Encr: encr, KeyBits: keyBits, Integ: integ}
	encLen, integLen, err := s.keyLens()
	if err != nil {
		return nil, err
	}
	if len(encKey) != encLen || len(integKey) != integLen {
		return nil, fmt.Errorf("sk keys %d/%d octets, want %d/%d: %w", len(encKey), len(integKey), encLen, integLen, ErrMalformed)
	}
	switch encr {
	case EncrAESCBC:
		block, err := aes.NewCipher(encKey)
		if err != nil {
			return nil, fmt.Errorf("aes-cbc: %w", err)
		}
		mac, err := NewIntegrity(integ, integKey)
		if err != nil {
			return nil, err
		}
		return &cbcHMAC{block: block, mac: mac}, nil
	case EncrAESGCM16:
		block, err := aes.NewCipher(encKey[:encLen-aeadSaltLen])
		if err != nil {
			return nil, fmt.Errorf("aes-gcm: %w", err)
		}
		a, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("aes-gcm: %w", err)
		}
		return newSKAEAD(a, encKey[encLen-aeadSaltLen:])
	case EncrChaCha20Poly1305:
		a, err := chacha20poly1305.New(encKey[:encLen-aeadSaltLen])
		if err != nil {
			return nil, fmt.Errorf("chacha20-poly1305: %w", err)
		}
		return newSKAEAD(a, encKey[encLen-aeadSaltLen:])
	}
	return nil, fmt.Errorf("encryption %d: %w", encr, ErrUnsupported)
}

// SKCiphers returns the SK ciphers of an IKE SA for this end: seal
// protects the messages it sends (SK_ei/SK_ai for the original initiator,
// SK_er/SK_ar for the responder) and open checks those it receives.
// Build them once per IKE SA and keep them: the AEAD sealer's IV counter
// lives in the returned value.
func (k *IKEKeys) SKCiphers(s Suite, initiator bool) (seal, open SKCipher, err error) {
	ie, ia, re, ra := k.SKei, k.SKai, k.SKer, k.SKar
	if !initiator {
		ie, ia, re, ra = re, ra, ie, ia
	}
	seal, err = NewSKCipher(s.Encr, s.KeyBits, s.Integ, ie, ia)
	if err != nil {
		return nil, nil, err
	}
	open, err = NewSKCipher(s.Encr, s.KeyBits, s.Integ, re, ra)
	if err != nil {
		return nil, nil, err
	}
	return seal, open, nil
}

// grow appends n octets to dst and returns the extended slice and the new
// tail, reallocating only when dst lacks capacity.
func grow(dst []byte, n int) (whole, tail []byte) {
	total := len(dst) + n
	if cap(dst) >= total {
		whole = dst[:total]
	} else {
		whole = make([]byte, total)
		copy(whole, dst)
	}
	return whole, whole[len(dst):]
}

// cbcHMAC is AES-CBC with a truncated HMAC-SHA2 checksum (RFC 7296 3.14).
type cbcHMAC struct {
	block cipher.Block
	mac   *Integrity
}

func (c *cbcHMAC) IVLen() int  { return aes.BlockSize }
func (c *cbcHMAC) ICVLen() int { return c.mac.ICVLen() }

// SealedLen uses the minimum padding: inner payloads plus the Pad Length
// octet rounded up to the AES block size.
func (c *cbcHMAC) SealedLen(n int) int {
	padded := (n + 1 + aes.BlockSize - 1) / aes.BlockSize * aes.BlockSize
	return aes.BlockSize + padded + c.mac.ICVLen()
}

func (c *cbcHMAC) MaxPlaintextLen(bodyLen int) int {
	ct := bodyLen - aes.BlockSize - c.mac.ICVLen()
	if ct < aes.BlockSize {
		return -1
	}
	return ct/aes.BlockSize*aes.BlockSize - 1
}

func (c *cbcHMAC) Seal(dst, aad, plaintext []byte) ([]byte, error) {
	n := c.SealedLen(len(plaintext))
	whole, body := grow(dst, n)
	iv := body[:aes.BlockSize]
	ct := body[aes.BlockSize : n-c.mac.ICVLen()]
	// CBC needs an unpredictable IV (RFC 7296 3.14), hence crypto/rand
	// rather than a counter.
	if _, err := rand.Read(iv); err != nil {
		return nil, fmt.Errorf("aes-cbc iv: %w", err)
	}
	copy(ct, plaintext)
	// Padding content is the sender's choice; zeros leak nothing since it
	// is encrypted. The Pad Length octet counts the padding only.
	padLen := len(ct) - len(plaintext) - 1
	clear(ct[len(plaintext) : len(ct)-1])
	ct[len(ct)-1] = byte(padLen)
	cipher.NewCBCEncrypter(c.block, iv).CryptBlocks(ct, ct)
	c.mac.Sum(body[:n-c.mac.ICVLen()], aad, body[:n-c.mac.ICVLen()])
	return whole, nil
}

func (c *cbcHMAC) Open(dst, aad, body []byte) ([]byte, error) {
	icvLen := c.mac.ICVLen()
	if len(body) < aes.BlockSize+aes.BlockSize+icvLen {
		return nil, fmt.Errorf("sk body %d octets: %w", len(body), ErrMalformed)
	}
	signed, icv := body[:len(body)-icvLen], body[len(body)-icvLen:]
	// Authenticate before touching the ciphertext so that no padding
	// oracle exists.
	if !c.mac.Verify(icv, aad, signed) {
		return nil, fmt.Errorf("sk payload: %w", ErrAuth)
	}
	iv, ct := signed[:aes.BlockSize], signed[aes.BlockSize:]
	if len(ct)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("sk ciphertext %d octets not a block multiple: %w", len(ct), ErrMalformed)
	}
	whole, pt := grow(dst, len(ct))
	cipher.NewCBCDecrypter(c.block, iv).CryptBlocks(pt, ct)
	return stripPadding(whole, len(dst))
}

// stripPadding removes the padding and Pad Length octet from the
// plaintext that starts at whole[start:]. The receiver accepts any pad
// length that fits (RFC 7296 3.14) and does not check padding content.
func stripPadding(whole []byte, start int) ([]byte, error) {
	pt := whole[start:]
	if len(pt) == 0 {
		return nil, fmt.Errorf("sk plaintext empty: %w", ErrMalformed)
	}
	padLen := int(pt[len(pt)-1])
	if padLen+1 > len(pt) {
		return nil, fmt.Errorf("sk pad length %d exceeds plaintext %d: %w", padLen, len(pt), ErrMalformed)
	}
	return whole[:len(whole)-padLen-1], nil
}

// skAEAD is AES-GCM-16 (RFC 5282) or ChaCha20-Poly1305 (RFC 7634) in the
// SK payload: the 12-octet nonce is the 4-octet salt from the keying
// material followed by the 8-octet explicit IV carried in the payload.
type skAEAD struct {
	aead cipher.AEAD
	salt [aeadSaltLen]byte
	// GCM and ChaCha20-Poly1305 lose confidentiality and integrity if a
	// nonce repeats under one key, so IVs come from a counter rather than
	// from random bits. Each SK key has one sender and this value is its
	// only sealer (SKCiphers builds one per direction), so a counter is
	// unique by construction; random 64-bit IVs would only be unique with
	// high probability. The counter starts at a random offset so that even
	// a sealer built twice by mistake for the same key almost surely uses
	// disjoint IVs. IVs need not be unpredictable for these modes.
	ivBase uint64
	ivUsed atomic.Uint64
}

func newSKAEAD(a cipher.AEAD, salt []byte) (*skAEAD, error) {
	s := &skAEAD{aead: a}
	copy(s.salt[:], salt)
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("aead iv base: %w", err)
	}
	s.ivBase = binary.BigEndian.Uint64(b[:])
	return s, nil
}

func (s *skAEAD) IVLen() int  { return aeadIVLen }
func (s *skAEAD) ICVLen() int { return aeadTagLen }

// SealedLen: these ciphers need no alignment, so the padding is empty and
// only the Pad Length octet (0) follows the inner payloads (RFC 5282,
// RFC 7634).
func (s *skAEAD) SealedLen(n int) int { return aeadIVLen + n + 1 + aeadTagLen }

func (s *skAEAD) MaxPlaintextLen(bodyLen int) int {
	n := bodyLen - aeadIVLen - aeadTagLen - 1
	if n < 0 {
		return -1
	}
	return n
}

func (s *skAEAD) nonce(iv []byte) [12]byte {
	var n [12]byte
	copy(n[:aeadSaltLen], s.salt[:])
	copy(n[aeadSaltLen:], iv)
	return n
}

func (s *skAEAD) Seal(dst, aad, plaintext []byte) ([]byte, error) {
	used := s.ivUsed.Add(1)
	if used == 0 {
		// Keep failing rather than restart the IV sequence.
		s.ivUsed.Store(^uint64(0))
		return nil, ErrIVExhausted
	}
	n := s.SealedLen(len(plaintext))
	whole, body := grow(dst, n)
	iv := body[:aeadIVLen]
	binary.BigEndian.PutUint64(iv, s.ivBase+used-1)
	// Build inner payloads | Pad Length (0) in place, then encrypt it
	// where it lies; the tag is appended behind it.
	pt := body[aeadIVLen : aeadIVLen+len(plaintext)+1]
	copy(pt, plaintext)
	pt[len(pt)-1] = 0
	nonce := s.nonce(iv)
	s.aead.Seal(pt[:0], nonce[:], pt, aad)
	return whole, nil
}

func (s *skAEAD) Open(dst, aad, body []byte) ([]byte, error) {
	if len(body) < aeadIVLen+1+aeadTagLen {
		return nil, fmt.Errorf("sk body %d octets: %w", len(body), ErrMalformed)
	}
	nonce := s.nonce(body[:aeadIVLen])
	start := len(dst)
	whole, err := s.aead.Open(dst, nonce[:], body[aeadIVLen:], aad)
	if err != nil {
		return nil, fmt.Errorf("sk payload: %w", ErrAuth)
	}
	return stripPadding(whole, start)
}
