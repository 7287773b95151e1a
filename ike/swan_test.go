package ike

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xdpsec/xdpsec/ike/message"
	"github.com/xdpsec/xdpsec/internal/netlab"
	"github.com/xdpsec/xdpsec/internal/swan"
)

// swanConn is gwB's strongSwan view of the site-to-site connection.
func swanConn(v4 netlab.Addrs, ike, esp, psk string) swan.Conn {
	return swan.Conn{
		Name:       "s2s",
		LocalAddrs: []string{v4.GwBWAN.String()}, RemoteAddrs: []string{v4.GwAPublic.String()},
		LocalID: "gw-b.example.com", RemoteID: "gw-a.example.com", PSK: psk,
		Proposals: []string{ike},
		Children: []swan.Child{{
			Name: "net", LocalTS: []string{v4.LANB.String()}, RemoteTS: []string{"10.1.0.0/16"},
			ESPProposals: []string{esp}, StartAction: "none",
		}},
	}
}

// interopLab is a lab with xdpsec on gwA and charon on gwB.
type interopLab struct {
	lab *netlab.Lab
	x   *side
	ch  *swan.Charon
}

func newInteropLab(t *testing.T, nat bool) *interopLab {
	return newInteropLabWith(t, nat, fastOpts(), 0xc1000000, swan.Options{})
}

// newInteropLabWith starts xdpsec with opts on gwA and charon with sopts
// on gwB (strongSwan 6 from its root when sopts.Root is set).
func newInteropLabWith(t *testing.T, nat bool, opts Options, spiBase uint32, sopts swan.Options) *interopLab {
	netlab.RequireRoot(t)
	if sopts.Root == "" {
		swan.RequireCharon(t)
	}
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true, NAT: nat})
	return &interopLab{
		lab: lab,
		x:   startEngine(t, lab.GwA, "xdpsec", opts, spiBase),
		ch:  swan.Start(t, lab.GwB, sopts),
	}
}

// withCharon6 runs fn in the subtest strongswan-6.1 with the root of
// strongSwan 6 (Debian sid); that subtest, not the caller, is skipped
// where the root cannot be built.
func withCharon6(t *testing.T, fn func(t *testing.T, root string)) {
	t.Run("strongswan-6.1", func(t *testing.T) { fn(t, swan.RequireCharon6(t)) })
}

// initiates names a subtest after the side that initiates.
func initiates(xInit bool) string {
	if xInit {
		return "xdpsec-initiates"
	}
	return "charon-initiates"
}

// checkInterop compares xdpsec's and charon's view of the SAs.
func checkInterop(t *testing.T, l *interopLab, sw swan.IKESA, xInitiator bool) {
	t.Helper()
	v4 := l.lab.V4
	xs := l.x.e.SAs()
	if len(xs) != 1 {
		t.Fatalf("xdpsec IKE SAs: %+v", xs)
	}
	x := xs[0]
	if x.State != "ESTABLISHED" || !sw.Established() {
		t.Errorf("states: xdpsec %s, charon %s", x.State, sw.State)
	}
	if x.SPIi != sw.SPIi || x.SPIr != sw.SPIr {
		t.Errorf("IKE SPIs: xdpsec %016x/%016x, charon %016x/%016x", x.SPIi, x.SPIr, sw.SPIi, sw.SPIr)
	}
	if x.Initiator != xInitiator || sw.Initiator == xInitiator {
		t.Errorf("initiator: xdpsec %v charon %v", x.Initiator, sw.Initiator)
	}
	// charon (kernel-libipsec) fakes its NAT-D hash: we see it behind NAT.
	if !x.NATRemote || x.Local.Port() != 4500 || x.Remote.Port() != 4500 {
		t.Errorf("xdpsec: NAT remote %v, ports %v -> %v; want NAT and 4500", x.NATRemote, x.Local, x.Remote)
	}
	if sw.Local.Port() != 4500 || sw.Remote.Port() != 4500 {
		t.Errorf("charon ports %v -> %v", sw.Local, sw.Remote)
	}
	chs := l.x.inst.children()
	swc, ok := sw.Child("net")
	if len(chs) != 1 || !ok {
		t.Fatalf("CHILD SAs: xdpsec %d, charon %v", len(chs), ok)
	}
	c := chs[0]
	if c.SPIIn != swc.SPIOut || c.SPIOut != swc.SPIIn {
		t.Errorf("CHILD SPIs: xdpsec in %08x out %08x, charon in %08x out %08x", c.SPIIn, c.SPIOut, swc.SPIIn, swc.SPIOut)
	}
	if !c.Encap || !swc.Encap || swc.State != "INSTALLED" {
		t.Errorf("encap: xdpsec %v charon %v, charon state %s", c.Encap, swc.Encap, swc.State)
	}
	if !slices.Equal(c.LocalTS, []netip.Prefix{v4.LANA}) || !slices.Equal(c.RemoteTS, []netip.Prefix{v4.LANB}) {
		t.Errorf("xdpsec selectors %v === %v", c.LocalTS, c.RemoteTS)
	}
	if !slices.Equal(swc.LocalTS, c.RemoteTS) || !slices.Equal(swc.RemoteTS, c.LocalTS) {
		t.Errorf("charon selectors %v === %v, xdpsec %v === %v", swc.LocalTS, swc.RemoteTS, c.LocalTS, c.RemoteTS)
	}
}

