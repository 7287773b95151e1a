package ike

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/xdpsec/xdpsec/ike/message"
	"github.com/xdpsec/xdpsec/internal/netlab"
)

// sendingPlane is a data-plane model that counts a packet on an inbound SA
// whenever the peer's model sends with it.
type sendingPlane struct{ *modelPlane }

func (p sendingPlane) Packets(_ context.Context, spis, _ []uint32) (uint64, uint64, error) {
	p.w.mu.Lock()
	defer p.w.mu.Unlock()
	var n uint64
	for _, spi := range spis {
		for _, sending := range p.peer().sending {
			if sending == spi {
				n++
			}
		}
	}
	return n, 0, nil
}

// TestRekeyResponderSwitchesOnTraffic: gwB rekeys the CHILD SA and its
// first Delete of the old SA is lost. gwA, the responder, must already
// send with the new SA when the retransmitted Delete arrives, because
// gwB's packets arrived on the new SA before: an initiator may remove its
// old inbound SA as soon as its Delete is answered, and whatever gwA sent
// on it until then would be lost.
func TestRekeyResponderSwitchesOnTraffic(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	ca, cb := siteConns(t, lab.V4, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	w := newWire(0x1000, 0x2000)
	oa, ob := fastOpts(), fastOpts()
	oa.RekeyGrace, ob.RekeyGrace = 150*time.Millisecond, 150*time.Millisecond
	oa.Installer, ob.Installer = sendingPlane{w.ends[0]}, w.ends[1]
	var (
		mu        sync.Mutex
		deletes   int
		oldOut    uint32
		atRetrans uint32 // what gwA sends with when the second Delete arrives
		armed     bool
	)
	a := startEngine(t, lab.GwA, "gwA", oa, 0, func(e *Engine) {
		e.dropHook = func(h message.Header) bool {
			if h.Exchange != message.ExchangeInformational || h.IsResponse() {
				return false
			}
			mu.Lock()
			defer mu.Unlock()
			if !armed {
				return false
			}
			deletes++
			if deletes == 2 {
				_, _, atRetrans = w.ends[0].snapshot("s2s/net")
			}
			return deletes == 1
		}
	})
	b := startEngine(t, lab.GwB, "gwB", ob, 0)
	a.e.SetConns([]Conn{ca})
	b.e.SetConns([]Conn{cb})
	initiate(t, a)
	settled(t, a, b, w)
	w.clearFaults()
	mu.Lock()
	_, _, oldOut = w.ends[0].snapshot("s2s/net")
	armed = true
	mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.e.Rekey(ctx, "s2s", "net"); err != nil {
		t.Fatal(err)
	}
	settled(t, a, b, w)
	mu.Lock()
	defer mu.Unlock()
	if deletes < 2 {
		t.Fatalf("gwA saw %d Deletes, want the lost one and its retransmission", deletes)
	}
	if atRetrans == oldOut {
		t.Errorf("gwA still sent with the old SA %08x when the retransmitted Delete arrived, although gwB had been sending with the new one", oldOut)
	}
	noFaults(t, w)
}
