package dn

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzEncode: no string crashes Encode, and whatever it accepts renders
// to a string that encodes back to the same DER.
func FuzzEncode(f *testing.F) {
	for _, tc := range cases() {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		der, err := Encode(s)
		if err != nil {
			if !strings.Contains(err.Error(), "invalid DN") {
				t.Fatalf("Encode(%q): error %v does not say what it refused", s, err)
			}
			return
		}
		r, err := String(der)
		if err != nil {
			t.Fatalf("Encode(%q) = %x, which String refuses: %v", s, der, err)
		}
		again, err := Encode(r)
		if err != nil || !bytes.Equal(again, der) {
			t.Fatalf("%q -> %x -> %q -> %x, %v", s, der, r, again, err)
		}
	})
}

// FuzzString: no DER crashes String; what it renders is printable
// UTF-8, and when it is a string Encode takes, Encode's DER renders the
// same again.
func FuzzString(f *testing.F) {
	for _, tc := range cases() {
		if der, err := hex.DecodeString(tc.der); err == nil && tc.der != "" {
			f.Add(der)
		}
	}
	f.Add([]byte{0x30, 0x00})
	f.Add([]byte{0x30, 0x0f, 0x31, 0x0d, 0x30, 0x0b, 0x06, 0x03, 0x55, 0x04, 0x03, 0x1e, 0x04, 0x00, 0x67, 0x00, 0x77})
	f.Fuzz(func(t *testing.T, der []byte) {
		s, err := String(der)
		if err != nil {
			return
		}
		if !utf8.ValidString(s) {
			t.Fatalf("String(%x) = %q, not UTF-8", der, s)
		}
		for _, r := range s {
			if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 {
				t.Fatalf("String(%x) = %q has a control character", der, s)
			}
		}
		again, err := Encode(s)
		if err != nil {
			return
		}
		if s2, err := String(again); err != nil || s2 != s {
			t.Fatalf("String(%x) = %q, Encode -> %x, String -> %q, %v", der, s, again, s2, err)
		}
	})
}

// FuzzEqual: no DER crashes Canonical; every DN equals itself, and Equal
// agrees with Canonical wherever both decode.
func FuzzEqual(f *testing.F) {
	for _, tc := range cases() {
		if der, err := Encode(tc.in); err == nil {
			f.Add(der, der)
		}
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		if !Equal(a, a) {
			t.Fatalf("%x does not equal itself", a)
		}
		ca, errA := Canonical(a)
		cb, errB := Canonical(b)
		if errA == nil && errB == nil && Equal(a, b) != (ca == cb) {
			t.Fatalf("Equal(%x, %x) = %v against the canonical forms", a, b, Equal(a, b))
		}
	})
}
