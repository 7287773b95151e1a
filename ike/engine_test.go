package ike

import (
	"bytes"
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xdpsec/xdpsec/ike/message"
	"github.com/xdpsec/xdpsec/internal/netlab"
)

// checkPair verifies that the two ends agree on one IKE SA and one CHILD SA
// with crosswise SPIs and keys, and returns the CHILD SAs (initiator's
// first).
func checkPair(t *testing.T, ini, resp *side) (ChildSA, ChildSA) {
	t.Helper()
	si, sr := ini.e.SAs(), resp.e.SAs()
	if len(si) != 1 || len(sr) != 1 {
		t.Fatalf("IKE SAs: initiator %d, responder %d; want 1 each", len(si), len(sr))
	}
	a, b := si[0], sr[0]
	if a.State != "ESTABLISHED" || b.State != "ESTABLISHED" {
		t.Errorf("states %s/%s, want ESTABLISHED", a.State, b.State)
	}
	if a.SPIi == 0 || a.SPIr == 0 || a.SPIi != b.SPIi || a.SPIr != b.SPIr {
		t.Errorf("IKE SPIs differ: %016x/%016x vs %016x/%016x", a.SPIi, a.SPIr, b.SPIi, b.SPIr)
	}
	if !a.Initiator || b.Initiator {
		t.Errorf("initiator flags %v/%v", a.Initiator, b.Initiator)
	}
	if a.Proposal == "" || a.Proposal != b.Proposal {
		t.Errorf("proposals %q / %q", a.Proposal, b.Proposal)
	}
	ci, cr := ini.inst.children(), resp.inst.children()
	if len(ci) != 1 || len(cr) != 1 {
		t.Fatalf("installed CHILD SAs: initiator %d, responder %d; want 1 each", len(ci), len(cr))
	}
	x, y := ci[0], cr[0]
	if !x.Initiator || y.Initiator {
		t.Errorf("child initiator flags %v/%v", x.Initiator, y.Initiator)
	}
	if x.SPIIn == 0 || x.SPIOut == 0 || x.SPIIn != y.SPIOut || x.SPIOut != y.SPIIn {
		t.Errorf("CHILD SPIs not crosswise: %08x/%08x vs %08x/%08x", x.SPIIn, x.SPIOut, y.SPIIn, y.SPIOut)
	}
	if x.IKESPIi != a.SPIi || x.IKESPIr != a.SPIr {
		t.Errorf("child IKE SPIs %016x/%016x", x.IKESPIi, x.IKESPIr)
	}
	if len(x.EncrKeyOut) == 0 || !bytes.Equal(x.EncrKeyOut, y.EncrKeyIn) || !bytes.Equal(x.EncrKeyIn, y.EncrKeyOut) ||
		!bytes.Equal(x.IntegKeyOut, y.IntegKeyIn) || !bytes.Equal(x.IntegKeyIn, y.IntegKeyOut) || bytes.Equal(x.EncrKeyIn, x.EncrKeyOut) {
		t.Errorf("CHILD keys not crosswise equal")
	}
	if x.Encr != y.Encr || x.KeyBits != y.KeyBits || x.Integ != y.Integ || x.ESN != y.ESN {
		t.Errorf("CHILD transforms differ: %+v vs %+v", x, y)
	}
	if !slices.Equal(x.LocalTS, y.RemoteTS) || !slices.Equal(x.RemoteTS, y.LocalTS) {
		t.Errorf("selectors differ: %v<->%v vs %v<->%v", x.LocalTS, x.RemoteTS, y.LocalTS, y.RemoteTS)
	}
	// Behind a NAT the initiator's own address differs from what the
	// responder sees; TestNATTraversal checks that case.
	if x.Remote != y.Local || !x.Encap && x.Local != y.Remote {
		t.Errorf("outer addresses %v->%v vs %v->%v", x.Local, x.Remote, y.Local, y.Remote)
	}
	return x, y
}

