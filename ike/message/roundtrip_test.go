package message

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"testing"
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// TestPayloadRoundTrip encodes each payload inside a message, checks the
// body bytes against the RFC layout written out by hand, decodes the
// message again and compares structures.
func TestPayloadRoundTrip(t *testing.T) {
	v4 := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	tests := []struct {
		name string
		p    Payload
		body string // expected payload body in hex
	}{
		{"sa ike two proposals", &SA{Proposals: []Proposal{
			{Number: 1, Protocol: ProtocolIKE, Transforms: []Transform{
				{Type: TransformENCR, ID: uint16(EncrAESGCM16), KeyLength: 256},
				{Type: TransformPRF, ID: uint16(PRFHMACSHA2_384)},
				{Type: TransformKE, ID: uint16(GroupECP384)},
			}},
			{Number: 2, Protocol: ProtocolIKE, Transforms: []Transform{
				{Type: TransformENCR, ID: uint16(EncrChaCha20Poly1305)},
				{Type: TransformPRF, ID: uint16(PRFHMACSHA2_256)},
				{Type: TransformKE, ID: uint16(GroupCurve25519)},
			}},
		}},
			"02000024" + "01010003" + "0300000c01000014800e0100" + "0300000802000006" + "0000000804000014" +
				"00000020" + "02010003" + "030000080100001c" + "0300000802000005" + "000000080400001f"},
		{"sa esp accepted proposal with spi and opaque attributes", &SA{Proposals: []Proposal{
			{Number: 3, Protocol: ProtocolESP, SPI: []byte{0xc0, 0x01, 0xd0, 0x0d}, Transforms: []Transform{
				{Type: TransformENCR, ID: uint16(EncrAESCBC), KeyLength: 128, Attributes: []TransformAttribute{
					{Type: 17, TV: true, Value: []byte{0, 9}},
					{Type: 18, Value: []byte{0xaa, 0xbb, 0xcc}},
				}},
				{Type: TransformESN, ID: uint16(ESNNo)},
			}},
		}},
			"0000002b" + "03030402" + "c001d00d" + "030000170100000c800e0080801100090012" + "0003aabbcc" + "0000000805000000"},
		{"sa ike rekey spi", &SA{Proposals: []Proposal{
			{Number: 1, Protocol: ProtocolIKE, SPI: seq(8), Transforms: []Transform{{Type: TransformENCR, ID: 20, KeyLength: 128}}},
		}}, "0000001c" + "01010801" + "0102030405060708" + "0000000c01000014800e0080"},
		{"ke", &KE{Group: GroupCurve25519, Data: seq(32)}, "001f0000" + hex.EncodeToString(seq(32))},
		{"idi fqdn", &ID{IDType: IDFQDN, Data: []byte("gw-a.example.com")}, "02000000" + hex.EncodeToString([]byte("gw-a.example.com"))},
		{"idr ipv4 keeps reserved octets", &ID{Responder: true, IDType: IDIPv4Addr, Reserved: [3]byte{1, 2, 3}, Data: []byte{192, 0, 2, 1}}, "01010203c0000201"},
		{"idr ipv6", IDFromAddr(netip.MustParseAddr("2001:db8::1"), true), "0500000020010db8000000000000000000000001"},
		{"idi der dn", &ID{IDType: IDDERASN1DN, Data: []byte{0x30, 0x00}}, "090000003000"},
		{"idi key id", &ID{IDType: IDKeyID, Data: []byte{0xde, 0xad}}, "0b000000dead"},
		{"idi rfc822", &ID{IDType: IDRFC822Addr, Data: []byte("a@b")}, "03000000" + "614062"},
		{"idi null", &ID{IDType: IDNull}, "0d000000"},
		{"cert", &Cert{Encoding: CertX509Signature, Data: []byte{0x30, 0x82}}, "043082"},
		{"certreq empty", &CertReq{Encoding: CertX509Signature}, "04"},
		{"certreq hashes", &CertReq{Encoding: CertX509Signature, Data: seq(40)}, "04" + hex.EncodeToString(seq(40))},
		{"auth psk", &Auth{Method: AuthSharedKeyMIC, Data: seq(32)}, "02000000" + hex.EncodeToString(seq(32))},
		{"nonce min", &Nonce{Data: seq(16)}, hex.EncodeToString(seq(16))},
		{"nonce max", &Nonce{Data: seq(256)}, hex.EncodeToString(seq(256))},
		{"notify initial contact", &Notify{NotifyType: NotifyInitialContact}, "00004000"},
		{"notify rekey sa", &Notify{Protocol: ProtocolESP, SPI: []byte{1, 2, 3, 4}, NotifyType: NotifyRekeySA}, "0304400901020304"},
		{"notify invalid ke", NewInvalidKEPayload(GroupECP256), "000000110013"},
		{"notify cookie", &Notify{NotifyType: NotifyCookie, Data: seq(8)}, "00004006" + "0102030405060708"},
		{"notify set window size", NewSetWindowSize(10), "000040010000000a"},
		{"notify unsupported critical", NewUnsupportedCriticalPayload(60), "000000013c"},
		{"notify ike spi", &Notify{Protocol: ProtocolIKE, SPI: seq(8), NotifyType: NotifyInvalidSPI}, "0108000b0102030405060708"},
		{"delete ike", &Delete{Protocol: ProtocolIKE}, "01000000"},
		{"delete esp", &Delete{Protocol: ProtocolESP, SPIs: []uint32{1, 0xdeadbeef}}, "030400020000000" + "1deadbeef"},
		{"vendor id", &VendorID{Data: []byte("xdpsec")}, hex.EncodeToString([]byte("xdpsec"))},
		{"vendor id empty", &VendorID{}, ""},
		{"tsi ipv4 prefix", &TS{Selectors: []TrafficSelector{SelectorFromPrefix(netip.MustParsePrefix("10.1.0.0/24"))}},
			"01000000" + "07000010" + "0000ffff" + "0a010000" + "0a0100ff"},
		{"tsr mixed", &TS{Responder: true, Selectors: []TrafficSelector{
			{Type: TSIPv4AddrRange, IPProtocol: 6, StartPort: 443, EndPort: 443, StartAddr: v4("192.0.2.1"), EndAddr: v4("192.0.2.9")},
			{Type: TSIPv6AddrRange, IPProtocol: 17, StartPort: 500, EndPort: 4500, StartAddr: netip.MustParseAddr("2001:db8::"), EndAddr: netip.MustParseAddr("2001:db8::ffff")},
			{Type: 10, Opaque: []byte{0, 1, 2}},
		}},
			"03000000" + "070600100" + "1bb01bbc0000201c0000209" +
				"08110028" + "01f41194" + "20010db8000000000000000000000000" + "20010db800000000000000000000ffff" +
				"0a000007000102"},
		{"cp request", &CP{CFGType: CFGRequest, Attributes: []CPAttribute{{Type: CPAttrInternalIP4Address}, {Type: CPAttrInternalIP4DNS}}},
			"01000000" + "00010000" + "00030000"},
		{"cp reply", &CP{CFGType: CFGReply, Attributes: []CPAttribute{{Type: CPAttrInternalIP4Address, Value: []byte{10, 3, 0, 7}}}},
			"02000000" + "00010004" + "0a030007"},
		{"cp empty ack", &CP{CFGType: CFGAck}, "04000000"},
		{"eap request", &EAP{Code: EAPRequest, Identifier: 7, Data: []byte{1, 'h', 'i'}}, "01070007016869"},
		{"eap success", &EAP{Code: EAPSuccess, Identifier: 8}, "03080004"},
		{"unknown non-critical", &Unknown{PayloadType: 49, Body: []byte{1, 2}}, "0102"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, err := tt.p.AppendBody(nil)
			if err != nil {
				t.Fatal(err)
			}
			if want := mustHex(tt.body); !bytes.Equal(body, want) {
				t.Errorf("body\n got %x\nwant %x", body, want)
			}
			m := &Message{
				Header:   Header{SPIi: 0x1122334455667788, SPIr: 0x99, Exchange: ExchangeIKEAuth, Flags: FlagInitiator, MessageID: 1},
				Payloads: []Payload{tt.p, &Notify{NotifyType: NotifyInitialContact}},
			}
			b, err := m.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != HeaderLen+4+len(body)+8 {
				t.Fatalf("message of %d bytes", len(b))
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			m.Header.NextPayload = tt.p.Type()
			m.Header.Length = uint32(len(b))
			if !sameStructure(got, m) {
				t.Errorf("round trip\n got %#v\nwant %#v", got.Payloads[0], m.Payloads[0])
			}
		})
	}
}

