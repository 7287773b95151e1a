package crypto

import (
	"crypto/ecdh"
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"math/big"
	"sync"
)

// KeyExchange is one side of an ephemeral Diffie-Hellman exchange in a
// KE payload. PublicKey returns the Key Exchange Data in IKEv2 encoding
// and SharedSecret the g^ir that enters SKEYSEED or KEYMAT.
type KeyExchange interface {
	// Group returns the IKEv2 transform ID of the group.
	Group() uint16
	// PublicKey returns this side's Key Exchange Data.
	PublicKey() []byte
	// SharedSecret validates the peer's Key Exchange Data and returns
	// the shared secret, or an error wrapping ErrInvalidPublicKey.
	SharedSecret(peer []byte) ([]byte, error)
}

// NewKeyExchange returns a fresh key pair for a group from crypto/rand.
func NewKeyExchange(group uint16) (KeyExchange, error) {
	switch group {
	case GroupMODP2048, GroupMODP3072, GroupMODP4096:
		g, err := lookupMODP(group)
		if err != nil {
			return nil, err
		}
		x, err := g.randomExponent()
		if err != nil {
			return nil, err
		}
		return newMODPKeyExchange(g, x), nil
	}
	curve, err := ecdhCurve(group)
	if err != nil {
		return nil, err
	}
	priv, err := curve.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("group %d keygen: %w", group, err)
	}
	return &ecdhKeyExchange{group: group, priv: priv}, nil
}

// NewKeyExchangeFromPrivate returns a key pair with a fixed private key,
// for known-answer tests and reproducible interop traces: a big-endian
// exponent for MODP groups (1 < x < p-1), a big-endian scalar of the
// curve's length for ECP groups, and the 32-octet X25519 scalar for
// Curve25519. Production code must use NewKeyExchange.
func NewKeyExchangeFromPrivate(group uint16, priv []byte) (KeyExchange, error) {
	switch group {
	case GroupMODP2048, GroupMODP3072, GroupMODP4096:
		g, err := lookupMODP(group)
		if err != nil {
			return nil, err
		}
		x := new(big.Int).SetBytes(priv)
		if x.Cmp(big.NewInt(1)) <= 0 || x.Cmp(g.pMinus1) >= 0 {
			return nil, fmt.Errorf("group %d: private exponent out of range: %w", group, ErrMalformed)
		}
		return newMODPKeyExchange(g, x), nil
	}
	curve, err := ecdhCurve(group)
	if err != nil {
		return nil, err
	}
	k, err := curve.NewPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("group %d private key: %w", group, ErrMalformed)
	}
	return &ecdhKeyExchange{group: group, priv: k}, nil
}

// PublicKeyLen returns the length of a group's Key Exchange Data, which a
// KE payload must match exactly (RFC 7296 3.4, RFC 5903, RFC 8031).
func PublicKeyLen(group uint16) (int, error) {
	switch group {
	case GroupMODP2048, GroupMODP3072, GroupMODP4096:
		g, err := lookupMODP(group)
		if err != nil {
			return 0, err
		}
		return g.size, nil
	case GroupECP256:
		return 64, nil
	case GroupECP384:
		return 96, nil
	case GroupECP521:
		return 132, nil
	case GroupCurve25519:
		return 32, nil
	}
	return 0, fmt.Errorf("group %d: %w", group, ErrUnsupported)
}

func ecdhCurve(group uint16) (ecdh.Curve, error) {
	switch group {
	case GroupECP256:
		return ecdh.P256(), nil
	case GroupECP384:
		return ecdh.P384(), nil
	case GroupECP521:
		return ecdh.P521(), nil
	case GroupCurve25519:
		return ecdh.X25519(), nil
	}
	return nil, fmt.Errorf("group %d: %w", group, ErrUnsupported)
}

// ecdhKeyExchange covers the ECP groups and Curve25519, whose arithmetic
// and point validation crypto/ecdh provides.
type ecdhKeyExchange struct {
	group uint16
	priv  *ecdh.PrivateKey
}

func (e *ecdhKeyExchange) Group() uint16 { return e.group }

// PublicKey: RFC 5903 encodes an ECP point as x | y without the SEC1
// 0x04 prefix that crypto/ecdh produces; X25519 keys are used as is
// (RFC 8031).
func (e *ecdhKeyExchange) PublicKey() []byte {
	b := e.priv.PublicKey().Bytes()
	if e.group != GroupCurve25519 {
		b = b[1:]
	}
	return b
}

