package ike

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xdpsec/xdpsec/ike/message"
	"github.com/xdpsec/xdpsec/internal/netlab"
)

// TestFailures runs the negotiation failures between two xdpsec engines and
// checks the notification on the wire (through the initiator's error), the
// operator's log line on both ends, and that nothing half-open is left.
func TestFailures(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	v4 := lab.V4
	const ike, esp = "aes256gcm16-prfsha256-x25519", "aes256gcm16"
	cases := []struct {
		name      string
		modify    func(a, b *Conn)
		reverse   bool   // gwB initiates
		errHas    string // in Initiate's error
		iniLog    []string
		respLog   []string
		ikeSAKept bool // the IKE SA survives (only the CHILD SA failed)
	}{
		{name: "psk-a-initiates", modify: func(a, b *Conn) { b.PSK = []byte("another-psk-0123456789") },
			errHas: "AUTHENTICATION_FAILED", iniLog: []string{"refused our authentication (AUTHENTICATION_FAILED) without saying why", "pre-shared keys match", "conn=s2s"},
			respLog: []string{"authentication failed for peer 192.0.2.1:500: pre-shared key mismatch?", "remote_id=gw-a.example.com"}},
		{name: "psk-b-initiates", reverse: true, modify: func(a, b *Conn) { b.PSK = []byte("another-psk-0123456789") },
			errHas: "AUTHENTICATION_FAILED", iniLog: []string{"refused our authentication (AUTHENTICATION_FAILED) without saying why", "pre-shared keys match"},
			respLog: []string{"authentication failed for peer 192.0.2.2:500: pre-shared key mismatch?"}},
		{name: "responder-auth-rejected", modify: func(a, b *Conn) { a.RemoteID = mustID(t, "fqdn", "gw-b.example.com"); b.LocalID = Identity{} },
			errHas: "AUTHENTICATION_FAILED", iniLog: []string{"authentication failed for peer", "it identified as 192.0.2.2, but our remote_id is gw-b.example.com"},
			respLog: []string{"rejected our authentication (AUTHENTICATION_FAILED)", "remote_id accepts 192.0.2.2 (our local_id)"}},
		{name: "unknown-identity", modify: func(a, b *Conn) { a.LocalID = mustID(t, "fqdn", "mallory.example.com") },
			errHas: "AUTHENTICATION_FAILED", iniLog: []string{"refused our authentication (AUTHENTICATION_FAILED)", "remote_id accepts mallory.example.com (our local_id)"},
			respLog: []string{"no connection accepts identity mallory.example.com"}},
		{name: "ike-proposal", modify: func(a, b *Conn) { b.IKEProposals = mustIKE(t, "aes128-sha256-modp3072") },
			errHas: "NO_PROPOSAL_CHOSEN", iniLog: []string{"no common IKE proposal", "ours=aes256gcm16-prfsha256-x25519"},
			respLog: []string{"no common IKE proposal", "received=ENCR_AES_GCM_16_256", "CURVE25519", "configured=aes128-sha256-prfsha256-modp3072"}},
		{name: "esp-proposal", modify: func(a, b *Conn) { b.Children[0].ESPProposals = mustESP(t, "aes128-sha256") },
			errHas: "NO_PROPOSAL_CHOSEN", ikeSAKept: true, iniLog: []string{"no common ESP proposal", "aes256gcm16"},
			respLog: []string{"no common ESP proposal", "received ENCR_AES_GCM_16_256/NO_ESN", "configured aes128-sha256"}},
		{name: "ts", modify: func(a, b *Conn) { b.Children[0].RemoteTS = []netip.Prefix{pfx("10.9.0.0/24")} },
			errHas: "TS_UNACCEPTABLE", ikeSAKept: true, iniLog: []string{"TS_UNACCEPTABLE", "local 10.1.0.0/24 remote 10.2.0.0/24"},
			respLog: []string{"traffic selectors unacceptable", "received TSi 10.1.0.0/24 TSr 10.2.0.0/24", "configured local 10.2.0.0/24 remote 10.9.0.0/24"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ca, cb := siteConns(t, v4, ike, esp)
			tc.modify(&ca, &cb)
			a := startEngine(t, lab.GwA, "gwA", fastOpts(), 0x1000)
			b := startEngine(t, lab.GwB, "gwB", fastOpts(), 0x2000)
			a.e.SetConns([]Conn{ca})
			b.e.SetConns([]Conn{cb})
			ini, resp := a, b
			if tc.reverse {
				ini, resp = b, a
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := ini.e.Initiate(ctx, "s2s")
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("Initiate error %v, want one naming %s", err, tc.errHas)
			}
			want := map[string]FailureReason{"AUTHENTICATION_FAILED": FailAuth, "NO_PROPOSAL_CHOSEN": FailNoProposal, "TS_UNACCEPTABLE": FailTSUnacceptable}[tc.errHas]
			var ne *NegotiationError
			if got := ReasonOf(err); got != want || !errors.As(err, &ne) || ne.IKEUp != tc.ikeSAKept {
				t.Errorf("Initiate error %v: reason %s (IKE SA up %v), want %s (%v)", err, got, ne != nil && ne.IKEUp, want, tc.ikeSAKept)
			}
			if e, ok := findLog(ini.logs, tc.iniLog...); !ok {
				t.Errorf("initiator did not log %q", tc.iniLog)
			} else if e.ContextMap()["conn"] != "s2s" || e.ContextMap()["peer"] == nil || e.ContextMap()["spi"] == nil || e.ContextMap()["exchange"] == nil {
				t.Errorf("initiator's line lacks conn/peer/spi/exchange: %v", e.ContextMap())
			}
			waitFor(t, 3*time.Second, "responder's log line", func() bool { _, ok := findLog(resp.logs, tc.respLog...); return ok })
			for _, s := range []*side{ini, resp} {
				if tc.ikeSAKept {
					if sas := s.e.SAs(); len(sas) != 1 || sas[0].State != "ESTABLISHED" || len(sas[0].Children) != 0 {
						t.Errorf("want the IKE SA established without children: %+v", sas)
					}
					if n := len(s.inst.children()); n != 0 {
						t.Errorf("%d CHILD SAs installed", n)
					}
				} else {
					waitFor(t, 3*time.Second, "no SAs left", func() bool { return len(s.e.SAs()) == 0 })
				}
				if st := s.e.Stats(); st.HalfOpen != 0 {
					t.Errorf("half-open gauge %d", st.HalfOpen)
				}
			}
		})
	}
}

