package ike

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/xdpsec/xdpsec/ike/crypto"
	"github.com/xdpsec/xdpsec/ike/message"
	"github.com/xdpsec/xdpsec/internal/netlab"
)

// TestInitRequestConformance sends IKE_SA_INIT requests that RFC 7296
// refuses and checks the responder's answer: an unknown critical payload
// gets UNSUPPORTED_CRITICAL_PAYLOAD naming its type (2.5); a zero SPIi
// (3.1), an IKE proposal with an SPI (3.3.1) and a repeated SA, KE or
// Nonce payload get nothing and count as malformed. A well-formed request
// from the same socket is answered with an SA, so the silence is the
// refusal and not a broken request.
func TestInitRequestConformance(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	_, cb := siteConns(t, lab.V4, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	b := startEngine(t, lab.GwB, "gwB", fastOpts(), 0x2000)
	b.e.SetConns([]Conn{cb})

	conn := thirdParty(t, lab.GwA, netip.AddrPortFrom(lab.V4.GwAWAN, 500))
	kex, err := crypto.NewKeyExchange(crypto.GroupCurve25519)
	if err != nil {
		t.Fatal(err)
	}
	offer := func() *message.SA {
		return &message.SA{Proposals: toWire(cb.IKEProposals, message.ProtocolIKE, nil)}
	}
	ke := &message.KE{Group: message.GroupCurve25519, Data: kex.PublicKey()}
	nonce := func() *message.Nonce { return &message.Nonce{Data: randomBytes(32)} }
	withSPI := offer()
	withSPI.Proposals[0].SPI = make([]byte, 8)
	critical := &message.Unknown{PayloadType: 60, Critical: true}

	for _, tc := range []struct {
		name     string
		zeroSPI  bool
		payloads []message.Payload
		// want is the answer: "sa", a notify type, or "" for none.
		want string
	}{
		{"well-formed", false, []message.Payload{offer(), ke, nonce()}, "sa"},
		{"unknown critical payload", false, []message.Payload{offer(), ke, nonce(), critical}, message.NotifyUnsupportedCriticalPayload.String()},
		{"zero SPIi", true, []message.Payload{offer(), ke, nonce()}, ""},
		{"IKE proposal with an SPI", false, []message.Payload{withSPI, ke, nonce()}, ""},
		{"two SA payloads", false, []message.Payload{offer(), offer(), ke, nonce()}, ""},
		{"two KE payloads", false, []message.Payload{offer(), ke, ke, nonce()}, ""},
		{"two Nonce payloads", false, []message.Payload{offer(), ke, nonce(), nonce()}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spi := binary.BigEndian.Uint64(randomBytes(8)) | 1
			if tc.zeroSPI {
				spi = 0
			}
			m := &message.Message{Header: message.Header{SPIi: spi, Exchange: message.ExchangeIKESAInit, Flags: message.FlagInitiator},
				Payloads: tc.payloads}
			req, err := m.Encode()
			if err != nil {
				t.Fatal(err)
			}
			malformed := b.e.Stats().Dropped[DropMalformed]
			if _, err := conn.WriteToUDPAddrPort(req, netip.AddrPortFrom(lab.V4.GwBWAN, 500)); err != nil {
				t.Fatal(err)
			}
			got := initAnswer(t, conn)
			if got != tc.want {
				t.Errorf("answer %q, want %q", got, tc.want)
			}
			if n := b.e.Stats().Dropped[DropMalformed] - malformed; tc.want != "sa" && n != 1 {
				t.Errorf("%d datagrams counted malformed, want 1", n)
			}
		})
	}
}

// initAnswer reads the responder's answer to an IKE_SA_INIT request: "sa"
// for an SA payload, the type of its first notify otherwise, "" for none
// within 300 ms.
func initAnswer(t *testing.T, conn *net.UDPConn) string {
	t.Helper()
	buf := make([]byte, 2048)
	_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	n, err := conn.Read(buf)
	if err != nil {
		return ""
	}
	m, err := message.Decode(buf[:n])
	if err != nil {
		t.Fatalf("undecodable answer: %v", err)
	}
	for _, p := range m.Payloads {
		switch p := p.(type) {
		case *message.SA:
			return "sa"
		case *message.Notify:
			return p.NotifyType.String()
		}
	}
	return "other"
}
