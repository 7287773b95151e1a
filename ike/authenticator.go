package ike

import (
	"crypto/hmac"
	"errors"
	"fmt"

	"github.com/xdpsec/xdpsec/ike/crypto"
	"github.com/xdpsec/xdpsec/ike/message"
)

// An authenticator is one way of proving an identity in IKE_AUTH (RFC 7296
// 2.15): it builds our AUTH payload and verifies the peer's. Pre-shared
// keys are the first; certificate signatures (RFC 7427) go beside them
// without touching the exchange.
type authenticator interface {
	// build returns our AUTH payload over signed.
	build(prf *crypto.PRF, signed signedOctets) (*message.Auth, error)
	// verify checks the peer's AUTH over signed; the error says why in
	// the words an operator looks for (errKeyMismatch, a methodError).
	verify(prf *crypto.PRF, got *message.Auth, signed signedOctets) error
}

// signedOctets are what an AUTH covers: the message its sender sent in
// IKE_SA_INIT (RealMessage), the other end's nonce, and the sender's
// SK_p and ID payload, of which prf(SK_p, IDBody) goes in.
type signedOctets struct {
	realMsg, nonce, skp []byte
	id                  *message.ID
}

// errKeyMismatch: the AUTH does not verify under the configured key.
var errKeyMismatch = errors.New("pre-shared key mismatch")

// methodError: the peer authenticates with a method we do not accept for
// the connection.
type methodError struct {
	got  message.AuthMethod
	want string
}

func (e *methodError) Error() string {
	return fmt.Sprintf("it authenticates with %s, we only accept %s", e.got, e.want)
}

// authenticatorFor returns how connection c authenticates both ways.
func authenticatorFor(c *Conn) authenticator { return pskAuthenticator{key: c.PSK} }

// keyPad is the PSK padding string of RFC 7296 2.15.
const keyPad = "Key Pad for IKEv2"

// pskAuthenticator is AUTH method 2, Shared Key Message Integrity Code.
type pskAuthenticator struct{ key []byte }

func (a pskAuthenticator) build(prf *crypto.PRF, s signedOctets) (*message.Auth, error) {
	d, err := a.mac(prf, s)
	if err != nil {
		return nil, err
	}
	return &message.Auth{Method: message.AuthSharedKeyMIC, Data: d}, nil
}

func (a pskAuthenticator) verify(prf *crypto.PRF, got *message.Auth, s signedOctets) error {
	if got.Method != message.AuthSharedKeyMIC {
		return &methodError{got: got.Method, want: "pre-shared keys"}
	}
	want, err := a.mac(prf, s)
	if err != nil || len(a.key) == 0 || !hmac.Equal(want, got.Data) {
		return errKeyMismatch
	}
	return nil
}

// mac computes AUTH = prf(prf(PSK, "Key Pad for IKEv2"), <SignedOctets>)
// with SignedOctets = RealMessage | Nonce | prf(SK_p, IDBody).
func (a pskAuthenticator) mac(prf *crypto.PRF, s signedOctets) ([]byte, error) {
	body, err := s.id.AppendBody(nil)
	if err != nil {
		return nil, fmt.Errorf("encode ID: %w", err)
	}
	macedID := prf.Compute(s.skp, body)
	return prf.Compute(prf.Compute(a.key, []byte(keyPad)), s.realMsg, s.nonce, macedID), nil
}
