package ike

import (
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/xdpsec/xdpsec/ike/crypto"
	"github.com/xdpsec/xdpsec/ike/message"
)

// The phases of CREATE_CHILD_SA (RFC 7296 1.3): a new CHILD SA is
// childOfferPhase; a CHILD SA rekey is rekeyNotifyPhase and
// childOfferPhase; an IKE SA rekey is ikeRekeyPhase (rekeyike.go). Our
// requests are createChildTask, rekeyChildTask and rekeyIKETask, which
// build and process through these phases and decide what the outcome
// means (retries, collisions, the switch to the new SA). A refused
// request leaves the IKE SA up.

// respondCreateChild is the responder's CREATE_CHILD_SA (sa.mu held).
func (sa *ikeSA) respondCreateChild(pk packet) {
	ps, ok := sa.openRequest(pk)
	if !ok {
		return
	}
	sa.lastRecv = time.Now()
	in := collect(ps)
	if err := sa.admitCreateChild(&in); err != nil {
		sa.refuse(pk, err)
		return
	}
	e := sa.e
	exch := message.ExchangeCreateChildSA.String()
	if len(in.sa.Proposals) > 0 && in.sa.Proposals[0].Protocol == message.ProtocolIKE {
		p := &ikeRekeyPhase{r: roleResponder}
		if sa.respondWith(pk, &in, []phase{p}) {
			e.stats.exchange(exch, false, ResultOK)
			sa.rekeyedByPeer(p.ns)
		}
		return
	}
	rk := &rekeyNotifyPhase{r: roleResponder}
	offer := &childOfferPhase{r: roleResponder, rekey: rk}
	if sa.respondWith(pk, &in, []phase{rk, offer}) {
		e.stats.exchange(exch, false, ResultOK)
		if rk.old == nil {
			e.stats.child(false, ResultOK)
		}
	}
}

// admitCreateChild refuses, keeping the IKE SA, what no phase should see:
// a request on an SA that is going, one without SA or nonce, and any
// while our IKE rekey is under way (RFC 7296 2.25.2: the peer retries on
// the new IKE SA).
func (sa *ikeSA) admitCreateChild(in *payloads) error {
	tempFail := &refusal{notify: message.NotifyTemporaryFailure, result: ResultTemporaryFailure, keep: true,
		err: errors.New("busy")}
	var inFlight task
	if sa.out != nil {
		inFlight = sa.out.task
	}
	_, rekeyingIKE := inFlight.(*rekeyIKETask)
	switch {
	case sa.state != stateEstablished:
		// Deleting or replaced: nothing new on this IKE SA.
		return tempFail
	case in.sa == nil || in.nonce == nil:
		return &refusal{notify: message.NotifyInvalidSyntax, result: ResultError, keep: true, err: errors.New("no SA or nonce")}
	case rekeyingIKE:
		return tempFail
	}
	return nil
}

// rekeyNotifyPhase is REKEY_SA (RFC 7296 1.3.3): the requester names the
// CHILD SA it rekeys by its inbound SPI; the responder finds it (old) by
// that SPI, its outbound one, or refuses.
type rekeyNotifyPhase struct {
	r   role
	old *childSA
}

func (p *rekeyNotifyPhase) build(sa *ikeSA, out []message.Payload) ([]message.Payload, error) {
	if p.r == roleResponder || p.old == nil {
		return out, nil
	}
	return append(out, &message.Notify{Protocol: message.ProtocolESP, SPI: spiBytes(p.old.sa.SPIIn), NotifyType: message.NotifyRekeySA}), nil
}

func (p *rekeyNotifyPhase) process(sa *ikeSA, in *payloads) error {
	if p.r == roleRequester || in.rekey == nil {
		return nil
	}
	refused := func(n message.NotifyType, result, why string) error {
		return &refusal{notify: n, result: result, keep: true, err: errors.New(why)}
	}
	if in.rekey.Protocol != message.ProtocolESP || len(in.rekey.SPI) != 4 {
		return refused(message.NotifyInvalidSyntax, ResultError, "malformed REKEY_SA")
	}
	spi := uint32(in.rekey.SPI[0])<<24 | uint32(in.rekey.SPI[1])<<16 | uint32(in.rekey.SPI[2])<<8 | uint32(in.rekey.SPI[3])
	// The notify names the SPI the peer receives on: our outbound.
	old := sa.childByOut(spi)
	switch {
	case old == nil:
		sa.e.log.Info("peer rekeys a CHILD SA we do not have; sending CHILD_SA_NOT_FOUND", sa.fields(zap.String("spi", fmt.Sprintf("%08x", spi)))...)
		return refused(message.NotifyChildSANotFound, ResultError, "unknown CHILD SA")
	case old.retired || old.peerRekey != nil || (old.state != childInstalled && old.state != childRekeying):
		// Already replaced, or a rekey of the peer's is pending.
		return refused(message.NotifyTemporaryFailure, ResultTemporaryFailure, "CHILD SA busy")
	}
	p.old = old
	return nil
}

