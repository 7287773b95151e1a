package ike

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/xdpsec/xdpsec/ike/message"
	"github.com/xdpsec/xdpsec/internal/netlab"
)

func reconfConn(t *testing.T) Conn {
	t.Helper()
	return Conn{
		Name: "s2s", LocalAddr: netip.MustParseAddr("192.0.2.1"), RemoteAddr: netip.MustParseAddr("198.51.100.2"),
		LocalID: mustID(t, "fqdn", "gw-a.example.com"), RemoteID: mustID(t, "fqdn", "gw-b.example.com"),
		PSK: []byte(testPSK), IKEProposals: mustIKE(t, "aes256gcm16-prfsha256-x25519"),
		IKELifetime: 4 * time.Hour, RekeyJitter: 0.1, DPDDelay: 30 * time.Second, DPDAction: DPDRestart, StartAction: StartStart,
		Children: []Child{{Name: "net", LocalTS: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24")},
			RemoteTS: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/24")}, ESPProposals: mustESP(t, "aes256gcm16"),
			ReplayWindow: 1024, Lifetime: time.Hour}},
	}
}

// TestClassify names, for every field of Conn and Child, what changing it
// alone needs; a field added to either struct without a row here fails.
func TestClassify(t *testing.T) {
	p := func(s string) []netip.Prefix { return []netip.Prefix{netip.MustParsePrefix(s)} }
	second := Child{Name: "mgmt", LocalTS: p("10.1.9.0/24"), RemoteTS: p("10.2.9.0/24"), ReplayWindow: 64, Lifetime: time.Hour}
	connRows := map[string]struct {
		change func(c *Conn)
		want   Change
	}{
		"Name":         {func(c *Conn) { c.Name = "other" }, ChangeIKE},
		"LocalAddr":    {func(c *Conn) { c.LocalAddr = netip.MustParseAddr("192.0.2.9") }, ChangeIKE},
		"RemoteAddr":   {func(c *Conn) { c.RemoteAddr = netip.MustParseAddr("198.51.100.9") }, ChangeIKE},
		"LocalID":      {func(c *Conn) { c.LocalID = Identity{Type: message.IDFQDN, Data: []byte("x")} }, ChangeIKE},
		"RemoteID":     {func(c *Conn) { c.RemoteID = Identity{} }, ChangeIKE},
		"PSK":          {func(c *Conn) { c.PSK = []byte(testPSK + "!") }, ChangeIKE},
		"IKEProposals": {func(c *Conn) { c.IKEProposals = mustIKE(t, "aes128gcm16-prfsha256-ecp256") }, ChangeIKE},
		"ForceEncap":   {func(c *Conn) { c.ForceEncap = true }, ChangeIKE},
		"IKELifetime":  {func(c *Conn) { c.IKELifetime = time.Hour }, ChangeTimers},
		"RekeyJitter":  {func(c *Conn) { c.RekeyJitter = 0 }, ChangeTimers},
		"DPDDelay":     {func(c *Conn) { c.DPDDelay = 0 }, ChangeTimers},
		"DPDAction":    {func(c *Conn) { c.DPDAction = DPDClear }, ChangeTimers},
		"StartAction":  {func(c *Conn) { c.StartAction = StartTrap }, ChangeTimers},
		"Children":     {func(c *Conn) { c.Children = append(c.Children, second) }, ChangeChildren},
	}
	childRows := map[string]struct {
		change func(ch *Child)
		want   Change
	}{
		"Name":         {func(ch *Child) { ch.Name = "renamed" }, ChangeChildren},
		"LocalTS":      {func(ch *Child) { ch.LocalTS = p("10.1.0.0/16") }, ChangeChildren},
		"RemoteTS":     {func(ch *Child) { ch.RemoteTS = p("10.2.0.0/16") }, ChangeChildren},
		"Mode":         {func(ch *Child) { ch.Mode = ModeTransport }, ChangeChildren},
		"ESPProposals": {func(ch *Child) { ch.ESPProposals = mustESP(t, "aes128gcm16") }, ChangeChildren},
		"ReplayWindow": {func(ch *Child) { ch.ReplayWindow = 64 }, ChangeChildren},
		"Lifetime":     {func(ch *Child) { ch.Lifetime = 2 * time.Hour }, ChangeTimers},
	}
	for f := range reflect.TypeFor[Conn]().Fields() {
		if _, ok := connRows[f.Name]; !ok {
			t.Errorf("Conn.%s has no row: say what changing it needs", f.Name)
		}
	}
	for f := range reflect.TypeFor[Child]().Fields() {
		if _, ok := childRows[f.Name]; !ok {
			t.Errorf("Child.%s has no row: say what changing it needs", f.Name)
		}
	}
	for name, r := range connRows {
		old, next := reconfConn(t), reconfConn(t)
		r.change(&next)
		if got := Classify(&old, &next); got != r.want {
			t.Errorf("Conn.%s: %s, want %s", name, got, r.want)
		}
	}
	for name, r := range childRows {
		old, next := reconfConn(t), reconfConn(t)
		r.change(&next.Children[0])
		got, children := classify(&old, &next)
		if got != r.want {
			t.Errorf("Child.%s: %s, want %s", name, got, r.want)
		}
		if r.want == ChangeChildren && len(children) == 0 {
			t.Errorf("Child.%s: no child named as changed", name)
		}
	}
	old, next := reconfConn(t), reconfConn(t)
	if got := Classify(&old, &next); got != ChangeNone {
		t.Errorf("equal connections: %s, want none", got)
	}
	// The biggest class wins; a removed child is named.
	next.Children = nil
	next.DPDDelay = time.Minute
	if got, children := classify(&old, &next); got != ChangeChildren || !reflect.DeepEqual(children, []string{"net"}) {
		t.Errorf("child removed and dpd changed: %s %v, want child [net]", got, children)
	}
	next.LocalID = Identity{}
	if got := Classify(&old, &next); got != ChangeIKE {
		t.Errorf("identity, child and dpd changed: %s, want ike", got)
	}
}

