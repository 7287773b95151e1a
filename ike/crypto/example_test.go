package crypto_test

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/xdpsec/xdpsec/ike/crypto"
)

// Example shows the IKE_SA_INIT key schedule of both peers and one
// protected message, as the IKE state machine wires it.
func Example() {
	suite := crypto.Suite{Encr: crypto.EncrAESGCM16, KeyBits: 256, PRF: crypto.PRFHMACSHA384}
	ni, nr := bytes.Repeat([]byte{0x11}, 32), bytes.Repeat([]byte{0x22}, 32)
	spii, spir := []byte("initspi!"), []byte("respspi!")

	kei, _ := crypto.NewKeyExchange(crypto.GroupCurve25519) // sent in KEi
	ker, _ := crypto.NewKeyExchange(crypto.GroupCurve25519) // sent in KEr
	giri, _ := kei.SharedSecret(ker.PublicKey())
	girr, _ := ker.SharedSecret(kei.PublicKey())

	ik, _ := crypto.DeriveIKEKeys(suite, giri, ni, nr, spii, spir)
	rk, _ := crypto.DeriveIKEKeys(suite, girr, ni, nr, spii, spir)
	iSeal, _, _ := ik.SKCiphers(suite, true)
	_, rOpen, _ := rk.SKCiphers(suite, false)

	inner := []byte("IDi | AUTH | SA | TSi | TSr")
	header := make([]byte, 28+4) // IKE header | SK payload header
	bodyLen := iSeal.SealedLen(len(inner))
	// Length fields are covered by the ICV, so they are final before Seal.
	binary.BigEndian.PutUint32(header[24:28], uint32(len(header)+bodyLen))
	binary.BigEndian.PutUint16(header[30:32], uint16(4+bodyLen))
	body, _ := iSeal.Seal(nil, header, inner)
	got, err := rOpen.Open(nil, header, body)
	fmt.Println(string(got), err, len(body) == bodyLen)

	// Child SA keys for ESP with AES-GCM-16/256 and no PFS.
	ck, _ := crypto.DeriveChildKeys(suite.PRF, ik.SKd, crypto.Suite{Encr: crypto.EncrAESGCM16, KeyBits: 256}, nil, ni, nr)
	fmt.Println(len(ck.InitiatorEncr), len(ck.InitiatorInteg))
	// Output:
	// IDi | AUTH | SA | TSi | TSr <nil> true
	// 36 0
}
