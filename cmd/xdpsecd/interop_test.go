package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xdpsec/xdpsec/control/api"
	"github.com/xdpsec/xdpsec/internal/netlab"
	"github.com/xdpsec/xdpsec/internal/swan"
)

const labPSK = "xdpsec-interop-psk-0123456789abcdef"

// gateway describes one end of the lab's site-to-site connection.
type gateway struct {
	local, remote     netip.Addr
	localID, remoteID string
	localTS, remoteTS netip.Prefix
	// localTS6 and remoteTS6 are the sites' IPv6 LANs, used with dualStack.
	localTS6, remoteTS6 netip.Prefix
}

func labGateways(l *netlab.Lab) (a, b gateway) {
	v4 := l.V4
	v6 := l.V6
	a = gateway{v4.GwAWAN, v4.GwBWAN, "gw-a.example.com", "gw-b.example.com", v4.LANA, v4.LANB, v6.LANA, v6.LANB}
	b = gateway{v4.GwBWAN, v4.GwAPublic, "gw-b.example.com", "gw-a.example.com", v4.LANB, v4.LANA, v6.LANB, v6.LANA}
	return a, b
}

type xdpsecConn struct {
	ike, esp string
	// remote overrides the gateway's remote address ("%any" for a
	// responder that accepts the peer from anywhere).
	remote      string
	startAction string
	encap       string
	psk         string
	// dataplane is the data plane mode; "" means none.
	dataplane string
	// metrics is metrics.listen; "" switches the endpoint off.
	metrics string
	// dualStack adds the sites' IPv6 LANs to the traffic selectors.
	dualStack bool
	// keepalive is ike.nat_keepalive; "" keeps the default.
	keepalive string
	// tun names the afxdp TUN port for the gateway's own traffic.
	tun string
	// ikeExtra is added to the ike section as it is, in flow style
	// ("retransmit_timeout: 500ms, retransmit_tries: 2").
	ikeExtra string
	// SA lifecycle keys of the connection; "" leaves a key out, so the
	// daemon's default applies.
	ikeLifetime, rekeyJitter, dpdDelay, dpdAction string
	// childLifetime is children[0].lifetime; "" leaves it out.
	childLifetime string
	// offload is the dataplane.offload mapping in flow style
	// ("{dev: wan0, type: crypto}"); "" leaves it out.
	offload string
	// dataplaneExtra is added to the dataplane section as it is
	// ("fail_closed: always").
	dataplaneExtra string
}

