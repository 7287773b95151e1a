package control

import (
	"net/netip"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/xdpsec/xdpsec/offload"
)

// TestHandleEventPeerMoved: a moved peer is logged once at info with the
// SA and the new address and touches nothing else (the daemon has no IKE
// engine here; updating the IKE SA is not done yet).
func TestHandleEventPeerMoved(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	d := &Daemon{log: zap.New(core)}
	d.handleEvent(offload.Event{
		Kind: offload.PeerMoved, Conn: "site-b", Child: "net", SPI: 0xc0ffee, Dir: offload.In,
		Peer: netip.MustParseAddrPort("203.0.113.7:31000"),
	})
	all := logs.All()
	if len(all) != 1 || all[0].Level != zap.InfoLevel {
		t.Fatalf("logged %+v, want one info entry", all)
	}
	want := map[string]string{"conn": "site-b", "child": "net", "spi": "00c0ffee", "peer": "203.0.113.7:31000"}
	got := all[0].ContextMap()
	for k, v := range want {
		if s, _ := got[k].(string); s != v {
			t.Errorf("field %s = %v, want %q", k, got[k], v)
		}
	}
}
