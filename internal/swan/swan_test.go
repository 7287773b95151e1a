package swan

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xdpsec/xdpsec/internal/netlab"
)

// siteConns returns gwA's and gwB's views of the DESIGN.md site-to-site
// connection over the lab's IPv4 plan.
func siteConns(a netlab.Addrs) (gwA, gwB Conn) {
	const psk = "xdpsec-lab-psk-not-a-secret-0123456789"
	mk := func(local, remote netip.Addr, lid, rid string, lts, rts netip.Prefix) Conn {
		return Conn{
			Name:       "s2s",
			LocalAddrs: []string{local.String()}, RemoteAddrs: []string{remote.String()},
			LocalID: lid, RemoteID: rid, PSK: psk,
			Proposals: []string{"aes256gcm16-prfsha256-x25519"},
			Children: []Child{{
				Name:    "net",
				LocalTS: []string{lts.String()}, RemoteTS: []string{rts.String()},
				ESPProposals: []string{"aes256gcm16"},
				StartAction:  "none",
			}},
		}
	}
	gwA = mk(a.GwAWAN, a.GwBWAN, "gw-a.example.com", "gw-b.example.com", a.LANA, a.LANB)
	gwB = mk(a.GwBWAN, a.GwAPublic, "gw-b.example.com", "gw-a.example.com", a.LANB, a.LANA)
	return gwA, gwB
}

func TestStrongSwanSiteToSite(t *testing.T) {
	RequireCharon(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	v4 := lab.V4

	// Without gateway routes nothing joins the sites yet.
	if _, err := lab.HostA.Ping(ctx, v4.HostB, 1, 500*time.Millisecond); err == nil {
		t.Fatal("hostA reaches hostB before the tunnel exists; the test would prove nothing")
	}

	a := Start(t, lab.GwA, Options{})
	b := Start(t, lab.GwB, Options{})
	confA, confB := siteConns(v4)
	t.Logf("gwA configuration:\n%s", confA.SwanctlConf())
	if err := b.LoadConn(ctx, confB); err != nil {
		t.Fatal(err)
	}
	if err := a.LoadConn(ctx, confA); err != nil {
		t.Fatal(err)
	}

	ictx, icancel := context.WithTimeout(ctx, 20*time.Second)
	defer icancel()
	if err := a.Initiate(ictx, "s2s", "net"); err != nil {
		t.Fatal(err)
	}
	saA, err := a.WaitEstablished(ictx, "s2s")
	if err != nil {
		t.Fatal(err)
	}
	saB, err := b.WaitEstablished(ictx, "s2s")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("gwA: %+v", saA)
	t.Logf("gwB: %+v", saB)

	if saA.SPIi == 0 || saA.SPIr == 0 || saA.SPIi != saB.SPIi || saA.SPIr != saB.SPIr {
		t.Errorf("IKE SPIs differ: gwA %016x/%016x, gwB %016x/%016x", saA.SPIi, saA.SPIr, saB.SPIi, saB.SPIr)
	}
	if !saA.Initiator || saB.Initiator {
		t.Errorf("initiator flags: gwA %v gwB %v, want true/false", saA.Initiator, saB.Initiator)
	}
	// kernel-libipsec can only do ESP-in-UDP, so charon fakes a NAT
	// and both sides float to 4500.
	for _, sa := range []IKESA{saA, saB} {
		if !sa.NATAny || sa.Local.Port() != 4500 || sa.Remote.Port() != 4500 {
			t.Errorf("%s side: NAT-any %v, ports %d->%d; want NAT (faked) and 4500", sa.LocalID, sa.NATAny, sa.Local.Port(), sa.Remote.Port())
		}
	}
	chA, okA := saA.Child("net")
	chB, okB := saB.Child("net")
	if !okA || !okB {
		t.Fatalf("CHILD SA net missing: gwA %v gwB %v", okA, okB)
	}
	if chA.SPIIn == 0 || chA.SPIOut == 0 || chA.SPIIn != chB.SPIOut || chA.SPIOut != chB.SPIIn {
		t.Errorf("CHILD SPIs do not pair: gwA in %08x out %08x, gwB in %08x out %08x", chA.SPIIn, chA.SPIOut, chB.SPIIn, chB.SPIOut)
	}
	for _, ch := range []ChildSA{chA, chB} {
		if ch.State != "INSTALLED" || !ch.Encap || ch.Mode != "TUNNEL" || ch.Protocol != "ESP" {
			t.Errorf("CHILD SA %+v: want INSTALLED, UDP-encapsulated ESP tunnel", ch)
		}
	}
	if !slices.Equal(chA.LocalTS, []netip.Prefix{v4.LANA}) || !slices.Equal(chA.RemoteTS, []netip.Prefix{v4.LANB}) {
		t.Errorf("gwA TS %v === %v, want %v === %v", chA.LocalTS, chA.RemoteTS, v4.LANA, v4.LANB)
	}
	if !strings.HasPrefix(chA.EncrAlg, "AES_GCM_16") {
		t.Errorf("ESP algorithm %q, want AES_GCM_16", chA.EncrAlg)
	}

	// Now the only path between the LANs is the tunnel.
	if _, err := lab.HostA.Ping(ctx, v4.HostB, 3, time.Second); err != nil {
		t.Fatalf("through the tunnel: %v", err)
	}
	after, err := a.ListSAs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) == 1 {
		if ch, ok := after[0].Child("net"); ok && (ch.PacketsOut == 0 || ch.PacketsIn == 0) {
			t.Errorf("gwA CHILD SA counted %d packets out, %d in; the ping did not use it", ch.PacketsOut, ch.PacketsIn)
		}
	}

	if err := a.Terminate(ctx, "s2s"); err != nil {
		t.Fatal(err)
	}
	if sas, err := b.ListSAs(ctx); err != nil || len(sas) != 0 {
		t.Errorf("gwB SAs after terminate: %v (err %v), want none", summary(sas), err)
	}
}

