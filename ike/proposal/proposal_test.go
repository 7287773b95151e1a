package proposal

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	gcm256 := Cipher{EncrAESGCM16, 256}
	gcm128 := Cipher{EncrAESGCM16, 128}
	cbc256 := Cipher{EncrAESCBC, 256}
	tests := []struct {
		name    string
		esp     bool
		in      string
		want    Proposal
		wantErr string // substring; empty = success
		kind    error
	}{
		{name: "ike aead", in: "aes256gcm16-prfsha384-ecp384",
			want: Proposal{Protocol: ProtocolIKE, Encryption: []Cipher{gcm256}, PRF: []PRF{PRFHMACSHA2_384}, KE: []KEGroup{KEECP384}}},
		{name: "ike several per type", in: "aes256gcm16-aes128gcm16-prfsha256-x25519-ecp256",
			want: Proposal{Protocol: ProtocolIKE, Encryption: []Cipher{gcm256, gcm128}, PRF: []PRF{PRFHMACSHA2_256}, KE: []KEGroup{KECurve25519, KEECP256}}},
		{name: "ike cbc derives prf", in: "aes256-sha256-sha512-modp3072",
			want: Proposal{Protocol: ProtocolIKE, Encryption: []Cipher{cbc256}, Integrity: []Integ{IntegHMACSHA2_256_128, IntegHMACSHA2_512_256},
				PRF: []PRF{PRFHMACSHA2_256, PRFHMACSHA2_512}, KE: []KEGroup{KEMODP3072}}},
		{name: "ike cbc explicit prf", in: "aes128-sha384-prfsha512-modp4096",
			want: Proposal{Protocol: ProtocolIKE, Encryption: []Cipher{{EncrAESCBC, 128}}, Integrity: []Integ{IntegHMACSHA2_384_192},
				PRF: []PRF{PRFHMACSHA2_512}, KE: []KEGroup{KEMODP4096}}},
		{name: "ike chacha curve25519 alias", in: "chacha20poly1305-prfsha256-curve25519",
			want: Proposal{Protocol: ProtocolIKE, Encryption: []Cipher{{EncrChaCha20Poly1305, 256}}, PRF: []PRF{PRFHMACSHA2_256}, KE: []KEGroup{KECurve25519}}},
		{name: "gcm128 alias", in: "aes256gcm128-prfsha256-ecp521",
			want: Proposal{Protocol: ProtocolIKE, Encryption: []Cipher{gcm256}, PRF: []PRF{PRFHMACSHA2_256}, KE: []KEGroup{KEECP521}}},
		{name: "any token order", in: "x25519-prfsha256-aes192gcm16",
			want: Proposal{Protocol: ProtocolIKE, Encryption: []Cipher{{EncrAESGCM16, 192}}, PRF: []PRF{PRFHMACSHA2_256}, KE: []KEGroup{KECurve25519}}},
		{name: "upper case and spaces", in: " AES256GCM16-PRFSHA256-X25519 ",
			want: Proposal{Protocol: ProtocolIKE, Encryption: []Cipher{gcm256}, PRF: []PRF{PRFHMACSHA2_256}, KE: []KEGroup{KECurve25519}}},
		{name: "esp aead", esp: true, in: "aes256gcm16",
			want: Proposal{Protocol: ProtocolESP, Encryption: []Cipher{gcm256}, ESN: []bool{false}}},
		{name: "esp pfs esn", esp: true, in: "aes256gcm16-aes128gcm16-x25519-esn",
			want: Proposal{Protocol: ProtocolESP, Encryption: []Cipher{gcm256, gcm128}, KE: []KEGroup{KECurve25519}, ESN: []bool{true}}},
		{name: "esp cbc both esn", esp: true, in: "aes256-sha512-esn-noesn",
			want: Proposal{Protocol: ProtocolESP, Encryption: []Cipher{cbc256}, Integrity: []Integ{IntegHMACSHA2_512_256}, ESN: []bool{true, false}}},

		{name: "empty", in: "", wantErr: "empty proposal", kind: ErrInvalid},
		{name: "empty token", in: "aes256gcm16--prfsha256-x25519", wantErr: "empty algorithm", kind: ErrInvalid},
		{name: "trailing dash", esp: true, in: "aes256gcm16-", wantErr: "empty algorithm", kind: ErrInvalid},
		{name: "weak sha1", in: "aes256-sha1-modp2048", wantErr: `weak algorithm "sha1": use sha256`, kind: ErrWeak},
		{name: "weak sha", in: "aes256-sha-modp2048", wantErr: `weak algorithm "sha": use sha256`, kind: ErrWeak},
		{name: "weak md5", in: "aes256-md5-modp2048", wantErr: `weak algorithm "md5": use sha256`, kind: ErrWeak},
		{name: "weak 3des", in: "3des-sha256-modp2048", wantErr: `weak algorithm "3des": use aes256gcm16`, kind: ErrWeak},
		{name: "weak des esp", esp: true, in: "des-sha256", wantErr: `weak algorithm "des"`, kind: ErrWeak},
		{name: "weak modp1024", in: "aes256-sha256-modp1024", wantErr: `weak algorithm "modp1024": use modp2048 or x25519`, kind: ErrWeak},
		{name: "weak modp1536", in: "aes256-sha256-modp1536", wantErr: `"modp1536": use modp2048`, kind: ErrWeak},
		{name: "weak modp2048s256", in: "aes256-sha256-modp2048s256", wantErr: `"modp2048s256"`, kind: ErrWeak},
		{name: "weak ecp224", in: "aes256-sha256-ecp224", wantErr: `"ecp224": use ecp256 or x25519`, kind: ErrWeak},
		{name: "weak prfsha1", in: "aes256gcm16-prfsha1-x25519", wantErr: `"prfsha1": use prfsha256`, kind: ErrWeak},
		{name: "weak aesxcbc", in: "aes256-aesxcbc-x25519", wantErr: `"aesxcbc": use sha256`, kind: ErrWeak},
		{name: "weak null esp", esp: true, in: "null-sha256", wantErr: `"null"`, kind: ErrWeak},
		{name: "weak short icv", esp: true, in: "aes256gcm8", wantErr: `"aes256gcm8": use aes256gcm16`, kind: ErrWeak},
		{name: "unknown lists valid ike", in: "aes256gcm16-prfsha256-foo", wantErr: `unknown algorithm "foo": valid: aes128,`, kind: ErrUnknown},
		{name: "unknown with typo hint", in: "aes256gcm-prfsha256-x25519", wantErr: `unknown algorithm "aes256gcm": did you mean aes256gcm16?`, kind: ErrUnknown},
		{name: "unknown prf typo", in: "aes256gcm16-prfsha265-x25519", wantErr: "did you mean prfsha256?", kind: ErrUnknown},
		{name: "unknown esp list has esn", esp: true, in: "bogus", wantErr: "esn, noesn", kind: ErrUnknown},
		{name: "ike aead without prf", in: "aes256gcm16-x25519", wantErr: "add e.g. prfsha256", kind: ErrInvalid},
		{name: "ike no ke", in: "aes256gcm16-prfsha256", wantErr: "missing key exchange group", kind: ErrInvalid},
		{name: "ike no encryption", in: "sha256-prfsha256-x25519", wantErr: "missing encryption", kind: ErrInvalid},
		{name: "ike cbc no integrity", in: "aes256-prfsha256-x25519", wantErr: "missing integrity algorithm", kind: ErrInvalid},
		{name: "aead with integrity", in: "aes256gcm16-sha256-prfsha256-x25519", wantErr: `combined with integrity algorithm "sha256"`, kind: ErrInvalid},
		{name: "aead mixed with cbc", esp: true, in: "aes256gcm16-aes256-sha256", wantErr: "mixed with AEAD", kind: ErrInvalid},
		{name: "esp cbc no integrity", esp: true, in: "aes128", wantErr: "missing integrity", kind: ErrInvalid},
		{name: "esp with prf", esp: true, in: "aes256gcm16-prfsha256", wantErr: "PRF in an ESP proposal", kind: ErrInvalid},
		{name: "ike with esn", in: "aes256gcm16-prfsha256-x25519-esn", wantErr: "ESN in an IKE proposal", kind: ErrInvalid},
		{name: "duplicate", in: "aes256gcm16-aes256gcm16-prfsha256-x25519", wantErr: `duplicate algorithm "aes256gcm16"`, kind: ErrDuplicate},
		{name: "duplicate via alias", in: "aes256gcm16-prfsha256-x25519-curve25519", wantErr: `"x25519" names the same`, kind: ErrDuplicate},
		{name: "duplicate gcm alias", esp: true, in: "aes256gcm16-aes256gcm128", wantErr: "duplicate", kind: ErrDuplicate},
		{name: "strongswan strict flag esp", esp: true, in: "aes256-sha256-modp2048!", wantErr: "always strict", kind: ErrInvalid},
		{name: "strongswan strict flag ike", in: "aes256gcm16-prfsha256-x25519!", wantErr: "drop the '!'", kind: ErrInvalid},
		{name: "duplicate esn", esp: true, in: "aes256gcm16-esn-esn", wantErr: "duplicate", kind: ErrDuplicate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parse := ParseIKE
			if tt.esp {
				parse = ParseESP
			}
			got, err := parse(tt.in)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("parse(%q): %v", tt.in, err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("parse(%q) = %#v, want %#v", tt.in, got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("parse(%q) = %v, want error %q", tt.in, got, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parse(%q) error %q, want it to contain %q", tt.in, err, tt.wantErr)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T is not a *ParseError", err)
			}
			if !errors.Is(err, tt.kind) {
				t.Errorf("error kind %v, want %v", pe.Kind, tt.kind)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		esp  bool
		in   string
		want string
	}{
		{false, "aes256gcm16-prfsha384-ecp384", "aes256gcm16-prfsha384-ecp384"},
		{false, "x25519-aes256gcm128-prfsha256", "aes256gcm16-prfsha256-x25519"},
		{false, "aes256-sha256-modp2048", "aes256-sha256-prfsha256-modp2048"},
		{false, "aes128-aes256-sha384-sha512-prfsha256-curve25519-modp4096", "aes128-aes256-sha384-sha512-prfsha256-x25519-modp4096"},
		{false, "chacha20poly1305-prfsha512-ecp521", "chacha20poly1305-prfsha512-ecp521"},
		{true, "aes256gcm16", "aes256gcm16"},
		{true, "aes256gcm16-noesn", "aes256gcm16"},
		{true, "aes128-sha256-esn-x25519", "aes128-sha256-x25519-esn"},
		{true, "aes192gcm16-noesn-esn", "aes192gcm16-noesn-esn"},
	}
	for _, tt := range tests {
		parse := ParseIKE
		if tt.esp {
			parse = ParseESP
		}
		p, err := parse(tt.in)
		if err != nil {
			t.Fatalf("parse(%q): %v", tt.in, err)
		}
		if got := p.String(); got != tt.want {
			t.Errorf("parse(%q).String() = %q, want %q", tt.in, got, tt.want)
		}
		again, err := parse(p.String())
		if err != nil {
			t.Fatalf("reparse(%q): %v", p.String(), err)
		}
		if !reflect.DeepEqual(again, p) {
			t.Errorf("round trip of %q: got %#v, want %#v", tt.in, again, p)
		}
	}
}

func TestTransformProperties(t *testing.T) {
	tests := []struct {
		name      string
		got, want any
	}{
		{"gcm is aead", EncrAESGCM16.IsAEAD(), true},
		{"chacha is aead", EncrChaCha20Poly1305.IsAEAD(), true},
		{"cbc is not aead", EncrAESCBC.IsAEAD(), false},
		{"cbc block", EncrAESCBC.BlockSize(), 16},
		{"cbc iv", EncrAESCBC.IVSize(), 16},
		{"gcm iv", EncrAESGCM16.IVSize(), 8},
		{"gcm icv", EncrAESGCM16.ICVSize(), 16},
		{"gcm salt", EncrAESGCM16.SaltSize(), 4},
		{"chacha key sizes", EncrChaCha20Poly1305.KeySizes(), []int{256}},
		{"chacha no key length attr", EncrChaCha20Poly1305.HasKeyLengthAttr(), false},
		{"sha384 icv", IntegHMACSHA2_384_192.ICVSize(), 24},
		{"sha512 key", IntegHMACSHA2_512_256.KeySize(), 64},
		{"sha256 prf", IntegHMACSHA2_256_128.PRF(), PRFHMACSHA2_256},
		{"prf384 out", PRFHMACSHA2_384.OutputSize(), 48},
		{"none icv", IntegNone.ICVSize(), 0},
		{"none key", IntegNone.KeySize(), 0},
		{"unknown prf out", PRF(2).OutputSize(), 0},
		{"x25519 name", KECurve25519.Name(), "x25519"},
		{"ecp521 pub", KEECP521.PublicKeySize(), 132},
		{"modp3072 string", KEMODP3072.String(), "MODP_3072"},
		{"encr string", EncrAESGCM16.String(), "ENCR_AES_GCM_16"},
		{"integ string", IntegHMACSHA2_256_128.String(), "AUTH_HMAC_SHA2_256_128"},
		{"unknown encr", Encr(3).String(), "Encr(3)"},
		{"esn", ESNFromBool(true), ESNYes},
		{"cipher keyword", Cipher{EncrAESCBC, 192}.String(), "aes192"},
		{"protocol", ProtocolESP.String(), "ESP"},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

// Every advertised keyword must parse in a proposal of its kind, and no
// weak keyword may be valid, so the docs generated from these lists hold.
func TestTokenLists(t *testing.T) {
	for _, esp := range []bool{false, true} {
		for _, tok := range ValidTokens(esp) {
			if _, weak := WeakTokens()[tok]; weak {
				t.Errorf("%q is both valid and weak", tok)
			}
			k := kindIKE
			if esp {
				k = kindESP
			}
			var p Proposal
			if _, err := p.add(tok, k); err != nil {
				t.Errorf("valid token %q (esp=%v): %v", tok, esp, err)
			}
		}
	}
	for tok, repl := range WeakTokens() {
		_, err := ParseESP(tok)
		if !errors.Is(err, ErrWeak) || !strings.Contains(err.Error(), repl) {
			t.Errorf("weak token %q: got %v", tok, err)
		}
	}
}

func FuzzParseIKE(f *testing.F) {
	for _, s := range []string{"aes256gcm16-prfsha384-ecp384", "aes256-sha256-modp2048", "", "-", "sha1", "x25519-x25519"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseIKE(s)
		if err != nil {
			return
		}
		again, err := ParseIKE(p.String())
		if err != nil || !reflect.DeepEqual(again, p) {
			t.Fatalf("round trip of %q via %q: %v", s, p.String(), err)
		}
	})
}

func FuzzParseESP(f *testing.F) {
	for _, s := range []string{"aes256gcm16", "aes128-sha256-x25519-esn", "esn-noesn", "des", "aes256gcm16--"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseESP(s)
		if err != nil {
			return
		}
		again, err := ParseESP(p.String())
		if err != nil || !reflect.DeepEqual(again, p) {
			t.Fatalf("round trip of %q via %q: %v", s, p.String(), err)
		}
	})
}