// TestSetConnsKeepsIKESA reconfigures two running engines: a lifetime
// change keeps every SPI and re-arms the rekey; a change of a child's
// selectors replaces that CHILD SA under the same IKE SA.
func TestSetConnsKeepsIKESA(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	var ca, cb Conn
	a, b, w := lifecyclePair(t, lab, "aes256gcm16", func(x, y *Conn) {
		x.StartAction, y.StartAction = StartStart, StartStart
		ca, cb = *x, *y
	})
	initiate(t, a)
	childA, _ := settled(t, a, b, w)
	ike := a.e.SAs()[0]

	ca.Children[0].Lifetime, cb.Children[0].Lifetime = 40*time.Minute, 40*time.Minute
	ca.DPDDelay = time.Minute
	got := a.e.SetConns([]Conn{ca})
	b.e.SetConns([]Conn{cb})
	if len(got) != 1 || got[0].Change != ChangeTimers {
		t.Fatalf("lifetime change: %+v, want timers", got)
	}
	sa := a.e.SAs()[0]
	c := sa.Children[0]
	if sa.SPIi != ike.SPIi || sa.SPIr != ike.SPIr || c.SPIIn != childA.SPIIn || c.SPIOut != childA.SPIOut {
		t.Fatalf("lifetime change replaced SAs: %016x/%016x %08x/%08x, was %016x/%016x %08x/%08x",
			sa.SPIi, sa.SPIr, c.SPIIn, c.SPIOut, ike.SPIi, ike.SPIr, childA.SPIIn, childA.SPIOut)
	}
	if limit := c.Established.Add(36 * time.Minute); c.RekeyAt.After(limit) {
		t.Errorf("child rekey at %s, after 90%% of the new 40m lifetime (%s)", c.RekeyAt, limit)
	}

	wide := []netip.Prefix{netip.MustParsePrefix("10.99.0.0/16")}
	ca.Children[0].LocalTS, cb.Children[0].RemoteTS = append(ca.Children[0].LocalTS, wide...), append(cb.Children[0].RemoteTS, wide...)
	b.e.SetConns([]Conn{cb})
	if got := a.e.SetConns([]Conn{ca}); len(got) != 1 || got[0].Change != ChangeChildren {
		t.Fatalf("selector change: %+v, want child", got)
	}
	waitFor(t, 5*time.Second, "a new CHILD SA with the new selectors under the same IKE SA", func() bool {
		sas := a.e.SAs()
		if len(sas) != 1 || sas[0].SPIi != ike.SPIi || len(sas[0].Children) != 1 {
			return false
		}
		c := sas[0].Children[0]
		return c.SPIIn != childA.SPIIn && c.State == "INSTALLED" && len(c.LocalTS) == 2
	})
	// The responder's own re-creation comes later and finds the child up.
	time.Sleep(recreateDelay + 500*time.Millisecond)
	for _, s := range []*side{a, b} {
		if sas := s.e.SAs(); len(sas) != 1 || sas[0].SPIi != ike.SPIi || len(sas[0].Children) != 1 {
			t.Fatalf("SAs after the child change: %+v, want the same IKE SA with one child", sas)
		}
	}
}