func TestConnRender(t *testing.T) {
	conn := Conn{
		Name: "c", LocalAddrs: []string{"192.0.2.1"}, RemoteAddrs: []string{"192.0.2.2"},
		LocalID: "a", RemoteID: "b", PSK: "secret", Proposals: []string{"aes256gcm16-prfsha256-x25519"},
		RekeyTime: 4 * time.Hour, Encap: true,
		Children: []Child{{Name: "net", LocalTS: []string{"10.1.0.0/24"}, RemoteTS: []string{"10.2.0.0/24"},
			ESPProposals: []string{"aes256gcm16"}, StartAction: "none", LifeTime: time.Hour}},
	}
	want := `connections {
  c {
    local_addrs = 192.0.2.1
    remote_addrs = 192.0.2.2
    version = 2
    proposals = aes256gcm16-prfsha256-x25519
    encap = yes
    rekey_time = 14400
    local {
      auth = psk
      id = a
    }
    remote {
      auth = psk
      id = b
    }
    children {
      net {
        local_ts = 10.1.0.0/24
        remote_ts = 10.2.0.0/24
        esp_proposals = aes256gcm16
        start_action = none
        life_time = 3600
      }
    }
  }
}
secrets {
  ike-c {
    id-1 = a
    id-2 = b
    secret = <redacted>
  }
}
`
	if got := conn.SwanctlConf(); got != want {
		t.Errorf("SwanctlConf:\n%s\nwant:\n%s", got, want)
	}
	m, err := conn.Message()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m.Keys(), []string{"c"}) {
		t.Errorf("load-conn keys %v", m.Keys())
	}
}

