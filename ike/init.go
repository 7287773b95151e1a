package ike

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"go.uber.org/zap"

	"github.com/xdpsec/xdpsec/ike/crypto"
	"github.com/xdpsec/xdpsec/ike/message"
)

const nonceLen = 32

// maxInitLen is the largest IKE_SA_INIT request accepted (strongSwan's
// default max_packet); real ones are well under 3000 bytes.
const maxInitLen = 10000

func (e *Engine) newInitiatorSA(c *Conn) (*ikeSA, error) {
	local := c.LocalAddr
	if !local.IsValid() || local.IsUnspecified() {
		var err error
		if local, err = e.probe.source(c.RemoteAddr); err != nil {
			return nil, err
		}
	}
	port := uint16(e.opts.Port)
	if c.ForceEncap {
		port = uint16(e.opts.NATPort)
	}
	sa := &ikeSA{
		e: e, conn: c, initiator: true,
		local:   netip.AddrPortFrom(local.Unmap(), port),
		remote:  netip.AddrPortFrom(c.RemoteAddr.Unmap(), port),
		natt:    c.ForceEncap,
		localID: c.LocalID,
		done:    make(chan error, 1),
		created: time.Now(), pendingCreate: map[string]bool{},
	}
	if sa.localID.IsZero() {
		id := message.IDFromAddr(sa.local.Addr(), false)
		sa.localID = Identity{Type: id.IDType, Data: id.Data}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, ErrClosed
	}
	sa.spii = e.newSPILocked()
	e.sas[sa.spii] = sa
	return sa, nil
}

// startInit (re)sends IKE_SA_INIT with a fresh key exchange of group g (the
// first configured one when g is zero).
func (sa *ikeSA) startInit() error { return sa.sendInit(0) }

func (sa *ikeSA) sendInit(group uint16) error {
	if group == 0 {
		group = uint16(sa.conn.IKEProposals[0].KE[0])
	}
	if err := sa.newKeyExchange(group); err != nil {
		return err
	}
	ps, err := buildPhases(sa, initPhases(packet{}, roleRequester))
	if err != nil {
		return err
	}
	m := &message.Message{
		Header:   message.Header{SPIi: sa.spii, Exchange: message.ExchangeIKESAInit, Flags: message.FlagInitiator},
		Payloads: ps,
	}
	b, err := m.Encode()
	if err != nil {
		return fmt.Errorf("encode IKE_SA_INIT: %w", err)
	}
	sa.initReq = b
	sa.nextReqID = 0
	sa.sendRequest(message.ExchangeIKESAInit, [][]byte{frame(sa.natt, b)})
	return nil
}

// processInitResponse handles the responder's IKE_SA_INIT answer: a retry
// it asks for, or the phases' processing and then IKE_AUTH.
func (sa *ikeSA) processInitResponse(pk packet) {
	e := sa.e
	m, err := message.Decode(pk.b)
	if err != nil {
		e.stats.drop(DropMalformed)
		return
	}
	ip := collect(m.Payloads)
	if sa.initRetried(ip) {
		return
	}
	switch err := processPhases(sa, initPhases(pk, roleRequester), &ip); {
	case err == errDropped:
		return
	case err != nil:
		sa.failInit(err, ResultError)
		return
	}
	sa.completeRequest()
	e.stats.exchange(message.ExchangeIKESAInit.String(), true, ResultOK)
	sa.enqueue(sa.authTask())
}

