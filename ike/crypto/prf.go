package crypto

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
)

// maxPRFPlusIterations is the largest prf+ block counter: the counter is a
// single octet starting at 0x01, so RFC 7296 2.13 limits prf+ output to
// 255 PRF blocks.
const maxPRFPlusIterations = 255

// ErrPRFPlusTooLong reports a prf+ request beyond 255 blocks of output.
var ErrPRFPlusTooLong = errors.New("prf+ output longer than 255 blocks")

// PRF is one of the HMAC-SHA2 pseudorandom functions of RFC 4868. It is
// immutable and safe for concurrent use.
type PRF struct {
	id      uint16
	newHash func() hash.Hash
	size    int
}

// NewPRF returns the PRF for an IKEv2 PRF transform ID.
func NewPRF(id uint16) (*PRF, error) {
	switch id {
	case PRFHMACSHA256:
		return &PRF{id: id, newHash: sha256.New, size: sha256.Size}, nil
	case PRFHMACSHA384:
		return &PRF{id: id, newHash: sha512.New384, size: sha512.Size384}, nil
	case PRFHMACSHA512:
		return &PRF{id: id, newHash: sha512.New, size: sha512.Size}, nil
	}
	return nil, fmt.Errorf("prf %d: %w", id, ErrUnsupported)
}

// ID returns the IKEv2 transform ID.
func (p *PRF) ID() uint16 { return p.id }

// Size returns the output length in bytes. RFC 4868 2.1.2 also makes it
// the preferred key length: SK_d, SK_pi and SK_pr have this length.
func (p *PRF) Size() int { return p.size }

// Compute returns prf(key, data[0] | data[1] | ...). HMAC takes keys of
// any length (RFC 4868 2.1.2), so the key is never rejected; passing the
// parts separately saves callers from concatenating them.
func (p *PRF) Compute(key []byte, data ...[]byte) []byte {
	m := hmac.New(p.newHash, key)
	for _, d := range data {
		m.Write(d)
	}
	return m.Sum(nil)
}

// Plus returns the first n bytes of prf+(key, seed) (RFC 7296 2.13):
//
//	T1 = prf(K, S | 0x01), Tk = prf(K, Tk-1 | S | k), prf+ = T1 | T2 | ...
//
// More than 255 blocks cannot be produced because the counter is one
// octet; such a request returns ErrPRFPlusTooLong rather than wrapping.
func (p *PRF) Plus(key, seed []byte, n int) ([]byte, error) {
	if n < 0 {
		return nil, fmt.Errorf("prf+ length %d: %w", n, ErrMalformed)
	}
	blocks := (n + p.size - 1) / p.size
	if blocks > maxPRFPlusIterations {
		return nil, fmt.Errorf("prf+ %d bytes with %d-byte prf: %w", n, p.size, ErrPRFPlusTooLong)
	}
	out := make([]byte, 0, blocks*p.size)
	m := hmac.New(p.newHash, key)
	var prev []byte
	for i := 1; i <= blocks; i++ {
		m.Reset()
		m.Write(prev)
		m.Write(seed)
		m.Write([]byte{byte(i)})
		start := len(out)
		out = m.Sum(out)
		prev = out[start:]
	}
	return out[:n], nil
}