func TestStrongSwanInterop(t *testing.T) {
	cases := []struct{ ike, esp string }{
		{"aes256gcm16-prfsha256-x25519", "aes256gcm16"},
		{"aes128-sha256-modp2048", "aes128-sha256"},
		{"aes256-sha384-ecp384", "aes256gcm16"},
		{"aes128gcm16-prfsha256-ecp256", "aes128-sha256"},
	}
	l := newInteropLab(t, false)
	for _, tc := range cases {
		for _, xInit := range []bool{true, false} {
			t.Run(tc.ike+"/"+tc.esp+"/"+initiates(xInit), func(t *testing.T) { interopCase(t, l, tc.ike, tc.esp, xInit) })
		}
	}
	withCharon6(t, func(t *testing.T, root string) {
		l := newInteropLabWith(t, false, fastOpts(), 0xc1000000, swan.Options{Root: root})
		tc := cases[0]
		for _, xInit := range []bool{true, false} {
			t.Run(tc.ike+"/"+tc.esp+"/"+initiates(xInit), func(t *testing.T) { interopCase(t, l, tc.ike, tc.esp, xInit) })
		}
	})
}

// interopCase brings up a site-to-site SA with proposals ike and esp,
// checks both ends' view of it, and has charon delete it.
func interopCase(t *testing.T, l *interopLab, ike, esp string, xInit bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v4 := l.lab.V4
	ca, _ := siteConns(t, v4, ike, esp)
	ca.Children[0].RemoteTS = []netip.Prefix{pfx("10.2.0.0/16")}
	l.x.inst.reset()
	l.x.e.SetConns([]Conn{ca})
	if err := l.ch.LoadConn(ctx, swanConn(v4, ike, esp, testPSK)); err != nil {
		t.Fatal(err)
	}
	sw := upWith(ctx, t, l, xInit)
	checkInterop(t, l, sw, xInit)
	// charon deletes; xdpsec must answer and forget the SA.
	if err := l.ch.Terminate(ctx, "s2s"); err != nil {
		t.Fatalf("terminate: %v", err)
	}
	waitFor(t, 5*time.Second, "xdpsec to process charon's delete", func() bool { return len(l.x.e.SAs()) == 0 })
}