func TestSiteToSiteMatrix(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	v4 := lab.V4
	cases := []struct {
		ike, esp  string
		encr      uint16
		keyLen    int
		integ     uint16
		integKLen int
	}{
		{"aes256gcm16-prfsha256-x25519", "aes256gcm16", 20, 36, 0, 0},
		{"aes128-sha256-modp2048", "aes128-sha256", 12, 16, 12, 32},
		{"aes256-sha384-ecp384", "aes256gcm16", 20, 36, 0, 0},
		{"aes128gcm16-prfsha256-ecp256", "aes128-sha256", 12, 16, 12, 32},
	}
	for _, tc := range cases {
		for _, reverse := range []bool{false, true} {
			name := tc.ike + "/" + tc.esp
			if reverse {
				name += "/B-initiates"
			}
			t.Run(name, func(t *testing.T) {
				ca, cb := siteConns(t, v4, tc.ike, tc.esp)
				// Each side proposes a wider remote network than the
				// other has, so the responder must narrow.
				ca.Children[0].RemoteTS = []netip.Prefix{pfx("10.2.0.0/16")}
				cb.Children[0].RemoteTS = []netip.Prefix{pfx("10.1.0.0/16")}
				a := startEngine(t, lab.GwA, "gwA", fastOpts(), 0x1000)
				b := startEngine(t, lab.GwB, "gwB", fastOpts(), 0x2000)
				a.e.SetConns([]Conn{ca})
				b.e.SetConns([]Conn{cb})
				ini, resp := a, b
				if reverse {
					ini, resp = b, a
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := ini.e.Initiate(ctx, "s2s"); err != nil {
					t.Fatalf("Initiate: %v", err)
				}
				x, y := checkPair(t, ini, resp)
				if x.Encr != tc.encr || len(x.EncrKeyOut) != tc.keyLen || x.Integ != tc.integ || len(x.IntegKeyOut) != tc.integKLen {
					t.Errorf("child transforms: encr %d key %d bytes integ %d key %d bytes", x.Encr, len(x.EncrKeyOut), x.Integ, len(x.IntegKeyOut))
				}
				ca2, cb2 := x, y
				if reverse {
					ca2, cb2 = y, x
				}
				if !slices.Equal(ca2.LocalTS, []netip.Prefix{v4.LANA}) || !slices.Equal(ca2.RemoteTS, []netip.Prefix{v4.LANB}) {
					t.Errorf("gwA selectors %v === %v, want narrowed %v === %v", ca2.LocalTS, ca2.RemoteTS, v4.LANA, v4.LANB)
				}
				if !slices.Equal(cb2.LocalTS, []netip.Prefix{v4.LANB}) {
					t.Errorf("gwB local selectors %v", cb2.LocalTS)
				}
				if x.Encap || x.Local.Port() != 500 || x.Remote.Port() != 500 {
					t.Errorf("no NAT, yet encap %v ports %v->%v", x.Encap, x.Local, x.Remote)
				}
				sa := ini.e.SAs()[0]
				if sa.NATLocal || sa.NATRemote || len(sa.Children) != 1 || sa.Children[0].State != "INSTALLED" {
					t.Errorf("initiator SA %+v", sa)
				}
				st := resp.e.Stats()
				if st.HalfOpen != 0 || st.IKESAs != 1 {
					t.Errorf("responder stats %+v", st)
				}
				// Stopping the initiator deletes the SAs on both ends.
				ini.stop()
				waitFor(t, 3*time.Second, "responder to process the delete", func() bool { return len(resp.e.SAs()) == 0 })
				if d := resp.inst.deletedList(); len(d) != 1 || d[0].SPIIn != y.SPIIn {
					t.Errorf("responder's DeleteChild calls: %+v", d)
				}
				if d := ini.inst.deletedList(); len(d) != 1 || d[0].SPIIn != x.SPIIn {
					t.Errorf("initiator's DeleteChild calls: %+v", d)
				}
			})
		}
	}
}

func TestSiteToSiteIdentities(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	v4 := lab.V4
	cases := []struct {
		name       string
		aID, bID   [2]string
		bRemoteAny bool
	}{
		{"ipv4", [2]string{"ipv4", "192.0.2.1"}, [2]string{"ipv4", "192.0.2.2"}, false},
		{"ipv6", [2]string{"ipv6", "2001:db8::1"}, [2]string{"ipv6", "2001:db8::2"}, false},
		{"rfc822", [2]string{"rfc822", "a@example.com"}, [2]string{"rfc822", "b@example.com"}, false},
		{"dn", [2]string{"dn", "C=CH, O=xdpsec, CN=gw-a"}, [2]string{"dn", "C=CH, O=xdpsec, CN=gw-b"}, false},
		{"any-remote-id", [2]string{"fqdn", "gw-a.example.com"}, [2]string{"fqdn", "gw-b.example.com"}, true},
	}
	a := startEngine(t, lab.GwA, "gwA", fastOpts(), 0x1000)
	b := startEngine(t, lab.GwB, "gwB", fastOpts(), 0x2000)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ca, cb := siteConns(t, v4, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
			ida, idb := mustID(t, tc.aID[0], tc.aID[1]), mustID(t, tc.bID[0], tc.bID[1])
			ca.LocalID, ca.RemoteID = ida, idb
			cb.LocalID, cb.RemoteID = idb, ida
			if tc.bRemoteAny {
				cb.RemoteID = Identity{}
				cb.RemoteAddr = netip.Addr{}
			}
			a.e.SetConns([]Conn{ca})
			b.e.SetConns([]Conn{cb})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := a.e.Initiate(ctx, "s2s"); err != nil {
				t.Fatalf("Initiate: %v", err)
			}
			sb := b.e.SAs()
			if len(sb) != 1 || sb[0].RemoteID != ida.String() || sb[0].LocalID != idb.String() {
				t.Fatalf("gwB SAs %+v, want remote id %s", sb, ida)
			}
			// Removing the connection deletes its SAs on both ends.
			a.e.SetConns(nil)
			waitFor(t, 3*time.Second, "SAs to go", func() bool { return len(a.e.SAs()) == 0 && len(b.e.SAs()) == 0 })
		})
	}
}

