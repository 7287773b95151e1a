package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xdpsec/xdpsec/internal/netlab"
)

// The reload and bring-up tests (issue 12) read the API into types of
// their own, like the lifecycle tests: they must compile before the
// fields they check reach control/api, and fail there on what is missing.

// rlInitiation is a connection's bring-up in `conns --json`.
type rlInitiation struct {
	State       string     `json:"state"`
	Failures    int        `json:"failures"`
	LastError   string     `json:"last_error"`
	LastReason  string     `json:"last_reason"`
	NextAttempt *time.Time `json:"next_attempt"`
}

type rlConn struct {
	Name       string        `json:"name"`
	Initiation *rlInitiation `json:"initiation"`
}

type rlStatus struct {
	Initiations []struct {
		Conn string `json:"conn"`
		rlInitiation
	} `json:"initiations"`
}

type rlReload struct {
	Changed []string          `json:"changed"`
	Actions map[string]string `json:"actions"`
}

// TestBringUpLateResponder: gwA (start_action start) comes up while gwB's
// daemon is not running yet. Its first attempts time out; `conns` and
// `status` show the error, the attempts and the next one, the metric
// counts them; once gwB starts, seconds later, the tunnel comes up by
// itself. `xdpsecctl down` then ends it for good: nothing re-initiates.
func TestBringUpLateResponder(t *testing.T) {
	netlab.RequireRoot(t)
	bins := buildBinaries(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{Prefix: netlab.RandomPrefix("xl"), NoGatewayRoutes: true})
	gwA, gwB := labGateways(lab)
	dA, dB := newLabDir(t), newLabDir(t)
	// One retransmit of 300 ms: an attempt gives up after about a second.
	writeGatewayConfig(t, dA, gwA, xdpsecConn{ike: lcIKE, esp: lcESP, startAction: "start", metrics: lcMetrics,
		ikeExtra: "retransmit_timeout: 300ms, retransmit_tries: 1"})
	writeGatewayConfig(t, dB, gwB, xdpsecConn{ike: lcIKE, esp: lcESP, startAction: "none"})
	dmA := startDaemonIn(t, bins, lab.GwA, dA)

	var in *rlInitiation
	deadline := time.Now().Add(15 * time.Second)
	for in == nil || in.Failures < 2 || in.State != "waiting" {
		if time.Now().After(deadline) {
			t.Fatalf("conns --json shows no bring-up waiting after 2 failures within 15s: %+v", in)
		}
		time.Sleep(100 * time.Millisecond)
		var conns []rlConn
		ctlJSON(t, bins, dA.socket, &conns, "conns")
		if len(conns) == 1 {
			in = conns[0].Initiation
		}
	}
	if in.LastReason != "timeout" || !strings.Contains(in.LastError, "timed out") || in.NextAttempt == nil || !in.NextAttempt.After(time.Now().Add(-time.Second)) {
		t.Errorf("bring-up while gwB is down: %+v, want a timeout, its error and a next attempt", *in)
	}
	var st rlStatus
	ctlJSON(t, bins, dA.socket, &st, "status")
	if len(st.Initiations) != 1 || st.Initiations[0].Conn != "s2s" || st.Initiations[0].Failures < 2 {
		t.Errorf("status --json initiations: %+v, want s2s with its failures", st.Initiations)
	}
	if out, _ := ctl(t, bins, dA.socket, "conns"); !strings.Contains(out, "BRING-UP") || !strings.Contains(out, "timeout: ") {
		t.Errorf("xdpsecctl conns shows no bring-up with its last error:\n%s", out)
	}
	if n := metricValue(dmA.get(t, "http://"+lcMetrics+"/metrics"), `xdpsec_initiation_failures_total{conn="s2s",reason="timeout"}`); n < 2 {
		t.Errorf("xdpsec_initiation_failures_total{conn=\"s2s\",reason=\"timeout\"} = %v, want at least 2", n)
	}

	time.Sleep(3 * time.Second) // the responder is several seconds late
	startDaemonIn(t, bins, lab.GwB, dB)
	waitEstablished(t, bins, dA, "s2s")
	var conns []rlConn
	ctlJSON(t, bins, dA.socket, &conns, "conns")
	if len(conns) != 1 || conns[0].Initiation == nil || conns[0].Initiation.State != "established" {
		t.Errorf("conns --json after the tunnel came up: %+v", conns)
	}

	if out, code := ctl(t, bins, dA.socket, "down", "s2s"); code != 0 {
		t.Fatalf("xdpsecctl down s2s: exit %d: %s", code, out)
	}
	waitGone(t, bins, dA, "gwA", 10*time.Second)
	time.Sleep(3 * time.Second)
	if sas := ctlSAs(t, bins, dA); len(sas) != 0 {
		t.Fatalf("a connection taken down by the operator came back: %+v", sas)
	}
}

