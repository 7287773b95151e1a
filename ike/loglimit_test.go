package ike

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/xdpsec/xdpsec/ike/crypto"
	"github.com/xdpsec/xdpsec/ike/message"
)

func TestLogLimiter(t *testing.T) {
	l := newLogLimiter()
	t0 := time.Unix(1000, 0)
	if ok, _, _ := l.allow("a", t0); !ok {
		t.Fatal("first line refused")
	}
	if ok, _, _ := l.allow("a", t0.Add(500*time.Millisecond)); ok {
		t.Error("the same kind twice within a second")
	}
	// Distinct keys share the global budget: the first line took one.
	// Every refusal is reported once, by the next line let through.
	allowed, reported := 0, 0
	for i := range 100 {
		ok, n, _ := l.allow(string(rune('b'+i)), t0.Add(600*time.Millisecond))
		if ok {
			allowed++
		}
		reported += n
	}
	if allowed != logLinesPerSecond-1 {
		t.Errorf("%d distinct lines allowed in the first second, want %d", allowed, logLinesPerSecond-1)
	}
	ok, n, since := l.allow("z", t0.Add(1100*time.Millisecond))
	refused := 1 + 100 - allowed
	if !ok || reported+n != refused || !since.Equal(t0.Add(600*time.Millisecond)) {
		t.Errorf("next second: allowed %v, %d+%d suppressed (last run since %v); want true, %d in all, since %v",
			ok, reported, n, since, refused, t0.Add(600*time.Millisecond))
	}
	if _, n, _ := l.allow("y", t0.Add(1200*time.Millisecond)); n != 0 {
		t.Errorf("the suppressed count was reported twice (%d)", n)
	}
}

// TestLogFlood sends 5,000 IKE_SA_INIT requests from spoofed sources with
// 40 proposals of 20 transforms each, none acceptable: the log gets a
// bounded number of WARN lines of bounded size, however many sources.
func TestLogFlood(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	e := newEngine(Options{Logger: zap.New(core)})
	defer e.cancel()
	e.SetConns([]Conn{{Name: "any", PSK: []byte(testPSK), IKEProposals: mustIKE(t, "aes256gcm16-prfsha256-x25519")}})
	kex, err := crypto.NewKeyExchange(crypto.GroupCurve25519)
	if err != nil {
		t.Fatal(err)
	}
	var big []message.Proposal
	for i := range 40 {
		p := message.Proposal{Number: uint8(i + 1), Protocol: message.ProtocolIKE}
		for j := range 20 {
			p.Transforms = append(p.Transforms, message.Transform{Type: message.TransformENCR, ID: uint16(1000 + j)})
		}
		big = append(big, p)
	}
	local := netip.MustParseAddrPort("192.0.2.2:500")
	start := time.Now()
	for i := range 5000 {
		m := &message.Message{
			Header: message.Header{SPIi: uint64(i + 1), Exchange: message.ExchangeIKESAInit, Flags: message.FlagInitiator},
			Payloads: []message.Payload{&message.SA{Proposals: big}, &message.KE{Group: message.GroupCurve25519, Data: kex.PublicKey()},
				&message.Nonce{Data: make([]byte, 32)}},
		}
		b, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		var src [4]byte
		binary.BigEndian.PutUint32(src[:], 0xc6120000+uint32(i)) // 198.18.0.0/15, one address each
		e.handlePacket(b, netip.AddrPortFrom(netip.AddrFrom4(src), 500), local, false)
	}
	secs := int(time.Since(start)/time.Second) + 1
	var lines, size int
	for _, l := range logs.All() {
		if l.Level < zapcore.WarnLevel {
			continue
		}
		lines++
		size += len(l.Message)
		for _, f := range l.Context {
			size += len(f.Key) + len(f.String)
		}
	}
	if max := (logLinesPerSecond + 1) * secs; lines > max || lines == 0 {
		t.Errorf("%d WARN lines for 5,000 spoofed requests in %d s, want 1..%d", lines, secs, max)
	}
	if size > 1024*lines {
		t.Errorf("%d bytes in %d lines: the received proposals are not bounded", size, lines)
	}
	if st := e.Stats(); st.Exchanges[ExchangeKey{"IKE_SA_INIT", "responder", ResultNoProposal}] != 5000 {
		t.Errorf("refusals counted: %v; want all 5,000, logged or not", st.Exchanges)
	}
	for _, l := range logs.All() {
		if strings.Contains(l.Message, "no common IKE proposal") {
			for _, f := range l.Context {
				if f.Key == "received" && !strings.Contains(f.String, "more proposals") {
					t.Errorf("received offer rendered in full: %d bytes", len(f.String))
				}
			}
			break
		}
	}
}
