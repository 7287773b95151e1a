package message

import (
	"slices"
	"testing"
)

func TestNotifyAccessors(t *testing.T) {
	if g, err := NewInvalidKEPayload(GroupECP384).InvalidKEGroup(); err != nil || g != GroupECP384 {
		t.Errorf("InvalidKEGroup = %s, %v", g, err)
	}
	if _, err := (&Notify{NotifyType: NotifyInvalidKEPayload, Data: []byte{1}}).InvalidKEGroup(); err == nil {
		t.Error("1-byte INVALID_KE_PAYLOAD accepted")
	}
	if _, err := (&Notify{NotifyType: NotifyCookie, Data: []byte{0, 19}}).InvalidKEGroup(); err == nil {
		t.Error("COOKIE read as INVALID_KE_PAYLOAD")
	}
	if n, err := NewSetWindowSize(5).WindowSize(); err != nil || n != 5 {
		t.Errorf("WindowSize = %d, %v", n, err)
	}
	if _, err := (&Notify{NotifyType: NotifySetWindowSize, Data: []byte{1}}).WindowSize(); err == nil {
		t.Error("1-byte SET_WINDOW_SIZE accepted")
	}
	algs := []HashAlgorithm{HashSHA2_256, HashSHA2_512}
	if got, err := NewSignatureHashAlgorithms(algs...).SignatureHashAlgorithms(); err != nil || !slices.Equal(got, algs) {
		t.Errorf("SignatureHashAlgorithms = %v, %v", got, err)
	}
	if _, err := (&Notify{NotifyType: NotifySignatureHashAlgorithms, Data: []byte{0, 2, 0}}).SignatureHashAlgorithms(); err == nil {
		t.Error("odd-length SIGNATURE_HASH_ALGORITHMS accepted")
	}
	if c, err := (&Notify{NotifyType: NotifyCookie, Data: seq(64)}).Cookie(); err != nil || len(c) != 64 {
		t.Errorf("Cookie = %x, %v", c, err)
	}
	for _, n := range []int{0, 65} {
		if _, err := (&Notify{NotifyType: NotifyCookie, Data: seq(n)}).Cookie(); err == nil {
			t.Errorf("%d-byte cookie accepted", n)
		}
	}
	if _, err := (&Notify{NotifyType: NotifyNATDetectionSourceIP, Data: seq(19)}).NATDetectionHash(); err == nil {
		t.Error("19-byte nat detection hash accepted")
	}
	if spi, ok := (&Notify{Protocol: ProtocolESP, SPI: []byte{0xc0, 0, 0, 1}}).SPI32(); !ok || spi != 0xc0000001 {
		t.Errorf("SPI32 = %x, %v", spi, ok)
	}
	if (&Notify{NotifyType: NotifyInitialContact}).IsError() || !(&Notify{NotifyType: NotifyChildSANotFound}).IsError() {
		t.Error("IsError wrong")
	}
	n := NewUnsupportedCriticalPayload(99)
	if n.NotifyType != NotifyUnsupportedCriticalPayload || len(n.Data) != 1 || n.Data[0] != 99 {
		t.Errorf("UNSUPPORTED_CRITICAL_PAYLOAD %+v", n)
	}
}

func TestCertReqCAHashes(t *testing.T) {
	hs, err := (&CertReq{Encoding: CertX509Signature, Data: seq(40)}).CAHashes()
	if err != nil || len(hs) != 2 || hs[1][0] != 21 {
		t.Errorf("CAHashes = %x, %v", hs, err)
	}
	if _, err := (&CertReq{Data: seq(21)}).CAHashes(); err == nil {
		t.Error("21-byte authority field accepted")
	}
}

func TestStrings(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{PayloadSA.String(), "SA"}, {PayloadNotify.String(), "N"}, {PayloadSKF.String(), "SKF"},
		{PayloadType(99).String(), "PayloadType(99)"},
		{ExchangeIKESAInit.String(), "IKE_SA_INIT"}, {ExchangeIKEIntermediate.String(), "IKE_INTERMEDIATE"},
		{ExchangeType(40).String(), "ExchangeType(40)"},
		{TransformENCR.String(), "ENCR"}, {TransformKE.String(), "KE"}, {TransformESN.String(), "ESN"},
		{NotifyInvalidKEPayload.String(), "INVALID_KE_PAYLOAD"},
		{NotifyIKEv2FragmentationSupported.String(), "IKEV2_FRAGMENTATION_SUPPORTED"},
		{NotifySignatureHashAlgorithms.String(), "SIGNATURE_HASH_ALGORITHMS"},
		{NotifyType(12345).String(), "NotifyType(12345)"},
		{ProtocolESP.String(), "ESP"}, {IDDERASN1DN.String(), "ID_DER_ASN1_DN"},
		{EncrAESGCM16.String(), "ENCR_AES_GCM_16"}, {GroupCurve25519.String(), "CURVE25519"},
		{TSIPv6AddrRange.String(), "TS_IPV6_ADDR_RANGE"}, {CFGReply.String(), "CFG_REPLY"},
		{(FlagInitiator | FlagResponse).String(), "I|R"}, {Flags(0).String(), "-"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("String() = %q, want %q", tt.got, tt.want)
		}
	}
	// The RFC 7296 values the rest of the daemon relies on.
	nums := map[NotifyType]uint16{
		NotifyUnsupportedCriticalPayload: 1, NotifyInvalidMajorVersion: 5, NotifyInvalidSyntax: 7,
		NotifyNoProposalChosen: 14, NotifyInvalidKEPayload: 17, NotifyAuthenticationFailed: 24,
		NotifyTSUnacceptable: 38, NotifyTemporaryFailure: 43, NotifyChildSANotFound: 44,
		NotifyInitialContact: 16384, NotifyNATDetectionSourceIP: 16388, NotifyCookie: 16390,
		NotifyUseTransportMode: 16391, NotifyRekeySA: 16393, NotifyESPTFCPaddingNotSupported: 16394,
		NotifyNonFirstFragmentsAlso: 16395, NotifyIKEv2FragmentationSupported: 16430, NotifySignatureHashAlgorithms: 16431,
	}
	for n, v := range nums {
		if uint16(n) != v {
			t.Errorf("%s = %d, want %d", n, n, v)
		}
	}
}