// initRetried handles an IKE_SA_INIT answer that is no SA: a COOKIE or
// INVALID_KE_PAYLOAD, to which the request goes again, changed, or another
// error, which ends the attempt. It reports whether the answer was one.
func (sa *ikeSA) initRetried(ip payloads) bool {
	e := sa.e
	exch := message.ExchangeIKESAInit.String()
	switch {
	case ip.cookie != nil && ip.sa == nil:
		if sa.initTries >= maxInitRetries {
			sa.failInit(fmt.Errorf("IKE_SA_INIT: peer %s keeps demanding COOKIEs", sa.remote), ResultCookie)
			return true
		}
		sa.initTries++
		sa.cookie = append([]byte(nil), ip.cookie...)
		e.log.Debug("peer demands a COOKIE, retrying", sa.fields()...)
		sa.restartInit(sa.kex.Group())
	case ip.errN != nil && ip.errN.NotifyType == message.NotifyInvalidKEPayload:
		g, err := ip.errN.InvalidKEGroup()
		if err != nil || !sa.offersGroup(uint16(g)) || uint16(g) == sa.kex.Group() || sa.initTries >= maxInitRetries {
			e.log.Warn("peer asks for a key exchange group we do not propose",
				sa.fields(zap.String("exchange", exch), zap.Stringer("group", g), zap.String("ours", confString(sa.conn.IKEProposals)))...)
			sa.failInit(fmt.Errorf("IKE_SA_INIT: peer %s sent INVALID_KE_PAYLOAD asking for %s, which we do not propose", sa.remote, g), ResultInvalidKE)
			return true
		}
		sa.initTries++
		e.stats.exchange(exch, true, ResultInvalidKE)
		e.log.Debug("peer wants another key exchange group, retrying", sa.fields(zap.Stringer("group", g))...)
		// A cookie belongs to the first request; the responder asks
		// again if it still wants one.
		sa.cookie = nil
		sa.restartInit(uint16(g))
	case ip.errN != nil:
		n := ip.errN.NotifyType
		result := ResultError
		msg := "IKE_SA_INIT failed: peer sent an error notification"
		if n == message.NotifyNoProposalChosen {
			result = ResultNoProposal
			msg = "no common IKE proposal: peer sent NO_PROPOSAL_CHOSEN"
		}
		e.log.Warn(msg, sa.fields(zap.String("exchange", exch), zap.Stringer("notify", n),
			zap.String("ours", confString(sa.conn.IKEProposals)))...)
		sa.failInit(notifyFailure(n, fmt.Errorf("IKE_SA_INIT: peer %s sent %s", sa.remote, n)), result)
	default:
		return false
	}
	return true
}

// restartInit sends IKE_SA_INIT again with group as the key exchange.
func (sa *ikeSA) restartInit(group uint16) {
	sa.out.timer.Stop()
	sa.out = nil
	if err := sa.sendInit(group); err != nil {
		sa.failInit(err, ResultError)
	}
}

func (sa *ikeSA) offersGroup(g uint16) bool {
	for _, p := range sa.conn.IKEProposals {
		for _, k := range p.KE {
			if uint16(k) == g {
				return true
			}
		}
	}
	return false
}

// initialIKEProposals reports whether no IKE proposal of an IKE_SA_INIT
// request has an SPI (RFC 7296 3.3.1: it is zero length for an initial
// IKE SA negotiation, 8 bytes only in a rekey). Proposals for other
// protocols are left to the proposal match, which refuses them.
func initialIKEProposals(s *message.SA) bool {
	for _, p := range s.Proposals {
		if p.Protocol == message.ProtocolIKE && len(p.SPI) != 0 {
			return false
		}
	}
	return true
}

func (sa *ikeSA) failInit(err error, result string) {
	sa.e.stats.exchange(message.ExchangeIKESAInit.String(), true, result)
	sa.fail(err)
}

// deriveKeys computes the IKE SA's keys after IKE_SA_INIT.
func (sa *ikeSA) deriveKeys(prop chosen, gir []byte) error {
	prf, err := crypto.NewPRF(prop.prf)
	if err != nil {
		return fmt.Errorf("prf: %w", err)
	}
	var si, sr [8]byte
	putSPI(si[:], sa.spii)
	putSPI(sr[:], sa.spir)
	keys, err := crypto.DeriveIKEKeys(prop.suite(), gir, sa.ni, sa.nr, si[:], sr[:])
	if err != nil {
		return fmt.Errorf("derive IKE keys: %w", err)
	}
	seal, open, err := keys.SKCiphers(prop.suite(), sa.initiator)
	if err != nil {
		return fmt.Errorf("sk ciphers: %w", err)
	}
	sa.ikeProp, sa.prf, sa.keys, sa.seal, sa.open = prop, prf, keys, seal, open
	return nil
}