func TestIdentityString(t *testing.T) {
	cases := []struct{ kind, in, want string }{
		{"ipv4", "192.0.2.1", "192.0.2.1"},
		{"ipv6", "2001:db8::1", "2001:db8::1"},
		{"fqdn", "gw.example.com", "gw.example.com"},
		{"rfc822", "a@example.com", "a@example.com"},
		// strongSwan's rendering: DER order, ", " (not pkix.Name's reversal).
		{"dn", "C=CH, O=xdpsec, CN=gw-a", "C=CH, O=xdpsec, CN=gw-a"},
		{"dn", "/O=Example, Inc./CN=gw", "/O=Example, Inc./CN=gw"},
	}
	for _, tc := range cases {
		id, err := NewIdentity(tc.kind, tc.in)
		if err != nil {
			t.Fatalf("%s %q: %v", tc.kind, tc.in, err)
		}
		if got := id.String(); got != tc.want {
			t.Errorf("%s %q: String %q, want %q", tc.kind, tc.in, got, tc.want)
		}
	}
	for _, bad := range [][2]string{{"ipv4", "2001:db8::1"}, {"ipv6", "192.0.2.1"}, {"rfc822", "nobody"}, {"dn", "XX=1"}, {"keyid", "x"}, {"fqdn", ""}} {
		if _, err := NewIdentity(bad[0], bad[1]); err == nil {
			t.Errorf("NewIdentity(%q, %q) accepted", bad[0], bad[1])
		}
	}
	if s := (Identity{}).String(); !strings.Contains(s, "any") {
		t.Errorf("zero identity %q", s)
	}
}

