package message

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// tr builds a transform substructure with a correct length.
func tr(marker byte, typ TransformType, id uint16, attrs ...byte) []byte {
	b := []byte{marker, 0, 0, 0, byte(typ), 0, 0, 0}
	binary.BigEndian.PutUint16(b[6:], id)
	b = append(b, attrs...)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	return b
}

// prop builds a proposal substructure with a correct length.
func prop(marker, num byte, proto ProtocolID, spi []byte, nt byte, transforms ...[]byte) []byte {
	b := []byte{marker, 0, 0, 0, num, byte(proto), byte(len(spi)), nt}
	b = append(b, spi...)
	b = append(b, cat(transforms...)...)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	return b
}

// setLen overwrites the 16-bit length at offset 2.
func setLen(b []byte, n int) []byte {
	b = bytes.Clone(b)
	binary.BigEndian.PutUint16(b[2:], uint16(n))
	return b
}

func TestDecodeMalformed(t *testing.T) {
	encr := tr(0, TransformENCR, 20, 0x80, 0x0e, 0x01, 0x00)
	okProp := prop(0, 1, ProtocolIKE, nil, 1, encr)
	sa := func(body ...[]byte) []byte { return msg(PayloadSA, pl(0, 0, cat(body...)...)) }
	one := func(t PayloadType, body ...byte) []byte { return msg(t, pl(0, 0, body...)) }
	nonce := pl(0, 0, seq(16)...)
	tsV4 := []byte{7, 0, 0, 16, 0, 0, 0xff, 0xff, 10, 0, 0, 0, 10, 0, 0, 255}

	tests := []struct {
		name   string
		b      []byte
		notify NotifyType
		data   []byte
	}{
		// IKE header (3.1).
		{"empty datagram", nil, NotifyInvalidSyntax, nil},
		{"27-byte header", msg(PayloadNone)[:27], NotifyInvalidSyntax, nil},
		{"major version 1", func() []byte { b := msg(PayloadNone); b[17] = 0x10; return b }(), NotifyInvalidMajorVersion, nil},
		{"major version 3", func() []byte { b := msg(PayloadNone); b[17] = 0x30; return b }(), NotifyInvalidMajorVersion, nil},
		{"length above datagram", func() []byte { b := msg(PayloadNone); b[27]++; return b }(), NotifyInvalidSyntax, nil},
		{"length below datagram", append(msg(PayloadNone), 0), NotifyInvalidSyntax, nil},
		// The marker shifts the header by four bytes: the version octet then
		// reads SPIr's zero, so this is the error the caller gets.
		{"non-esp marker left on", append([]byte{0, 0, 0, 0}, msg(PayloadNone)...), NotifyInvalidMajorVersion, nil},

		// Generic payload header and chain (3.2).
		{"next payload but no bytes", msg(PayloadNonce), NotifyInvalidSyntax, nil},
		{"generic header truncated", msg(PayloadNonce, []byte{0, 0, 0}), NotifyInvalidSyntax, nil},
		{"payload length 3", msg(PayloadNonce, setLen(nonce, 3)), NotifyInvalidSyntax, nil},
		{"payload length 0", msg(PayloadNonce, setLen(nonce, 0)), NotifyInvalidSyntax, nil},
		{"payload overruns datagram", msg(PayloadNonce, setLen(nonce, 21)), NotifyInvalidSyntax, nil},
		{"chain ends with bytes left", msg(PayloadNonce, nonce, []byte{0}), NotifyInvalidSyntax, nil},
		{"second payload missing", msg(PayloadNonce, pl(PayloadNonce, 0, seq(16)...)), NotifyInvalidSyntax, nil},
		{"unknown critical payload", msg(PayloadNonce, pl(60, 0, seq(16)...), pl(0, 0x80, 1, 2)), NotifyUnsupportedCriticalPayload, []byte{60}},
		{"critical ikev1 payload type", msg(1, pl(0, 0xff)), NotifyUnsupportedCriticalPayload, []byte{1}},
		{"sk not last", msg(PayloadSK, pl(PayloadIDi, 0, seq(20)...), nonce), NotifyInvalidSyntax, nil},
		{"sk without body", msg(PayloadSK, pl(PayloadIDi, 0)), NotifyInvalidSyntax, nil},

		// SA (3.3).
		{"sa without proposals", sa(), NotifyInvalidSyntax, nil},
		{"proposal header truncated", sa(okProp[:7]), NotifyInvalidSyntax, nil},
		{"proposal length 7", sa(setLen(okProp, 7)), NotifyInvalidSyntax, nil},
		{"proposal overruns sa", sa(setLen(okProp, len(okProp)+1)), NotifyInvalidSyntax, nil},
		{"proposal last but more follow", sa(okProp, prop(0, 2, ProtocolIKE, nil, 1, encr)), NotifyInvalidSyntax, nil},
		{"proposal more but none follows", sa(prop(2, 1, ProtocolIKE, nil, 1, encr)), NotifyInvalidSyntax, nil},
		{"proposal marker 3", sa(prop(3, 1, ProtocolIKE, nil, 1, encr)), NotifyInvalidSyntax, nil},
		{"proposals numbered 1 and 3", sa(prop(2, 1, ProtocolIKE, nil, 1, encr), prop(0, 3, ProtocolIKE, nil, 1, encr)), NotifyInvalidSyntax, nil},
		{"proposals numbered 2 and 3", sa(prop(2, 2, ProtocolIKE, nil, 1, encr), prop(0, 3, ProtocolIKE, nil, 1, encr)), NotifyInvalidSyntax, nil},
		{"single proposal numbered 0", sa(prop(0, 0, ProtocolIKE, nil, 1, encr)), NotifyInvalidSyntax, nil},
		{"proposal for protocol 0", sa(prop(0, 1, ProtocolNone, nil, 1, encr)), NotifyInvalidSyntax, nil},
		{"ike spi of 4 bytes", sa(prop(0, 1, ProtocolIKE, seq(4), 1, encr)), NotifyInvalidSyntax, nil},
		{"esp without spi", sa(prop(0, 1, ProtocolESP, nil, 1, encr)), NotifyInvalidSyntax, nil},
		{"ah spi of 8 bytes", sa(prop(0, 1, ProtocolAH, seq(8), 1, encr)), NotifyInvalidSyntax, nil},
		{"spi overruns proposal", sa(func() []byte { p := prop(0, 1, ProtocolESP, seq(4), 0); p[6] = 9; return p }()), NotifyInvalidSyntax, nil},
		{"proposal without transforms", sa(prop(0, 1, ProtocolIKE, nil, 0)), NotifyInvalidSyntax, nil},
		{"transform count too high", sa(prop(0, 1, ProtocolIKE, nil, 2, encr)), NotifyInvalidSyntax, nil},
		{"transform count too low", sa(prop(0, 1, ProtocolIKE, nil, 1, tr(3, TransformENCR, 20), tr(0, TransformPRF, 5))), NotifyInvalidSyntax, nil},
		{"transform header truncated", sa(prop(0, 1, ProtocolIKE, nil, 1, encr[:7])), NotifyInvalidSyntax, nil},
		{"transform length 7", sa(prop(0, 1, ProtocolIKE, nil, 1, setLen(encr, 7))), NotifyInvalidSyntax, nil},
		{"transform overruns proposal", sa(prop(0, 1, ProtocolIKE, nil, 1, setLen(encr, len(encr)+4))), NotifyInvalidSyntax, nil},
		{"transform last but more follow", sa(prop(0, 1, ProtocolIKE, nil, 2, tr(0, TransformENCR, 20), tr(0, TransformPRF, 5))), NotifyInvalidSyntax, nil},
		{"transform more but none follows", sa(prop(0, 1, ProtocolIKE, nil, 1, tr(3, TransformENCR, 20))), NotifyInvalidSyntax, nil},
		{"transform marker 2", sa(prop(0, 1, ProtocolIKE, nil, 1, tr(2, TransformENCR, 20))), NotifyInvalidSyntax, nil},
		{"attribute header truncated", sa(prop(0, 1, ProtocolIKE, nil, 1, tr(0, TransformENCR, 20, 0x80, 0x0e))), NotifyInvalidSyntax, nil},
		{"tlv attribute overruns", sa(prop(0, 1, ProtocolIKE, nil, 1, tr(0, TransformENCR, 20, 0x00, 0x11, 0x00, 0x05, 1, 2))), NotifyInvalidSyntax, nil},
		{"key length in tlv format", sa(prop(0, 1, ProtocolIKE, nil, 1, tr(0, TransformENCR, 20, 0x00, 0x0e, 0x00, 0x02, 1, 0))), NotifyInvalidSyntax, nil},
		{"key length 0", sa(prop(0, 1, ProtocolIKE, nil, 1, tr(0, TransformENCR, 20, 0x80, 0x0e, 0, 0))), NotifyInvalidSyntax, nil},
		{"two key lengths", sa(prop(0, 1, ProtocolIKE, nil, 1, tr(0, TransformENCR, 20, 0x80, 0x0e, 1, 0, 0x80, 0x0e, 0, 128))), NotifyInvalidSyntax, nil},

		// KE, ID, CERT, AUTH, Nonce (3.4-3.9).
		{"ke body of 3 bytes", one(PayloadKE, 0, 19, 0), NotifyInvalidSyntax, nil},
		{"ke without data", one(PayloadKE, 0, 19, 0, 0), NotifyInvalidSyntax, nil},
		{"id body of 3 bytes", one(PayloadIDi, 2, 0, 0), NotifyInvalidSyntax, nil},
		{"ipv4 id of 5 bytes", one(PayloadIDi, 1, 0, 0, 0, 1, 2, 3, 4, 5), NotifyInvalidSyntax, nil},
		{"ipv6 id of 4 bytes", one(PayloadIDr, 5, 0, 0, 0, 1, 2, 3, 4), NotifyInvalidSyntax, nil},
		{"empty fqdn id", one(PayloadIDi, 2, 0, 0, 0), NotifyInvalidSyntax, nil},
		{"id_null with data", one(PayloadIDi, 13, 0, 0, 0, 1), NotifyInvalidSyntax, nil},
		{"empty cert body", one(PayloadCERT), NotifyInvalidSyntax, nil},
		{"cert without data", one(PayloadCERT, 4), NotifyInvalidSyntax, nil},
		{"empty certreq body", one(PayloadCERTREQ), NotifyInvalidSyntax, nil},
		{"auth body of 3 bytes", one(PayloadAUTH, 2, 0, 0), NotifyInvalidSyntax, nil},
		{"auth without data", one(PayloadAUTH, 2, 0, 0, 0), NotifyInvalidSyntax, nil},
		{"nonce of 15 bytes", one(PayloadNonce, seq(15)...), NotifyInvalidSyntax, nil},
		{"nonce of 257 bytes", one(PayloadNonce, seq(257)...), NotifyInvalidSyntax, nil},
		{"empty nonce", one(PayloadNonce), NotifyInvalidSyntax, nil},

		// Notify (3.10).
		{"notify body of 3 bytes", one(PayloadNotify, 0, 0, 0x40), NotifyInvalidSyntax, nil},
		{"notify spi overruns", one(PayloadNotify, 3, 4, 0x40, 0x09, 1, 2, 3), NotifyInvalidSyntax, nil},
		{"esp notify spi of 3 bytes", one(PayloadNotify, 3, 3, 0x40, 0x09, 1, 2, 3), NotifyInvalidSyntax, nil},
		{"ike notify spi of 4 bytes", one(PayloadNotify, 1, 4, 0, 11, 1, 2, 3, 4), NotifyInvalidSyntax, nil},
		{"notify spi without protocol", one(PayloadNotify, 0, 4, 0, 11, 1, 2, 3, 4), NotifyInvalidSyntax, nil},

		// Delete (3.11).
		{"delete body of 3 bytes", one(PayloadDelete, 1, 0, 0), NotifyInvalidSyntax, nil},
		{"ike delete with spi size 8", one(PayloadDelete, 1, 8, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8), NotifyInvalidSyntax, nil},
		{"ike delete with spi count", one(PayloadDelete, 1, 0, 0, 1), NotifyInvalidSyntax, nil},
		{"esp delete with spi size 8", one(PayloadDelete, 3, 8, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8), NotifyInvalidSyntax, nil},
		{"esp delete count above spis", one(PayloadDelete, 3, 4, 0, 2, 1, 2, 3, 4), NotifyInvalidSyntax, nil},
		{"esp delete count below spis", one(PayloadDelete, 3, 4, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8), NotifyInvalidSyntax, nil},
		{"esp delete huge count", one(PayloadDelete, 3, 4, 0xff, 0xff, 1, 2, 3, 4), NotifyInvalidSyntax, nil},
		{"esp delete without spis", one(PayloadDelete, 3, 4, 0, 0), NotifyInvalidSyntax, nil},
		{"delete for protocol 9", one(PayloadDelete, 9, 4, 0, 1, 1, 2, 3, 4), NotifyInvalidSyntax, nil},

		// TS (3.13).
		{"ts body of 3 bytes", one(PayloadTSi, 1, 0, 0), NotifyInvalidSyntax, nil},
		{"ts without selectors", one(PayloadTSi, 0, 0, 0, 0), NotifyInvalidSyntax, nil},
		{"ts count above selectors", one(PayloadTSi, cat([]byte{2, 0, 0, 0}, tsV4)...), NotifyInvalidSyntax, nil},
		{"ts bytes after selectors", one(PayloadTSr, cat([]byte{1, 0, 0, 0}, tsV4, []byte{0})...), NotifyInvalidSyntax, nil},
		{"ts huge count", one(PayloadTSr, cat([]byte{255, 0, 0, 0}, tsV4)...), NotifyInvalidSyntax, nil},
		{"selector header truncated", one(PayloadTSi, 1, 0, 0, 0, 7, 0, 0), NotifyInvalidSyntax, nil},
		{"selector length 3", one(PayloadTSi, cat([]byte{1, 0, 0, 0}, setLen(tsV4, 3))...), NotifyInvalidSyntax, nil},
		{"selector overruns payload", one(PayloadTSi, cat([]byte{1, 0, 0, 0}, setLen(tsV4, 17))...), NotifyInvalidSyntax, nil},
		{"ipv4 selector of 20 bytes", one(PayloadTSi, cat([]byte{1, 0, 0, 0}, setLen(tsV4, 20), seq(4))...), NotifyInvalidSyntax, nil},
		{"ipv6 selector of 16 bytes", one(PayloadTSi, cat([]byte{1, 0, 0, 0}, []byte{8}, tsV4[1:])...), NotifyInvalidSyntax, nil},

		// CP (3.15), EAP (3.16).
		{"cp body of 3 bytes", one(PayloadCP, 1, 0, 0), NotifyInvalidSyntax, nil},
		{"cp attribute header truncated", one(PayloadCP, 1, 0, 0, 0, 0, 1, 0), NotifyInvalidSyntax, nil},
		{"cp attribute overruns", one(PayloadCP, 2, 0, 0, 0, 0, 1, 0, 4, 10, 0, 0), NotifyInvalidSyntax, nil},
		{"eap of 3 bytes", one(PayloadEAP, 1, 1, 0), NotifyInvalidSyntax, nil},
		{"eap length above body", one(PayloadEAP, 1, 1, 0, 6, 1), NotifyInvalidSyntax, nil},
		{"eap length below body", one(PayloadEAP, 3, 1, 0, 4, 1), NotifyInvalidSyntax, nil},
		{"eap request without type", one(PayloadEAP, 1, 1, 0, 4), NotifyInvalidSyntax, nil},

		// SKF (RFC 7383).
		{"skf body of 3 bytes", msg(PayloadSKF, pl(PayloadIDi, 0, 0, 1, 0)), NotifyInvalidSyntax, nil},
		{"skf fragment 0", msg(PayloadSKF, pl(PayloadIDi, 0, 0, 0, 0, 2, 1)), NotifyInvalidSyntax, nil},
		{"skf total 0", msg(PayloadSKF, pl(PayloadIDi, 0, 0, 1, 0, 0, 1)), NotifyInvalidSyntax, nil},
		{"skf fragment 3 of 2", msg(PayloadSKF, pl(0, 0, 0, 3, 0, 2, 1)), NotifyInvalidSyntax, nil},
		{"skf without body", msg(PayloadSKF, pl(PayloadIDi, 0, 0, 1, 0, 1)), NotifyInvalidSyntax, nil},
		{"skf not last", msg(PayloadSKF, pl(PayloadIDi, 0, 0, 1, 0, 1, 9), nonce), NotifyInvalidSyntax, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Decode(tt.b)
			if err == nil {
				t.Fatalf("decoded %+v", m)
			}
			if m != nil {
				t.Error("message returned with an error")
			}
			var me *Error
			if !errors.As(err, &me) {
				t.Fatalf("error %v is not an *Error", err)
			}
			if me.Notify != tt.notify || !bytes.Equal(me.Data, tt.data) {
				t.Errorf("got %s data %x (%v), want %s data %x", me.Notify, me.Data, err, tt.notify, tt.data)
			}
			n, d, ok := NotifyOf(err)
			if !ok || n != tt.notify || !bytes.Equal(d, tt.data) {
				t.Errorf("NotifyOf = %s %x %v", n, d, ok)
			}
		})
	}
}