func putSPI(b []byte, spi uint64) {
	for i := range 8 {
		b[i] = byte(spi >> (56 - 8*i))
	}
}

// sendStatelessInit answers an IKE_SA_INIT request with a single
// notification and keeps no state (COOKIE, INVALID_KE_PAYLOAD,
// NO_PROPOSAL_CHOSEN).
func (e *Engine) sendStatelessInit(h message.Header, pk packet, n *message.Notify) {
	m := &message.Message{
		Header:   message.Header{SPIi: h.SPIi, Exchange: message.ExchangeIKESAInit, Flags: message.FlagResponse},
		Payloads: []message.Payload{n},
	}
	b, err := m.Encode()
	if err != nil {
		return
	}
	e.transmit(pk.local, pk.from, frame(pk.natt, b))
}

// handleInitRequest is the responder's IKE_SA_INIT.
func (e *Engine) handleInitRequest(b []byte, h message.Header, from, local netip.AddrPort, natt bool) {
	pk := packet{b: b, h: h, from: from, local: local, natt: natt}
	key := initKey{from, h.SPIi}
	halfOpen, ok := e.admitInit(pk, key)
	if !ok {
		return
	}
	ip, ok := e.decodeInit(pk)
	if !ok {
		return
	}
	exch := message.ExchangeIKESAInit.String()
	underLoad := halfOpen >= e.opts.CookieThreshold
	if underLoad {
		e.initRate.underLoad(time.Now())
	}
	if underLoad && !e.cookies.valid(ip.cookie, ip.nonce.Data, from.Addr(), h.SPIi) {
		e.stats.add(&e.stats.cookies)
		e.stats.exchange(exch, false, ResultCookie)
		e.sendStatelessInit(h, pk, &message.Notify{NotifyType: message.NotifyCookie, Data: e.cookies.make(ip.nonce.Data, from.Addr(), h.SPIi)})
		return
	}
	cands, conn, prop, ok := e.chooseInit(pk, ip)
	if !ok {
		return
	}
	known := knownPeer(cands, from.Addr())
	// A full table: without a valid COOKIE (checked above whenever the
	// table is past the COOKIE threshold) or a configured peer, no room.
	if !e.admitHalfOpen(from, underLoad || known) {
		return
	}
	if prop.ke != uint16(ip.ke.Group) {
		e.stats.exchange(exch, false, ResultInvalidKE)
		e.log.Debug("asking peer for another key exchange group", zap.String("conn", conn.Name), zap.Stringer("peer", from),
			zap.Stringer("received", ip.ke.Group), zap.Stringer("wanted", message.KEGroup(prop.ke)))
		e.sendStatelessInit(h, pk, message.NewInvalidKEPayload(message.KEGroup(prop.ke)))
		return
	}
	kex, err := crypto.NewKeyExchange(prop.ke)
	if err != nil {
		e.stats.drop(DropInvalidKE)
		return
	}
	gir, err := kex.SharedSecret(ip.ke.Data)
	if err != nil {
		e.stats.drop(DropInvalidKE)
		return
	}
	sa := &ikeSA{
		e: e, conn: conn, candidates: cands, spii: h.SPIi,
		local: local, remote: from, initFrom: from, natt: natt,
		kex: kex, ni: append([]byte(nil), ip.nonce.Data...), nr: randomBytes(nonceLen),
		initReq: append([]byte(nil), b...), expectReqID: 1, created: time.Now(),
		pendingCreate: map[string]bool{}, knownPeer: known,
	}
	if !e.registerResponder(sa, key) {
		return
	}
	sa.mu.Lock()
	defer sa.mu.Unlock()
	sa.answerInit(pk, ip, prop, gir)
}

