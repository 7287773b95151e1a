package ike

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/xdpsec/xdpsec/ike/crypto"
	"github.com/xdpsec/xdpsec/ike/message"
	"github.com/xdpsec/xdpsec/ike/proposal"
)

// CREATE_CHILD_SA (RFC 7296 1.3) in both roles: additional CHILD SAs
// (1.3.1), CHILD SA rekeys (1.3.3) and IKE SA rekeys (1.3.2), with the
// collisions of 2.8.1 resolved by nonce and those of 2.25 refused with
// TEMPORARY_FAILURE.

// inboundTimeout bounds how long a CHILD SA the peer created by rekeying
// waits for the peer's Delete of the SA it replaces before we switch to it
// anyway (the peer sends with it from the moment it got our answer).
const inboundTimeout = 10 * time.Second

// childPayloads collects what a CREATE_CHILD_SA message carries.
type childPayloads struct {
	sa        *message.SA
	nonce     *message.Nonce
	ke        *message.KE
	tsi, tsr  *message.TS
	transport bool
	rekey     *message.Notify
	errN      *message.Notify
}

func collectChild(ps []message.Payload) childPayloads {
	var r childPayloads
	for _, p := range ps {
		switch p := p.(type) {
		case *message.SA:
			r.sa = p
		case *message.Nonce:
			r.nonce = p
		case *message.KE:
			r.ke = p
		case *message.TS:
			if p.Responder {
				r.tsr = p
			} else {
				r.tsi = p
			}
		case *message.Notify:
			switch {
			case p.NotifyType == message.NotifyUseTransportMode:
				r.transport = true
			case p.NotifyType == message.NotifyRekeySA:
				r.rekey = p
			case p.IsError() && r.errN == nil:
				r.errN = p
			}
		}
	}
	return r
}

// pfsGroup is the key exchange group a CHILD SA request offers: the first
// one configured in the ESP proposals (strongSwan's "aes256gcm16-x25519"),
// or 0 without PFS.
func pfsGroup(cfg *Child) uint16 {
	for _, p := range cfg.ESPProposals {
		if len(p.KE) > 0 {
			return uint16(p.KE[0])
		}
	}
	return 0
}

// toWireChild is toWire for a CREATE_CHILD_SA request, where the ESP
// proposals carry their KE transforms (PFS).
func toWireChild(ps []proposal.Proposal, spi []byte) []message.Proposal {
	out := toWire(ps, message.ProtocolESP, spi)
	for i, p := range ps {
		for _, g := range p.KE {
			out[i].Transforms = append(out[i].Transforms, message.Transform{Type: message.TransformKE, ID: uint16(g)})
		}
	}
	return out
}

// offeredChild says what a CREATE_CHILD_SA of ours offered, for the
// operator reading the peer's NO_PROPOSAL_CHOSEN: the proposals as sent,
// and whether a key exchange (PFS) came with them.
func offeredChild(cfg *Child, group uint16) string {
	s := "we offered " + offerString(toWireChild(cfg.ESPProposals, nil))
	if group == 0 {
		return s + " without a key exchange: a peer that requires PFS refuses that"
	}
	return s + " with a " + message.KEGroup(group).String() + " key exchange"
}

// childKE picks the key exchange of an ESP proposal: none when we
// configure none (and the peer allows NONE or offers nothing), else the
// first of the peer's groups we configure.
func childKE(p message.Proposal, o proposal.Proposal) (uint16, bool) {
	offered := p.TransformsOf(message.TransformKE)
	if len(o.KE) == 0 {
		if len(offered) == 0 {
			return 0, true
		}
		for _, t := range offered {
			if t.ID == 0 {
				return 0, true
			}
		}
		return 0, false
	}
	return firstCommon(offered, o.KE, func(g proposal.KEGroup) uint16 { return uint16(g) })
}

// selectChildProposal is selectProposal for ESP in CREATE_CHILD_SA, where
// the key exchange is part of the match.
func selectChildProposal(offer []message.Proposal, ours []proposal.Proposal) (chosen, bool) {
	for _, p := range offer {
		if p.Protocol != message.ProtocolESP {
			continue
		}
		for _, o := range ours {
			c, ok := matchProposal(p, o, message.ProtocolESP, 0)
			if !ok {
				continue
			}
			if c.ke, ok = childKE(p, o); ok {
				return c, true
			}
		}
	}
	return chosen{}, false
}

// acceptChildAnswer checks the responder's ESP proposal and its key
// exchange against our request (group 0: we sent none).
func acceptChildAnswer(sa *message.SA, ours []proposal.Proposal, group uint16) (chosen, error) {
	c, err := acceptAnswer(sa, ours, message.ProtocolESP)
	if err != nil {
		return c, err
	}
	kes := sa.Proposals[0].TransformsOf(message.TransformKE)
	if len(kes) == 1 {
		c.ke = kes[0].ID
	}
	if c.ke != group {
		return c, fmt.Errorf("responder chose key exchange %s, we sent %s", message.KEGroup(c.ke), message.KEGroup(group))
	}
	return c, nil
}

// lowerNonce returns the lower of two nonces, compared over the length of
// the shorter one as RFC 7296 2.8.1 implementations do.
func lowerNonce(a, b []byte) []byte {
	if cmpNonce(a, b) <= 0 {
		return a
	}
	return b
}

func cmpNonce(a, b []byte) int {
	n := min(len(a), len(b))
	return bytes.Compare(a[:n], b[:n])
}

// childRequest is the part of a CHILD SA request both a new child and a
// rekey send: its SPI, nonce and, with PFS, key exchange.
type childRequest struct {
	spi uint32
	ni  []byte
	kex crypto.KeyExchange
}

