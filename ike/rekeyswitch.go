package ike

import (
	"context"
	"time"
)

// As responder of a CHILD SA rekey we decrypt with the new SA from the
// moment we answer, but send with it only once the initiator surely
// decrypts it. Waiting for the initiator's Delete of the old SA, as RFC
// 7296 2.8 allows, loses what we still send on the old SA once the
// initiator has removed its inbound half, which a peer may do as soon as
// its Delete is answered (strongSwan with delete_rekeyed_delay = 0) or
// before. The first authentic packet on the new inbound SA proves the
// initiator has the new pair installed (it installs both directions
// before sending on it), so we switch then; the Delete stays the switch
// for data planes that cannot count packets per SA and for quiet tunnels.
const (
	// The responder first looks at the new inbound SA's packet counter
	// switchPollFirst after its answer, then at doubling intervals up to
	// switchPollMax: soon enough for a peer that sends at once, and a few
	// dozen looks (each a data-plane Stats call) for one that stays quiet.
	switchPollFirst = 2 * time.Millisecond
	switchPollMax   = 250 * time.Millisecond
	// switchWatch bounds the looking: a tunnel without traffic in the
	// other direction switches on the Delete as before.
	switchWatch = 5 * time.Second
)

// watchPeerSwitch switches sending from old to n, the SA the peer created
// by rekeying old, on the first packet that n decrypts (sa.mu held).
func (sa *ikeSA) watchPeerSwitch(old, n *childSA) {
	pc, ok := sa.e.opts.Installer.(PacketCounter)
	if !ok {
		return
	}
	until := time.Now().Add(switchWatch)
	wait := switchPollFirst
	var poll func(sa *ikeSA)
	poll = func(sa *ikeSA) {
		// A Delete, a collision or an expiry decided meanwhile.
		if old.peerRekey != n || old.removed || old.state != childInstalled || n.state != childInbound {
			return
		}
		ctx, cancel := context.WithTimeout(sa.e.ctx, installTimeout)
		pkts, _, err := pc.Packets(ctx, []uint32{n.sa.SPIIn}, nil)
		cancel()
		if err == nil && pkts > 0 {
			sa.takeOver(old, n, "traffic")
			return
		}
		if time.Now().Before(until) {
			wait = min(2*wait, switchPollMax)
			n.timers.set("switch", n.afterFunc(wait, poll))
		}
	}
	n.timers.set("switch", n.afterFunc(wait, poll))
}