// admitInit applies the checks an IKE_SA_INIT request meets before it is
// decoded: message ID 0, a bounded size, a retransmission answered from
// the cache, the per-source half-open cap. It returns the half-open count.
func (e *Engine) admitInit(pk packet, key initKey) (int, bool) {
	if pk.h.MessageID != 0 {
		e.stats.drop(DropUnexpectedMsgID)
		return 0, false
	}
	if len(pk.b) > maxInitLen {
		// Each half-open SA keeps its request for AUTH; a cap on its
		// size keeps the half-open table's memory bounded.
		e.stats.drop(DropMalformed)
		return 0, false
	}
	e.mu.Lock()
	dup := e.initIdx[key]
	halfOpen, fromSource, closed := e.halfOpen.len(), e.halfOpen.fromSource(pk.from.Addr()), e.closed
	e.mu.Unlock()
	if dup != nil {
		dup.mu.Lock()
		// Only a byte-identical retransmission gets the cached answer; a
		// new request under the same SPI (another KE, a cookie) after we
		// already answered is a protocol error we ignore.
		if !dup.gone && dup.resp.answers(pk) && string(dup.initReq) == string(pk.b) {
			// Keyed by source, so from matches; the local port may not.
			dup.resendCached(pk, nil)
		} else {
			e.stats.drop(DropUnexpected)
		}
		dup.mu.Unlock()
		return 0, false
	}
	if closed {
		return 0, false
	}
	if fromSource >= e.opts.HalfOpenPerSource {
		// Before the decode: the cheapest answer to one busy source.
		e.stats.drop(DropHalfOpenSourceLimit)
		if !e.rateLimited("halfopen source") {
			e.log.Warn("half-open IKE SA limit of a source reached, dropping its IKE_SA_INIT requests",
				zap.Int("limit", e.opts.HalfOpenPerSource), zap.Stringer("peer", pk.from))
		}
		return 0, false
	}
	return halfOpen, true
}

// decodeInit decodes an IKE_SA_INIT request and checks it carries one SA,
// KE and Nonce each.
func (e *Engine) decodeInit(pk packet) (payloads, bool) {
	m, err := message.Decode(pk.b)
	if err != nil {
		e.stats.drop(DropMalformed)
		// RFC 7296 2.5: a critical payload we do not know is refused
		// with UNSUPPORTED_CRITICAL_PAYLOAD, here statelessly.
		if n, data, ok := message.NotifyOf(err); ok && n == message.NotifyUnsupportedCriticalPayload {
			e.stats.exchange(message.ExchangeIKESAInit.String(), false, ResultError)
			e.sendStatelessInit(pk.h, pk, &message.Notify{NotifyType: n, Data: data})
		}
		return payloads{}, false
	}
	ip := collect(m.Payloads)
	if ip.sa == nil || ip.ke == nil || ip.nonce == nil || ip.repeated || !initialIKEProposals(ip.sa) {
		e.stats.drop(DropMalformed)
		return payloads{}, false
	}
	return ip, true
}

