package ike

import (
	"context"
	"net/netip"
	"time"
)

// NAT-T keepalives (RFC 3948 sections 2.3 and 4, RFC 7296 section 2.23):
// the end behind a NAT sends a lone 0xFF byte from its NAT-T port whenever
// it sent the peer nothing for a while, so the NAT keeps the mapping that
// the peer's IKE and ESP-in-UDP packets come back through. The engine only
// sees its own IKE datagrams, not the data plane's ESP, so a busy tunnel
// still gets its keepalive every interval: a byte every 20 s per peer,
// cheaper than asking the data plane for per-SA use times.

// natKeepalive is the keepalive's only byte; it can be neither IKE (whose
// non-ESP marker is four zero bytes) nor ESP (whose SPI needs four bytes).
const natKeepalive = 0xFF

// keepaliveTicks is how often per interval the engine looks for idle SAs:
// a keepalive leaves at most a quarter interval later than due, and one
// ticker serves every SA.
const keepaliveTicks = 4

func isNATKeepalive(b []byte) bool { return len(b) == 1 && b[0] == natKeepalive }

// keepaliveLoop sends keepalives until ctx is done.
func (e *Engine) keepaliveLoop(ctx context.Context) {
	interval := e.opts.KeepaliveInterval
	tick := max(interval/keepaliveTicks, time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	var scratch []*ikeSA
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			// Half a tick of slack: a tick that fires a little later than
			// the one that sent the last keepalive must not push the next
			// one a whole tick further.
			scratch = e.sendKeepalives(scratch, now, interval-tick/2)
		}
	}
}

// sendKeepalives sends a keepalive for every established IKE SA whose
// local end is behind a NAT and that sent its peer nothing for idle. SAs
// that share local and remote address share the NAT mapping too, and get
// one keepalive between them. scratch is reused between calls to spare the
// walk an allocation; the emptied slice is returned.
func (e *Engine) sendKeepalives(scratch []*ikeSA, now time.Time, idle time.Duration) []*ikeSA {
	e.mu.Lock()
	for _, sa := range e.sas {
		scratch = append(scratch, sa)
	}
	e.mu.Unlock()
	var sent map[[2]netip.AddrPort]bool
	for _, sa := range scratch {
		// An SA whose lock is held is busy, maybe in an Installer call
		// that may take seconds; it must not hold up the keepalives of
		// every other SA. It is looked at again on the next tick.
		if !sa.mu.TryLock() {
			continue
		}
		if sa.keepaliveDue(now, idle) {
			key := [2]netip.AddrPort{sa.local, sa.remote}
			if !sent[key] && e.transmit(sa.local, sa.remote, []byte{natKeepalive}) == nil {
				e.stats.add(&e.stats.kaSent)
				if sent == nil {
					sent = map[[2]netip.AddrPort]bool{}
				}
				sent[key] = true
			}
			if sent[key] {
				sa.lastSent = now
			}
		}
		sa.mu.Unlock()
	}
	// Drop the references so that removed SAs can be collected.
	clear(scratch)
	return scratch[:0]
}

// keepaliveDue reports whether the SA should send a keepalive now (sa.mu
// held). Only a NAT detected in front of us counts: with ForceEncap and no
// real NAT the peer sees a faked one (natRemote), we see none, and neither
// side has a mapping to keep open. natt is checked too, as a keepalive is
// only meaningful on the NAT-T port.
func (sa *ikeSA) keepaliveDue(now time.Time, idle time.Duration) bool {
	return !sa.gone && sa.state == stateEstablished && sa.natLocal && sa.natt && now.Sub(sa.lastSent) >= idle
}
