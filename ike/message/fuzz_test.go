package message

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func fuzzSeeds(f *testing.F) {
	f.Add(readHex(f, "strongswan-5.9.8-ike_sa_init-request.hex"))
	f.Add(readHex(f, "strongswan-5.9.8-ike_sa_init-no_proposal_chosen.hex"))
	m := &Message{
		Header: Header{SPIi: 1, SPIr: 2, Exchange: ExchangeIKEAuth, MessageID: 1},
		Payloads: []Payload{
			&ID{IDType: IDIPv4Addr, Data: []byte{1, 2, 3, 4}},
			&CertReq{Encoding: CertX509Signature, Data: seq(20)},
			&Delete{Protocol: ProtocolESP, SPIs: []uint32{1, 2}},
			&TS{Selectors: []TrafficSelector{SelectorFromPrefix(mustPrefix("2001:db8::/48")), {Type: 10, Opaque: []byte{1}}}},
			&CP{CFGType: CFGRequest, Attributes: []CPAttribute{{Type: CPAttrInternalIP4Address}}},
			&EAP{Code: EAPResponse, Identifier: 1, Data: []byte{1, 'x'}},
			&Unknown{PayloadType: 50, Body: []byte{1}},
			&SK{NextPayload: PayloadIDi, Body: seq(24)},
		},
	}
	b, err := m.Encode()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	m.Payloads = []Payload{&SKF{NextPayload: PayloadIDi, Number: 1, Total: 2, Body: seq(9)}}
	if b, err = m.Encode(); err != nil {
		f.Fatal(err)
	}
	f.Add(b)
}

// FuzzDecode checks that decoding never panics, and that whatever decodes
// re-encodes to bytes that decode to the same structure and re-encode to
// the same bytes.
func FuzzDecode(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecode(t, b)
		// Most mutations break the version or length field and stop at
		// the header; a repaired copy lets the fuzzer reach the payloads.
		if len(b) >= HeaderLen {
			c := bytes.Clone(b)
			c[17] = 0x20
			binary.BigEndian.PutUint32(c[24:], uint32(len(c)))
			checkDecode(t, c)
		}
	})
}

func checkDecode(t *testing.T, b []byte) {
	t.Helper()
	m, err := Decode(b)
	if err != nil {
		if _, _, ok := NotifyOf(err); !ok {
			t.Fatalf("decode error %v is not an *Error", err)
		}
		return
	}
	out, err := m.Encode()
	if err != nil {
		t.Fatalf("decoded message does not encode: %v", err)
	}
	if len(out) != len(b) {
		t.Fatalf("re-encoded length %d, decoded %d", len(out), len(b))
	}
	m2, err := Decode(out)
	if err != nil {
		t.Fatalf("re-encoded message does not decode: %v\n%x", err, out)
	}
	out2, err := m2.Encode()
	if err != nil || !bytes.Equal(out, out2) {
		t.Fatalf("encoding not stable: %v\n%x\n%x", err, out, out2)
	}
	if !sameStructure(m, m2) {
		t.Fatalf("structure changed\n%#v\n%#v", m, m2)
	}
	if sk := m.Encrypted(); sk != nil {
		prefix, err := m.AppendSKPrefix(nil, len(skBody(sk)))
		if err != nil || !bytes.Equal(prefix, out[:len(out)-len(skBody(sk))]) {
			t.Fatalf("sk prefix %x, %v", prefix, err)
		}
	}
}

func skBody(p Payload) []byte {
	switch sk := p.(type) {
	case *SK:
		return sk.Body
	case *SKF:
		return sk.Body
	}
	return nil
}

// FuzzDecodePayloads covers the inner-chain entry point the crypto layer
// feeds with decrypted data.
func FuzzDecodePayloads(f *testing.F) {
	f.Add(byte(PayloadIDi), cat(pl(PayloadAUTH, 0, 2, 0, 0, 0, 9), pl(0, 0, 2, 0, 0, 0, 1)))
	f.Add(byte(PayloadNotify), pl(0, 0, 3, 4, 0x40, 0x09, 1, 2, 3, 4))
	f.Fuzz(func(t *testing.T, first byte, b []byte) {
		ps, err := DecodePayloads(PayloadType(first), b)
		if err != nil {
			return
		}
		out, err := AppendPayloads(nil, ps)
		if err != nil {
			t.Fatalf("decoded chain does not encode: %v", err)
		}
		ps2, err := DecodePayloads(PayloadType(first), out)
		if err != nil {
			t.Fatalf("re-encoded chain does not decode: %v", err)
		}
		if !sameStructure(&ps, &ps2) {
			t.Fatalf("structure changed")
		}
	})
}
