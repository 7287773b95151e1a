package proposal

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Cipher is an encryption transform with its key length.
type Cipher struct {
	Alg     Encr
	KeyBits int
}

// String returns the strongSwan keyword, e.g. "aes256gcm16".
func (c Cipher) String() string {
	for _, t := range cipherTokens() {
		if t.cipher == c {
			return t.token
		}
	}
	return fmt.Sprintf("%v/%d", c.Alg, c.KeyBits)
}

// Proposal is one IKE or ESP proposal: for each transform type, the
// algorithms offered in order of preference.
type Proposal struct {
	Protocol   Protocol
	Encryption []Cipher
	Integrity  []Integ
	PRF        []PRF
	KE         []KEGroup
	// ESN is only used for ESP; Parse fills in [false] when the proposal
	// names neither esn nor noesn, so it is never empty for ESP.
	ESN []bool
}

// IsAEAD reports whether the proposal's ciphers are AEAD ciphers. Parse
// guarantees a proposal never mixes AEAD and non-AEAD ciphers.
func (p Proposal) IsAEAD() bool {
	return len(p.Encryption) > 0 && p.Encryption[0].Alg.IsAEAD()
}

// String returns the canonical strongSwan-style form: encryption,
// integrity, prf, key exchange, then ESN, each in order of preference.
// The default noesn of ESP proposals is left out, as strongSwan does.
// Parsing the result yields an equal Proposal.
func (p Proposal) String() string {
	var toks []string
	for _, c := range p.Encryption {
		toks = append(toks, c.String())
	}
	for _, i := range p.Integrity {
		toks = append(toks, tokenOf(integTokens(), i))
	}
	for _, f := range p.PRF {
		toks = append(toks, tokenOf(prfTokens(), f))
	}
	for _, g := range p.KE {
		toks = append(toks, g.Name())
	}
	if p.Protocol == ProtocolESP && !(len(p.ESN) == 1 && !p.ESN[0]) {
		for _, e := range p.ESN {
			if e {
				toks = append(toks, "esn")
			} else {
				toks = append(toks, "noesn")
			}
		}
	}
	return strings.Join(toks, "-")
}

// Kinds of parse errors, for errors.Is.
var (
	ErrWeak      = errors.New("weak algorithm")
	ErrUnknown   = errors.New("unknown algorithm")
	ErrDuplicate = errors.New("duplicate algorithm")
	ErrInvalid   = errors.New("invalid proposal")
)

// ParseError describes why a proposal string was rejected. Token is the
// offending token ("" for problems of the proposal as a whole), Reason
// what is wrong and Suggestion what to write instead.
type ParseError struct {
	Kind       error // one of ErrWeak, ErrUnknown, ErrDuplicate, ErrInvalid
	Token      string
	Reason     string
	Suggestion string
}

func (e *ParseError) Error() string {
	var b strings.Builder
	b.WriteString(e.Reason)
	if e.Token != "" {
		fmt.Fprintf(&b, " %q", e.Token)
	}
	if e.Suggestion != "" {
		b.WriteString(": ")
		b.WriteString(e.Suggestion)
	}
	return b.String()
}

// Unwrap returns the error kind so callers can use errors.Is.
func (e *ParseError) Unwrap() error { return e.Kind }

type cipherToken struct {
	token  string
	cipher Cipher
}

type keyword[T comparable] struct {
	token string
	value T
}

// The first keyword for a value is its canonical spelling.
func cipherTokens() []cipherToken {
	return []cipherToken{
		{"aes128", Cipher{EncrAESCBC, 128}},
		{"aes192", Cipher{EncrAESCBC, 192}},
		{"aes256", Cipher{EncrAESCBC, 256}},
		{"aes128gcm16", Cipher{EncrAESGCM16, 128}},
		{"aes192gcm16", Cipher{EncrAESGCM16, 192}},
		{"aes256gcm16", Cipher{EncrAESGCM16, 256}},
		// strongSwan also names the 16-byte ICV in bits.
		{"aes128gcm128", Cipher{EncrAESGCM16, 128}},
		{"aes192gcm128", Cipher{EncrAESGCM16, 192}},
		{"aes256gcm128", Cipher{EncrAESGCM16, 256}},
		{"chacha20poly1305", Cipher{EncrChaCha20Poly1305, 256}},
	}
}

