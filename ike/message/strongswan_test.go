package message

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
)

// TestStrongSwanIKESAInitRequest decodes an IKE_SA_INIT request captured
// from strongSwan 5.9.8 (see testdata/README.md) field by field.
func TestStrongSwanIKESAInitRequest(t *testing.T) {
	b := readHex(t, "strongswan-5.9.8-ike_sa_init-request.hex")
	if len(b) != 304 {
		t.Fatalf("vector is %d bytes, capture was 304", len(b))
	}
	m, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	h := m.Header
	if h.SPIi != 0x79bce365cfa83252 || h.SPIr != 0 {
		t.Errorf("spis %016x %016x", h.SPIi, h.SPIr)
	}
	if h.Exchange != ExchangeIKESAInit || h.Flags != FlagInitiator || !h.IsInitiator() || h.IsResponse() {
		t.Errorf("exchange %s flags %s", h.Exchange, h.Flags)
	}
	if h.MessageID != 0 || h.Length != 304 || h.NextPayload != PayloadSA {
		t.Errorf("message id %d length %d next %s", h.MessageID, h.Length, h.NextPayload)
	}

	var types []PayloadType
	for _, p := range m.Payloads {
		types = append(types, p.Type())
	}
	wantTypes := []PayloadType{PayloadSA, PayloadKE, PayloadNonce, PayloadNotify, PayloadNotify, PayloadNotify, PayloadNotify, PayloadNotify}
	if !sameStructure(&types, &wantTypes) {
		t.Fatalf("payloads %v, want %v", types, wantTypes)
	}

	sa := m.Payloads[0].(*SA)
	wantSA := &SA{Proposals: []Proposal{
		{Number: 1, Protocol: ProtocolIKE, Transforms: []Transform{
			{Type: TransformENCR, ID: uint16(EncrAESGCM16), KeyLength: 256},
			{Type: TransformENCR, ID: uint16(EncrAESGCM16), KeyLength: 128},
			{Type: TransformPRF, ID: uint16(PRFHMACSHA2_384)},
			{Type: TransformPRF, ID: uint16(PRFHMACSHA2_256)},
			{Type: TransformKE, ID: uint16(GroupCurve25519)},
			{Type: TransformKE, ID: uint16(GroupECP384)},
		}},
		{Number: 2, Protocol: ProtocolIKE, Transforms: []Transform{
			{Type: TransformENCR, ID: uint16(EncrAESCBC), KeyLength: 256},
			{Type: TransformINTEG, ID: uint16(IntegHMACSHA2_256_128)},
			{Type: TransformPRF, ID: uint16(PRFHMACSHA2_256)},
			{Type: TransformKE, ID: uint16(GroupMODP3072)},
		}},
	}}
	if !sameStructure(sa, wantSA) {
		t.Errorf("sa payload\n got %+v\nwant %+v", sa, wantSA)
	}
	if got := sa.Proposals[0].TransformsOf(TransformKE); len(got) != 2 || got[0].ID != 31 {
		t.Errorf("TransformsOf(KE) = %+v", got)
	}

	ke := m.Payloads[1].(*KE)
	if ke.Group != GroupCurve25519 || len(ke.Data) != 32 || ke.Data[0] != 0x68 || ke.Data[31] != 0x0e {
		t.Errorf("ke group %s, %d bytes", ke.Group, len(ke.Data))
	}
	nonce := m.Payloads[2].(*Nonce)
	if len(nonce.Data) != 32 || nonce.Data[0] != 0x6e || nonce.Data[31] != 0x31 {
		t.Errorf("nonce of %d bytes", len(nonce.Data))
	}

	notify := func(i int) *Notify {
		n := m.Payloads[i].(*Notify)
		if n.Protocol != ProtocolNone || len(n.SPI) != 0 {
			t.Errorf("notify %d: protocol %s spi %x", i, n.Protocol, n.SPI)
		}
		return n
	}
	for i, want := range []NotifyType{NotifyNATDetectionSourceIP, NotifyNATDetectionDestinationIP} {
		n := notify(3 + i)
		if n.NotifyType != want {
			t.Errorf("notify %d is %s, want %s", 3+i, n.NotifyType, want)
		}
		if h, err := n.NATDetectionHash(); err != nil || len(h) != 20 {
			t.Errorf("%s: hash %x, %v", n.NotifyType, h, err)
		}
	}
	if n := notify(3); !bytes.Equal(n.Data[:4], []byte{0xec, 0xbc, 0xc9, 0x4c}) {
		t.Errorf("NAT_DETECTION_SOURCE_IP data %x", n.Data)
	}
	if n := notify(5); n.NotifyType != NotifyIKEv2FragmentationSupported || len(n.Data) != 0 {
		t.Errorf("notify 5: %s with %x", n.NotifyType, n.Data)
	}
	n := notify(6)
	algs, err := n.SignatureHashAlgorithms()
	if err != nil {
		t.Fatal(err)
	}
	wantAlgs := []HashAlgorithm{HashSHA2_256, HashSHA2_384, HashSHA2_512, HashIdentity}
	if !sameStructure(&algs, &wantAlgs) {
		t.Errorf("SIGNATURE_HASH_ALGORITHMS %v, want %v", algs, wantAlgs)
	}
	if n := notify(7); n.NotifyType != NotifyRedirectSupported || len(n.Data) != 0 {
		t.Errorf("notify 7: %s with %x", n.NotifyType, n.Data)
	}
	if m.Encrypted() != nil {
		t.Error("IKE_SA_INIT reported as encrypted")
	}

	// strongSwan writes the canonical form (reserved octets zero, critical
	// bits clear, Key Length first), so re-encoding must give the capture
	// back byte for byte.
	out, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, b) {
		t.Errorf("re-encoded message differs\n got %x\nwant %x", out, b)
	}
}