func TestStrongSwanBehindNAT(t *testing.T) {
	l := newInteropLab(t, true)
	v4 := l.lab.V4
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ca, _ := siteConns(t, v4, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	ca.Children[0].RemoteTS = []netip.Prefix{pfx("10.2.0.0/16")}
	l.x.e.SetConns([]Conn{ca})
	if err := l.ch.LoadConn(ctx, swanConn(v4, "aes256gcm16-prfsha256-x25519", "aes256gcm16", testPSK)); err != nil {
		t.Fatal(err)
	}
	if err := l.x.e.Initiate(ctx, "s2s"); err != nil {
		t.Fatalf("Initiate: %v", err)
	}
	sw, err := l.ch.WaitEstablished(ctx, "s2s")
	if err != nil {
		t.Fatal(err)
	}
	checkInterop(t, l, sw, true)
	x := l.x.e.SAs()[0]
	if !x.NATLocal {
		t.Errorf("xdpsec behind the NAT box did not detect its own NAT: %+v", x)
	}
	if !sw.NATRemote || sw.Remote.Addr() != v4.GwAPublic {
		t.Errorf("charon: NAT remote %v, remote %v; want NAT and %v", sw.NATRemote, sw.Remote, v4.GwAPublic)
	}
}

func TestStrongSwanFailures(t *testing.T) {
	l := newInteropLab(t, false)
	v4 := l.lab.V4
	cases := []struct {
		name       string
		xInit      bool
		swPSK      string
		swIKE      string
		swESP      string
		swRemoteTS string
		notify     string // in xdpsec's Initiate error, or charon's log
		xLog       []string
	}{
		{name: "psk/xdpsec-initiates", xInit: true, swPSK: "wrong-psk-0123456789", notify: "AUTHENTICATION_FAILED",
			xLog: []string{"refused our authentication (AUTHENTICATION_FAILED) without saying why", "pre-shared keys match"}},
		{name: "psk/charon-initiates", swPSK: "wrong-psk-0123456789",
			xLog: []string{"authentication failed for peer", "pre-shared key mismatch?"}},
		{name: "ike-proposal/xdpsec-initiates", xInit: true, swIKE: "aes128-sha256-modp3072", notify: "NO_PROPOSAL_CHOSEN",
			xLog: []string{"NO_PROPOSAL_CHOSEN"}},
		{name: "ike-proposal/charon-initiates", swIKE: "aes128-sha256-modp3072",
			xLog: []string{"no common IKE proposal", "MODP_3072", "aes256gcm16-prfsha256-x25519"}},
		{name: "esp-proposal/xdpsec-initiates", xInit: true, swESP: "aes128-sha256", notify: "NO_PROPOSAL_CHOSEN",
			xLog: []string{"NO_PROPOSAL_CHOSEN", "aes256gcm16"}},
		{name: "esp-proposal/charon-initiates", swESP: "aes128-sha256",
			xLog: []string{"no common ESP proposal", "AUTH_HMAC_SHA2_256_128", "aes256gcm16"}},
		{name: "ts/xdpsec-initiates", xInit: true, swRemoteTS: "10.9.0.0/24", notify: "TS_UNACCEPTABLE",
			xLog: []string{"TS_UNACCEPTABLE", "10.1.0.0/24"}},
		{name: "ts/charon-initiates", swRemoteTS: "10.9.0.0/24",
			xLog: []string{"traffic selectors unacceptable", "10.9.0.0/24", "10.1.0.0/24"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			const ike, esp = "aes256gcm16-prfsha256-x25519", "aes256gcm16"
			ca, _ := siteConns(t, v4, ike, esp)
			l.x.e.SetConns([]Conn{ca})
			sc := swanConn(v4, ike, esp, testPSK)
			if tc.swPSK != "" {
				sc.PSK = tc.swPSK
			}
			if tc.swIKE != "" {
				sc.Proposals = []string{tc.swIKE}
			}
			if tc.swESP != "" {
				sc.Children[0].ESPProposals = []string{tc.swESP}
			}
			if tc.swRemoteTS != "" {
				sc.Children[0].RemoteTS = []string{tc.swRemoteTS}
			}
			if err := l.ch.LoadConn(ctx, sc); err != nil {
				t.Fatal(err)
			}
			if tc.xInit {
				err := l.x.e.Initiate(ctx, "s2s")
				if err == nil || !strings.Contains(err.Error(), tc.notify) {
					t.Fatalf("Initiate error %v, want one naming %s", err, tc.notify)
				}
			} else {
				ictx, icancel := context.WithTimeout(ctx, 5*time.Second)
				err := l.ch.Initiate(ictx, "s2s", "net")
				icancel()
				if err == nil {
					t.Fatal("charon's initiate succeeded")
				}
			}
			var found bool
			waitFor(t, 5*time.Second, "xdpsec's log line", func() bool {
				_, found = findLog(l.x.logs, tc.xLog...)
				return found
			})
			st := l.x.e.Stats()
			if st.HalfOpen != 0 {
				t.Errorf("half-open gauge %d after the failure", st.HalfOpen)
			}
			// Clean up whatever is left (an IKE SA without child).
			l.x.e.SetConns(nil)
			_ = l.ch.Terminate(ctx, "s2s")
			waitFor(t, 5*time.Second, "SAs to go", func() bool { return len(l.x.e.SAs()) == 0 })
			if tc.name == "psk/xdpsec-initiates" || tc.name == "ike-proposal/xdpsec-initiates" {
				if sas, err := l.ch.ListSAs(ctx); err != nil || len(sas) != 0 {
					t.Errorf("charon SAs left: %+v %v", sas, err)
				}
			}
		})
	}
}

// TestStrongSwanIdentities checks that our identity encodings match
// strongSwan's: it must find its configured peer identity in our IDi and we
// ours in its IDr.
func TestStrongSwanIdentities(t *testing.T) {
	cases := []swanIDCase{
		{"ipv4", "ipv4", "192.0.2.1", "192.0.2.2", ""},
		{"rfc822", "rfc822", "gw-a@example.com", "gw-b@example.com", ""},
		{"dn", "dn", "C=CH, O=xdpsec, CN=gw-a", "C=CH, O=xdpsec, CN=gw-b", ""},
		// strongSwan's own syntax: the "/" form with a ',' in a value,
		// UID, E (IA5String), a UTF8String ("gw_b"), a trailing separator
		// (vici takes only ASCII identities, so no ü here).
		{"dn-syntax", "dn", "/C=CH/O=xdpsec, Inc./UID=gw-a/E=gw-a@example.com/CN=gw-a/", "DC=example, DC=com, serialNumber=42, SN=Smith, CN=gw_b,", ""},
		// Both orders: a string means its RDNs in the order written, on
		// either end.
		{"dn-cn-first", "dn", "CN=gw-a, O=xdpsec, C=CH", "CN=gw-b, O=xdpsec, C=CH", ""},
		// Another spelling of charon's identity: compared as peers do.
		{"dn-case", "dn", "C=CH, O=xdpsec, CN=gw-a", "C=CH, O=xdpsec, CN=gw-b", "c=ch,o=XDPSEC,  cn=GW-B"},
		{"dn-email", "dn", "C=CH, E=gw-a@example.com, CN=gw-a", "C=CH, E=gw-b@example.com, CN=gw-b", "C=CH, E=GW-B@Example.com, CN=gw-b"},
		{"fqdn-case", "fqdn", "gw-a.example.com", "gw-b.example.com", "GW-B.Example.com"},
	}
	run := func(t *testing.T, l *interopLab, cases []swanIDCase) {
		for _, tc := range cases {
			for _, xInit := range []bool{true, false} {
				t.Run(tc.name+"/"+initiates(xInit), func(t *testing.T) { identityCase(t, l, tc, xInit) })
			}
		}
	}
	run(t, newInteropLab(t, false), cases)
	withCharon6(t, func(t *testing.T, root string) {
		l := newInteropLabWith(t, false, fastOpts(), 0xc1000000, swan.Options{Root: root})
		run(t, l, []swanIDCase{cases[2], cases[7]}) // dn, fqdn-case
	})
}

// swanIDCase is one identity of TestStrongSwanIdentities.
type swanIDCase struct {
	name      string
	kind      string
	xID, swID string // our identity and charon's, in both configs
	// xRemote, when set, is how we write charon's identity instead
	// of swID: another spelling peers take for the same.
	xRemote string
}

// identityCase brings an SA up with tc's identities and checks that we
// see charon's as configured.
func identityCase(t *testing.T, l *interopLab, tc swanIDCase, xInit bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v4 := l.lab.V4
	const ike, esp = "aes256gcm16-prfsha256-x25519", "aes256gcm16"
	ca, _ := siteConns(t, v4, ike, esp)
	xRemote := tc.swID
	if tc.xRemote != "" {
		xRemote = tc.xRemote
	}
	ca.LocalID, ca.RemoteID = mustID(t, tc.kind, tc.xID), mustID(t, tc.kind, xRemote)
	l.x.inst.reset()
	l.x.e.SetConns([]Conn{ca})
	sc := swanConn(v4, ike, esp, testPSK)
	sc.LocalID, sc.RemoteID = tc.swID, tc.xID
	if err := l.ch.LoadConn(ctx, sc); err != nil {
		t.Fatal(err)
	}
	sw := upWith(ctx, t, l, xInit)
	x := l.x.e.SAs()[0]
	// What charon sent, rendered as configured: its own spelling, or
	// ours where it answered the IDr we sent with it (charon does when
	// it matches its identity).
	own, ours := mustID(t, tc.kind, tc.swID).String(), ca.RemoteID.String()
	if x.RemoteID != own && x.RemoteID != ours {
		t.Errorf("xdpsec sees remote %q, want %q or %q", x.RemoteID, own, ours)
	}
	t.Logf("charon: local %q remote %q", sw.LocalID, sw.RemoteID)
	if err := l.ch.Terminate(ctx, "s2s"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "SAs to go", func() bool { return len(l.x.e.SAs()) == 0 })
}

// TestStrongSwanInvalidKE makes each side send the key exchange the other
// does not want first: INVALID_KE_PAYLOAD must lead to a retry both ways.
func TestStrongSwanInvalidKE(t *testing.T) {
	l := newInteropLab(t, false)
	v4 := l.lab.V4
	for _, xInit := range []bool{true, false} {
		name := "xdpsec-initiates"
		if !xInit {
			name = "charon-initiates"
		}
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			ca, _ := siteConns(t, v4, "aes256gcm16-prfsha256-ecp256", "aes256gcm16")
			sc := swanConn(v4, "aes256gcm16-prfsha256-ecp256", "aes256gcm16", testPSK)
			if xInit {
				ca.IKEProposals = mustIKE(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16-prfsha256-ecp256")
			} else {
				sc.Proposals = []string{"aes256gcm16-prfsha256-x25519-ecp256"}
			}
			l.x.inst.reset()
			l.x.e.SetConns([]Conn{ca})
			if err := l.ch.LoadConn(ctx, sc); err != nil {
				t.Fatal(err)
			}
			before := l.x.e.Stats().Exchanges
			sw := upWith(ctx, t, l, xInit)
			if sw.DHGroup != "ECP_256" {
				t.Errorf("charon negotiated %s", sw.DHGroup)
			}
			role := "responder"
			if xInit {
				role = "initiator"
			}
			k := ExchangeKey{"IKE_SA_INIT", role, ResultInvalidKE}
			if n := l.x.e.Stats().Exchanges[k] - before[k]; n != 1 {
				t.Errorf("%d INVALID_KE_PAYLOAD round trips counted as %s, want 1", n, role)
			}
			if err := l.ch.Terminate(ctx, "s2s"); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "SAs to go", func() bool { return len(l.x.e.SAs()) == 0 })
		})
	}
}

