package crypto

import (
	"bytes"
	"errors"
	"testing"
)

// fuzzCiphers builds one opener per SK code path with fixed keys, and the
// matching sealers for seed messages.
func fuzzCiphers(f *testing.F) (seals, opens []SKCipher) {
	for _, s := range skSuites {
		k := testKeys(f, s)
		seal, _, err := k.SKCiphers(s, true)
		if err != nil {
			f.Fatal(err)
		}
		_, open, err := k.SKCiphers(s, false)
		if err != nil {
			f.Fatal(err)
		}
		seals, opens = append(seals, seal), append(opens, open)
	}
	return seals, opens
}

// FuzzSKOpen feeds arbitrary headers and bodies to every SK opener: it
// must return ErrAuth or ErrMalformed, never panic, and whatever it
// accepts must be a message the peer sealed.
func FuzzSKOpen(f *testing.F) {
	seals, opens := fuzzCiphers(f)
	for i, seal := range seals {
		inner := []byte("seed inner payloads")
		aad := ikeHeader(seal.SealedLen(len(inner)), i%2 == 0)
		body, err := seal.Seal(nil, aad, inner)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(i), aad, body)
		f.Add(uint8(i), aad, body[:len(body)/2])
	}
	f.Add(uint8(0), []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, which uint8, aad, body []byte) {
		open := opens[int(which)%len(opens)]
		out, err := open.Open(nil, aad, body)
		if err != nil {
			if !errors.Is(err, ErrAuth) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if len(out) > len(body) {
			t.Fatalf("plaintext %d longer than body %d", len(out), len(body))
		}
	})
}

// FuzzSKRoundTrip: any inner payload chain and header survive Seal/Open
// in every suite.
func FuzzSKRoundTrip(f *testing.F) {
	seals, opens := fuzzCiphers(f)
	f.Add(uint8(0), []byte("hdr"), []byte("payloads"))
	f.Add(uint8(5), []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, which uint8, aad, inner []byte) {
		i := int(which) % len(seals)
		body, err := seals[i].Seal(nil, aad, inner)
		if err != nil {
			t.Fatal(err)
		}
		got, err := opens[i].Open(nil, aad, body)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, inner) {
			t.Fatal("round trip mismatch")
		}
	})
}