// writeGatewayConfig writes an xdpsecd configuration (data plane none) for
// gw into d.
func writeGatewayConfig(t *testing.T, d labDir, gw gateway, c xdpsecConn) {
	t.Helper()
	psk := c.psk
	if psk == "" {
		psk = labPSK
	}
	if err := os.WriteFile(d.psk, []byte(psk), 0o600); err != nil {
		t.Fatal(err)
	}
	if c.encap == "" {
		c.encap = "auto"
	}
	remote := gw.remote.String()
	if c.remote != "" {
		remote = c.remote
	}
	localTS, remoteTS := gw.localTS.String(), gw.remoteTS.String()
	if c.dualStack {
		localTS += ", " + gw.localTS6.String()
		remoteTS += ", " + gw.remoteTS6.String()
	}
	dataplane := "{mode: none}"
	if c.dataplane != "" && c.dataplane != "none" {
		tun := ""
		if c.tun != "" {
			tun = ", tun: " + c.tun
		}
		if c.offload != "" {
			tun += ", offload: " + c.offload
		}
		if c.dataplaneExtra != "" {
			tun += ", " + c.dataplaneExtra
		}
		dataplane = fmt.Sprintf("{mode: %s, wan: %s, lan: %s%s}", c.dataplane, netlab.WANIf, netlab.LANIf, tun)
	}
	var ikeKeys []string
	if c.keepalive != "" {
		ikeKeys = append(ikeKeys, "nat_keepalive: "+c.keepalive)
	}
	if c.ikeExtra != "" {
		ikeKeys = append(ikeKeys, c.ikeExtra)
	}
	ikeSection := ""
	if len(ikeKeys) > 0 {
		ikeSection = fmt.Sprintf("ike: {%s}\n", strings.Join(ikeKeys, ", "))
	}
	var lifecycle, childLifecycle strings.Builder
	for _, kv := range []struct{ k, v string }{
		{"ike_lifetime", c.ikeLifetime}, {"rekey_jitter", c.rekeyJitter},
		{"dpd_delay", c.dpdDelay}, {"dpd_action", c.dpdAction},
	} {
		if kv.v != "" {
			fmt.Fprintf(&lifecycle, "    %s: %q\n", kv.k, kv.v)
		}
	}
	if c.childLifetime != "" {
		fmt.Fprintf(&childLifecycle, "        lifetime: %q\n", c.childLifetime)
	}
	cfg := fmt.Sprintf(`log: {level: debug}
%sapi: {socket: %s}
metrics: {listen: "%s"}
dataplane: %s
connections:
  - name: s2s
    local_addr: %s
    remote_addr: "%s"
    local_id: %s
    remote_id: %s
    auth: psk
    psk_file: %s
    ike_proposals: [%s]
    esp_proposals: [%s]
    start_action: %s
    encap: %s
%s    children:
      - name: net
        local_ts: [%s]
        remote_ts: [%s]
%s`, ikeSection, d.socket, c.metrics, dataplane, gw.local, remote, gw.localID, gw.remoteID, d.psk, c.ike, c.esp, c.startAction, c.encap, lifecycle.String(), localTS, remoteTS, childLifecycle.String())
	if err := os.WriteFile(d.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

func swanConn(gw gateway, ike, esp string) swan.Conn {
	return swan.Conn{
		Name:       "s2s",
		LocalAddrs: []string{gw.local.String()}, RemoteAddrs: []string{gw.remote.String()},
		LocalID: gw.localID, RemoteID: gw.remoteID, PSK: labPSK,
		Proposals: []string{ike},
		Children: []swan.Child{{
			Name:    "net",
			LocalTS: []string{gw.localTS.String()}, RemoteTS: []string{gw.remoteTS.String()},
			ESPProposals: []string{esp},
		}},
	}
}

// waitEstablished polls `xdpsecctl sas --json` until conn has an
// established IKE SA with an installed child.
func waitEstablished(t *testing.T, bins binaries, d labDir, conn string) api.IKESA {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var sas []api.IKESA
		ctlJSON(t, bins, d.socket, &sas, "sas")
		for _, sa := range sas {
			if sa.Conn == conn && sa.State == "ESTABLISHED" && len(sa.Children) > 0 && sa.Children[0].State == "INSTALLED" {
				return sa
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no established SA for %s within 20s: %+v", conn, sas)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func sameStrings(a []string, b []netip.Prefix) bool {
	bs := make([]string, 0, len(b))
	for _, p := range b {
		bs = append(bs, p.String())
	}
	return slices.Equal(a, bs)
}

var interopMatrix = []struct{ ike, esp string }{
	{"aes256gcm16-prfsha256-x25519", "aes256gcm16"},
	{"aes256gcm16-prfsha256-x25519", "aes128-sha256"},
	{"aes128-sha256-modp2048", "aes256gcm16"},
	{"aes128-sha256-modp2048", "aes128-sha256"},
	{"aes256-sha384-ecp384", "aes256gcm16"},
	{"aes256-sha384-ecp384", "aes128-sha256"},
	{"aes128gcm16-prfsha256-ecp256", "aes256gcm16"},
	{"aes128gcm16-prfsha256-ecp256", "aes128-sha256"},
}

// TestInteropStrongSwan negotiates with Debian's strongSwan in both roles
// over the proposal matrix of the IKE issue and compares what both ends
// report. charon runs kernel-libipsec, so it always claims a NAT and both
// ends must float to 4500.
func TestInteropStrongSwan(t *testing.T) {
	netlab.RequireRoot(t)
	swan.RequireCharon(t)
	bins := buildBinaries(t)
	for _, role := range []string{"xdpsec-initiates", "strongswan-initiates"} {
		for _, m := range interopMatrix {
			t.Run(role+"/"+m.ike+"/"+m.esp, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				lab := netlab.NewTestLab(t, netlab.LabOptions{Prefix: netlab.RandomPrefix("xi"), NoGatewayRoutes: true})
				gwA, gwB := labGateways(lab)
				charon := swan.Start(t, lab.GwB, swan.Options{})
				if err := charon.LoadConn(ctx, swanConn(gwB, m.ike, m.esp)); err != nil {
					t.Fatal(err)
				}
				d := newLabDir(t)
				start := "none"
				if role == "xdpsec-initiates" {
					start = "start"
				}
				writeGatewayConfig(t, d, gwA, xdpsecConn{ike: m.ike, esp: m.esp, startAction: start})
				startDaemonIn(t, bins, lab.GwA, d)
				if role == "strongswan-initiates" {
					if err := charon.Initiate(ctx, "s2s", "net"); err != nil {
						t.Fatalf("charon initiate: %v", err)
					}
				}
				ours := waitEstablished(t, bins, d, "s2s")
				theirs, err := charon.WaitEstablished(ctx, "s2s")
				if err != nil {
					t.Fatal(err)
				}
				checkPair(t, ours, theirs, role == "xdpsec-initiates")
			})
		}
	}
}

func checkPair(t *testing.T, ours api.IKESA, theirs swan.IKESA, weInitiated bool) {
	t.Helper()
	if ours.SPIi != fmt.Sprintf("%016x", theirs.SPIi) || ours.SPIr != fmt.Sprintf("%016x", theirs.SPIr) {
		t.Errorf("IKE SPIs: xdpsec %s/%s, strongSwan %016x/%016x", ours.SPIi, ours.SPIr, theirs.SPIi, theirs.SPIr)
	}
	if ours.Initiator != weInitiated || theirs.Initiator == weInitiated {
		t.Errorf("roles: xdpsec initiator=%v, strongSwan initiator=%v, want xdpsec=%v", ours.Initiator, theirs.Initiator, weInitiated)
	}
	if !ours.NAT.Remote {
		t.Errorf("xdpsec did not see strongSwan's (faked) NAT: %+v", ours.NAT)
	}
	if !strings.HasSuffix(ours.Local, ":4500") || !strings.HasSuffix(ours.Remote, ":4500") {
		t.Errorf("xdpsec did not float to 4500: %s -> %s", ours.Local, ours.Remote)
	}
	child, ok := theirs.Child("net")
	if !ok || len(ours.Children) != 1 {
		t.Fatalf("children: xdpsec %+v, strongSwan %+v", ours.Children, theirs.Children)
	}
	oc := ours.Children[0]
	if oc.SPIIn != fmt.Sprintf("%08x", child.SPIOut) || oc.SPIOut != fmt.Sprintf("%08x", child.SPIIn) {
		t.Errorf("child SPIs: xdpsec in %s out %s, strongSwan in %08x out %08x", oc.SPIIn, oc.SPIOut, child.SPIIn, child.SPIOut)
	}
	if !sameStrings(oc.LocalTS, child.RemoteTS) || !sameStrings(oc.RemoteTS, child.LocalTS) {
		t.Errorf("selectors: xdpsec %v === %v, strongSwan %v === %v", oc.LocalTS, oc.RemoteTS, child.LocalTS, child.RemoteTS)
	}
	if !oc.Encap || !child.Encap {
		t.Errorf("encapsulation: xdpsec %v, strongSwan %v; both must be ESP-in-UDP", oc.Encap, child.Encap)
	}
}

// TestXdpsecToXdpsec runs two daemons against each other: plain, with
// encap: always, and through a NAT.
func TestXdpsecToXdpsec(t *testing.T) {
	netlab.RequireRoot(t)
	bins := buildBinaries(t)
	for _, tc := range []struct {
		name    string
		nat     bool
		encap   string
		bRemote string
	}{
		{"direct", false, "auto", ""},
		{"encap-always", false, "always", ""},
		{"nat", true, "auto", ""},
		{"responder-any", false, "auto", "%any"},
		{"responder-any-nat", true, "auto", "%any"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lab := netlab.NewTestLab(t, netlab.LabOptions{Prefix: netlab.RandomPrefix("xx"), NoGatewayRoutes: true, NAT: tc.nat})
			gwA, gwB := labGateways(lab)
			if tc.nat {
				gwA.local = lab.V4.GwAWAN
			}
			const ike, esp = "aes256gcm16-prfsha256-x25519", "aes256gcm16"
			dB := newLabDir(t)
			writeGatewayConfig(t, dB, gwB, xdpsecConn{ike: ike, esp: esp, startAction: "none", encap: tc.encap, remote: tc.bRemote})
			startDaemonIn(t, bins, lab.GwB, dB)
			dA := newLabDir(t)
			writeGatewayConfig(t, dA, gwA, xdpsecConn{ike: ike, esp: esp, startAction: "none", encap: tc.encap})
			startDaemonIn(t, bins, lab.GwA, dA)
			if out, code := ctl(t, bins, dA.socket, "up", "s2s"); code != 0 {
				t.Fatalf("xdpsecctl up: exit %d: %s", code, out)
			}
			a := waitEstablished(t, bins, dA, "s2s")
			b := waitEstablished(t, bins, dB, "s2s")
			// up is idempotent: a second call must not add an IKE SA.
			if out, code := ctl(t, bins, dA.socket, "up", "s2s"); code != 0 {
				t.Fatalf("second xdpsecctl up: exit %d: %s", code, out)
			}
			var sas []api.IKESA
			ctlJSON(t, bins, dA.socket, &sas, "sas")
			if len(sas) != 1 {
				t.Errorf("%d IKE SAs after a repeated up, want 1", len(sas))
			}
			if a.SPIi != b.SPIi || a.SPIr != b.SPIr || !a.Initiator || b.Initiator {
				t.Errorf("IKE SAs differ: A %+v, B %+v", a, b)
			}
			ac, bc := a.Children[0], b.Children[0]
			if ac.SPIIn != bc.SPIOut || ac.SPIOut != bc.SPIIn {
				t.Errorf("child SPIs not crosswise: A %s/%s, B %s/%s", ac.SPIIn, ac.SPIOut, bc.SPIIn, bc.SPIOut)
			}
			if !slices.Equal(ac.LocalTS, bc.RemoteTS) || !slices.Equal(ac.RemoteTS, bc.LocalTS) {
				t.Errorf("selectors: A %v === %v, B %v === %v", ac.LocalTS, ac.RemoteTS, bc.LocalTS, bc.RemoteTS)
			}
			wantEncap := tc.nat || tc.encap == "always"
			if ac.Encap != wantEncap || bc.Encap != wantEncap {
				t.Errorf("encap: A %v, B %v, want %v", ac.Encap, bc.Encap, wantEncap)
			}
			if wantEncap && (!strings.HasSuffix(a.Local, ":4500") || !strings.HasSuffix(b.Local, ":4500")) {
				t.Errorf("not on 4500: A %s, B %s", a.Local, b.Local)
			}
			if tc.nat && (!a.NAT.Local || !b.NAT.Remote) {
				t.Errorf("NAT detection: A %+v (want local), B %+v (want remote)", a.NAT, b.NAT)
			}
			if !tc.nat && tc.encap == "auto" && (a.NAT != api.NAT{} || b.NAT != api.NAT{}) {
				t.Errorf("NAT seen without NAT: A %+v, B %+v", a.NAT, b.NAT)
			}
		})
	}
}

// TestWrongPSK: the responder answers AUTHENTICATION_FAILED, both ends log
// a line an operator can act on, and no SA is left behind.
func TestWrongPSK(t *testing.T) {
	netlab.RequireRoot(t)
	bins := buildBinaries(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{Prefix: netlab.RandomPrefix("xp"), NoGatewayRoutes: true})
	gwA, gwB := labGateways(lab)
	const ike, esp = "aes256gcm16-prfsha256-x25519", "aes256gcm16"
	dB := newLabDir(t)
	writeGatewayConfig(t, dB, gwB, xdpsecConn{ike: ike, esp: esp, startAction: "none"})
	b := startDaemonIn(t, bins, lab.GwB, dB)
	dA := newLabDir(t)
	writeGatewayConfig(t, dA, gwA, xdpsecConn{ike: ike, esp: esp, startAction: "none", psk: "a-different-psk-0123456789abcdef"})
	a := startDaemonIn(t, bins, lab.GwA, dA)
	out, code := ctl(t, bins, dA.socket, "up", "s2s")
	if code == 0 || !strings.Contains(out, "AUTHENTICATION_FAILED") {
		t.Fatalf("xdpsecctl up with a wrong PSK: exit %d: %s", code, out)
	}
	a.waitLog(t, "refused our authentication (AUTHENTICATION_FAILED) without saying why", "pre-shared keys match")
	b.waitLog(t, "authentication failed", "pre-shared key mismatch?")
	for _, d := range []labDir{dA, dB} {
		deadline := time.Now().Add(5 * time.Second)
		for {
			var sas []api.IKESA
			ctlJSON(t, bins, d.socket, &sas, "sas")
			if len(sas) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("SAs left after a failed authentication at %s: %+v", filepath.Dir(d.socket), sas)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}
