package message

import (
	"bytes"
	"testing"
)

// TestSKHooks walks the crypto layer's path: serialise inner payloads,
// build the prefix that an AEAD authenticates, "encrypt" (here: any body
// of the announced length), and on receipt recover prefix, body and,
// after "decryption", the inner payloads.
func TestSKHooks(t *testing.T) {
	inner := []Payload{
		&ID{IDType: IDFQDN, Data: []byte("a.example")},
		&Auth{Method: AuthSharedKeyMIC, Data: seq(32)},
		&SA{Proposals: []Proposal{{Number: 1, Protocol: ProtocolESP, SPI: []byte{1, 2, 3, 4}, Transforms: []Transform{
			{Type: TransformENCR, ID: uint16(EncrAESGCM16), KeyLength: 256}, {Type: TransformESN, ID: 0},
		}}}},
		&TS{Selectors: []TrafficSelector{SelectorFromPrefix(mustPrefix("10.1.0.0/24"))}},
		&TS{Responder: true, Selectors: []TrafficSelector{SelectorFromPrefix(mustPrefix("10.2.0.0/24"))}},
	}
	plain, err := AppendPayloads(nil, inner)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodePayloads(PayloadIDi, plain)
	if err != nil {
		t.Fatal(err)
	}
	if !sameStructure(&got, &inner) {
		t.Errorf("inner round trip\n got %+v\nwant %+v", got, inner)
	}

	body := append(append(seq(8), plain...), seq(16)...) // IV | "ciphertext" | ICV
	m := &Message{
		Header:   Header{SPIi: 1, SPIr: 2, Exchange: ExchangeIKEAuth, Flags: FlagInitiator, MessageID: 1},
		Payloads: []Payload{&VendorID{Data: []byte("v")}, &SK{NextPayload: PayloadIDi}},
	}
	prefix, err := m.AppendSKPrefix(nil, len(body))
	if err != nil {
		t.Fatal(err)
	}
	// IKE header + V payload (4+1) + SK generic header.
	if len(prefix) != HeaderLen+5+4 {
		t.Fatalf("prefix of %d bytes", len(prefix))
	}
	wire := append(prefix, body...)
	m.Payloads[1].(*SK).Body = body
	full, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(full, wire) {
		t.Fatalf("prefix+body differs from Encode\n got %x\nwant %x", wire, full)
	}

	dm, err := Decode(wire)
	if err != nil {
		t.Fatal(err)
	}
	sk, ok := dm.Encrypted().(*SK)
	if !ok || sk.NextPayload != PayloadIDi || !bytes.Equal(sk.Body, body) {
		t.Fatalf("encrypted payload %#v", dm.Encrypted())
	}
	if aad := wire[:len(wire)-len(sk.Body)]; !bytes.Equal(aad, prefix) {
		t.Errorf("received prefix %x, want %x", aad, prefix)
	}
	if &sk.Body[0] != &wire[len(wire)-len(body)] {
		t.Error("sk body does not alias the datagram")
	}
	if _, err := DecodePayloads(sk.NextPayload, sk.Body[8:len(sk.Body)-16]); err != nil {
		t.Errorf("decrypted chain: %v", err)
	}

	if _, err := (&Message{Payloads: []Payload{&VendorID{}}}).AppendSKPrefix(nil, 10); err == nil {
		t.Error("prefix built for a message without sk")
	}
	if _, err := m.AppendSKPrefix(nil, 70000); err == nil {
		t.Error("prefix built for a body over 65535 bytes")
	}
}

func TestSKFHooks(t *testing.T) {
	body := seq(40)
	m := &Message{
		Header:   Header{SPIi: 1, SPIr: 2, Exchange: ExchangeIKEAuth, Flags: FlagInitiator | FlagResponse, MessageID: 1},
		Payloads: []Payload{&SKF{NextPayload: PayloadIDr, Number: 1, Total: 3}},
	}
	prefix, err := m.AppendSKPrefix(nil, len(body))
	if err != nil {
		t.Fatal(err)
	}
	// Generic header, then fragment number 1 and total 3 (RFC 7383 2.5).
	want := []byte{byte(PayloadIDr), 0, 0, 4 + 4 + 40, 0, 1, 0, 3}
	if !bytes.Equal(prefix[HeaderLen:], want) {
		t.Errorf("skf prefix %x, want %x", prefix[HeaderLen:], want)
	}
	wire := append(prefix, body...)
	dm, err := Decode(wire)
	if err != nil {
		t.Fatal(err)
	}
	f := dm.Encrypted().(*SKF)
	if f.Number != 1 || f.Total != 3 || f.NextPayload != PayloadIDr || !bytes.Equal(f.Body, body) {
		t.Errorf("skf %+v", f)
	}
	if aad := wire[:len(wire)-len(f.Body)]; !bytes.Equal(aad, prefix) {
		t.Error("received prefix differs")
	}
	m.Payloads[0].(*SKF).Body = body
	if full, err := m.Encode(); err != nil || !bytes.Equal(full, wire) {
		t.Errorf("Encode = %x, %v", full, err)
	}
}

func TestDecodePayloadsRejectsNestedSK(t *testing.T) {
	for _, typ := range []PayloadType{PayloadSK, PayloadSKF} {
		_, err := DecodePayloads(typ, pl(0, 0, 0, 1, 0, 1, 1, 2))
		if n, _, _ := NotifyOf(err); n != NotifyInvalidSyntax {
			t.Errorf("%s inside sk: %v", typ, err)
		}
	}
	if _, err := DecodePayloads(PayloadNone, []byte{0}); err == nil {
		t.Error("bytes after an empty chain accepted")
	}
	ps, err := DecodePayloads(PayloadNone, nil)
	if err != nil || len(ps) != 0 {
		t.Errorf("empty chain: %v, %v", ps, err)
	}
}