func integTokens() []keyword[Integ] {
	return []keyword[Integ]{
		{"sha256", IntegHMACSHA2_256_128},
		{"sha384", IntegHMACSHA2_384_192},
		{"sha512", IntegHMACSHA2_512_256},
	}
}

func prfTokens() []keyword[PRF] {
	return []keyword[PRF]{
		{"prfsha256", PRFHMACSHA2_256},
		{"prfsha384", PRFHMACSHA2_384},
		{"prfsha512", PRFHMACSHA2_512},
	}
}

type keGroupToken struct {
	token string
	group KEGroup
}

func keGroupTokens() []keGroupToken {
	return []keGroupToken{
		{"modp2048", KEMODP2048},
		{"modp3072", KEMODP3072},
		{"modp4096", KEMODP4096},
		{"ecp256", KEECP256},
		{"ecp384", KEECP384},
		{"ecp521", KEECP521},
		{"x25519", KECurve25519},
		{"curve25519", KECurve25519},
	}
}

func tokenOf[T comparable](list []keyword[T], v T) string {
	for _, k := range list {
		if k.value == v {
			return k.token
		}
	}
	return fmt.Sprint(v)
}

// weakTokens maps algorithms that are known but never accepted to the
// strong replacement the error message suggests.
func weakTokens() map[string]string {
	return map[string]string{
		"null":         "aes256gcm16",
		"des":          "aes256gcm16",
		"desiv32":      "aes256gcm16",
		"desiv64":      "aes256gcm16",
		"3des":         "aes256gcm16",
		"cast128":      "aes256gcm16",
		"blowfish":     "aes256gcm16",
		"blowfish128":  "aes256gcm16",
		"blowfish192":  "aes256gcm16",
		"blowfish256":  "aes256gcm16",
		"idea":         "aes256gcm16",
		"aes128gcm8":   "aes128gcm16",
		"aes192gcm8":   "aes192gcm16",
		"aes256gcm8":   "aes256gcm16",
		"aes128gcm64":  "aes128gcm16",
		"aes192gcm64":  "aes192gcm16",
		"aes256gcm64":  "aes256gcm16",
		"aes128gcm12":  "aes128gcm16",
		"aes192gcm12":  "aes192gcm16",
		"aes256gcm12":  "aes256gcm16",
		"aes128gcm96":  "aes128gcm16",
		"aes192gcm96":  "aes192gcm16",
		"aes256gcm96":  "aes256gcm16",
		"aes128ccm8":   "aes128gcm16",
		"aes192ccm8":   "aes192gcm16",
		"aes256ccm8":   "aes256gcm16",
		"aes128ccm64":  "aes128gcm16",
		"aes192ccm64":  "aes192gcm16",
		"aes256ccm64":  "aes256gcm16",
		"aes128gmac":   "aes128gcm16",
		"aes192gmac":   "aes192gcm16",
		"aes256gmac":   "aes256gcm16",
		"md5":          "sha256",
		"md5_128":      "sha256",
		"sha":          "sha256",
		"sha1":         "sha256",
		"sha1_160":     "sha256",
		"sha256_96":    "sha256",
		"aesxcbc":      "sha256",
		"aescmac":      "sha256",
		"prfmd5":       "prfsha256",
		"prfsha1":      "prfsha256",
		"prfaesxcbc":   "prfsha256",
		"prfaescmac":   "prfsha256",
		"modp768":      "modp2048 or x25519",
		"modp1024":     "modp2048 or x25519",
		"modp1536":     "modp2048 or x25519",
		"modp1024s160": "modp2048 or x25519",
		"modp2048s224": "modp2048 or x25519",
		"modp2048s256": "modp2048 or x25519",
		"ecp192":       "ecp256 or x25519",
		"ecp224":       "ecp256 or x25519",
		"ecp224bp":     "ecp256 or x25519",
	}
}

