package ike

import (
	"net/netip"
	"time"

	"go.uber.org/zap"
)

// responseCache is a responder's copy of its last response (RFC 7296
// 2.1): a retransmitted request gets it again without being processed
// twice.
//
// The SPIs and message ID that select it are on the wire for anyone to
// copy, so a resend is an answer an attacker can ask for: the cache
// answers only the address and port the original request came from, or
// another one when the copy proves itself authentic (its ICV verifies:
// the peer's NAT mapping changed between two retransmissions), and never
// faster than resendBurst at once and one per resendEvery after that. The
// response is kept without the non-ESP marker and framed for the port it
// leaves on, since a copy may arrive on the other port than the request.
type responseCache struct {
	have bool
	id   uint32
	msg  [][]byte // the IKE message's datagrams, without the non-ESP marker
	// from and local are where the request came from and to.
	from, local netip.AddrPort
	// tokens are resends allowed now, refilled one per resendEvery up to
	// resendBurst since refilled.
	tokens   int
	refilled time.Time
}

const (
	// A peer retransmits on its own back-off, a second and more apart;
	// three at once covers a duplicating path, one a second a peer that
	// retransmits as fast as anyone does.
	resendBurst = 3
	resendEvery = time.Second
)

// store caches pkt, the response to request id that pk carried. framed
// says whether pkt begins with the non-ESP marker; now starts the resend
// budget.
func (c *responseCache) store(id uint32, pk packet, pkt [][]byte, framed bool, now time.Time) {
	msg := make([][]byte, len(pkt))
	for i, d := range pkt {
		if framed && len(d) >= 4 {
			d = d[4:]
		}
		msg[i] = d
	}
	*c = responseCache{have: true, id: id, msg: msg, from: pk.from, local: pk.local,
		tokens: resendBurst, refilled: now}
}

// answers reports whether pk carries a retransmission of the cached
// response's request, by message ID.
func (c *responseCache) answers(pk packet) bool {
	return c.have && pk.h.MessageID == c.id
}

// take spends a resend token, or reports that none is left.
func (c *responseCache) take(now time.Time) bool {
	if n := int(now.Sub(c.refilled) / resendEvery); n > 0 {
		c.tokens = min(resendBurst, c.tokens+n)
		c.refilled = c.refilled.Add(time.Duration(n) * resendEvery)
	}
	if c.tokens == 0 {
		return false
	}
	c.tokens--
	return true
}

// resendCached answers pk, a retransmission of the request whose response
// is cached, within the cache's rules, counting each refusal (sa.mu held).
// authentic checks the copy's ICV when it comes from elsewhere; nil means
// it cannot be checked (IKE_SA_INIT is not protected).
func (sa *ikeSA) resendCached(pk packet, authentic func([]byte) bool) {
	c := &sa.resp
	if pk.from != c.from || pk.local != c.local {
		if authentic == nil || !authentic(pk.b) {
			sa.e.stats.drop(DropResendRefused)
			if !sa.e.rateLimited("resend refused") {
				sa.e.log.Info("refused to resend a cached response to an address the request did not come from",
					sa.fields(zap.Stringer("from", pk.from), zap.Stringer("request_from", c.from))...)
			}
			return
		}
	}
	if !c.take(sa.e.resendNow()) {
		sa.e.stats.drop(DropResendRateLimited)
		return
	}
	sa.e.stats.add(&sa.e.stats.cached)
	sa.e.log.Debug("retransmitted request, answering from cache", sa.fields(zap.Stringer("exchange", pk.h.Exchange), zap.Uint32("msgid", pk.h.MessageID))...)
	out := make([][]byte, len(c.msg))
	for i, d := range c.msg {
		out[i] = frame(pk.natt, d)
	}
	sa.send(pk.local, pk.from, out)
}

// verifies reports whether b, a protected message from the peer, is
// authentic: its ICV verifies under the peer's keys, whatever its
// payloads.
func (sa *ikeSA) verifies(b []byte) bool { return sa.authentic(b) }