func TestInvalidKERetry(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	ca, cb := siteConns(t, lab.V4, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	ca.IKEProposals = mustIKE(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16-prfsha256-ecp256")
	cb.IKEProposals = mustIKE(t, "aes256gcm16-prfsha256-ecp256")
	// Any local address on both ends: the initiator looks up its source
	// address in its namespace, the responder learns it per packet.
	ca.LocalAddr, cb.LocalAddr = netip.Addr{}, netip.Addr{}
	a := startEngine(t, lab.GwA, "gwA", fastOpts(), 0x1000)
	b := startEngine(t, lab.GwB, "gwB", fastOpts(), 0x2000)
	a.e.SetConns([]Conn{ca})
	b.e.SetConns([]Conn{cb})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.e.Initiate(ctx, "s2s"); err != nil {
		t.Fatal(err)
	}
	checkPair(t, a, b)
	if p := a.e.SAs()[0].Proposal; !strings.Contains(p, "ECP_256") {
		t.Errorf("proposal %q, want ECP_256", p)
	}
	key := ExchangeKey{"IKE_SA_INIT", "responder", ResultInvalidKE}
	if n := b.e.Stats().Exchanges[key]; n != 1 {
		t.Errorf("responder sent INVALID_KE_PAYLOAD %d times, want 1", n)
	}
	if n := a.e.Stats().Exchanges[ExchangeKey{"IKE_SA_INIT", "initiator", ResultInvalidKE}]; n != 1 {
		t.Errorf("initiator retried %d times, want 1", n)
	}
}

func TestNATTraversal(t *testing.T) {
	netlab.RequireRoot(t)
	cases := []struct {
		name       string
		nat, force bool
	}{
		{"nat", true, false},
		{"force-encap", false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true, NAT: tc.nat})
			v4 := lab.V4
			ca, cb := siteConns(t, v4, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
			ca.ForceEncap = tc.force
			a := startEngine(t, lab.GwA, "gwA", fastOpts(), 0x1000)
			b := startEngine(t, lab.GwB, "gwB", fastOpts(), 0x2000)
			a.e.SetConns([]Conn{ca})
			b.e.SetConns([]Conn{cb})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := a.e.Initiate(ctx, "s2s"); err != nil {
				t.Fatal(err)
			}
			x, y := checkPair(t, a, b)
			sa, sb := a.e.SAs()[0], b.e.SAs()[0]
			if tc.nat && (!sa.NATLocal || !sb.NATRemote) {
				t.Errorf("NAT: gwA local %v, gwB remote %v; want both", sa.NATLocal, sb.NATRemote)
			}
			if tc.force && (sa.NATLocal || !sb.NATRemote) {
				t.Errorf("forced encap: gwA local %v, gwB remote %v; want false/true", sa.NATLocal, sb.NATRemote)
			}
			for _, s := range []IKESAInfo{sa, sb} {
				if s.Local.Port() != 4500 {
					t.Errorf("IKE SA local %v, want port 4500", s.Local)
				}
			}
			if !x.Encap || !y.Encap || x.Local.Port() != 4500 || x.Remote.Port() != 4500 || y.Local.Port() != 4500 {
				t.Errorf("CHILD SAs not encapsulated on 4500: %v->%v (%v), %v->%v (%v)", x.Local, x.Remote, x.Encap, y.Local, y.Remote, y.Encap)
			}
			if y.Remote.Addr() != v4.GwAPublic {
				t.Errorf("gwB's remote %v, want %v", y.Remote, v4.GwAPublic)
			}
		})
	}
}