// childOfferPhase is a CHILD SA's proposal, nonce, optional PFS key
// exchange, traffic selectors and mode (RFC 7296 1.3.1). The requester
// offers req (started by its task) for cfg and accepts the answer into
// child, not installed; the responder negotiates one of the configured
// children (the rekeyed one's alone for a rekey), installs it and answers.
type childOfferPhase struct {
	r role
	// The requester's.
	cfg               *Child
	mode              Mode
	localTS, remoteTS []message.TrafficSelector
	req               *childRequest
	// The responder's: the rekey phase of the same request, and what it
	// answers.
	rekey  *rekeyNotifyPhase
	answer []message.Payload
	// child is the CHILD SA the exchange created: the requester's not
	// installed yet, the responder's installed.
	child *childSA
}

func (p *childOfferPhase) build(sa *ikeSA, out []message.Payload) ([]message.Payload, error) {
	if p.r == roleResponder {
		return append(out, p.answer...), nil
	}
	return append(out, p.req.payloads(p.cfg, p.mode, p.localTS, p.remoteTS)...), nil
}

func (p *childOfferPhase) process(sa *ikeSA, in *payloads) error {
	if p.r == roleRequester {
		c, err := p.req.accept(sa, p.cfg, *in, p.mode)
		p.child = c
		return err
	}
	if in.tsi == nil || in.tsr == nil {
		return &refusal{notify: message.NotifyInvalidSyntax, result: ResultError, keep: true, err: errors.New("no traffic selectors")}
	}
	old := p.rekey.old
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
		c, out, nr, f := sa.negotiateChild(cfg, *in)
		if f == nil {
			if f = sa.installOffered(c, old, in.nonce.Data, nr); f == nil {
				p.child, p.answer = c, out
				return nil
			}
			fail = f
			break
		}
		if fail == nil || fail.notify == message.NotifyNoProposalChosen {
			fail = f
		}
		if f.notify == message.NotifyInvalidKEPayload {
			break
		}
	}
	if fail == nil {
		fail = &childFailure{notify: message.NotifyNoProposalChosen, err: fmt.Errorf("connection %q has no children", sa.connName())}
	}
	sa.e.log.Warn("CHILD SA request refused", sa.fields(zap.String("exchange", message.ExchangeCreateChildSA.String()), zap.Bool("rekey", old != nil),
		zap.Stringer("notify", fail.notify), zap.Error(fail.err))...)
	return &refusal{notify: fail.notify, answer: fail.invalidKE, result: resultOf(fail.notify), keep: true, err: fail.err}
}

// installOffered installs the responder's new CHILD SA c: a new child both
// ways at once; the new SA of a rekey of old inbound only, make before
// break: it decrypts from now on, and we go on sending with old until the
// peer, which switches once it has our answer, is seen sending with c or
// deletes old (rekeyswitch.go). ni and nr are the exchange's nonces.
func (sa *ikeSA) installOffered(c, old *childSA, ni, nr []byte) *childFailure {
	if err := sa.installInbound(c); err != nil {
		sa.releaseSPI(c.cfg, c.sa.SPIIn)
		return &childFailure{notify: message.NotifyNoProposalChosen, err: err}
	}
	if old == nil {
		if err := sa.installOutbound(c); err != nil {
			sa.deleteFromDataplane(c)
			return &childFailure{notify: message.NotifyNoProposalChosen, err: err}
		}
		sa.e.log.Info("CHILD SA established", sa.fields(zap.String("exchange", message.ExchangeCreateChildSA.String()), zap.String("child", c.sa.Child),
			zap.String("spis", fmt.Sprintf("%08x_i %08x_o", c.sa.SPIIn, c.sa.SPIOut)),
			zap.Any("local_ts", c.sa.LocalTS), zap.Any("remote_ts", c.sa.RemoteTS))...)
	} else {
		c.rekeys = old.rekeys + 1
		old.peerRekey, old.peerNi, old.ourNr = c, append([]byte(nil), ni...), nr
		c.timers.set("inbound", c.afterFunc(inboundTimeout, func(sa *ikeSA) { sa.inboundExpired(old, c) }))
		sa.watchPeerSwitch(old, c)
	}
	sa.addChild(c)
	return nil
}

// negotiateChild builds the CHILD SA a request asks for under one
// configured child: proposal, PFS key exchange, selectors and keys. It
// returns the SA (not installed), the response payloads and our nonce.
func (sa *ikeSA) negotiateChild(cfg *Child, r payloads) (*childSA, []message.Payload, []byte, *childFailure) {
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
