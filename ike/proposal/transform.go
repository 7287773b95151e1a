// Package proposal parses strongSwan-style IKEv2 and ESP proposal strings
// into typed transforms that carry the IANA IKEv2 transform IDs (RFC 7296
// section 3.3.2). Only strong algorithms are representable: weak ones are
// rejected at parse time with an error that names a strong replacement.
package proposal

import (
	"crypto"
	"strconv"
)

// Protocol is the IKEv2 protocol ID a proposal is for (RFC 7296 3.3.1).
type Protocol uint8

// Protocol IDs from the IANA "IKEv2 Security Protocol Identifiers" registry.
const (
	ProtocolIKE Protocol = 1
	ProtocolESP Protocol = 3
)

func (p Protocol) String() string {
	switch p {
	case ProtocolIKE:
		return "IKE"
	case ProtocolESP:
		return "ESP"
	}
	return "Protocol(" + strconv.Itoa(int(p)) + ")"
}

// Encr is an IKEv2 encryption algorithm (transform type 1).
type Encr uint16

// Encryption transform IDs.
const (
	EncrAESCBC           Encr = 12
	EncrAESGCM16         Encr = 20
	EncrChaCha20Poly1305 Encr = 28
)

func (e Encr) String() string {
	switch e {
	case EncrAESCBC:
		return "ENCR_AES_CBC"
	case EncrAESGCM16:
		return "ENCR_AES_GCM_16"
	case EncrChaCha20Poly1305:
		return "ENCR_CHACHA20_POLY1305"
	}
	return "Encr(" + strconv.Itoa(int(e)) + ")"
}

// IsAEAD reports whether the algorithm authenticates as well as encrypts,
// in which case a proposal carries no integrity transform.
func (e Encr) IsAEAD() bool {
	return e == EncrAESGCM16 || e == EncrChaCha20Poly1305
}

// KeySizes returns the allowed key lengths in bits.
func (e Encr) KeySizes() []int {
	switch e {
	case EncrAESCBC, EncrAESGCM16:
		return []int{128, 192, 256}
	case EncrChaCha20Poly1305:
		return []int{256}
	}
	return nil
}

// HasKeyLengthAttr reports whether the transform carries a Key Length
// attribute on the wire. RFC 7634 forbids it for ChaCha20-Poly1305, whose
// key size is fixed.
func (e Encr) HasKeyLengthAttr() bool {
	return e == EncrAESCBC || e == EncrAESGCM16
}

// BlockSize is the cipher block size in bytes that ESP pads to; the AEAD
// modes are stream-like (1), ESP still aligns their trailer to 4 bytes.
func (e Encr) BlockSize() int {
	switch e {
	case EncrAESCBC:
		return 16
	case EncrAESGCM16, EncrChaCha20Poly1305:
		return 1
	}
	return 0
}

// IVSize is the length in bytes of the explicit IV carried in each packet.
func (e Encr) IVSize() int {
	switch e {
	case EncrAESCBC:
		return 16
	case EncrAESGCM16, EncrChaCha20Poly1305:
		return 8
	}
	return 0
}

// ICVSize is the length in bytes of the AEAD tag; 0 for non-AEAD ciphers,
// whose ICV comes from the integrity transform.
func (e Encr) ICVSize() int {
	if e.IsAEAD() {
		return 16
	}
	return 0
}

// SaltSize is the number of extra keying bytes taken from the KDF output
// as nonce salt (RFC 4106 section 8.1, RFC 7634 section 2).
func (e Encr) SaltSize() int {
	if e.IsAEAD() {
		return 4
	}
	return 0
}

// Integ is an IKEv2 integrity algorithm (transform type 3).
type Integ uint16

// Integrity transform IDs.
const (
	IntegNone             Integ = 0
	IntegHMACSHA2_256_128 Integ = 12
	IntegHMACSHA2_384_192 Integ = 13
	IntegHMACSHA2_512_256 Integ = 14
)

func (i Integ) String() string {
	switch i {
	case IntegNone:
		return "NONE"
	case IntegHMACSHA2_256_128:
		return "AUTH_HMAC_SHA2_256_128"
	case IntegHMACSHA2_384_192:
		return "AUTH_HMAC_SHA2_384_192"
	case IntegHMACSHA2_512_256:
		return "AUTH_HMAC_SHA2_512_256"
	}
	return "Integ(" + strconv.Itoa(int(i)) + ")"
}

// Hash returns the underlying hash function, or 0 for IntegNone.
func (i Integ) Hash() crypto.Hash {
	switch i {
	case IntegHMACSHA2_256_128:
		return crypto.SHA256
	case IntegHMACSHA2_384_192:
		return crypto.SHA384
	case IntegHMACSHA2_512_256:
		return crypto.SHA512
	}
	return 0
}