// TestRetransmission loses the first IKE_SA_INIT request at the responder
// and the first IKE_SA_INIT and IKE_AUTH responses at the initiator: the
// initiator retransmits, and the responder answers the repeated requests
// from its cache without processing them again.
func TestRetransmission(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	ca, cb := siteConns(t, lab.V4, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	var initReqs, initResps, authResps atomic.Int32
	a := startEngine(t, lab.GwA, "gwA", fastOpts(), 0x1000, func(e *Engine) {
		e.dropHook = func(h message.Header) bool {
			switch {
			case h.Exchange == message.ExchangeIKESAInit && h.IsResponse():
				return initResps.Add(1) == 1
			case h.Exchange == message.ExchangeIKEAuth && h.IsResponse():
				return authResps.Add(1) == 1
			}
			return false
		}
	})
	b := startEngine(t, lab.GwB, "gwB", fastOpts(), 0x2000, func(e *Engine) {
		e.dropHook = func(h message.Header) bool {
			return h.Exchange == message.ExchangeIKESAInit && !h.IsResponse() && initReqs.Add(1) == 1
		}
	})
	a.e.SetConns([]Conn{ca})
	b.e.SetConns([]Conn{cb})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.e.Initiate(ctx, "s2s"); err != nil {
		t.Fatal(err)
	}
	checkPair(t, a, b)
	if n := a.e.Stats().Retransmits; n != 3 {
		t.Errorf("initiator retransmitted %d times, want 3", n)
	}
	sb := b.e.Stats()
	if sb.CachedResponses != 2 {
		t.Errorf("responder answered %d requests from its cache, want 2", sb.CachedResponses)
	}
	for _, ex := range []string{"IKE_SA_INIT", "IKE_AUTH"} {
		if n := sb.Exchanges[ExchangeKey{ex, "responder", ResultOK}]; n != 1 {
			t.Errorf("responder processed %s %d times, want 1", ex, n)
		}
	}
	if n := len(b.inst.children()); n != 1 {
		t.Errorf("responder installed %d CHILD SAs, want 1", n)
	}
	// The CHILD SA is an outcome, not an exchange: the exchanges counter
	// holds only real exchange types, each once.
	for key := range sb.Exchanges {
		if key.Exchange == "CHILD_SA" {
			t.Errorf("exchange counter has a CHILD_SA pseudo-exchange: %v", sb.Exchanges)
		}
	}
	if n := sb.ChildSAs[ExchangeKey{Role: "responder", Result: ResultOK}]; n != 1 {
		t.Errorf("responder counted %d CHILD SAs created, want 1 (%v)", n, sb.ChildSAs)
	}
}

// TestTimeout initiates towards a peer that never answers.
func TestTimeout(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	ca, _ := siteConns(t, lab.V4, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	a := startEngine(t, lab.GwA, "gwA", fastOpts(), 0x1000)
	a.e.SetConns([]Conn{ca})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	err := a.e.Initiate(ctx, "s2s")
	if err == nil || !strings.Contains(err.Error(), "timed out") || !strings.Contains(err.Error(), "IKE_SA_INIT") {
		t.Fatalf("Initiate error %v, want an IKE_SA_INIT timeout", err)
	}
	if r := ReasonOf(err); r != FailTimeout {
		t.Errorf("timeout classified as %s", r)
	}
	// 200 ms, then x1.5 for each of 3 retransmits: 0.2+0.3+0.45+0.675 s.
	if d := time.Since(start); d < 1500*time.Millisecond {
		t.Errorf("gave up after %v, before the back-off schedule ran out", d)
	}
	if n := a.e.Stats().Retransmits; n != 3 {
		t.Errorf("%d retransmits, want 3", n)
	}
	if sas := a.e.SAs(); len(sas) != 0 {
		t.Errorf("SAs left: %+v", sas)
	}
	if _, ok := findLog(a.logs, "giving up", "exchange=IKE_SA_INIT"); !ok {
		t.Error("no log line for the timeout")
	}
	// A cancelled context ends the attempt early, leaving nothing behind.
	cctx, ccancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer ccancel()
	if err := a.e.Initiate(cctx, "s2s"); err == nil || !strings.Contains(err.Error(), "deadline") {
		t.Errorf("Initiate with a short deadline: %v", err)
	}
	if sas := a.e.SAs(); len(sas) != 0 {
		t.Errorf("SAs left after cancel: %+v", sas)
	}
}

func TestTransportMode(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	v4 := lab.V4
	cases := []struct {
		name         string
		modeA, modeB Mode
		want         Mode
	}{
		{"both", ModeTransport, ModeTransport, ModeTransport},
		{"initiator only", ModeTransport, ModeTunnel, ModeTunnel},
		{"responder only", ModeTunnel, ModeTransport, ModeTunnel},
	}
	a := startEngine(t, lab.GwA, "gwA", fastOpts(), 0x1000)
	b := startEngine(t, lab.GwB, "gwB", fastOpts(), 0x2000)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a.inst.reset()
			b.inst.reset()
			ca, cb := siteConns(t, v4, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
			// Host to host: the selectors are the gateways themselves.
			ca.Children[0].LocalTS, ca.Children[0].RemoteTS = []netip.Prefix{pfx("192.0.2.1/32")}, []netip.Prefix{pfx("192.0.2.2/32")}
			cb.Children[0].LocalTS, cb.Children[0].RemoteTS = []netip.Prefix{pfx("192.0.2.2/32")}, []netip.Prefix{pfx("192.0.2.1/32")}
			ca.Children[0].Mode, cb.Children[0].Mode = tc.modeA, tc.modeB
			a.e.SetConns([]Conn{ca})
			b.e.SetConns([]Conn{cb})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := a.e.Initiate(ctx, "s2s"); err != nil {
				t.Fatal(err)
			}
			x, y := checkPair(t, a, b)
			if x.Mode != tc.want || y.Mode != tc.want {
				t.Errorf("modes %v/%v, want %v", x.Mode, y.Mode, tc.want)
			}
			a.e.SetConns(nil)
			waitFor(t, 3*time.Second, "SAs to go", func() bool { return len(a.e.SAs()) == 0 && len(b.e.SAs()) == 0 })
		})
	}
}