// TestDecodeAcceptsEdgeCases pins the inputs that are odd but legal, so a
// later tightening of the checks cannot reject them unnoticed.
func TestDecodeAcceptsEdgeCases(t *testing.T) {
	tests := []struct {
		name  string
		b     []byte
		check func(t *testing.T, m *Message)
	}{
		{"no payloads", msg(PayloadNone), func(t *testing.T, m *Message) {
			if len(m.Payloads) != 0 {
				t.Errorf("%d payloads", len(m.Payloads))
			}
		}},
		{"unknown non-critical payload kept", msg(PayloadNonce, pl(60, 0, seq(16)...), pl(0, 0, 1, 2)), func(t *testing.T, m *Message) {
			u, ok := m.Payloads[1].(*Unknown)
			if !ok || u.PayloadType != 60 || !bytes.Equal(u.Body, []byte{1, 2}) || u.Critical {
				t.Errorf("payload %#v", m.Payloads[1])
			}
		}},
		{"known payload with critical bit", msg(PayloadNonce, pl(0, 0x80, seq(16)...)), func(t *testing.T, m *Message) {
			if _, ok := m.Payloads[0].(*Nonce); !ok {
				t.Errorf("payload %#v", m.Payloads[0])
			}
		}},
		{"notify with protocol but no spi", msg(PayloadNotify, pl(0, 0, 3, 0, 0x40, 0x00)), func(t *testing.T, m *Message) {
			if n := m.Payloads[0].(*Notify); n.Protocol != ProtocolESP || n.NotifyType != NotifyInitialContact {
				t.Errorf("notify %+v", n)
			}
		}},
		{"unknown protocol proposal keeps its spi", msg(PayloadSA, pl(0, 0, prop(0, 1, 4, seq(3), 1, tr(0, 1, 20))...)), func(t *testing.T, m *Message) {
			if p := m.Payloads[0].(*SA).Proposals[0]; p.Protocol != 4 || len(p.SPI) != 3 {
				t.Errorf("proposal %+v", p)
			}
		}},
		{"skf fragment 2 of 2", msg(PayloadSKF, pl(0, 0, 0, 2, 0, 2, 9, 9)), func(t *testing.T, m *Message) {
			f := m.Payloads[0].(*SKF)
			if f.Number != 2 || f.Total != 2 || f.NextPayload != PayloadNone || !bytes.Equal(f.Body, []byte{9, 9}) {
				t.Errorf("skf %+v", f)
			}
		}},
		{"opaque selector type", msg(PayloadTSi, pl(0, 0, 1, 0, 0, 0, 10, 0, 0, 6, 0xaa, 0xbb)), func(t *testing.T, m *Message) {
			s := m.Payloads[0].(*TS).Selectors[0]
			if s.Type != 10 || !bytes.Equal(s.Opaque, []byte{0xaa, 0xbb}) || s.Prefixes() != nil {
				t.Errorf("selector %+v", s)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Decode(tt.b)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, m)
		})
	}
}

func TestDecodeHeaderOnError(t *testing.T) {
	b := msg(PayloadNone)
	b[17] = 0x30
	binary.BigEndian.PutUint32(b[20:], 7)
	h, err := DecodeHeader(b)
	if n, _, _ := NotifyOf(err); n != NotifyInvalidMajorVersion {
		t.Fatalf("error %v", err)
	}
	if h.SPIi != 0x0102030405060708 || h.MessageID != 7 {
		t.Errorf("header not filled in: %+v", h)
	}
	if _, err := DecodeHeader(b[:10]); err == nil {
		t.Error("10-byte header decoded")
	}
}

func TestErrorText(t *testing.T) {
	_, err := Decode(msg(PayloadSA, pl(0, 0, prop(0, 1, ProtocolESP, nil, 1, tr(0, 1, 20))...)))
	want := "ike message: payload 1 (SA): proposal 1: ESP spi of 0 bytes (INVALID_SYNTAX)"
	if err == nil || err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if _, _, ok := NotifyOf(errors.New("other")); ok {
		t.Error("NotifyOf accepted a foreign error")
	}
}