// chooseInit finds the connection that serves the request: among those
// configured for its addresses, the first with a common IKE proposal.
// Without one it answers NO_PROPOSAL_CHOSEN, saying why.
func (e *Engine) chooseInit(pk packet, ip payloads) ([]*Conn, *Conn, chosen, bool) {
	exch := message.ExchangeIKESAInit.String()
	from, local := pk.from, pk.local
	spiField := zap.String("spi", fmt.Sprintf("%016x_i", pk.h.SPIi))
	cands := e.candidates(local.Addr(), from.Addr())
	if len(cands) == 0 {
		e.stats.exchange(exch, false, ResultNoProposal)
		if !e.rateLimited("noconfig " + from.Addr().String()) {
			e.log.Warn("no connection configured for this peer address; sending NO_PROPOSAL_CHOSEN",
				zap.Stringer("peer", from), zap.Stringer("local", local), spiField, zap.String("exchange", exch))
		}
		e.sendStatelessInit(pk.h, pk, &message.Notify{NotifyType: message.NotifyNoProposalChosen})
		return nil, nil, chosen{}, false
	}
	for _, c := range cands {
		if p, ok := selectProposal(ip.sa.Proposals, c.IKEProposals, message.ProtocolIKE, uint16(ip.ke.Group)); ok {
			return cands, c, p, true
		}
	}
	e.stats.exchange(exch, false, ResultNoProposal)
	if !e.rateLimited("noprop " + from.Addr().String()) {
		e.log.Warn("no common IKE proposal; sending NO_PROPOSAL_CHOSEN",
			zap.String("conn", cands[0].Name), zap.Stringer("peer", from), spiField, zap.String("exchange", exch),
			zap.String("received", offerString(ip.sa.Proposals)), zap.String("configured", confString(cands[0].IKEProposals)))
	}
	if ce := e.log.Check(zap.DebugLevel, "IKE proposals received"); ce != nil {
		ce.Write(zap.Stringer("peer", from), spiField, zap.String("received", offerDetail(ip.sa.Proposals)))
	}
	e.sendStatelessInit(pk.h, pk, &message.Notify{NotifyType: message.NotifyNoProposalChosen})
	return nil, nil, chosen{}, false
}

// registerResponder gives a new responder SA its SPI and enters it in the
// engine's tables, unless a retransmission of the same request won.
func (e *Engine) registerResponder(sa *ikeSA, key initKey) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.initIdx[key] != nil || e.closed {
		// A retransmission processed by another socket's reader won.
		return false
	}
	sa.spir = e.newSPILocked()
	e.sas[sa.spir] = sa
	e.initIdx[key] = sa
	e.halfOpen.add(sa)
	return true
}

// answerInit derives the new responder SA's keys and sends its IKE_SA_INIT
// response; the SA stays half-open until IKE_AUTH or its timeout (sa.mu
// held).
func (sa *ikeSA) answerInit(pk packet, ip payloads, prop chosen, gir []byte) {
	e := sa.e
	if err := sa.deriveKeys(prop, gir); err != nil {
		e.log.Warn("IKE key derivation failed", sa.fields(zap.Error(err))...)
		sa.remove(err)
		return
	}
	// The phases process the request (NAT detection, fragmentation
	// support), then build the response.
	phases := initPhases(pk, roleResponder)
	var ps []message.Payload
	err := processPhases(sa, phases, &ip)
	if err == nil {
		ps, err = buildPhases(sa, phases)
	}
	var rb []byte
	if err == nil {
		resp := &message.Message{
			Header:   message.Header{SPIi: sa.spii, SPIr: sa.spir, Exchange: message.ExchangeIKESAInit, Flags: message.FlagResponse},
			Payloads: ps,
		}
		rb, err = resp.Encode()
	}
	if err != nil {
		sa.remove(err)
		return
	}
	sa.initResp = rb
	sa.respond(0, pk, [][]byte{frame(pk.natt, rb)})
	sa.expiry = time.AfterFunc(e.opts.HalfOpenTimeout, func() {
		sa.mu.Lock()
		defer sa.mu.Unlock()
		if sa.state == stateConnecting && !sa.gone {
			e.stats.exchange(message.ExchangeIKEAuth.String(), false, ResultTimeout)
			e.log.Debug("half-open IKE SA expired", sa.fields()...)
			sa.remove(errors.New("half-open IKE SA expired"))
		}
	})
	e.stats.exchange(message.ExchangeIKESAInit.String(), false, ResultOK)
}

// knownPeer reports whether a is the configured remote address of one of
// the connections that may serve a request from it (not %any).
func knownPeer(cands []*Conn, a netip.Addr) bool {
	for _, c := range cands {
		if c.RemoteAddr.IsValid() && c.RemoteAddr.Unmap() == a.Unmap() {
			return true
		}
	}
	return false
}