// TestStrongSwanBehindNAT puts gwA behind the lab's NAT box: gwB sees it
// only as the NAT's outside address, and NAT-D on gwA detects its own NAT.
func TestStrongSwanBehindNAT(t *testing.T) {
	RequireCharon(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true, NAT: true})
	v4 := lab.V4
	a := Start(t, lab.GwA, Options{})
	b := Start(t, lab.GwB, Options{})
	confA, confB := siteConns(v4)
	// gwB expects gwA at the NAT box's outside address and gwA knows
	// only its own inside address; siteConns already uses GwAWAN for
	// gwA's local address and GwAPublic for gwB's remote.
	if confA.LocalAddrs[0] == confB.RemoteAddrs[0] {
		t.Fatalf("lab NAT plan broken: gwA local %s equals gwB's view %s", confA.LocalAddrs[0], confB.RemoteAddrs[0])
	}
	if err := b.LoadConn(ctx, confB); err != nil {
		t.Fatal(err)
	}
	if err := a.LoadConn(ctx, confA); err != nil {
		t.Fatal(err)
	}
	ictx, icancel := context.WithTimeout(ctx, 20*time.Second)
	defer icancel()
	if err := a.Initiate(ictx, "s2s", "net"); err != nil {
		t.Fatal(err)
	}
	saA, err := a.WaitEstablished(ictx, "s2s")
	if err != nil {
		t.Fatal(err)
	}
	saB, err := b.WaitEstablished(ictx, "s2s")
	if err != nil {
		t.Fatal(err)
	}
	if !saA.NATLocal {
		t.Errorf("gwA did not detect that it is behind NAT: %+v", saA)
	}
	if saB.Remote.Addr() != v4.NATOutside {
		t.Errorf("gwB sees gwA at %s, want the NAT address %s", saB.Remote, v4.NATOutside)
	}
	if saA.SPIi != saB.SPIi || saA.SPIr != saB.SPIr {
		t.Errorf("IKE SPIs differ: gwA %016x/%016x, gwB %016x/%016x", saA.SPIi, saA.SPIr, saB.SPIi, saB.SPIr)
	}
	if _, err := lab.HostA.Ping(ctx, v4.HostB, 3, time.Second); err != nil {
		t.Fatalf("through the tunnel across the NAT: %v", err)
	}
	if _, err := lab.HostB.Ping(ctx, v4.HostA, 3, time.Second); err != nil {
		t.Fatalf("back through the tunnel across the NAT: %v", err)
	}
}

// TestCharonClose checks that Close stops charon and removes the
// directory it created, so no daemon or socket outlives a test.
func TestCharonClose(t *testing.T) {
	RequireCharon(t)
	ns := netlab.NewTestNS(t, "", "swan")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := StartCharon(ctx, ns, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if sas, err := c.ListSAs(ctx); err != nil || len(sas) != 0 {
		t.Fatalf("fresh charon: SAs %v, err %v", summary(sas), err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	default:
		t.Error("charon still running after Close")
	}
	if _, err := os.Stat(c.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still present after Close: %v", c.Dir, err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestStrongSwan6 runs strongSwan 6 from the sid root (chrooted) on gwA
// against the machine's 5.9.8 on gwB, each initiating in turn: the chroot
// harness works and the two releases agree.
func TestStrongSwan6(t *testing.T) {
	RequireCharon(t)
	root := RequireCharon6(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	v4 := lab.V4
	six := Start(t, lab.GwA, Options{Root: root})
	old := Start(t, lab.GwB, Options{})
	for _, tc := range []struct {
		name      string
		init, rsp *Charon
	}{{"6-initiates", six, old}, {"5.9.8-initiates", old, six}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			confA, confB := siteConns(v4)
			if err := six.LoadConn(ctx, confA); err != nil {
				t.Fatal(err)
			}
			if err := old.LoadConn(ctx, confB); err != nil {
				t.Fatal(err)
			}
			if err := tc.init.Initiate(ctx, "s2s", "net"); err != nil {
				t.Fatal(err)
			}
			saI, err := tc.init.WaitEstablished(ctx, "s2s")
			if err != nil {
				t.Fatal(err)
			}
			saR, err := tc.rsp.WaitEstablished(ctx, "s2s")
			if err != nil {
				t.Fatal(err)
			}
			if !saI.Initiator || saR.Initiator || saI.SPIi != saR.SPIi || saI.SPIr != saR.SPIr {
				t.Errorf("IKE SAs do not pair: initiator %+v, responder %+v", saI, saR)
			}
			t.Logf("initiator %+v\nresponder %+v", saI, saR)
			if _, err := lab.HostA.Ping(ctx, v4.HostB, 3, time.Second); err != nil {
				t.Fatalf("through the tunnel: %v", err)
			}
			if err := tc.init.Terminate(ctx, "s2s"); err != nil {
				t.Fatal(err)
			}
		})
	}
}