// KeySize is the HMAC key length in bytes (RFC 4868: the hash output size).
func (i Integ) KeySize() int { return hashSize(i.Hash()) }

// ICVSize is the truncated MAC length in bytes (half the hash output).
func (i Integ) ICVSize() int { return hashSize(i.Hash()) / 2 }

// PRF returns the PRF strongSwan derives from this integrity algorithm
// when an IKE proposal names no PRF explicitly.
func (i Integ) PRF() PRF {
	switch i {
	case IntegHMACSHA2_256_128:
		return PRFHMACSHA2_256
	case IntegHMACSHA2_384_192:
		return PRFHMACSHA2_384
	case IntegHMACSHA2_512_256:
		return PRFHMACSHA2_512
	}
	return 0
}

// PRF is an IKEv2 pseudorandom function (transform type 2).
type PRF uint16

// PRF transform IDs.
const (
	PRFHMACSHA2_256 PRF = 5
	PRFHMACSHA2_384 PRF = 6
	PRFHMACSHA2_512 PRF = 7
)

func (p PRF) String() string {
	switch p {
	case PRFHMACSHA2_256:
		return "PRF_HMAC_SHA2_256"
	case PRFHMACSHA2_384:
		return "PRF_HMAC_SHA2_384"
	case PRFHMACSHA2_512:
		return "PRF_HMAC_SHA2_512"
	}
	return "PRF(" + strconv.Itoa(int(p)) + ")"
}

// Hash returns the hash function the HMAC is built on.
func (p PRF) Hash() crypto.Hash {
	switch p {
	case PRFHMACSHA2_256:
		return crypto.SHA256
	case PRFHMACSHA2_384:
		return crypto.SHA384
	case PRFHMACSHA2_512:
		return crypto.SHA512
	}
	return 0
}

// OutputSize is the PRF output (and preferred key) length in bytes.
func (p PRF) OutputSize() int { return hashSize(p.Hash()) }

// hashSize is crypto.Hash.Size without its panic for the zero Hash that
// IntegNone and unknown IDs map to.
func hashSize(h crypto.Hash) int {
	if h == 0 {
		return 0
	}
	return h.Size()
}

// KEGroup is an IKEv2 key exchange method (transform type 4).
type KEGroup uint16

// Key exchange method IDs.
const (
	KENone       KEGroup = 0
	KEMODP2048   KEGroup = 14
	KEMODP3072   KEGroup = 15
	KEMODP4096   KEGroup = 16
	KEECP256     KEGroup = 19
	KEECP384     KEGroup = 20
	KEECP521     KEGroup = 21
	KECurve25519 KEGroup = 31
)

func (g KEGroup) String() string {
	switch g {
	case KENone:
		return "NONE"
	case KEMODP2048:
		return "MODP_2048"
	case KEMODP3072:
		return "MODP_3072"
	case KEMODP4096:
		return "MODP_4096"
	case KEECP256:
		return "ECP_256"
	case KEECP384:
		return "ECP_384"
	case KEECP521:
		return "ECP_521"
	case KECurve25519:
		return "CURVE_25519"
	}
	return "KEGroup(" + strconv.Itoa(int(g)) + ")"
}

// Name returns the strongSwan keyword for the group, e.g. "x25519".
func (g KEGroup) Name() string {
	for _, k := range keGroupTokens() {
		if k.group == g {
			return k.token
		}
	}
	return ""
}

// PublicKeySize is the length in bytes of the Key Exchange payload data:
// the MODP prime size, x||y for NIST curves (RFC 5903), 32 for X25519.
func (g KEGroup) PublicKeySize() int {
	switch g {
	case KEMODP2048:
		return 256
	case KEMODP3072:
		return 384
	case KEMODP4096:
		return 512
	case KEECP256:
		return 64
	case KEECP384:
		return 96
	case KEECP521:
		return 132
	case KECurve25519:
		return 32
	}
	return 0
}

// ESN is the Extended Sequence Numbers transform (type 5).
type ESN uint16

// ESN transform IDs.
const (
	ESNNo  ESN = 0
	ESNYes ESN = 1
)

func (e ESN) String() string {
	switch e {
	case ESNNo:
		return "NO_EXT_SEQ"
	case ESNYes:
		return "EXT_SEQ"
	}
	return "ESN(" + strconv.Itoa(int(e)) + ")"
}

// ESNFromBool maps a proposal's ESN flag to its transform ID.
func ESNFromBool(on bool) ESN {
	if on {
		return ESNYes
	}
	return ESNNo
}
