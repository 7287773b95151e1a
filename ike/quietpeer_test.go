package ike

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xdpsec/xdpsec/ike/message"
	"github.com/xdpsec/xdpsec/internal/netlab"
)

// bidiPlane is a data-plane model whose counters move as told: sent and
// received packets, each flowing or not.
type bidiPlane struct {
	*modelPlane
	sending, receiving atomic.Bool
	in, out            atomic.Uint64
}

func (p *bidiPlane) Packets(_ context.Context, _, _ []uint32) (uint64, uint64, error) {
	if p.receiving.Load() {
		p.in.Add(10)
	}
	if p.sending.Load() {
		p.out.Add(10)
	}
	return p.in.Load(), p.out.Load(), nil
}

// TestQuietPeerNoticed: without dpd_delay, a gateway whose ESP goes out
// while nothing comes back asks its peer, and a peer that left silently
// (here: deaf to us) is found dead within a few rounds; traffic both ways,
// or none, asks nothing.
func TestQuietPeerNoticed(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	ca, cb := siteConns(t, lab.V4, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	const round = 150 * time.Millisecond
	w := newWire(0x1000, 0x2000)
	bp := &bidiPlane{modelPlane: w.ends[0]}
	bp.sending.Store(true)
	bp.receiving.Store(true)
	var deaf atomic.Bool
	oa, ob := fastOpts(), fastOpts()
	oa.Installer, ob.Installer = bp, w.ends[1]
	oa.QuietPeerCheck = round
	a := startEngine(t, lab.GwA, "gwA", oa, 0, func(e *Engine) {
		e.dropHook = func(message.Header) bool { return deaf.Load() }
	})
	b := startEngine(t, lab.GwB, "gwB", ob, 0)
	a.e.SetConns([]Conn{ca})
	b.e.SetConns([]Conn{cb})
	initiate(t, a)
	checks := func() uint64 {
		st := a.e.Stats()
		return st.Exchanges[ExchangeKey{"INFORMATIONAL", "initiator", ResultOK}] +
			st.Exchanges[ExchangeKey{"INFORMATIONAL", "initiator", ResultTimeout}]
	}
	time.Sleep(6 * round)
	bp.sending.Store(false)
	bp.receiving.Store(false)
	time.Sleep(6 * round)
	if n := checks(); n != 0 {
		t.Fatalf("%d liveness checks while traffic flowed both ways or not at all", n)
	}
	// Traffic goes out, nothing comes back, and the peer is gone.
	bp.sending.Store(true)
	deaf.Store(true)
	waitFor(t, 10*time.Second, "the silent peer found dead", func() bool { return a.e.Stats().DeadPeers == 1 })
	if a.logs.FilterMessageSnippet("peer silent while we send it ESP").Len() == 0 {
		t.Error("no log line for the liveness check")
	}
	if n := len(a.e.SAs()); n != 0 {
		t.Errorf("%d IKE SAs left with the peer gone", n)
	}
}