// TestEncodeRefusesWhatDecodeRejects checks that AppendBody validates, so a
// caller cannot put on the wire what our own decoder would refuse.
func TestEncodeRefusesWhatDecodeRejects(t *testing.T) {
	tests := []struct {
		name string
		p    Payload
	}{
		{"sa without proposals", &SA{}},
		{"proposal numbered 0", &SA{Proposals: []Proposal{{Number: 0, Protocol: ProtocolIKE, Transforms: []Transform{{Type: 1, ID: 20}}}}}},
		{"proposals not counting up", &SA{Proposals: []Proposal{
			{Number: 1, Protocol: ProtocolIKE, Transforms: []Transform{{Type: 1, ID: 20}}},
			{Number: 3, Protocol: ProtocolIKE, Transforms: []Transform{{Type: 1, ID: 20}}},
		}}},
		{"esp proposal without spi", &SA{Proposals: []Proposal{{Number: 1, Protocol: ProtocolESP, Transforms: []Transform{{Type: 1, ID: 20}}}}}},
		{"proposal without transforms", &SA{Proposals: []Proposal{{Number: 1, Protocol: ProtocolIKE}}}},
		{"tv attribute of 3 bytes", &SA{Proposals: []Proposal{{Number: 1, Protocol: ProtocolIKE, Transforms: []Transform{
			{Type: 1, ID: 20, Attributes: []TransformAttribute{{Type: 17, TV: true, Value: []byte{1, 2, 3}}}}}}}}},
		{"opaque key length", &SA{Proposals: []Proposal{{Number: 1, Protocol: ProtocolIKE, Transforms: []Transform{
			{Type: 1, ID: 20, Attributes: []TransformAttribute{{Type: AttrKeyLength, TV: true, Value: []byte{1, 0}}}}}}}}},
		{"ke without data", &KE{Group: 19}},
		{"ipv4 id of 3 bytes", &ID{IDType: IDIPv4Addr, Data: []byte{1, 2, 3}}},
		{"empty fqdn", &ID{IDType: IDFQDN}},
		{"empty cert", &Cert{Encoding: CertX509Signature}},
		{"empty auth", &Auth{Method: AuthSharedKeyMIC}},
		{"short nonce", &Nonce{Data: seq(15)}},
		{"long nonce", &Nonce{Data: seq(257)}},
		{"esp notify with 8-byte spi", &Notify{Protocol: ProtocolESP, SPI: seq(8), NotifyType: NotifyRekeySA}},
		{"ike delete with spis", &Delete{Protocol: ProtocolIKE, SPIs: []uint32{1}}},
		{"esp delete without spis", &Delete{Protocol: ProtocolESP}},
		{"ts without selectors", &TS{}},
		{"ipv4 ts with ipv6 addresses", &TS{Selectors: []TrafficSelector{{Type: TSIPv4AddrRange, StartAddr: netip.IPv6Loopback(), EndAddr: netip.IPv6Loopback()}}}},
		{"eap success with data", &EAP{Code: EAPSuccess, Data: []byte{1}}},
		{"eap request without type", &EAP{Code: EAPRequest}},
		{"skf fragment 3 of 2", &SKF{Number: 3, Total: 2, Body: []byte{1}}},
		{"sk without body", &SK{NextPayload: PayloadIDi}},
		{"unknown with a known type", &Unknown{PayloadType: PayloadSA}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if b, err := tt.p.AppendBody(nil); err == nil {
				t.Errorf("encoded to %x", b)
			}
		})
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	m := &Message{Header: Header{SPIi: 1, SPIr: 2, Exchange: ExchangeIKEIntermediate, Flags: FlagResponse | FlagVersion, MessageID: 0xfffffffe}}
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := mustHex("0000000000000001" + "0000000000000002" + "00202b30" + "fffffffe" + "0000001c")
	if !bytes.Equal(b, want) {
		t.Fatalf("header\n got %x\nwant %x", b, want)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	m.Header.Length = HeaderLen
	if !sameStructure(got, m) {
		t.Errorf("got %+v", got.Header)
	}
}

// TestHeaderIgnoresMinorVersionAndReservedFlags follows section 3.1: the
// minor version and reserved flag bits are ignored on receipt.
func TestHeaderIgnoresMinorVersionAndReservedFlags(t *testing.T) {
	b := msg(PayloadNone)
	b[17] = 0x27
	b[19] = 0xff
	h, err := DecodeHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	if h.Flags != FlagInitiator|FlagVersion|FlagResponse {
		t.Errorf("flags %s", h.Flags)
	}
}

func TestAppendToReusesBuffer(t *testing.T) {
	m := &Message{Header: Header{SPIi: 1, Exchange: ExchangeInformational}, Payloads: []Payload{&Delete{Protocol: ProtocolIKE}}}
	want, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4, 128) // room for a non-ESP marker
	out, err := m.AppendTo(buf)
	if err != nil {
		t.Fatal(err)
	}
	if &out[0] != &buf[0] || !bytes.Equal(out[4:], want) {
		t.Errorf("AppendTo did not append in place: %x", out)
	}
	if ike, ok := StripNonESPMarker(out); !ok || !bytes.Equal(ike, want) {
		t.Errorf("StripNonESPMarker = %x, %v", ike, ok)
	}
	if _, ok := StripNonESPMarker([]byte{0, 0, 0, 1, 2}); ok {
		t.Error("ESP SPI taken for a non-ESP marker")
	}
	if allocs := testing.AllocsPerRun(100, func() { _, _ = m.AppendTo(buf[:0]) }); allocs != 0 {
		t.Errorf("AppendTo into a large enough buffer allocates %v times", allocs)
	}
}

func TestEncodeRejectsMisplacedSK(t *testing.T) {
	sk := &SK{NextPayload: PayloadIDi, Body: seq(32)}
	m := &Message{Payloads: []Payload{sk, &Notify{NotifyType: NotifyInitialContact}}}
	if _, err := m.Encode(); err == nil {
		t.Error("sk before another payload encoded")
	}
	if _, err := AppendPayloads(nil, []Payload{sk}); err == nil {
		t.Error("sk inside an encrypted chain encoded")
	}
	if _, err := (&Message{Payloads: []Payload{nil}}).Encode(); err == nil {
		t.Error("nil payload encoded")
	}
	big := &VendorID{Data: make([]byte, 0x10000)}
	if _, err := (&Message{Payloads: []Payload{big}}).Encode(); err == nil {
		t.Error("payload over 65535 bytes encoded")
	}
}
