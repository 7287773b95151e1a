package main

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/xdpsec/xdpsec/control/api"
	"github.com/xdpsec/xdpsec/internal/netlab"
	"github.com/xdpsec/xdpsec/internal/swan"
)

// TestAfxdpTunnel runs two xdpsecd with the AF_XDP data plane in a lab
// whose gateways have no routes to each other's LAN: whatever reaches the
// other site went through the ESP tunnel.
func TestAfxdpTunnel(t *testing.T) {
	netlab.RequireRoot(t)
	bins := buildBinaries(t)
	for _, tc := range []struct{ name, encap string }{
		{"esp", "auto"},
		{"esp-in-udp", "always"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			lab := netlab.NewTestLab(t, netlab.LabOptions{Prefix: netlab.RandomPrefix("xa"), NoGatewayRoutes: true})
			gwA, gwB := labGateways(lab)
			const ike, esp = "aes256gcm16-prfsha256-x25519", "aes256gcm16"
			dB := newLabDir(t)
			writeGatewayConfig(t, dB, gwB, xdpsecConn{ike: ike, esp: esp, startAction: "none", encap: tc.encap, dataplane: "afxdp"})
			startDaemonIn(t, bins, lab.GwB, dB)
			dA := newLabDir(t)
			writeGatewayConfig(t, dA, gwA, xdpsecConn{ike: ike, esp: esp, startAction: "start", encap: tc.encap, dataplane: "afxdp", metrics: "127.0.0.1:9469"})
			a := startDaemonIn(t, bins, lab.GwA, dA)
			waitEstablished(t, bins, dA, "s2s")
			waitEstablished(t, bins, dB, "s2s")

			v4 := lab.V4
			for _, p := range []struct {
				from *netlab.NS
				to   string
			}{{lab.HostA, v4.HostB.String()}, {lab.HostB, v4.HostA.String()}} {
				var out strings.Builder
				if err := p.from.Run(ctx, &out, "ping", "-c", "5", "-i", "0.2", "-W", "2", p.to); err != nil {
					t.Fatalf("ping %s from %s through the tunnel: %v", p.to, p.from.Name, err)
				}
			}

			// A TCP transfer through the tunnel, as iperf3 measures it.
			server, err := lab.HostB.Start(exec.CommandContext(ctx, "iperf3", "-s", "-1", "-B", v4.HostB.String()), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer server.Stop(2 * time.Second)
			time.Sleep(300 * time.Millisecond)
			var out strings.Builder
			if err := lab.HostA.Run(ctx, &out, "iperf3", "-c", v4.HostB.String(), "-t", "3", "-J"); err != nil {
				t.Fatalf("iperf3 through the tunnel: %v", err)
			}
			var res struct {
				End struct {
					SumReceived struct {
						BitsPerSecond float64 `json:"bits_per_second"`
					} `json:"sum_received"`
				} `json:"end"`
			}
			if err := json.Unmarshal([]byte(out.String()), &res); err != nil {
				t.Fatalf("iperf3 output: %v\n%s", err, out.String())
			}
			if res.End.SumReceived.BitsPerSecond <= 0 {
				t.Fatalf("iperf3 moved no data:\n%s", out.String())
			}
			t.Logf("TCP through the %s tunnel: %.0f Mbit/s", tc.name, res.End.SumReceived.BitsPerSecond/1e6)

			metrics := a.get(t, "http://127.0.0.1:9469/metrics")
			for _, want := range []string{
				`xdpsec_child_bytes_total{child="net",conn="s2s",direction="out"}`,
				`xdpsec_child_packets_total{child="net",conn="s2s",direction="in"}`,
				`xdpsec_dataplane_drops_total{dataplane="afxdp",reason="replay"}`,
				`xdpsec_worker_packets_total{worker="0"}`,
				`xdpsec_xdp_verdicts_total{interface="wan",`,
			} {
				if !strings.Contains(metrics, want) {
					t.Errorf("metrics lack %s", want)
				}
			}
			if strings.Contains(metrics, `xdpsec_child_bytes_total{child="net",conn="s2s",direction="out"} 0`+"\n") {
				t.Errorf("no bytes counted out of the tunnel")
			}

			var st api.Stats
			ctlJSON(t, bins, dA.socket, &st, "stats")
			var handled uint64
			for _, n := range st.Workers {
				handled += n
			}
			var wanVerdicts uint64
			for _, n := range st.XDP["wan"] {
				wanVerdicts += n
			}
			if st.Dataplane != "afxdp" || handled == 0 || wanVerdicts == 0 || st.IKE.IKESAs != 1 {
				t.Errorf("stats = %+v", st)
			}
			if table, code := ctl(t, bins, dA.socket, "stats"); code != 0 || !strings.Contains(table, "xdp wan:") || !strings.Contains(table, "worker packets:") {
				t.Errorf("stats table (exit %d):\n%s", code, table)
			}

			for _, d := range []labDir{dA, dB} {
				var sas []api.IKESA
				ctlJSON(t, bins, d.socket, &sas, "sas")
				c := sas[0].Children[0]
				if c.PacketsIn == 0 || c.PacketsOut == 0 || c.BytesIn == 0 || c.BytesOut == 0 {
					t.Errorf("SA counters did not move: %+v", c)
				}
			}
		})
	}
}

