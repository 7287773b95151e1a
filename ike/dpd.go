package ike

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/xdpsec/xdpsec/ike/message"
)

// armDPD checks, wait from now, whether the peer has been silent for the
// connection's dpd_delay, and then checks its liveness (RFC 7296 2.4): an
// empty INFORMATIONAL request, which the retransmission rules turn into a
// verdict. A request of ours already in flight is as good a check.
func (sa *ikeSA) armDPD(wait time.Duration) {
	sa.timers.set("dpd", sa.afterFunc(wait, func() {
		if sa.state != stateEstablished || sa.conn == nil || sa.conn.DPDDelay <= 0 {
			return
		}
		delay := sa.conn.DPDDelay
		idle := time.Since(sa.lastRecv)
		if idle < delay {
			sa.armDPD(delay - idle)
			return
		}
		if sa.espArrived() {
			sa.armDPD(delay)
			return
		}
		if sa.out == nil && len(sa.queue) == 0 {
			sa.e.log.Debug("peer silent, checking liveness", sa.fields(zap.Duration("idle", idle))...)
			sa.enqueue(dpdTask())
		}
		sa.armDPD(delay)
	}))
}

// espArrived reports whether the IKE SA's CHILD SAs received packets
// since the last DPD round, where the data plane can tell.
func (sa *ikeSA) espArrived() bool {
	n, _, ok := sa.childPackets()
	if !ok || n == sa.dpdInbound {
		return false
	}
	sa.dpdInbound = n
	return true
}

// childPackets reads the packets received and sent on the IKE SA's CHILD
// SAs from the data plane; ok is false where it cannot tell or there are
// no children (sa.mu held).
func (sa *ikeSA) childPackets() (received, sent uint64, ok bool) {
	pc, ok := sa.e.opts.Installer.(PacketCounter)
	if !ok || len(sa.children) == 0 {
		return 0, 0, false
	}
	spisIn, spisOut := sa.childSPIs()
	ctx, cancel := context.WithTimeout(sa.e.ctx, installTimeout)
	defer cancel()
	received, sent, err := pc.Packets(ctx, spisIn, spisOut)
	return received, sent, err == nil
}

// peerDead ends an established IKE SA whose peer stopped answering and
// applies the connection's dpd_action.
func (sa *ikeSA) peerDead(exch message.ExchangeType, tries int, waited time.Duration, err error) {
	e := sa.e
	action := DPDClear
	if sa.conn != nil {
		action = sa.conn.DPDAction
	}
	e.stats.add(&e.stats.deadPeers)
	e.stats.exchange(exch.String(), true, ResultTimeout)
	e.log.Warn("peer is dead: no answer to our request; IKE SA and its CHILD SAs removed",
		sa.fields(zap.Stringer("exchange", exch), zap.Int("retransmits", tries), zap.Duration("waited", waited),
			zap.Stringer("dpd_action", action))...)
	sa.hold = action == DPDHold
	conn := sa.connName()
	sa.remove(fmt.Errorf("peer dead: %w", err))
	if action == DPDRestart {
		e.restartConn(conn)
	}
}

// childSPIs returns the inbound SPIs of the IKE SA's CHILD SAs and the
// outbound SPIs of those that send, for reading the data plane's counters.
func (sa *ikeSA) childSPIs() (in, out []uint32) {
	in = make([]uint32, 0, len(sa.children))
	for _, c := range sa.children {
		in = append(in, c.sa.SPIIn)
		if c.outbound {
			out = append(out, c.sa.SPIOut)
		}
	}
	return in, out
}