type kind uint8

const (
	kindIKE kind = iota
	kindESP
)

// ParseIKE parses a strongSwan IKE proposal such as
// "aes256gcm16-prfsha384-ecp384" or "aes256-sha256-modp3072".
func ParseIKE(s string) (Proposal, error) { return parse(s, kindIKE) }

// ParseESP parses a strongSwan ESP proposal such as "aes256gcm16" or
// "aes256-sha256-x25519-esn"; a key exchange group requests PFS.
func ParseESP(s string) (Proposal, error) { return parse(s, kindESP) }

func parse(s string, k kind) (Proposal, error) {
	p := Proposal{Protocol: ProtocolIKE}
	if k == kindESP {
		p.Protocol = ProtocolESP
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return Proposal{}, &ParseError{Kind: ErrInvalid, Reason: "empty proposal",
			Suggestion: "e.g. " + k.example()}
	}
	if strings.HasSuffix(s, "!") {
		// strongSwan's "!" stops it from adding its default algorithms;
		// xdpsec never adds any, so the flag is a habit, not an algorithm.
		return Proposal{}, &ParseError{Kind: ErrInvalid, Reason: "strongSwan's strict flag '!' in", Token: s,
			Suggestion: "xdpsec proposals are always strict (only the algorithms listed are offered or accepted): drop the '!'"}
	}
	seen := make(map[string]string) // canonical token -> spelling used first
	for raw := range strings.SplitSeq(s, "-") {
		tok := strings.ToLower(strings.TrimSpace(raw))
		if tok == "" {
			return Proposal{}, &ParseError{Kind: ErrInvalid, Reason: "empty algorithm in",
				Token: s, Suggestion: "separate algorithms with a single '-'"}
		}
		canon, err := p.add(tok, k)
		if err != nil {
			return Proposal{}, err
		}
		if first, ok := seen[canon]; ok {
			hint := "remove one"
			if first != tok {
				hint = fmt.Sprintf("%q names the same algorithm, remove one", first)
			}
			return Proposal{}, &ParseError{Kind: ErrDuplicate, Token: tok, Reason: "duplicate algorithm", Suggestion: hint}
		}
		seen[canon] = tok
	}
	if err := p.check(k); err != nil {
		return Proposal{}, err
	}
	return p, nil
}

func (k kind) example() string {
	if k == kindESP {
		return "aes256gcm16"
	}
	return "aes256gcm16-prfsha256-x25519"
}

// add appends the transform a token names and returns its canonical
// spelling, which detects duplicates written with different aliases.
func (p *Proposal) add(tok string, k kind) (string, error) {
	for _, t := range cipherTokens() {
		if t.token == tok {
			p.Encryption = append(p.Encryption, t.cipher)
			return t.cipher.String(), nil
		}
	}
	for _, t := range integTokens() {
		if t.token == tok {
			p.Integrity = append(p.Integrity, t.value)
			return tok, nil
		}
	}
	for _, t := range prfTokens() {
		if t.token == tok {
			if k == kindESP {
				return "", &ParseError{Kind: ErrInvalid, Token: tok,
					Reason: "PRF in an ESP proposal", Suggestion: "a PRF belongs in ike_proposals only"}
			}
			p.PRF = append(p.PRF, t.value)
			return tok, nil
		}
	}
	for _, t := range keGroupTokens() {
		if t.token == tok {
			p.KE = append(p.KE, t.group)
			return t.group.Name(), nil
		}
	}
	if tok == "esn" || tok == "noesn" {
		if k == kindIKE {
			return "", &ParseError{Kind: ErrInvalid, Token: tok,
				Reason: "ESN in an IKE proposal", Suggestion: "esn/noesn belong in esp_proposals only"}
		}
		p.ESN = append(p.ESN, tok == "esn")
		return tok, nil
	}
	if repl, ok := weakTokens()[tok]; ok {
		return "", &ParseError{Kind: ErrWeak, Token: tok, Reason: "weak algorithm", Suggestion: "use " + repl}
	}
	valid := ValidTokens(k == kindESP)
	hint := "valid: " + strings.Join(valid, ", ")
	if near := closest(tok, valid); near != "" {
		hint = "did you mean " + near + "? " + hint
	}
	return "", &ParseError{Kind: ErrUnknown, Token: tok, Reason: "unknown algorithm", Suggestion: hint}
}

