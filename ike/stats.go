package ike

import (
	"maps"
	"sync"
)

// DropReason says why a datagram was dropped without an answer.
type DropReason string

// Reasons for dropped datagrams, the label values of the drop counter.
const (
	DropMalformed     DropReason = "malformed"
	DropUnknownSPI    DropReason = "unknown_spi"
	DropHalfOpenLimit DropReason = "half_open_limit"
	// DropHalfOpenSourceLimit: an IKE_SA_INIT request from a source that
	// has Options.HalfOpenPerSource half-open SAs already.
	DropHalfOpenSourceLimit DropReason = "half_open_source_limit"
	DropUnexpectedMsgID     DropReason = "unexpected_message_id"
	DropIntegrity           DropReason = "integrity"
	// DropFragmented: an IKE message in encrypted fragments (RFC 7383),
	// which we do not negotiate.
	DropFragmented DropReason = "fragmented"
	DropNonIKE     DropReason = "non_ike"    // ESP or keepalive on the NAT-T socket
	DropUnexpected DropReason = "unexpected" // a message the SA's state has no use for
	DropInvalidKE  DropReason = "invalid_ke_value"
	DropTooMany    DropReason = "too_many_retries"
	// DropResendRefused: a copy of a request whose response is cached,
	// from another address than the request's and not authentic.
	DropResendRefused DropReason = "resend_refused"
	// DropResendRateLimited: a copy of such a request beyond the resend
	// rate (see responseCache).
	DropResendRateLimited DropReason = "resend_rate_limited"
)

// Exchange results, the label values of the exchange counter.
const (
	ResultOK             = "ok"
	ResultAuthFailed     = "auth_failed"
	ResultNoProposal     = "no_proposal_chosen"
	ResultTSUnacceptable = "ts_unacceptable"
	ResultInvalidKE      = "invalid_ke_payload"
	ResultCookie         = "cookie"
	ResultTimeout        = "timeout"
	// ResultTemporaryFailure: a request refused with TEMPORARY_FAILURE
	// because another exchange was under way (RFC 7296 2.25).
	ResultTemporaryFailure = "temporary_failure"
	ResultError            = "error"
)

// ExchangeKey labels one exchange counter: the exchange type name
// ("IKE_SA_INIT"), our role ("initiator", "responder") and the result.
type ExchangeKey struct {
	Exchange, Role, Result string
}

// Stats are the engine's counters and gauges.
type Stats struct {
	// HalfOpen is the number of responder IKE SAs between IKE_SA_INIT
	// and a completed IKE_AUTH; IKESAs counts all IKE SAs.
	HalfOpen, IKESAs int
	Exchanges        map[ExchangeKey]uint64
	// ChildSAs counts CHILD SA outcomes (created or refused, in IKE_AUTH
	// or CREATE_CHILD_SA) by our role and result; Exchange is empty. They
	// are not exchanges: the exchange that carried them is counted in
	// Exchanges once.
	ChildSAs map[ExchangeKey]uint64
	Dropped  map[DropReason]uint64
	// CookiesSent counts COOKIE demands, Retransmits our retransmitted
	// requests, CachedResponses responses re-sent for a retransmitted
	// request without processing it again.
	CookiesSent, Retransmits, CachedResponses uint64
	// KeepalivesSent counts the NAT-T keepalives we sent (RFC 3948
	// section 4), KeepalivesReceived those that reached the NAT-T socket:
	// a datagram of exactly the byte 0xFF. Received keepalives are also
	// counted in Dropped[DropNonIKE], as they were before this counter.
	KeepalivesSent, KeepalivesReceived uint64
	// ChildRekeys and IKERekeys count completed rekeys (either side's),
	// DeadPeers the IKE SAs given up because the peer stopped answering
	// (DPD or any other request).
	ChildRekeys, IKERekeys, DeadPeers uint64
	// HalfOpenEvicted counts half-open SAs removed from a full table to
	// make room for a request with a valid COOKIE or from a configured
	// peer.
	HalfOpenEvicted uint64
	// Reassembled counts messages the peer sent in RFC 7383 fragments
	// and that were put together again; Fragmented the messages we sent
	// in fragments.
	Reassembled, Fragmented uint64
}

type counters struct {
	mu                                sync.Mutex
	exchanges                         map[ExchangeKey]uint64
	childSAs                          map[ExchangeKey]uint64
	dropped                           map[DropReason]uint64
	cookies                           uint64
	retrans                           uint64
	cached                            uint64
	kaSent                            uint64
	kaRecv                            uint64
	childRekeys, ikeRekeys, deadPeers uint64
	halfOpenEvicted                   uint64
	reassembled, fragmented           uint64
}

func newCounters() *counters {
	return &counters{exchanges: map[ExchangeKey]uint64{}, childSAs: map[ExchangeKey]uint64{}, dropped: map[DropReason]uint64{}}
}

func (c *counters) drop(r DropReason) {
	c.mu.Lock()
	c.dropped[r]++
	c.mu.Unlock()
}

func (c *counters) exchange(exch string, initiator bool, result string) {
	c.mu.Lock()
	c.exchanges[ExchangeKey{exch, roleName(initiator), result}]++
	c.mu.Unlock()
}

// child counts the outcome of one CHILD SA negotiation.
func (c *counters) child(initiator bool, result string) {
	c.mu.Lock()
	c.childSAs[ExchangeKey{Role: roleName(initiator), Result: result}]++
	c.mu.Unlock()
}

func roleName(initiator bool) string {
	if initiator {
		return "initiator"
	}
	return "responder"
}

func (c *counters) add(p *uint64) {
	c.mu.Lock()
	*p++
	c.mu.Unlock()
}

// keepaliveIn counts a received NAT-T keepalive, which is also a non_ike
// drop.
func (c *counters) keepaliveIn() {
	c.mu.Lock()
	c.kaRecv++
	c.dropped[DropNonIKE]++
	c.mu.Unlock()
}

func (c *counters) snapshot() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Stats{
		Exchanges: maps.Clone(c.exchanges), ChildSAs: maps.Clone(c.childSAs), Dropped: maps.Clone(c.dropped),
		CookiesSent: c.cookies, Retransmits: c.retrans, CachedResponses: c.cached,
		KeepalivesSent: c.kaSent, KeepalivesReceived: c.kaRecv, HalfOpenEvicted: c.halfOpenEvicted,
		ChildRekeys: c.childRekeys, IKERekeys: c.ikeRekeys, DeadPeers: c.deadPeers, Reassembled: c.reassembled, Fragmented: c.fragmented,
	}
}