// TestAfxdpInteropStrongSwan carries traffic between xdpsecd (afxdp) and
// strongSwan's kernel-libipsec, so both ESP implementations check each
// other's packets. kernel-libipsec only does ESP-in-UDP, which charon's
// faked NAT brings about on both ends.
func TestAfxdpInteropStrongSwan(t *testing.T) {
	netlab.RequireRoot(t)
	swan.RequireCharon(t)
	bins := buildBinaries(t)
	for _, role := range []string{"xdpsec-initiates", "strongswan-initiates"} {
		for _, esp := range []string{"aes256gcm16", "aes256-sha256"} {
			t.Run(role+"/"+esp, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				lab := netlab.NewTestLab(t, netlab.LabOptions{Prefix: netlab.RandomPrefix("xs"), NoGatewayRoutes: true})
				gwA, gwB := labGateways(lab)
				const ike = "aes256gcm16-prfsha256-x25519"
				charon := swan.Start(t, lab.GwB, swan.Options{})
				if err := charon.LoadConn(ctx, swanConn(gwB, ike, esp)); err != nil {
					t.Fatal(err)
				}
				d := newLabDir(t)
				start := "none"
				if role == "xdpsec-initiates" {
					start = "start"
				}
				writeGatewayConfig(t, d, gwA, xdpsecConn{ike: ike, esp: esp, startAction: start, dataplane: "afxdp"})
				startDaemonIn(t, bins, lab.GwA, d)
				if role == "strongswan-initiates" {
					if err := charon.Initiate(ctx, "s2s", "net"); err != nil {
						t.Fatalf("charon initiate: %v", err)
					}
				}
				waitEstablished(t, bins, d, "s2s")
				if _, err := charon.WaitEstablished(ctx, "s2s"); err != nil {
					t.Fatal(err)
				}
				v4 := lab.V4
				for _, p := range []struct {
					from *netlab.NS
					to   string
				}{{lab.HostA, v4.HostB.String()}, {lab.HostB, v4.HostA.String()}} {
					var out strings.Builder
					if err := p.from.Run(ctx, &out, "ping", "-c", "5", "-i", "0.2", "-W", "2", p.to); err != nil {
						t.Fatalf("ping %s from %s through the tunnel: %v", p.to, p.from.Name, err)
					}
				}
				sas, err := charon.ListSAs(ctx)
				if err != nil {
					t.Fatal(err)
				}
				child, ok := sas[0].Child("net")
				if !ok || child.PacketsIn == 0 || child.PacketsOut == 0 {
					t.Errorf("strongSwan's CHILD SA counted no traffic both ways: %+v", child)
				}
			})
		}
	}
}