// TestStrongSwanCookie has xdpsec demand a COOKIE from charon: one
// half-open SA from a flooder already exceeds the threshold.
func TestStrongSwanCookie(t *testing.T) {
	netlab.RequireRoot(t)
	swan.RequireCharon(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	v4 := lab.V4
	opts := fastOpts()
	opts.CookieThreshold = 1
	x := startEngine(t, lab.GwA, "xdpsec", opts, 0xc1000000)
	ch := swan.Start(t, lab.GwB, swan.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ca, _ := siteConns(t, v4, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	ca.RemoteAddr = netip.Addr{} // %any, so the flooder's request is served
	x.e.SetConns([]Conn{ca})
	if err := ch.LoadConn(ctx, swanConn(v4, "aes256gcm16-prfsha256-x25519", "aes256gcm16", testPSK)); err != nil {
		t.Fatal(err)
	}
	fl := newFlooder(t, lab.GwB, v4.GwBWAN, toWire(ca.IKEProposals, message.ProtocolIKE, nil))
	if got := fl.send(t, netip.AddrPortFrom(v4.GwAWAN, 500)); got != "sa" {
		t.Fatalf("flooder got %q", got)
	}
	if err := ch.Initiate(ctx, "s2s", "net"); err != nil {
		t.Fatalf("charon initiate: %v", err)
	}
	if _, err := ch.WaitEstablished(ctx, "s2s"); err != nil {
		t.Fatal(err)
	}
	if st := x.e.Stats(); st.CookiesSent != 1 {
		t.Errorf("%d cookies sent, want 1", st.CookiesSent)
	}
}

// TestStrongSwanRekey rekeys CHILD and IKE SAs with charon from both
// sides in turn, and lets charon's own short child lifetime drive more:
// after each rekey both ends agree on the new SPIs and nothing stale is
// left at either.
func TestStrongSwanRekey(t *testing.T) {
	l := newInteropLab(t, false)
	v4 := l.lab.V4
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const ike, esp = "aes256gcm16-prfsha256-x25519", "aes256gcm16-x25519"
	ca, _ := siteConns(t, v4, ike, esp)
	ca.Children[0].RemoteTS = []netip.Prefix{pfx("10.2.0.0/16")}
	l.x.e.SetConns([]Conn{ca})
	sc := swanConn(v4, ike, esp, testPSK)
	if err := l.ch.LoadConn(ctx, sc); err != nil {
		t.Fatal(err)
	}
	if err := l.x.e.Initiate(ctx, "s2s"); err != nil {
		t.Fatalf("Initiate: %v", err)
	}
	// agree waits until both ends list one IKE SA with one installed
	// child, with the same SPIs, and returns them.
	agree := func(what string) (IKESAInfo, ChildInfo) {
		t.Helper()
		var x IKESAInfo
		var xc ChildInfo
		waitFor(t, 15*time.Second, what, func() bool {
			xs := l.x.e.SAs()
			sws, err := l.ch.ListSAs(ctx)
			if err != nil || len(xs) != 1 || len(sws) != 1 || len(xs[0].Children) != 1 {
				return false
			}
			x, xc = xs[0], xs[0].Children[0]
			sw := sws[0]
			var installed []swan.ChildSA
			for _, c := range sw.Children {
				if c.State == "INSTALLED" {
					installed = append(installed, c)
				}
			}
			return xc.State == "INSTALLED" && len(installed) == 1 && sw.SPIi == x.SPIi && sw.SPIr == x.SPIr &&
				installed[0].SPIIn == xc.SPIOut && installed[0].SPIOut == xc.SPIIn
		})
		return x, xc
	}
	x0, c0 := agree("the first SAs")
	seen := map[uint32]bool{c0.SPIIn: true}
	for i := range 6 {
		var err error
		if i%2 == 0 {
			err = l.x.e.Rekey(ctx, "s2s", "net")
		} else {
			err = l.ch.Rekey(ctx, "s2s", "net")
		}
		if err != nil {
			t.Fatalf("CHILD rekey %d: %v", i, err)
		}
		waitFor(t, 10*time.Second, "the CHILD rekey", func() bool {
			xs := l.x.e.SAs()
			return len(xs) == 1 && len(xs[0].Children) > 0 && xs[0].Children[0].Rekeys == i+1
		})
		_, c := agree("both ends on the rekeyed CHILD SA")
		if seen[c.SPIIn] {
			t.Fatalf("CHILD rekey %d kept SPI %08x", i, c.SPIIn)
		}
		seen[c.SPIIn] = true
	}
	prev := x0
	for i := range 4 {
		var err error
		if i%2 == 0 {
			err = l.x.e.Rekey(ctx, "s2s", "")
		} else {
			err = l.ch.Rekey(ctx, "s2s", "")
		}
		if err != nil {
			t.Fatalf("IKE rekey %d: %v", i, err)
		}
		waitFor(t, 10*time.Second, "the IKE rekey", func() bool {
			xs := l.x.e.SAs()
			return len(xs) == 1 && xs[0].Rekeys == i+1
		})
		x, _ := agree("both ends on the rekeyed IKE SA")
		if x.SPIi == prev.SPIi {
			t.Fatalf("IKE rekey %d kept SPI %016x", i, x.SPIi)
		}
		prev = x
	}
	if err := l.x.e.Rekey(ctx, "s2s", "net"); err != nil {
		t.Fatalf("CHILD rekey on the rekeyed IKE SA: %v", err)
	}
	agree("the last CHILD rekey")
}

// TestStrongSwanFragments: both ends with a small fragment size send their
// IKE_AUTH messages in RFC 7383 fragments, and each puts the other's
// together; the SAs come up in both roles.
func TestStrongSwanFragments(t *testing.T) {
	run := func(t *testing.T, root string) {
		sopts := swan.Options{ExtraConf: "fragment_size = 200", Root: root}
		l := newInteropLabWith(t, false, fragOpts(200), 0xc2000000, sopts)
		for _, xInit := range []bool{true, false} {
			t.Run(initiates(xInit), func(t *testing.T) { fragmentCase(t, l, xInit) })
		}
	}
	run(t, "")
	withCharon6(t, run)
}

// fragmentCase brings an SA up with fragmented IKE_AUTH messages both ways.
func fragmentCase(t *testing.T, l *interopLab, xInit bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v4 := l.lab.V4
	const ike, esp = "aes256gcm16-prfsha256-x25519", "aes256gcm16"
	ca, _ := siteConns(t, v4, ike, esp)
	l.x.inst.reset()
	l.x.e.SetConns([]Conn{ca})
	if err := l.ch.LoadConn(ctx, swanConn(v4, ike, esp, testPSK)); err != nil {
		t.Fatal(err)
	}
	// On the wire, both ways: SKF payloads (RFC 7383), what tcpdump shows.
	ours, err := l.lab.GwA.CaptureOutFunc("wan0", isSKF)
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := l.lab.GwB.CaptureOutFunc("wan0", isSKF)
	if err != nil {
		t.Fatal(err)
	}
	st0 := l.x.e.Stats()
	sw := upWith(ctx, t, l, xInit)
	checkInterop(t, l, sw, xInit)
	if a, b := ours.Stop(), theirs.Stop(); a < 2 || b < 2 {
		t.Errorf("SKF datagrams on the wire: %d from xdpsec, %d from charon; want a fragmented IKE_AUTH each way", a, b)
	}
	st := l.x.e.Stats()
	if st.Reassembled == st0.Reassembled {
		t.Error("charon sent no fragmented message: fragment_size too large for the test")
	}
	if st.Fragmented == st0.Fragmented {
		t.Error("xdpsec sent no fragmented message: FragmentSize too large for the test")
	}
	if err := l.ch.Terminate(ctx, "s2s"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "SAs to go", func() bool { return len(l.x.e.SAs()) == 0 })
}

// upWith brings the loaded connection s2s up from xdpsec (xInit) or from
// charon and waits until both ends have it, the CHILD SA installed here.
func upWith(ctx context.Context, t *testing.T, l *interopLab, xInit bool) swan.IKESA {
	t.Helper()
	if xInit {
		if err := l.x.e.Initiate(ctx, "s2s"); err != nil {
			t.Fatalf("Initiate: %v", err)
		}
	} else if err := l.ch.Initiate(ctx, "s2s", "net"); err != nil {
		t.Fatalf("charon initiate: %v", err)
	}
	sw, err := l.ch.WaitEstablished(ctx, "s2s")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "xdpsec CHILD SA", func() bool { return len(l.x.inst.children()) == 1 })
	return sw
}

// isSKF reports whether an IPv4 packet is an IKE message on UDP 500 or
// 4500 (after the non-ESP marker) whose first payload is an Encrypted
// Fragment (type 53).
func isSKF(pkt []byte) bool {
	if len(pkt) < 20 || pkt[0]>>4 != 4 || pkt[9] != 17 {
		return false
	}
	udp := pkt[int(pkt[0]&0x0f)*4:]
	if len(udp) < 8 {
		return false
	}
	ike := udp[8:]
	if port := int(udp[2])<<8 | int(udp[3]); port == 4500 {
		if len(ike) < 4 || ike[0]|ike[1]|ike[2]|ike[3] != 0 {
			return false
		}
		ike = ike[4:]
	} else if port != 500 {
		return false
	}
	return len(ike) >= 28 && message.PayloadType(ike[16]) == message.PayloadSKF
}
