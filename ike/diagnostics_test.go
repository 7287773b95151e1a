package ike

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/xdpsec/xdpsec/ike/message"
	"github.com/xdpsec/xdpsec/internal/netlab"
)

// failedInitiate initiates and expects the attempt to fail.
func failedInitiate(t *testing.T, s *side) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.e.Initiate(ctx, "s2s")
	if err == nil {
		t.Fatal("initiation succeeded")
	}
	return err
}

// TestDiagnosticsNameTheCause: each failure is logged in the words of the
// setting an operator has to look at, not a guess at another.
func TestDiagnosticsNameTheCause(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})

	t.Run("idr-not-our-local-id", func(t *testing.T) {
		// The initiator asks for gw-b.example.com; the responder is
		// configured as gw-x.example.com.
		a, b, _ := lifecyclePair(t, lab, "aes256gcm16", func(ca, cb *Conn) {
			cb.LocalID = mustID(t, "fqdn", "gw-x.example.com")
		})
		failedInitiate(t, a)
		if _, ok := findLog(b.logs, "asks for us as gw-b.example.com (its IDr)", "connection s2s has local_id gw-x.example.com"); !ok {
			t.Errorf("responder does not blame the IDr: %v", warnings(b))
		}
		if _, ok := findLog(b.logs, "no connection accepts identity"); ok {
			t.Error("responder blames the peer's identity, which its remote_id accepts")
		}
		// The initiator cannot know which: it lists what to check.
		if _, ok := findLog(a.logs, "refused our authentication (AUTHENTICATION_FAILED) without saying why",
			"remote_id accepts gw-a.example.com (our local_id)", "its local_id is gw-b.example.com"); !ok {
			t.Errorf("initiator's hint: %v", warnings(a))
		}
		if _, ok := findLog(a.logs, "pre-shared key mismatch?"); ok {
			t.Error("initiator guesses a key mismatch")
		}
	})

	t.Run("peer-identity-not-remote-id", func(t *testing.T) {
		// The responder has no local_id, so it is its address; the
		// initiator expects a name.
		a, _, _ := lifecyclePair(t, lab, "aes256gcm16", func(ca, cb *Conn) { cb.LocalID = Identity{} })
		failedInitiate(t, a)
		if _, ok := findLog(a.logs, "identified as 192.0.2.2, but our remote_id is gw-b.example.com"); !ok {
			t.Errorf("initiator's reason: %v", warnings(a))
		}
	})

	t.Run("rekey-refused-says-what-was-offered", func(t *testing.T) {
		a, b, w := lifecyclePair(t, lab, "aes256gcm16", func(ca, cb *Conn) {
			cb.Children[0].ESPProposals = mustESP(t, "aes256gcm16-x25519")
		})
		initiate(t, a)
		settled(t, a, b, w)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := a.e.Rekey(ctx, "s2s", "net")
		if err == nil || !strings.Contains(err.Error(), "peer sent NO_PROPOSAL_CHOSEN: we offered ENCR_AES_GCM_16_256") ||
			!strings.Contains(err.Error(), "without a key exchange") {
			t.Errorf("rekey error %v", err)
		}
	})
}

func warnings(s *side) []string {
	var out []string
	for _, e := range s.logs.All() {
		if e.Level >= zapcore.WarnLevel {
			out = append(out, e.Message)
		}
	}
	return out
}

// TestFragmentsNotNegotiated: a peer that sends RFC 7383 encrypted
// fragments anyway is told apart from a forger: counted as fragmented,
// not integrity, and said once per IKE SA.
func TestFragmentsNotNegotiated(t *testing.T) {
	c := authenticConn(t)
	p := newAuthenticPeer(t, &c)
	defer p.close()
	log, logs := testLogger(t, "gw")
	p.e.log = log
	for range 3 {
		p.sa.mu.Lock()
		id := p.sa.expectReqID
		p.sa.mu.Unlock()
		m := &message.Message{
			Header: message.Header{SPIi: p.spii, SPIr: p.spir, Exchange: message.ExchangeInformational,
				Flags: message.FlagInitiator, MessageID: id},
			Payloads: []message.Payload{&message.SKF{NextPayload: message.PayloadNotify, Number: 1, Total: 2, Body: make([]byte, 48)}},
		}
		b, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		p.e.handlePacket(b, p.from, p.to, false)
	}
	st := p.e.Stats()
	if st.Dropped[DropFragmented] != 3 || st.Dropped[DropIntegrity] != 0 {
		t.Errorf("drops %v, want 3 fragmented and no integrity", st.Dropped)
	}
	if n := logs.FilterMessageSnippet("encrypted fragments (RFC 7383)").Len(); n != 1 {
		t.Errorf("%d log lines about the fragments, want 1", n)
	}
}