// rlSnapshot is both ends' IKE SAs of conn s2s.
type rlSnapshot struct{ a, b []lcIKESA }

func snapshot(t *testing.T, bins binaries, dA, dB labDir) rlSnapshot {
	t.Helper()
	return rlSnapshot{ctlSAs(t, bins, dA), ctlSAs(t, bins, dB)}
}

// one returns the end's only IKE SA and its only child, failing the test
// unless there is exactly one of each.
func one(t *testing.T, what, end string, sas []lcIKESA) (lcIKESA, lcChild) {
	t.Helper()
	if len(sas) != 1 || len(sas[0].Children) != 1 {
		t.Fatalf("%s: %s has %d IKE SAs, want exactly one with one child: %+v", what, end, len(sas), sas)
	}
	return sas[0], sas[0].Children[0]
}

// reload runs `xdpsecctl reload --json` and returns what it says.
func reload(t *testing.T, bins binaries, d labDir) rlReload {
	t.Helper()
	var res rlReload
	ctlJSON(t, bins, d.socket, &res, "reload")
	return res
}

// TestReloadChangeClasses reloads both gateways, afxdp data plane, a UDP
// stream each way and a TCP stream through the tunnel, in four steps on
// one lab: a child lifetime change keeps every SPI and loses nothing; a
// psk_file renamed to a file with the same key changes nothing (one IKE
// SA, not two); a child's selectors change replaces the CHILD SA under
// the same IKE SA; an identity change brings a new IKE SA.
func TestReloadChangeClasses(t *testing.T) {
	netlab.RequireRoot(t)
	bins := buildBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	lab := netlab.NewTestLab(t, netlab.LabOptions{Prefix: netlab.RandomPrefix("xq"), NoGatewayRoutes: true})
	gwA, gwB := labGateways(lab)
	a := xdpsecConn{ike: lcIKE, esp: lcESP, startAction: "start", dataplane: "afxdp"}
	b := xdpsecConn{ike: lcIKE, esp: lcESP, startAction: "none", dataplane: "afxdp"}
	dA, dB, _, _ := startPair(t, bins, lab, a, b)
	settle := func() { time.Sleep(2 * time.Second) }

	// 1. A child's lifetime only: timers re-armed, same SAs, no loss.
	traffic := startTraffic(t, ctx, lab)
	before := snapshot(t, bins, dA, dB)
	a.childLifetime, b.childLifetime = "50m", "50m"
	writeGatewayConfig(t, dB, gwB, b)
	writeGatewayConfig(t, dA, gwA, a)
	if res := reload(t, bins, dB); res.Actions["s2s"] != "timers" {
		t.Errorf("lifetime change at gwB: reload says %+v, want s2s: timers", res)
	}
	if res := reload(t, bins, dA); res.Actions["s2s"] != "timers" {
		t.Errorf("lifetime change at gwA: reload says %+v, want s2s: timers", res)
	}
	settle()
	after := snapshot(t, bins, dA, dB)
	for _, end := range []struct {
		name          string
		before, after []lcIKESA
	}{{"gwA", before.a, after.a}, {"gwB", before.b, after.b}} {
		sa0, c0 := one(t, "before the lifetime change", end.name, end.before)
		sa1, c1 := one(t, "after the lifetime change", end.name, end.after)
		if sa0.ikeSPIs() != sa1.ikeSPIs() || c0.SPIIn != c1.SPIIn || c0.SPIOut != c1.SPIOut {
			t.Errorf("%s: a lifetime change replaced SAs: IKE %s -> %s, CHILD %s/%s -> %s/%s", end.name,
				sa0.ikeSPIs(), sa1.ikeSPIs(), c0.SPIIn, c0.SPIOut, c1.SPIIn, c1.SPIOut)
		}
		if limit := c1.Established.Add(45 * time.Minute); c1.RekeyAt.After(limit) {
			t.Errorf("%s: child rekey at %s, after 90%% of the new 50m lifetime", end.name, c1.RekeyAt)
		}
	}
	traffic.checkNoLoss(t, "reload with a new child lifetime")

	// 2. psk_file renamed, same key: nothing to do, still one IKE SA.
	ikeA, _ := one(t, "before the psk_file rename", "gwA", ctlSAs(t, bins, dA))
	renamed := dA
	renamed.psk = filepath.Join(dA.dir, "renamed.psk")
	writeGatewayConfig(t, renamed, gwA, a)
	if res := reload(t, bins, dA); res.Actions["s2s"] != "none" {
		t.Errorf("psk_file renamed: reload says %+v, want s2s: none", res)
	}
	settle()
	for _, end := range []struct {
		name string
		d    labDir
	}{{"gwA", dA}, {"gwB", dB}} {
		if sa, _ := one(t, "after the psk_file rename", end.name, ctlSAs(t, bins, end.d)); sa.ikeSPIs() != ikeA.ikeSPIs() {
			t.Errorf("%s: psk_file renamed: IKE SA %s replaced by %s", end.name, ikeA.ikeSPIs(), sa.ikeSPIs())
		}
	}

	// 3. A child's selectors: the same IKE SA, a new CHILD SA.
	ikeA, childA := one(t, "before the selector change", "gwA", ctlSAs(t, bins, dA))
	a.dualStack, b.dualStack = true, true
	writeGatewayConfig(t, dB, gwB, b)
	writeGatewayConfig(t, renamed, gwA, a)
	if res := reload(t, bins, dB); res.Actions["s2s"] != "child" {
		t.Errorf("selector change at gwB: reload says %+v, want s2s: child", res)
	}
	if res := reload(t, bins, dA); res.Actions["s2s"] != "child" {
		t.Errorf("selector change at gwA: reload says %+v, want s2s: child", res)
	}
	waitSettled(t, bins, dA, &dB, nil, 15*time.Second)
	sa, c := one(t, "after the selector change", "gwA", ctlSAs(t, bins, dA))
	if sa.ikeSPIs() != ikeA.ikeSPIs() || c.SPIIn == childA.SPIIn {
		t.Errorf("selector change: IKE %s -> %s (want the same), CHILD %s -> %s (want a new one)",
			ikeA.ikeSPIs(), sa.ikeSPIs(), childA.SPIIn, c.SPIIn)
	}
	warmUp(t, ctx, lab.HostA, lab.V4.HostB)

	// 4. An identity: a new IKE SA.
	gwA.localID, gwB.remoteID = "gw-a2.example.com", "gw-a2.example.com"
	writeGatewayConfig(t, dB, gwB, b)
	writeGatewayConfig(t, renamed, gwA, a)
	if res := reload(t, bins, dB); res.Actions["s2s"] != "ike" {
		t.Errorf("identity change at gwB: reload says %+v, want s2s: ike", res)
	}
	if res := reload(t, bins, dA); res.Actions["s2s"] != "ike" {
		t.Errorf("identity change at gwA: reload says %+v, want s2s: ike", res)
	}
	waitSettled(t, bins, dA, &dB, nil, 15*time.Second)
	if sa, _ := one(t, "after the identity change", "gwA", ctlSAs(t, bins, dA)); sa.ikeSPIs() == ikeA.ikeSPIs() {
		t.Errorf("identity change kept IKE SA %s", sa.ikeSPIs())
	}
	warmUp(t, ctx, lab.HostA, lab.V4.HostB)
}
