package ike

import (
	"time"

	"go.uber.org/zap"
)

// A peer can leave without a word: Libreswan and OpenIKED drop an IKE SA
// without a Delete when their own kernel install fails, and a crashed
// gateway says nothing either. With dpd_delay set, DPD notices. Without it
// the IKE SA would live on, black-holing traffic, until its next rekey
// goes unanswered. So an IKE SA whose connection has no dpd_delay compares
// its CHILD SAs' packet counters every QuietPeerCheck (30 s by default):
// when it sent ESP over a whole round but received none, and heard
// nothing from the peer over IKE either, it asks once (an empty
// INFORMATIONAL, as DPD does). A peer that does not answer through the
// retransmissions is dead and handled by the connection's dpd_action. A
// tunnel idle in both directions, or one whose peer sends, is never
// asked.

// DefaultQuietPeerCheck is the default of Options.QuietPeerCheck.
const DefaultQuietPeerCheck = 30 * time.Second

// armQuietPeerCheck schedules the next round of the quiet-peer check.
func (sa *ikeSA) armQuietPeerCheck() {
	round := sa.e.opts.QuietPeerCheck
	sa.timers.set("dpd", sa.afterFunc(round, func() {
		if sa.state != stateEstablished || sa.conn == nil || sa.conn.DPDDelay > 0 {
			return
		}
		if sa.sentIntoSilence(round) && sa.out == nil && len(sa.queue) == 0 {
			sa.e.log.Info("peer silent while we send it ESP: checking its liveness (dpd_delay is not set)",
				sa.fields(zap.Duration("round", round))...)
			sa.enqueue(dpdTask())
		}
		sa.armQuietPeerCheck()
	}))
}

// sentIntoSilence reports whether, since the last round, the IKE SA's
// CHILD SAs sent packets and received none while the peer sent no IKE
// message either, where the data plane can tell (sa.mu held).
func (sa *ikeSA) sentIntoSilence(round time.Duration) bool {
	nIn, nOut, ok := sa.childPackets()
	if !ok {
		return false
	}
	// Counters of a new SA set (after a rekey) start lower: no verdict
	// from that round.
	sent, received := nOut > sa.quietOut, nIn != sa.quietIn
	first := !sa.quietSeen
	sa.quietIn, sa.quietOut, sa.quietSeen = nIn, nOut, true
	return !first && sent && !received && time.Since(sa.lastRecv) >= round
}
