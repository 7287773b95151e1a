package ike

import (
	"errors"
	"testing"

	"github.com/xdpsec/xdpsec/ike/crypto"
	"github.com/xdpsec/xdpsec/ike/message"
)

// TestPSKAuthenticator: what one end builds the other verifies with the
// same key; another key, another method, other signed octets or no key at
// all fail, each with the error the log turns into its hint.
func TestPSKAuthenticator(t *testing.T) {
	prf, err := crypto.NewPRF(crypto.PRFHMACSHA256)
	if err != nil {
		t.Fatal(err)
	}
	id := &message.ID{IDType: message.IDFQDN, Data: []byte("gw-a.example.com")}
	signed := signedOctets{realMsg: []byte("IKE_SA_INIT request"), nonce: make([]byte, 32), skp: make([]byte, 32), id: id}
	key := []byte(testPSK)
	auth, err := pskAuthenticator{key: key}.build(prf, signed)
	if err != nil || auth.Method != message.AuthSharedKeyMIC || len(auth.Data) != 32 {
		t.Fatalf("build: %+v, %v", auth, err)
	}
	other := signed
	other.nonce = make([]byte, 31)
	for _, tc := range []struct {
		name string
		key  []byte
		got  *message.Auth
		s    signedOctets
		want error
	}{
		{"same-key", key, auth, signed, nil},
		{"other-key", []byte("another-psk-0123456789"), auth, signed, errKeyMismatch},
		{"no-key", nil, auth, signed, errKeyMismatch},
		{"other-octets", key, auth, other, errKeyMismatch},
		{"other-method", key, &message.Auth{Method: message.AuthDigitalSignature, Data: auth.Data}, signed, &methodError{}},
	} {
		err := pskAuthenticator{key: tc.key}.verify(prf, tc.got, tc.s)
		var me *methodError
		switch {
		case tc.want == nil && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case errors.Is(tc.want, errKeyMismatch) && !errors.Is(err, errKeyMismatch):
			t.Errorf("%s: %v, want a key mismatch", tc.name, err)
		case tc.name == "other-method" && (!errors.As(err, &me) || me.want != "pre-shared keys"):
			t.Errorf("%s: %v, want a method error", tc.name, err)
		}
	}
}
