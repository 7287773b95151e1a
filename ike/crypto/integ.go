package crypto

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"
)

// integParams describes one truncated HMAC integrity transform (RFC 4868):
// the key is as long as the hash output and the ICV is half of it.
type integParams struct {
	newHash func() hash.Hash
	keyLen  int
	icvLen  int
}

func lookupInteg(id uint16) (integParams, error) {
	switch id {
	case IntegHMACSHA256_128:
		return integParams{sha256.New, 32, 16}, nil
	case IntegHMACSHA384_192:
		return integParams{sha512.New384, 48, 24}, nil
	case IntegHMACSHA512_256:
		return integParams{sha512.New, 64, 32}, nil
	}
	return integParams{}, fmt.Errorf("integrity %d: %w", id, ErrUnsupported)
}

// IntegKeyLen returns the key length in bytes of an integrity transform;
// IntegNone (used with AEAD ciphers) has length 0.
func IntegKeyLen(id uint16) (int, error) {
	if id == IntegNone {
		return 0, nil
	}
	p, err := lookupInteg(id)
	if err != nil {
		return 0, err
	}
	return p.keyLen, nil
}

// Integrity is a keyed, truncated HMAC-SHA2 integrity transform. It is
// immutable and safe for concurrent use.
type Integrity struct {
	id uint16
	p  integParams
	// key is a private copy so that a caller reusing its buffer cannot
	// change the key under us.
	key []byte
}

// NewIntegrity returns the integrity transform id keyed with key, which
// must be exactly as long as the hash output (RFC 4868 2.1).
func NewIntegrity(id uint16, key []byte) (*Integrity, error) {
	p, err := lookupInteg(id)
	if err != nil {
		return nil, err
	}
	if len(key) != p.keyLen {
		return nil, fmt.Errorf("integrity %d: key length %d, want %d: %w", id, len(key), p.keyLen, ErrMalformed)
	}
	return &Integrity{id: id, p: p, key: append([]byte(nil), key...)}, nil
}

// ID returns the IKEv2 transform ID.
func (a *Integrity) ID() uint16 { return a.id }

// ICVLen returns the length of the truncated ICV in bytes.
func (a *Integrity) ICVLen() int { return a.p.icvLen }

// Sum appends the truncated HMAC of the concatenated data to dst.
func (a *Integrity) Sum(dst []byte, data ...[]byte) []byte {
	m := hmac.New(a.p.newHash, a.key)
	for _, d := range data {
		m.Write(d)
	}
	var buf [sha512.Size]byte
	full := m.Sum(buf[:0])
	return append(dst, full[:a.p.icvLen]...)
}

// Verify reports whether icv is the truncated HMAC of the data, in
// constant time so that a forger learns nothing from timing.
func (a *Integrity) Verify(icv []byte, data ...[]byte) bool {
	if len(icv) != a.p.icvLen {
		return false
	}
	var buf [sha512.Size / 2]byte
	return hmac.Equal(icv, a.Sum(buf[:0], data...))
}
