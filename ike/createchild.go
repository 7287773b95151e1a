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
func (r *childRequest) accept(sa *ikeSA, cfg *Child, a payloads, wantMode Mode) (*childSA, error) {
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
	offer *childOfferPhase
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
	t.offer = &childOfferPhase{r: roleRequester, cfg: t.cfg, mode: t.cfg.Mode,
		localTS: selectors(t.cfg.LocalTS), remoteTS: selectors(t.cfg.RemoteTS), req: &t.req}
	ps, err := buildPhases(sa, []phase{t.offer})
	if err != nil {
		t.req.release(sa, t.cfg)
		delete(sa.pendingCreate, t.cfg.Name)
		return 0, nil, false
	}
	return message.ExchangeCreateChildSA, ps, true
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
	a := collect(ps)
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
	err = processPhases(sa, []phase{t.offer}, &a)
	c := t.offer.child
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
		sa.enqueue(deleteChildTask(&childSA{sa: ChildSA{Conn: sa.connName(), Child: t.cfg.Name, SPIIn: t.req.spi}, cfg: t.cfg}, "not installed", ""))
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