func (e *ecdhKeyExchange) SharedSecret(peer []byte) ([]byte, error) {
	want, err := PublicKeyLen(e.group)
	if err != nil {
		return nil, err
	}
	if len(peer) != want {
		return nil, fmt.Errorf("group %d: public value %d octets, want %d: %w", e.group, len(peer), want, ErrInvalidPublicKey)
	}
	enc := peer
	if e.group != GroupCurve25519 {
		enc = make([]byte, 1+len(peer))
		enc[0] = 4 // SEC1 uncompressed point
		copy(enc[1:], peer)
	}
	// NewPublicKey checks that an ECP point lies on the curve and is not
	// the point at infinity (the validation RFC 6989 requires).
	pub, err := e.priv.Curve().NewPublicKey(enc)
	if err != nil {
		return nil, fmt.Errorf("group %d: %w", e.group, ErrInvalidPublicKey)
	}
	// For the NIST curves ECDH returns the x coordinate only, which is
	// the IKEv2 shared secret (RFC 5903). For X25519 it fails on an
	// all-zero result, i.e. a low-order peer point, which RFC 8031
	// requires the recipient to reject.
	s, err := e.priv.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("group %d: %w", e.group, ErrInvalidPublicKey)
	}
	if e.group == GroupCurve25519 && subtle.ConstantTimeCompare(s, make([]byte, len(s))) == 1 {
		// Defence in depth should crypto/ecdh ever stop rejecting it.
		return nil, fmt.Errorf("group %d: all-zero shared secret: %w", e.group, ErrInvalidPublicKey)
	}
	return s, nil
}

// modpGroup is a MODP group of RFC 3526 with generator 2.
type modpGroup struct {
	id      uint16
	p       *big.Int
	pMinus1 *big.Int
	size    int // octets in p: the public value and shared secret length
	// expBits is the private exponent length. NIST SP 800-56A asks for
	// at least twice the group's security strength (2048: 112 bits,
	// 3072: 128, 4096: about 150); these leave a margin.
	expBits int
}

// modpGroups parses the primes once; the table is read-only afterwards.
var modpGroups = sync.OnceValue(func() map[uint16]*modpGroup {
	mk := func(id uint16, hexP string, expBits int) *modpGroup {
		p, ok := new(big.Int).SetString(hexP, 16)
		if !ok {
			panic("ike/crypto: bad built-in MODP prime")
		}
		return &modpGroup{
			id:      id,
			p:       p,
			pMinus1: new(big.Int).Sub(p, big.NewInt(1)),
			size:    (p.BitLen() + 7) / 8,
			expBits: expBits,
		}
	}
	return map[uint16]*modpGroup{
		GroupMODP2048: mk(GroupMODP2048, modp2048Hex, 256),
		GroupMODP3072: mk(GroupMODP3072, modp3072Hex, 320),
		GroupMODP4096: mk(GroupMODP4096, modp4096Hex, 384),
	}
})

func lookupMODP(group uint16) (*modpGroup, error) {
	g, ok := modpGroups()[group]
	if !ok {
		return nil, fmt.Errorf("group %d: %w", group, ErrUnsupported)
	}
	return g, nil
}

// randomExponent draws x uniformly from [2, 2^expBits). The primes are
// safe primes, so any such x is far below the subgroup order (p-1)/2.
func (g *modpGroup) randomExponent() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), uint(g.expBits))
	for {
		x, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("group %d keygen: %w", g.id, err)
		}
		if x.Cmp(big.NewInt(1)) > 0 {
			return x, nil
		}
	}
}

// modpKeyExchange is classic Diffie-Hellman over a MODP group. math/big
// exponentiation is not constant time; the exposure is limited because
// every private exponent is ephemeral and used for one exchange.
type modpKeyExchange struct {
	g   *modpGroup
	x   *big.Int
	pub []byte
}

func newMODPKeyExchange(g *modpGroup, x *big.Int) *modpKeyExchange {
	y := new(big.Int).Exp(big.NewInt(2), x, g.p)
	return &modpKeyExchange{g: g, x: x, pub: y.FillBytes(make([]byte, g.size))}
}

func (m *modpKeyExchange) Group() uint16 { return m.g.id }

// PublicKey returns g^x mod p left-padded to the length of p, as RFC 7296
// 3.4 requires.
func (m *modpKeyExchange) PublicKey() []byte { return append([]byte(nil), m.pub...) }

func (m *modpKeyExchange) SharedSecret(peer []byte) ([]byte, error) {
	if len(peer) != m.g.size {
		return nil, fmt.Errorf("group %d: public value %d octets, want %d: %w", m.g.id, len(peer), m.g.size, ErrInvalidPublicKey)
	}
	// 1 < y < p-1 excludes the values that confine the shared secret to
	// {0, 1, p-1} (RFC 6989, NIST SP 800-56A public key checks).
	y := new(big.Int).SetBytes(peer)
	if y.Cmp(big.NewInt(1)) <= 0 || y.Cmp(m.g.pMinus1) >= 0 {
		return nil, fmt.Errorf("group %d: public value out of range: %w", m.g.id, ErrInvalidPublicKey)
	}
	z := new(big.Int).Exp(y, m.x, m.g.p)
	if z.Cmp(big.NewInt(1)) <= 0 || z.Cmp(m.g.pMinus1) >= 0 {
		return nil, fmt.Errorf("group %d: degenerate shared secret: %w", m.g.id, ErrInvalidPublicKey)
	}
	// g^ir is the big-endian value zero-padded to the modulus length
	// (RFC 7296 2.14).
	return z.FillBytes(make([]byte, m.g.size)), nil
}