// start allocates what the request needs; group 0 means no PFS.
func (r *childRequest) start(sa *ikeSA, cfg *Child, group uint16) error {
	spi, err := sa.allocSPI(cfg.Name)
	if err != nil {
		return err
	}
	r.spi, r.ni, r.kex = spi, randomBytes(nonceLen), nil
	if group != 0 {
		if r.kex, err = crypto.NewKeyExchange(group); err != nil {
			sa.releaseSPI(cfg, spi)
			r.spi = 0
			return fmt.Errorf("pfs key exchange: %w", err)
		}
	}
	return nil
}

func (r *childRequest) payloads(cfg *Child, mode Mode, localTS, remoteTS []message.TrafficSelector) []message.Payload {
	var ps []message.Payload
	if mode == ModeTransport {
		ps = append(ps, &message.Notify{NotifyType: message.NotifyUseTransportMode})
	}
	ps = append(ps, &message.SA{Proposals: toWireChild(cfg.ESPProposals, spiBytes(r.spi))}, &message.Nonce{Data: r.ni})
	if r.kex != nil {
		ps = append(ps, &message.KE{Group: message.KEGroup(r.kex.Group()), Data: r.kex.PublicKey()})
	}
	return append(ps, &message.TS{Selectors: localTS}, &message.TS{Responder: true, Selectors: remoteTS})
}

func (r *childRequest) group() uint16 {
	if r.kex == nil {
		return 0
	}
	return r.kex.Group()
}

// release gives the SPI back when the request came to nothing.
func (r *childRequest) release(sa *ikeSA, cfg *Child) {
	if r.spi != 0 {
		sa.releaseSPI(cfg, r.spi)
		r.spi = 0
	}
}