// TestStrongSwanNoProposalChosen decodes strongSwan's IKE_SA_INIT error
// response.
func TestStrongSwanNoProposalChosen(t *testing.T) {
	b := readHex(t, "strongswan-5.9.8-ike_sa_init-no_proposal_chosen.hex")
	m, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	h := m.Header
	if h.SPIi != 0x79bce365cfa83252 || h.SPIr != 0xc4e57ca7de3aee8f || h.Flags != FlagResponse || h.Exchange != ExchangeIKESAInit {
		t.Errorf("header %+v", h)
	}
	if len(m.Payloads) != 1 {
		t.Fatalf("%d payloads", len(m.Payloads))
	}
	n, ok := m.Payloads[0].(*Notify)
	if !ok || n.NotifyType != NotifyNoProposalChosen || !n.IsError() || len(n.Data) != 0 {
		t.Errorf("payload %#v", m.Payloads[0])
	}
	out, err := m.Encode()
	if err != nil || !bytes.Equal(out, b) {
		t.Errorf("re-encode: %x, %v", out, err)
	}
}

func TestSummaries(t *testing.T) {
	m, err := Decode(readHex(t, "strongswan-5.9.8-ike_sa_init-request.hex"))
	if err != nil {
		t.Fatal(err)
	}
	want := "IKE_SA_INIT request 0 [ SA KE Ni/Nr N(NAT_DETECTION_SOURCE_IP) N(NAT_DETECTION_DESTINATION_IP) " +
		"N(IKEV2_FRAGMENTATION_SUPPORTED) N(SIGNATURE_HASH_ALGORITHMS) N(REDIRECT_SUPPORTED) ]"
	if got := m.String(); got != want {
		t.Errorf("summary\n got %q\nwant %q", got, want)
	}
	var names []string
	for _, tr := range m.Payloads[0].(*SA).Proposals[1].Transforms {
		names = append(names, tr.String())
	}
	if got := strings.Join(names, ","); got != "ENCR_AES_CBC_256,AUTH_HMAC_SHA2_256_128,PRF_HMAC_SHA2_256,MODP_3072" {
		t.Errorf("transforms %s", got)
	}
	m = &Message{Header: Header{Exchange: ExchangeIKEAuth, Flags: FlagResponse, MessageID: 1},
		Payloads: []Payload{&SKF{Number: 2, Total: 3}}}
	if got := m.String(); got != "IKE_AUTH response 1 [ SKF(2/3) ]" {
		t.Errorf("summary %q", got)
	}
	// Types we do not implement still print by their registry names:
	// RFC 9370's additional key exchanges name their method.
	for _, tc := range []struct {
		tr   Transform
		want string
	}{
		{Transform{Type: 6, ID: 36}, "ADDKE1/ML_KEM_768"},
		{Transform{Type: 12, ID: 37}, "ADDKE7/ML_KEM_1024"},
		{Transform{Type: 9, ID: 35}, "ADDKE4/ML_KEM_512"},
		{Transform{Type: TransformKE, ID: 36}, "ML_KEM_768"},
		{Transform{Type: 13, ID: 4}, "TransformType(13)/4"},
	} {
		if got := tc.tr.String(); got != tc.want {
			t.Errorf("transform %d/%d prints %q, want %q", tc.tr.Type, tc.tr.ID, got, tc.want)
		}
	}
}

func TestIDAndProposalAccessors(t *testing.T) {
	for _, s := range []string{"192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1"} {
		a := netip.MustParseAddr(s)
		id := IDFromAddr(a, false)
		got, ok := id.Addr()
		if !ok || got != a.Unmap() {
			t.Errorf("%s: Addr() = %v, %v", s, got, ok)
		}
	}
	if _, ok := (&ID{IDType: IDFQDN, Data: []byte("x")}).Addr(); ok {
		t.Error("fqdn read as an address")
	}
	p := Proposal{Protocol: ProtocolESP, SPI: []byte{0, 0, 1, 0}}
	if spi, ok := p.SPI32(); !ok || spi != 256 {
		t.Errorf("SPI32 = %d, %v", spi, ok)
	}
	if _, ok := (&Proposal{Protocol: ProtocolIKE}).SPI32(); ok {
		t.Error("empty spi read as a number")
	}
}
