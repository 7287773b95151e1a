// Package crypto implements the IKEv2 cryptographic transforms used by
// xdpsec: the HMAC-SHA2 PRFs and prf+ (RFC 7296 2.13, RFC 4868), the key
// derivations for IKE SAs, IKE SA rekeys and Child SAs (RFC 7296 2.14,
// 2.17, 2.18), the truncated HMAC-SHA2 integrity transforms (RFC 4868),
// protection of the Encrypted (SK) and Encrypted Fragment (SKF) payloads
// with AES-CBC+HMAC, AES-GCM-16 (RFC 5282) and ChaCha20-Poly1305
// (RFC 7634), and the key exchange groups 14, 15, 16 (MODP, RFC 3526),
// 19, 20, 21 (ECP, RFC 5903) and 31 (Curve25519, RFC 8031).
//
// Algorithms are named by their IANA IKEv2 transform IDs as plain uint16
// values so that the proposal layer can pass negotiated IDs straight in.
// Only the strong algorithms xdpsec negotiates are implemented; every
// other ID is rejected with an error wrapping ErrUnsupported.
package crypto

import "errors"

// Encryption algorithm transform IDs (IKEv2 transform type 1).
const (
	EncrAESCBC           uint16 = 12 // ENCR_AES_CBC, RFC 3602
	EncrAESGCM16         uint16 = 20 // ENCR_AES_GCM_16, RFC 4106 / RFC 5282
	EncrChaCha20Poly1305 uint16 = 28 // ENCR_CHACHA20_POLY1305, RFC 7634
)

// Pseudorandom function transform IDs (IKEv2 transform type 2).
const (
	PRFHMACSHA256 uint16 = 5 // PRF_HMAC_SHA2_256, RFC 4868
	PRFHMACSHA384 uint16 = 6 // PRF_HMAC_SHA2_384, RFC 4868
	PRFHMACSHA512 uint16 = 7 // PRF_HMAC_SHA2_512, RFC 4868
)

// Integrity algorithm transform IDs (IKEv2 transform type 3).
const (
	IntegNone           uint16 = 0  // NONE: required with AEAD ciphers
	IntegHMACSHA256_128 uint16 = 12 // AUTH_HMAC_SHA2_256_128, RFC 4868
	IntegHMACSHA384_192 uint16 = 13 // AUTH_HMAC_SHA2_384_192, RFC 4868
	IntegHMACSHA512_256 uint16 = 14 // AUTH_HMAC_SHA2_512_256, RFC 4868
)

// Key exchange method (Diffie-Hellman group) transform IDs (transform type 4).
const (
	GroupMODP2048   uint16 = 14 // RFC 3526
	GroupMODP3072   uint16 = 15 // RFC 3526
	GroupMODP4096   uint16 = 16 // RFC 3526
	GroupECP256     uint16 = 19 // RFC 5903
	GroupECP384     uint16 = 20 // RFC 5903
	GroupECP521     uint16 = 21 // RFC 5903
	GroupCurve25519 uint16 = 31 // RFC 8031
)

// Errors callers may test for with errors.Is.
var (
	// ErrUnsupported reports an algorithm ID or key length this package
	// does not implement (weak, unknown or not negotiable).
	ErrUnsupported = errors.New("unsupported algorithm")
	// ErrAuth reports an integrity check (ICV or AEAD tag) failure.
	ErrAuth = errors.New("integrity check failed")
	// ErrMalformed reports input that is too short or badly shaped.
	ErrMalformed = errors.New("malformed input")
	// ErrInvalidPublicKey reports a peer key exchange value that fails validation.
	ErrInvalidPublicKey = errors.New("invalid key exchange public value")
)