// accept turns the responder's answer into a CHILD SA (not installed yet).
func (r *childRequest) accept(sa *ikeSA, cfg *Child, a childPayloads, wantMode Mode) (*childSA, error) {
	if a.sa == nil || a.nonce == nil || a.tsi == nil || a.tsr == nil {
		return nil, errors.New("response lacks SA, nonce or traffic selectors")
	}
	prop, err := acceptChildAnswer(a.sa, cfg.ESPProposals, r.group())
	if err != nil {
		return nil, err
	}
	peerSPI, ok := prop.spiValue()
	if !ok {
		return nil, errors.New("ESP proposal without a 4-byte SPI")
	}
	var gir []byte
	if r.kex != nil {
		if a.ke == nil || uint16(a.ke.Group) != r.kex.Group() {
			return nil, errors.New("response lacks the PFS key exchange")
		}
		if gir, err = r.kex.SharedSecret(a.ke.Data); err != nil {
			return nil, fmt.Errorf("pfs key exchange: %w", err)
		}
	}
	tsi := narrow(a.tsi.Selectors, cfg.LocalTS)
	tsr := narrow(a.tsr.Selectors, cfg.RemoteTS)
	if len(tsi) == 0 || len(tsr) == 0 {
		return nil, fmt.Errorf("responder's selectors TSi %s TSr %s are outside ours", tsString(a.tsi.Selectors), tsString(a.tsr.Selectors))
	}
	mode := ModeTunnel
	if a.transport && wantMode == ModeTransport {
		mode = ModeTransport
	}
	c, err := sa.buildChild(cfg, prop, true, r.spi, peerSPI, mode, tsi, tsr, gir, r.ni, a.nonce.Data)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// retryGroup returns the group an INVALID_KE_PAYLOAD asks for when we
// could use it for a CHILD SA, else 0.
func retryGroup(n *message.Notify, cfg *Child, current uint16) uint16 {
	g, err := n.InvalidKEGroup()
	if err != nil || uint16(g) == current {
		return 0
	}
	for _, p := range cfg.ESPProposals {
		for _, k := range p.KE {
			if k == proposal.KEGroup(g) {
				return uint16(g)
			}
		}
	}
	return 0
}

// createChildTask creates an additional CHILD SA: the configured children
// after the first, and children a trap asked for.
type createChildTask struct {
	cfg   *Child
	group uint16
	tries int
	req   childRequest
}

func (t *createChildTask) request(sa *ikeSA) (message.ExchangeType, []message.Payload, bool) {
	for _, c := range sa.children {
		if c.sa.Child == t.cfg.Name && c.outbound {
			delete(sa.pendingCreate, t.cfg.Name)
			return 0, nil, false
		}
	}
	if t.tries == 0 {
		t.group = pfsGroup(t.cfg)
	}
	if err := t.req.start(sa, t.cfg, t.group); err != nil {
		sa.e.log.Warn("cannot create CHILD SA", sa.fields(zap.String("child", t.cfg.Name), zap.Error(err))...)
		delete(sa.pendingCreate, t.cfg.Name)
		return 0, nil, false
	}
	return message.ExchangeCreateChildSA, t.req.payloads(t.cfg, t.cfg.Mode, selectors(t.cfg.LocalTS), selectors(t.cfg.RemoteTS)), true
}

func (t *createChildTask) response(sa *ikeSA, ps []message.Payload, err error) {
	e := sa.e
	delete(sa.pendingCreate, t.cfg.Name)
	exch := message.ExchangeCreateChildSA.String()
	if err != nil {
		t.req.release(sa, t.cfg)
		if !sa.gone {
			sa.lostAttemptFailed(t.cfg.Name, err.Error())
		}
		return
	}
	a := collectChild(ps)
	if a.errN != nil {
		t.req.release(sa, t.cfg)
		if a.errN.NotifyType == message.NotifyInvalidKEPayload && t.tries < maxInitRetries {
			if g := retryGroup(a.errN, t.cfg, t.group); g != 0 {
				t.group, t.tries = g, t.tries+1
				sa.pendingCreate[t.cfg.Name] = true
				sa.queue = append([]task{t}, sa.queue...)
				return
			}
		}
		e.stats.exchange(exch, true, resultOf(a.errN.NotifyType))
		e.log.Warn("CHILD SA not created: peer refused it", sa.fields(zap.String("exchange", exch),
			zap.String("child", t.cfg.Name), zap.Stringer("notify", a.errN.NotifyType), zap.String("offer", offeredChild(t.cfg, t.group)))...)
		sa.lostAttemptFailed(t.cfg.Name, fmt.Sprintf("peer sent %s to CREATE_CHILD_SA", a.errN.NotifyType))
		return
	}
	c, err := t.req.accept(sa, t.cfg, a, t.cfg.Mode)
	if err == nil {
		if err = sa.installInbound(c); err == nil {
			if err = sa.installOutbound(c); err != nil {
				sa.deleteFromDataplane(c)
			}
		}
	}
	if err != nil {
		t.req.release(sa, t.cfg)
		e.stats.exchange(exch, true, ResultError)
		e.log.Warn("CHILD SA not created", sa.fields(zap.String("exchange", exch), zap.String("child", t.cfg.Name), zap.Error(err))...)
		sa.lostAttemptFailed(t.cfg.Name, err.Error())
		// The peer installed its side: tell it to remove it again.
		sa.enqueue(&deleteChildTask{c: &childSA{sa: ChildSA{Conn: sa.connName(), Child: t.cfg.Name, SPIIn: t.req.spi}, cfg: t.cfg}, reason: "not installed"})
		return
	}
	sa.addChild(c)
	e.stats.exchange(exch, true, ResultOK)
	e.stats.child(true, ResultOK)
	e.log.Info("CHILD SA established", sa.fields(zap.String("exchange", exch), zap.String("child", c.sa.Child),
		zap.String("spis", fmt.Sprintf("%08x_i %08x_o", c.sa.SPIIn, c.sa.SPIOut)),
		zap.Any("local_ts", c.sa.LocalTS), zap.Any("remote_ts", c.sa.RemoteTS))...)
}

func resultOf(n message.NotifyType) string {
	switch n {
	case message.NotifyNoProposalChosen:
		return ResultNoProposal
	case message.NotifyTSUnacceptable:
		return ResultTSUnacceptable
	case message.NotifyInvalidKEPayload:
		return ResultInvalidKE
	case message.NotifyTemporaryFailure:
		return ResultTemporaryFailure
	}
	return ResultError
}

// rekeyChildTask rekeys a CHILD SA (RFC 7296 1.3.3). On the answer the new
// SA is installed inbound first, then outbound (the policies move to it),
// and the old SA is deleted with an INFORMATIONAL; it stays in the data
// plane for the grace period after that.
type rekeyChildTask struct {
	old   *childSA
	done  chan error
	group uint16
	tries int
	req   childRequest
}

func (t *rekeyChildTask) finish(err error) {
	if t.done != nil {
		t.done <- err
		t.done = nil
	}
}

func (t *rekeyChildTask) request(sa *ikeSA) (message.ExchangeType, []message.Payload, bool) {
	old := t.old
	old.rekeyQueued = false
	if old.removed || old.state != childInstalled || old.peerRekey != nil {
		// The peer rekeyed or deleted it meanwhile: nothing left to do.
		t.finish(nil)
		return 0, nil, false
	}
	if t.tries == 0 {
		t.group = pfsGroup(old.cfg)
	}
	if err := t.req.start(sa, old.cfg, t.group); err != nil {
		sa.e.log.Warn("cannot rekey CHILD SA", sa.fields(zap.String("child", old.sa.Child), zap.Error(err))...)
		sa.retryChildRekey(old)
		t.finish(err)
		return 0, nil, false
	}
	old.state, old.ourNi = childRekeying, t.req.ni
	ps := []message.Payload{&message.Notify{Protocol: message.ProtocolESP, SPI: spiBytes(old.sa.SPIIn), NotifyType: message.NotifyRekeySA}}
	ps = append(ps, t.req.payloads(old.cfg, old.sa.Mode, selectors(old.sa.LocalTS), selectors(old.sa.RemoteTS))...)
	return message.ExchangeCreateChildSA, ps, true
}

func (t *rekeyChildTask) response(sa *ikeSA, ps []message.Payload, err error) {
	e := sa.e
	old := t.old
	exch := message.ExchangeCreateChildSA.String()
	rekeying := old.state == childRekeying
	if rekeying {
		old.state = childInstalled
	}
	ourNi := old.ourNi
	old.ourNi = nil
	if err != nil {
		t.req.release(sa, old.cfg)
		if !sa.gone && !old.removed && rekeying {
			sa.retryChildRekey(old)
		}
		t.finish(err)
		return
	}
	a := collectChild(ps)
	if a.errN != nil {
		t.req.release(sa, old.cfg)
		n := a.errN.NotifyType
		e.stats.exchange(exch, true, resultOf(n))
		switch {
		case n == message.NotifyInvalidKEPayload && t.tries < maxInitRetries && retryGroup(a.errN, old.cfg, t.group) != 0:
			t.group, t.tries = retryGroup(a.errN, old.cfg, t.group), t.tries+1
			old.rekeyQueued = true
			sa.queue = append([]task{t}, sa.queue...)
			return
		case n == message.NotifyChildSANotFound:
			e.log.Warn("peer does not know the CHILD SA we rekey (CHILD_SA_NOT_FOUND); removing it",
				sa.fields(zap.String("child", old.sa.Child), zap.String("spi", fmt.Sprintf("%08x", old.sa.SPIIn)))...)
			sa.dropChild(old)
			sa.childLost(old, "the peer no longer knows it (CHILD_SA_NOT_FOUND)")
		case n == message.NotifyTemporaryFailure:
			e.log.Debug("peer is busy (TEMPORARY_FAILURE), rekeying later", sa.fields(zap.String("child", old.sa.Child))...)
			if !old.removed && old.state == childInstalled {
				sa.retryChildRekey(old)
			}
		default:
			old.lastRefusal = fmt.Sprintf("last rekey refused: peer sent %s", n)
			e.log.Warn("CHILD SA rekey refused by peer; trying again later", sa.fields(zap.String("child", old.sa.Child), zap.Stringer("notify", n),
				zap.String("offer", offeredChild(old.cfg, t.group)))...)
			if !old.removed && old.state == childInstalled {
				sa.retryChildRekey(old)
			}
		}
		if n == message.NotifyNoProposalChosen {
			t.finish(fmt.Errorf("peer sent %s: %s", n, offeredChild(old.cfg, t.group)))
		} else {
			t.finish(fmt.Errorf("peer sent %s", n))
		}
		return
	}
	c, err := t.req.accept(sa, old.cfg, a, old.sa.Mode)
	if err != nil {
		t.req.release(sa, old.cfg)
		e.stats.exchange(exch, true, ResultError)
		e.log.Warn("invalid CHILD SA rekey response", sa.fields(zap.String("child", old.sa.Child), zap.Error(err))...)
		if !old.removed {
			sa.retryChildRekey(old)
		}
		t.finish(err)
		return
	}
	c.rekeys = old.rekeys + 1
	// RFC 7296 2.8.1: when both ends rekeyed at once, the exchange with
	// the lowest of the four nonces made the redundant SA, which its
	// initiator deletes. The peer's rekey also wins when it has already
	// taken over (its Delete overtook this response).
	lost := !rekeying && !old.removed
	if n := old.peerRekey; rekeying && n != nil && !n.removed {
		lost = cmpNonce(lowerNonce(ourNi, a.nonce.Data), lowerNonce(old.peerNi, old.ourNr)) < 0
	}
	if lost {
		e.log.Info("CHILD SA rekey collision lost: deleting our redundant SA", sa.fields(zap.String("child", old.sa.Child),
			zap.String("spi", fmt.Sprintf("%08x", c.sa.SPIIn)))...)
		e.stats.exchange(exch, true, ResultOK)
		if rekeying {
			// The winner's Delete of the old SA moves us to its SA.
			old.state = childRekeyed
		}
		sa.enqueue(&deleteChildTask{c: c, reason: "redundant after a rekey collision"})
		t.finish(nil)
		return
	}
	if err := sa.installInbound(c); err == nil {
		if err = sa.installOutbound(c); err != nil {
			sa.deleteFromDataplane(c)
		}
		if err != nil {
			e.log.Warn("installing the rekeyed CHILD SA failed", sa.fields(zap.String("child", old.sa.Child), zap.Error(err))...)
		}
	} else {
		e.log.Warn("installing the rekeyed CHILD SA failed", sa.fields(zap.String("child", old.sa.Child), zap.Error(err))...)
	}
	if c.outbound {
		sa.addChild(c)
		e.stats.exchange(exch, true, ResultOK)
		e.stats.add(&e.stats.childRekeys)
		e.log.Info("CHILD SA rekeyed", sa.fields(zap.String("child", c.sa.Child),
			zap.String("old_spis", fmt.Sprintf("%08x_i %08x_o", old.sa.SPIIn, old.sa.SPIOut)),
			zap.String("spis", fmt.Sprintf("%08x_i %08x_o", c.sa.SPIIn, c.sa.SPIOut)), zap.Int("rekeys", c.rekeys))...)
		if !old.removed {
			old.state = childRekeyed
			old.timers.stopAll()
			sa.enqueue(&deleteChildTask{c: old, reason: "rekeyed"})
		}
		t.finish(nil)
		return
	}
	// Installing failed: the peer has the new SA, we do not. Delete it
	// at the peer and keep the old one, rekeying again later.
	e.stats.exchange(exch, true, ResultError)
	sa.enqueue(&deleteChildTask{c: c, reason: "not installed"})
	if !old.removed {
		sa.retryChildRekey(old)
	}
	t.finish(err)
}

// processCreateChildRequest is the responder's CREATE_CHILD_SA.
func (sa *ikeSA) processCreateChildRequest(pk packet) {
	ps, ok := sa.openRequest(pk)
	if !ok {
		return
	}
	sa.lastRecv = time.Now()
	r := collectChild(ps)
	ikeRekey := r.sa != nil && len(r.sa.Proposals) > 0 && r.sa.Proposals[0].Protocol == message.ProtocolIKE
	var inFlight task
	if sa.out != nil {
		inFlight = sa.out.task
	}
	_, rekeyingIKE := inFlight.(*rekeyIKETask)
	switch {
	case sa.state != stateEstablished:
		// Deleting or replaced: nothing new on this IKE SA.
		sa.respondError(pk, message.NotifyTemporaryFailure, ResultTemporaryFailure)
	case r.sa == nil || r.nonce == nil:
		sa.respondError(pk, message.NotifyInvalidSyntax, ResultError)
	case rekeyingIKE:
		// RFC 7296 2.25.2: our IKE rekey is under way; the peer retries
		// on the new IKE SA.
		sa.respondError(pk, message.NotifyTemporaryFailure, ResultTemporaryFailure)
	case ikeRekey:
		sa.respondIKERekey(pk, r, inFlight)
	default:
		sa.respondCreateChild(pk, r)
	}
}

// respondCreateChild answers a request for a new CHILD SA or a CHILD SA
// rekey.
func (sa *ikeSA) respondCreateChild(pk packet, r childPayloads) {
	e := sa.e
	exch := message.ExchangeCreateChildSA.String()
	if r.tsi == nil || r.tsr == nil {
		sa.respondError(pk, message.NotifyInvalidSyntax, ResultError)
		return
	}
	var old *childSA
	if r.rekey != nil {
		if r.rekey.Protocol != message.ProtocolESP || len(r.rekey.SPI) != 4 {
			sa.respondError(pk, message.NotifyInvalidSyntax, ResultError)
			return
		}
		spi := uint32(r.rekey.SPI[0])<<24 | uint32(r.rekey.SPI[1])<<16 | uint32(r.rekey.SPI[2])<<8 | uint32(r.rekey.SPI[3])
		// The notify names the SPI the peer receives on: our outbound.
		old = sa.childByOut(spi)
		switch {
		case old == nil:
			e.log.Info("peer rekeys a CHILD SA we do not have; sending CHILD_SA_NOT_FOUND", sa.fields(zap.String("spi", fmt.Sprintf("%08x", spi)))...)
			sa.respondError(pk, message.NotifyChildSANotFound, ResultError)
			return
		case old.retired || old.peerRekey != nil || (old.state != childInstalled && old.state != childRekeying):
			// Already replaced, or a rekey of the peer's is pending.
			sa.respondError(pk, message.NotifyTemporaryFailure, ResultTemporaryFailure)
			return
		}
	}
	cfgs := make([]*Child, 0, len(sa.conn.Children))
	if old != nil {
		cfgs = append(cfgs, old.cfg)
	} else {
		for i := range sa.conn.Children {
			cfgs = append(cfgs, &sa.conn.Children[i])
		}
	}
	var fail *childFailure
	for _, cfg := range cfgs {
		c, out, nr, f := sa.negotiateChild(cfg, r)
		if f != nil {
			if fail == nil || fail.notify == message.NotifyNoProposalChosen {
				fail = f
			}
			if f.notify == message.NotifyInvalidKEPayload {
				break
			}
			continue
		}
		if err := sa.installInbound(c); err != nil {
			sa.releaseSPI(cfg, c.sa.SPIIn)
			fail = &childFailure{notify: message.NotifyNoProposalChosen, err: err}
			break
		}
		if old == nil {
			if err := sa.installOutbound(c); err != nil {
				sa.deleteFromDataplane(c)
				fail = &childFailure{notify: message.NotifyNoProposalChosen, err: err}
				break
			}
			e.log.Info("CHILD SA established", sa.fields(zap.String("exchange", exch), zap.String("child", c.sa.Child),
				zap.String("spis", fmt.Sprintf("%08x_i %08x_o", c.sa.SPIIn, c.sa.SPIOut)),
				zap.Any("local_ts", c.sa.LocalTS), zap.Any("remote_ts", c.sa.RemoteTS))...)
		} else {
			// Make-before-break: the new SA decrypts from now on; we
			// go on sending with the old one until the peer, which
			// switches once it has this answer, is seen sending with
			// the new one or deletes the old (rekeyswitch.go).
			c.rekeys = old.rekeys + 1
			old.peerRekey, old.peerNi, old.ourNr = c, append([]byte(nil), r.nonce.Data...), nr
			c.timers.set("inbound", c.afterFunc(inboundTimeout, func(sa *ikeSA) { sa.inboundExpired(old, c) }))
			sa.watchPeerSwitch(old, c)
		}
		sa.addChild(c)
		pkt, err := sa.protect(pk.h.Exchange, pk.h.MessageID, true, out)
		if err != nil {
			return
		}
		sa.respond(pk.h.MessageID, pk, pkt)
		e.stats.exchange(exch, false, ResultOK)
		if old == nil {
			e.stats.child(false, ResultOK)
		}
		return
	}
	if fail == nil {
		fail = &childFailure{notify: message.NotifyNoProposalChosen, err: fmt.Errorf("connection %q has no children", sa.connName())}
	}
	e.log.Warn("CHILD SA request refused", sa.fields(zap.String("exchange", exch), zap.Bool("rekey", old != nil),
		zap.Stringer("notify", fail.notify), zap.Error(fail.err))...)
	var n *message.Notify
	if fail.notify == message.NotifyInvalidKEPayload {
		n = fail.invalidKE
	} else {
		n = &message.Notify{NotifyType: fail.notify}
	}
	e.stats.exchange(exch, false, resultOf(fail.notify))
	if pkt, err := sa.protect(pk.h.Exchange, pk.h.MessageID, true, []message.Payload{n}); err == nil {
		sa.respond(pk.h.MessageID, pk, pkt)
	}
}

// negotiateChild builds the CHILD SA a request asks for under one
// configured child: proposal, PFS key exchange, selectors and keys. It
// returns the SA (not installed), the response payloads and our nonce.
func (sa *ikeSA) negotiateChild(cfg *Child, r childPayloads) (*childSA, []message.Payload, []byte, *childFailure) {
	prop, ok := selectChildProposal(r.sa.Proposals, cfg.ESPProposals)
	if !ok {
		return nil, nil, nil, &childFailure{notify: message.NotifyNoProposalChosen,
			err: fmt.Errorf("no common ESP proposal for child %q: received %s, configured %s", cfg.Name, offerString(r.sa.Proposals), confString(cfg.ESPProposals))}
	}
	var (
		kex crypto.KeyExchange
		gir []byte
		err error
	)
	if prop.ke != 0 {
		if r.ke == nil || uint16(r.ke.Group) != prop.ke {
			return nil, nil, nil, &childFailure{notify: message.NotifyInvalidKEPayload, invalidKE: message.NewInvalidKEPayload(message.KEGroup(prop.ke)),
				err: fmt.Errorf("PFS group %s wanted", message.KEGroup(prop.ke))}
		}
		if kex, err = crypto.NewKeyExchange(prop.ke); err == nil {
			gir, err = kex.SharedSecret(r.ke.Data)
		}
		if err != nil {
			return nil, nil, nil, &childFailure{notify: message.NotifyInvalidSyntax, err: fmt.Errorf("pfs key exchange: %w", err)}
		}
	}
	tsi := narrow(r.tsi.Selectors, cfg.RemoteTS)
	tsr := narrow(r.tsr.Selectors, cfg.LocalTS)
	if len(tsi) == 0 || len(tsr) == 0 {
		return nil, nil, nil, &childFailure{notify: message.NotifyTSUnacceptable,
			err: fmt.Errorf("traffic selectors unacceptable for child %q: received TSi %s TSr %s, configured local %s remote %s",
				cfg.Name, tsString(r.tsi.Selectors), tsString(r.tsr.Selectors), prefixesString(cfg.LocalTS), prefixesString(cfg.RemoteTS))}
	}
	peerSPI, ok := prop.spiValue()
	if !ok {
		return nil, nil, nil, &childFailure{notify: message.NotifyInvalidSyntax, err: errors.New("ESP proposal without a 4-byte SPI")}
	}
	ourSPI, err := sa.allocSPI(cfg.Name)
	if err != nil {
		return nil, nil, nil, &childFailure{notify: message.NotifyNoProposalChosen, err: err}
	}
	mode := ModeTunnel
	if r.transport && cfg.Mode == ModeTransport {
		mode = ModeTransport
	}
	nr := randomBytes(nonceLen)
	c, err := sa.buildChild(cfg, prop, false, ourSPI, peerSPI, mode, tsr, tsi, gir, r.nonce.Data, nr)
	if err != nil {
		sa.releaseSPI(cfg, ourSPI)
		return nil, nil, nil, &childFailure{notify: message.NotifyNoProposalChosen, err: err}
	}
	prop.spi = spiBytes(ourSPI)
	var out []message.Payload
	if mode == ModeTransport {
		out = append(out, &message.Notify{NotifyType: message.NotifyUseTransportMode})
	}
	out = append(out, &message.SA{Proposals: []message.Proposal{prop.wire(message.ProtocolESP)}}, &message.Nonce{Data: nr})
	if kex != nil {
		out = append(out, &message.KE{Group: message.KEGroup(kex.Group()), Data: kex.PublicKey()})
	}
	out = append(out, &message.TS{Selectors: tsi}, &message.TS{Responder: true, Selectors: tsr})
	return c, out, nr, nil
}

// childByOut finds the CHILD SA with outbound SPI spi.
func (sa *ikeSA) childByOut(spi uint32) *childSA {
	for _, c := range sa.children {
		if c.sa.SPIOut == spi && !c.removed {
			return c
		}
	}
	return nil
}

// takeOver switches sending from old to n, the SA the peer created by
// rekeying old, and retires old. on says what showed that the peer has n:
// "traffic" (rekeyswitch.go), "delete" or "timeout".
func (sa *ikeSA) takeOver(old, n *childSA, on string) {
	old.peerRekey = nil
	if err := sa.installOutbound(n); err != nil {
		sa.e.log.Warn("switching to the rekeyed CHILD SA failed; keeping the old one", sa.fields(zap.String("child", n.sa.Child), zap.Error(err))...)
		sa.dropChild(n)
		return
	}
	sa.e.stats.add(&sa.e.stats.childRekeys)
	sa.e.log.Info("CHILD SA rekeyed by peer", sa.fields(zap.String("child", n.sa.Child),
		zap.String("old_spis", fmt.Sprintf("%08x_i %08x_o", old.sa.SPIIn, old.sa.SPIOut)),
		zap.String("spis", fmt.Sprintf("%08x_i %08x_o", n.sa.SPIIn, n.sa.SPIOut)), zap.Int("rekeys", n.rekeys),
		zap.String("switched_on", on))...)
	old.state = childRekeyed
	sa.retire(old)
}

// inboundExpired handles a CHILD SA the peer created by rekeying old whose
// Delete of old never came: the peer sends with it, so we switch too and
// delete old ourselves. A redundant SA of a lost collision just goes.
func (sa *ikeSA) inboundExpired(old, n *childSA) {
	if n.state != childInbound {
		return
	}
	if old.peerRekey == n && !old.removed {
		sa.e.log.Warn("peer rekeyed a CHILD SA but never deleted the old one; switching anyway",
			sa.fields(zap.String("child", n.sa.Child))...)
		sa.takeOver(old, n, "timeout")
		sa.enqueue(&deleteChildTask{c: old, reason: "rekeyed"})
		return
	}
	sa.dropChild(n)
}

// retire removes a replaced CHILD SA after the grace period, during which
// its inbound SA still decrypts packets that were in flight.
func (sa *ikeSA) retire(c *childSA) {
	if c.retired || c.removed {
		return
	}
	c.retired = true
	c.timers.stopAll()
	c.rekeyAt = time.Time{}
	c.timers = nil
	c.timers.set("retire", c.afterFunc(sa.e.opts.RekeyGrace, func(sa *ikeSA) { sa.dropChild(c) }))
}

// dropChild removes a CHILD SA from the data plane and the IKE SA now.
func (sa *ikeSA) dropChild(c *childSA) {
	sa.deleteFromDataplane(c)
	for i, cc := range sa.children {
		if cc == c {
			sa.children = append(sa.children[:i], sa.children[i+1:]...)
			break
		}
	}
}

// rekeyIKETask rekeys the IKE SA (RFC 7296 1.3.2): a new IKE SA with new
// SPIs and keys derived from the old SK_d, the CHILD SAs move to it, and
// the old one is deleted.
type rekeyIKETask struct {
	done  chan error
	group uint16
	tries int
	spi   uint64
	ni    []byte
	kex   crypto.KeyExchange
}

func (t *rekeyIKETask) finish(err error) {
	if t.done != nil {
		t.done <- err
		t.done = nil
	}
}

func (t *rekeyIKETask) request(sa *ikeSA) (message.ExchangeType, []message.Payload, bool) {
	if sa.state != stateEstablished {
		sa.ikeRekey = false
		t.finish(fmt.Errorf("IKE SA is %s", sa.state))
		return 0, nil, false
	}
	if t.group == 0 {
		t.group = sa.ikeProp.ke
	}
	kex, err := crypto.NewKeyExchange(t.group)
	if err != nil {
		sa.ikeRekey = false
		t.finish(err)
		return 0, nil, false
	}
	e := sa.e
	e.mu.Lock()
	t.spi = e.newSPILocked()
	e.mu.Unlock()
	t.ni, t.kex = randomBytes(nonceLen), kex
	var spi [8]byte
	putSPI(spi[:], t.spi)
	return message.ExchangeCreateChildSA, []message.Payload{
		&message.SA{Proposals: toWire(sa.conn.IKEProposals, message.ProtocolIKE, spi[:])},
		&message.Nonce{Data: t.ni},
		&message.KE{Group: message.KEGroup(kex.Group()), Data: kex.PublicKey()},
	}, true
}

func (t *rekeyIKETask) response(sa *ikeSA, ps []message.Payload, err error) {
	e := sa.e
	sa.ikeRekey = false
	exch := message.ExchangeCreateChildSA.String()
	retry := func() {
		if sa.gone || sa.state != stateEstablished {
			return
		}
		d := rekeyRetryMin + time.Duration(randomBytes(1)[0])*(rekeyRetryMax-rekeyRetryMin)/256
		sa.rekeyAt = time.Now().Add(d)
		sa.timers.set("rekey", sa.afterFunc(d, func() { sa.queueIKERekey(nil) }))
	}
	if err != nil {
		retry()
		t.finish(err)
		return
	}
	a := collectChild(ps)
	if a.errN != nil {
		n := a.errN.NotifyType
		e.stats.exchange(exch, true, resultOf(n))
		if n == message.NotifyInvalidKEPayload && t.tries < maxInitRetries {
			if g, err := a.errN.InvalidKEGroup(); err == nil && sa.offersGroup(uint16(g)) && uint16(g) != t.group {
				t.group, t.tries = uint16(g), t.tries+1
				sa.ikeRekey = true
				sa.queue = append([]task{t}, sa.queue...)
				return
			}
		}
		if n == message.NotifyTemporaryFailure {
			e.log.Debug("peer is busy (TEMPORARY_FAILURE), rekeying the IKE SA later", sa.fields()...)
		} else {
			e.log.Warn("IKE SA rekey refused by peer; trying again later", sa.fields(zap.Stringer("notify", n))...)
		}
		retry()
		if n == message.NotifyNoProposalChosen && sa.conn != nil {
			t.finish(fmt.Errorf("peer sent %s: we offered %s with a %s key exchange", n,
				offerString(toWire(sa.conn.IKEProposals, message.ProtocolIKE, nil)), message.KEGroup(t.group)))
		} else {
			t.finish(fmt.Errorf("peer sent %s", n))
		}
		return
	}
	ns, err := t.accept(sa, a)
	if err != nil {
		e.stats.exchange(exch, true, ResultError)
		e.log.Warn("invalid IKE SA rekey response", sa.fields(zap.Error(err))...)
		retry()
		t.finish(err)
		return
	}
	e.stats.exchange(exch, true, ResultOK)
	sa.handOver(ns)
	// The initiator of the rekey deletes the old IKE SA (RFC 7296 2.8).
	sa.sendIKEDelete("rekeyed")
	t.finish(nil)
}

func (t *rekeyIKETask) accept(sa *ikeSA, a childPayloads) (*ikeSA, error) {
	if a.sa == nil || a.nonce == nil || a.ke == nil {
		return nil, errors.New("response lacks SA, nonce or KE")
	}
	prop, err := acceptAnswer(a.sa, sa.conn.IKEProposals, message.ProtocolIKE)
	if err != nil {
		return nil, err
	}
	if prop.ke != t.kex.Group() || uint16(a.ke.Group) != prop.ke {
		return nil, fmt.Errorf("responder chose %s, our key exchange is %s", message.KEGroup(prop.ke), message.KEGroup(t.kex.Group()))
	}
	if len(prop.spi) != 8 {
		return nil, errors.New("IKE proposal without an 8-byte SPI")
	}
	gir, err := t.kex.SharedSecret(a.ke.Data)
	if err != nil {
		return nil, fmt.Errorf("key exchange: %w", err)
	}
	var spir uint64
	for _, b := range prop.spi {
		spir = spir<<8 | uint64(b)
	}
	return sa.newRekeyedSA(prop, true, t.spi, spir, gir, t.ni, a.nonce.Data)
}

// respondIKERekey answers the peer's IKE SA rekey.
func (sa *ikeSA) respondIKERekey(pk packet, r childPayloads, inFlight task) {
	e := sa.e
	exch := message.ExchangeCreateChildSA.String()
	switch inFlight.(type) {
	case *rekeyChildTask, *createChildTask:
		// RFC 7296 2.25.2: a CHILD SA exchange of ours is in flight on
		// this IKE SA; the peer retries later.
		sa.respondError(pk, message.NotifyTemporaryFailure, ResultTemporaryFailure)
		return
	}
	if r.ke == nil {
		sa.respondError(pk, message.NotifyInvalidSyntax, ResultError)
		return
	}
	prop, ok := selectProposal(r.sa.Proposals, sa.conn.IKEProposals, message.ProtocolIKE, uint16(r.ke.Group))
	if !ok {
		e.log.Warn("IKE SA rekey refused: no common proposal", sa.fields(zap.String("received", offerString(r.sa.Proposals)))...)
		sa.respondError(pk, message.NotifyNoProposalChosen, ResultNoProposal)
		return
	}
	if prop.ke != uint16(r.ke.Group) {
		e.stats.exchange(exch, false, ResultInvalidKE)
		if pkt, err := sa.protect(pk.h.Exchange, pk.h.MessageID, true, []message.Payload{message.NewInvalidKEPayload(message.KEGroup(prop.ke))}); err == nil {
			sa.respond(pk.h.MessageID, pk, pkt)
		}
		return
	}
	if len(prop.spi) != 8 {
		sa.respondError(pk, message.NotifyInvalidSyntax, ResultError)
		return
	}
	kex, err := crypto.NewKeyExchange(prop.ke)
	var gir []byte
	if err == nil {
		gir, err = kex.SharedSecret(r.ke.Data)
	}
	if err != nil {
		sa.respondError(pk, message.NotifyInvalidSyntax, ResultError)
		return
	}
	var spii uint64
	for _, b := range prop.spi {
		spii = spii<<8 | uint64(b)
	}
	e.mu.Lock()
	spir := e.newSPILocked()
	e.mu.Unlock()
	nr := randomBytes(nonceLen)
	ns, err := sa.newRekeyedSA(prop, false, spii, spir, gir, r.nonce.Data, nr)
	if err != nil {
		e.log.Warn("IKE SA rekey failed", sa.fields(zap.Error(err))...)
		sa.respondError(pk, message.NotifyNoProposalChosen, ResultError)
		return
	}
	var spi [8]byte
	putSPI(spi[:], spir)
	prop.spi = spi[:]
	pkt, err := sa.protect(pk.h.Exchange, pk.h.MessageID, true, []message.Payload{
		&message.SA{Proposals: []message.Proposal{prop.wire(message.ProtocolIKE)}},
		&message.Nonce{Data: nr},
		&message.KE{Group: message.KEGroup(kex.Group()), Data: kex.PublicKey()},
	})
	if err != nil {
		return
	}
	sa.respond(pk.h.MessageID, pk, pkt)
	e.stats.exchange(exch, false, ResultOK)
	sa.handOver(ns)
	// The peer deletes the old IKE SA; should it not, it goes anyway.
	sa.timers.set("rekeyed", sa.afterFunc(e.opts.HalfOpenTimeout, func() {
		if sa.state == stateRekeyed {
			sa.remove(errors.New("rekeyed IKE SA never deleted by the peer"))
		}
	}))
}

// newRekeyedSA builds the IKE SA that replaces sa: initiator is whether we
// initiated the rekey, which makes us the new SA's original initiator.
func (sa *ikeSA) newRekeyedSA(prop chosen, initiator bool, spii, spir uint64, gir, ni, nr []byte) (*ikeSA, error) {
	var si, sr [8]byte
	putSPI(si[:], spii)
	putSPI(sr[:], spir)
	keys, err := crypto.DeriveRekeyedIKEKeys(sa.ikeProp.prf, sa.keys.SKd, prop.suite(), gir, ni, nr, si[:], sr[:])
	if err != nil {
		return nil, fmt.Errorf("derive rekeyed IKE keys: %w", err)
	}
	seal, open, err := keys.SKCiphers(prop.suite(), initiator)
	if err != nil {
		return nil, fmt.Errorf("sk ciphers: %w", err)
	}
	prf, err := crypto.NewPRF(prop.prf)
	if err != nil {
		return nil, fmt.Errorf("prf: %w", err)
	}
	now := time.Now()
	ns := &ikeSA{
		e: sa.e, conn: sa.conn, initiator: initiator, spii: spii, spir: spir,
		state: stateEstablished, local: sa.local, remote: sa.remote, natt: sa.natt,
		natLocal: sa.natLocal, natRemote: sa.natRemote,
		ni: append([]byte(nil), ni...), nr: append([]byte(nil), nr...),
		ikeProp: prop, prf: prf, keys: keys, seal: seal, open: open,
		peerID: sa.peerID, localID: sa.localID,
		established: now, created: now, lastRecv: now, lastSent: sa.lastSent,
		rekeys: sa.rekeys + 1, pendingCreate: map[string]bool{},
	}
	e := sa.e
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, ErrClosed
	}
	our := ns.ourSPI()
	if e.sas[our] != nil {
		return nil, errors.New("new IKE SPI collides")
	}
	e.sas[our] = ns
	if sa.contact != nil {
		// The rekeyed SA carries on between the same identities.
		e.countContactLocked(ns, sa.contact)
	}
	return ns, nil
}

// handOver moves the CHILD SAs and queued requests to ns, which replaces
// sa, and leaves sa REKEYED.
func (sa *ikeSA) handOver(ns *ikeSA) {
	e := sa.e
	ns.mu.Lock()
	defer ns.mu.Unlock()
	for _, c := range sa.children {
		c.sa.IKESPIi, c.sa.IKESPIr = ns.spii, ns.spir
		ns.addChild(c)
	}
	sa.children = nil
	ns.queue, sa.queue = sa.queue, nil
	ns.pendingCreate, sa.pendingCreate = sa.pendingCreate, map[string]bool{}
	sa.timers.stopAll()
	sa.timers = nil
	sa.state = stateRekeyed
	ns.armIKETimers()
	e.stats.add(&e.stats.ikeRekeys)
	e.log.Info("IKE SA rekeyed", ns.fields(zap.String("old_spi", fmt.Sprintf("%016x_i %016x_r", sa.spii, sa.spir)), zap.Int("rekeys", ns.rekeys))...)
	ns.kick()
}