// TestUnsupportedCritical sends an authentic INFORMATIONAL request with an
// unknown payload marked critical: the peer must answer with
// UNSUPPORTED_CRITICAL_PAYLOAD (RFC 7296 2.5) and keep the SA.
func TestUnsupportedCritical(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	ca, cb := siteConns(t, lab.V4, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	a := startEngine(t, lab.GwA, "gwA", fastOpts(), 0x1000)
	b := startEngine(t, lab.GwB, "gwB", fastOpts(), 0x2000)
	a.e.SetConns([]Conn{ca})
	b.e.SetConns([]Conn{cb})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.e.Initiate(ctx, "s2s"); err != nil {
		t.Fatal(err)
	}
	a.e.mu.Lock()
	var sa *ikeSA
	for _, s := range a.e.sas {
		sa = s
	}
	a.e.mu.Unlock()
	sa.mu.Lock()
	pkt, err := sa.protect(message.ExchangeInformational, sa.nextReqID, false,
		[]message.Payload{&message.Unknown{PayloadType: 200, Critical: true, Body: []byte{1, 2, 3}}})
	if err != nil {
		sa.mu.Unlock()
		t.Fatal(err)
	}
	sa.sendRequest(message.ExchangeInformational, pkt)
	sa.mu.Unlock()
	waitFor(t, 3*time.Second, "peer's answer", func() bool {
		sa.mu.Lock()
		defer sa.mu.Unlock()
		return sa.out == nil
	})
	// A request with a message ID out of the window is dropped, counted
	// and not answered.
	sa.mu.Lock()
	wrong, err := sa.protect(message.ExchangeInformational, sa.nextReqID+5, false, nil)
	from, to := sa.local, sa.remote
	sa.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	a.e.transmit(from, to, wrong[0])
	waitFor(t, 3*time.Second, "the drop", func() bool { return b.e.Stats().Dropped[DropUnexpectedMsgID] == 1 })
	if _, ok := findLog(b.logs, "undecodable request", "UNSUPPORTED_CRITICAL_PAYLOAD"); !ok {
		t.Error("responder did not log the unsupported critical payload")
	}
	if sas := b.e.SAs(); len(sas) != 1 || sas[0].State != "ESTABLISHED" {
		t.Errorf("responder SAs %+v", sas)
	}
}