// TestIdentityEqual: identities compare as peers compare them.
func TestIdentityEqual(t *testing.T) {
	id := func(kind, s string) Identity {
		t.Helper()
		i, err := NewIdentity(kind, s)
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	ia5E := Identity{Type: message.IDDERASN1DN, Data: []byte("\x30\x21\x31\x1f\x30\x1d\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x09\x01\x16\x10gw-b@example.com")}
	utf8E := Identity{Type: message.IDDERASN1DN, Data: []byte("\x30\x21\x31\x1f\x30\x1d\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x09\x01\x0c\x10gw-b@example.com")}
	for _, tc := range []struct {
		name string
		a, b Identity
		want bool
	}{
		{"fqdn case", id("fqdn", "GW-B.Example.com"), id("fqdn", "gw-b.example.com"), true},
		{"fqdn other", id("fqdn", "gw-c.example.com"), id("fqdn", "gw-b.example.com"), false},
		{"email domain case", id("rfc822", "vpn@Example.COM"), id("rfc822", "vpn@example.com"), true},
		{"email local part is exact", id("rfc822", "VPN@example.com"), id("rfc822", "vpn@example.com"), false},
		{"dn case and spaces", id("dn", "C=CH, O=Example, CN=GW-B"), id("dn", "c=ch,o=example,  cn=gw-b"), true},
		{"dn E= IA5 against UTF8", ia5E, utf8E, true},
		{"dn order", id("dn", "CN=gw-b, O=Example, C=CH"), id("dn", "C=CH, O=Example, CN=gw-b"), false},
		{"types differ", id("fqdn", "gw-b"), id("rfc822", "a@gw-b"), false},
		{"address", id("ipv4", "192.0.2.1"), id("ipv4", "192.0.2.1"), true},
	} {
		if got := tc.a.Equal(tc.b); got != tc.want {
			t.Errorf("%s: %v.Equal(%v) = %v, want %v", tc.name, tc.a, tc.b, got, tc.want)
		}
		if tc.want && identityKey(tc.a) != identityKey(tc.b) {
			t.Errorf("%s: equal identities counted apart for INITIAL_CONTACT", tc.name)
		}
	}
}

func TestSiteToSiteIPv6(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	v6 := lab.V6
	ca, cb := siteConns(t, v6, "aes256gcm16-prfsha384-ecp384", "aes256gcm16")
	a := startEngine(t, lab.GwA, "gwA", fastOpts(), 0x1000)
	b := startEngine(t, lab.GwB, "gwB", fastOpts(), 0x2000)
	a.e.SetConns([]Conn{ca})
	b.e.SetConns([]Conn{cb})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.e.Initiate(ctx, "s2s"); err != nil {
		t.Fatal(err)
	}
	x, _ := checkPair(t, a, b)
	if x.Local.Addr() != v6.GwAWAN || x.Remote.Addr() != v6.GwBWAN {
		t.Errorf("outer addresses %v -> %v", x.Local, x.Remote)
	}
	if !slices.Equal(x.LocalTS, []netip.Prefix{v6.LANA}) || !slices.Equal(x.RemoteTS, []netip.Prefix{v6.LANB}) {
		t.Errorf("selectors %v === %v", x.LocalTS, x.RemoteTS)
	}
}

// TestResponderPicksConnByIDr gives the responder two connections for the
// same peer address that differ in their local identity: the IDr the
// initiator sends selects the second one in IKE_AUTH.
func TestResponderPicksConnByIDr(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	ca, cb := siteConns(t, lab.V4, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	other := cb
	other.Name = "other"
	other.LocalID = mustID(t, "fqdn", "other.example.com")
	other.PSK = []byte("a-different-psk-0123456789")
	a := startEngine(t, lab.GwA, "gwA", fastOpts(), 0x1000)
	b := startEngine(t, lab.GwB, "gwB", fastOpts(), 0x2000)
	a.e.SetConns([]Conn{ca})
	b.e.SetConns([]Conn{other, cb})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.e.Initiate(ctx, "s2s"); err != nil {
		t.Fatal(err)
	}
	checkPair(t, a, b)
	if sb := b.e.SAs(); sb[0].Conn != "s2s" || sb[0].LocalID != "gw-b.example.com" {
		t.Errorf("responder used connection %q as %s", sb[0].Conn, sb[0].LocalID)
	}
}

// TestShutdownUnansweredDeletes stops an engine whose peer no longer
// answers: Run must still return promptly and remove every CHILD SA.
func TestShutdownUnansweredDeletes(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	ca, cb := siteConns(t, lab.V4, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	var deaf atomic.Bool
	a := startEngine(t, lab.GwA, "gwA", fastOpts(), 0x1000)
	b := startEngine(t, lab.GwB, "gwB", fastOpts(), 0x2000, func(e *Engine) {
		e.dropHook = func(message.Header) bool { return deaf.Load() }
	})
	a.e.SetConns([]Conn{ca})
	b.e.SetConns([]Conn{cb})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const n = 3
	for range n {
		if err := a.e.Initiate(ctx, "s2s"); err != nil {
			t.Fatal(err)
		}
	}
	deaf.Store(true)
	start := time.Now()
	a.stop()
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Run took %v to return", d)
	}
	if len(a.inst.deletedList()) != n {
		t.Errorf("%d CHILD SAs deleted, want %d", len(a.inst.deletedList()), n)
	}
}