// closest returns the candidate within two edits of tok, if any, to catch
// typos such as "aes256gcm" or "prfsha265".
func closest(tok string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range candidates {
		if d := editDistance(tok, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func (p *Proposal) check(k kind) error {
	if len(p.Encryption) == 0 {
		return &ParseError{Kind: ErrInvalid, Reason: "missing encryption algorithm",
			Suggestion: "add e.g. aes256gcm16"}
	}
	aead, plain := "", ""
	for _, c := range p.Encryption {
		if c.Alg.IsAEAD() {
			aead = c.String()
		} else {
			plain = c.String()
		}
	}
	if aead != "" && plain != "" {
		return &ParseError{Kind: ErrInvalid, Token: aead,
			Reason:     fmt.Sprintf("non-AEAD cipher %s mixed with AEAD cipher", plain),
			Suggestion: "put them in separate proposals"}
	}
	if aead != "" && len(p.Integrity) > 0 {
		return &ParseError{Kind: ErrInvalid, Token: tokenOf(integTokens(), p.Integrity[0]),
			Reason:     "AEAD cipher " + aead + " combined with integrity algorithm",
			Suggestion: "remove it, AEAD ciphers authenticate themselves"}
	}
	if plain != "" && len(p.Integrity) == 0 {
		return &ParseError{Kind: ErrInvalid, Token: plain,
			Reason: "missing integrity algorithm for non-AEAD cipher", Suggestion: "add e.g. sha256"}
	}
	switch k {
	case kindIKE:
		if len(p.PRF) == 0 {
			if aead != "" {
				return &ParseError{Kind: ErrInvalid, Token: aead,
					Reason: "missing PRF for AEAD cipher", Suggestion: "add e.g. prfsha256"}
			}
			// strongSwan derives the PRF from the integrity algorithms.
			for _, i := range p.Integrity {
				if f := i.PRF(); !slices.Contains(p.PRF, f) {
					p.PRF = append(p.PRF, f)
				}
			}
		}
		if len(p.KE) == 0 {
			return &ParseError{Kind: ErrInvalid, Reason: "missing key exchange group",
				Suggestion: "add e.g. x25519 or ecp384"}
		}
	case kindESP:
		if len(p.ESN) == 0 {
			p.ESN = []bool{false}
		}
	}
	return nil
}

// ValidTokens lists the keywords accepted in IKE (esp false) or ESP (esp
// true) proposals, canonical spellings first.
func ValidTokens(esp bool) []string {
	var out []string
	for _, t := range cipherTokens() {
		out = append(out, t.token)
	}
	for _, t := range integTokens() {
		out = append(out, t.token)
	}
	if !esp {
		for _, t := range prfTokens() {
			out = append(out, t.token)
		}
	}
	for _, t := range keGroupTokens() {
		out = append(out, t.token)
	}
	if esp {
		out = append(out, "esn", "noesn")
	}
	return out
}

// WeakTokens returns the rejected keywords and the replacement suggested
// for each, for documentation and audits.
func WeakTokens() map[string]string {
	return weakTokens()
}
