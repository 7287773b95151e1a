package esp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"

	"golang.org/x/crypto/chacha20poly1305"
)

// Cipher is the ESP encryption transform. The key length is taken from the
// key bytes, so AES-128 and AES-256 share one value, as in IKEv2 where the key
// length is an attribute of the transform.
type Cipher uint8

const (
	// AESGCM16 is AES-GCM with a 16-octet ICV (RFC 4106). Its key is the
	// 16- or 32-byte AES key followed by the 4-byte salt.
	AESGCM16 Cipher = iota + 1
	// ChaCha20Poly1305 is RFC 7634. Its key is the 32-byte key followed by
	// the 4-byte salt.
	ChaCha20Poly1305
	// AESCBC is AES-CBC (RFC 3602) with a 16- or 32-byte key; it needs an
	// Integrity transform.
	AESCBC
)

func (c Cipher) String() string {
	switch c {
	case AESGCM16:
		return "aesgcm16"
	case ChaCha20Poly1305:
		return "chacha20poly1305"
	case AESCBC:
		return "aescbc"
	}
	return fmt.Sprintf("cipher(%d)", uint8(c))
}

// Integrity is the ESP integrity transform used with AESCBC (RFC 4868).
type Integrity uint8

const (
	// IntegrityNone goes with the AEAD ciphers.
	IntegrityNone Integrity = iota
	HMACSHA256128
	HMACSHA384192
	HMACSHA512256
)

func (i Integrity) String() string {
	switch i {
	case IntegrityNone:
		return "none"
	case HMACSHA256128:
		return "hmac-sha256-128"
	case HMACSHA384192:
		return "hmac-sha384-192"
	case HMACSHA512256:
		return "hmac-sha512-256"
	}
	return fmt.Sprintf("integrity(%d)", uint8(i))
}

// keyLen is the key length RFC 4868 prescribes: the full hash output.
func (i Integrity) keyLen() int {
	switch i {
	case HMACSHA256128:
		return 32
	case HMACSHA384192:
		return 48
	case HMACSHA512256:
		return 64
	}
	return 0
}

// icvLen is the truncated length RFC 4868 prescribes: half the hash output.
func (i Integrity) icvLen() int { return i.keyLen() / 2 }

func (i Integrity) newHash() func() hash.Hash {
	switch i {
	case HMACSHA256128:
		return sha256.New
	case HMACSHA384192:
		return sha512.New384
	case HMACSHA512256:
		return sha512.New
	}
	return nil
}

const saltLen = 4

var errKeyLen = errors.New("bad key length")

// transform is what one packet needs from the algorithm: sizes and the
// primitives, all safe for concurrent use except through cbcState.
type transform struct {
	aead    cipher.AEAD // AEAD ciphers
	salt    [saltLen]byte
	block   cipher.Block // AESCBC
	integ   Integrity
	authKey []byte
	ivLen   int
	icvLen  int
	align   int // the payload, pad length and next header end on this
}

func newTransform(c Cipher, integ Integrity, encKey, authKey []byte) (*transform, error) {
	t := &transform{integ: integ}
	switch c {
	case AESGCM16, ChaCha20Poly1305:
		if integ != IntegrityNone {
			return nil, fmt.Errorf("%v with %v: combined-mode cipher takes no integrity transform", c, integ)
		}
		if len(authKey) != 0 {
			return nil, errors.New("auth key given for combined-mode cipher")
		}
		if len(encKey) < saltLen {
			return nil, fmt.Errorf("%v: %w %d", c, errKeyLen, len(encKey))
		}
		key := encKey[:len(encKey)-saltLen]
		copy(t.salt[:], encKey[len(key):])
		var err error
		if c == AESGCM16 {
			if len(key) != 16 && len(key) != 32 {
				return nil, fmt.Errorf("%v: %w %d", c, errKeyLen, len(encKey))
			}
			var b cipher.Block
			if b, err = aes.NewCipher(key); err == nil {
				t.aead, err = cipher.NewGCM(b)
			}
		} else {
			if len(key) != chacha20poly1305.KeySize {
				return nil, fmt.Errorf("%v: %w %d", c, errKeyLen, len(encKey))
			}
			t.aead, err = chacha20poly1305.New(key)
		}
		if err != nil {
			return nil, fmt.Errorf("%v: %w", c, err)
		}
		t.ivLen, t.icvLen, t.align = 8, t.aead.Overhead(), 4
	case AESCBC:
		if integ.keyLen() == 0 {
			return nil, fmt.Errorf("%v needs an integrity transform", c)
		}
		if len(encKey) != 16 && len(encKey) != 32 {
			return nil, fmt.Errorf("%v: %w %d", c, errKeyLen, len(encKey))
		}
		if len(authKey) != integ.keyLen() {
			return nil, fmt.Errorf("%v: auth key: %w %d", integ, errKeyLen, len(authKey))
		}
		b, err := aes.NewCipher(encKey)
		if err != nil {
			return nil, fmt.Errorf("%v: %w", c, err)
		}
		t.block = b
		t.authKey = append([]byte(nil), authKey...)
		t.ivLen, t.icvLen, t.align = aes.BlockSize, integ.icvLen(), aes.BlockSize
	default:
		return nil, fmt.Errorf("unknown cipher %v", c)
	}
	return t, nil
}
