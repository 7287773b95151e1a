package ike

import (
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/xdpsec/xdpsec/ike/crypto"
	"github.com/xdpsec/xdpsec/ike/message"
)

// processCreateChildRequest is the responder's CREATE_CHILD_SA.
func (sa *ikeSA) processCreateChildRequest(pk packet) {
	ps, ok := sa.openRequest(pk)
	if !ok {
		return
	}
	sa.lastRecv = time.Now()
	r := collect(ps)
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
func (sa *ikeSA) respondCreateChild(pk packet, r payloads) {
	e := sa.e
	exch := message.ExchangeCreateChildSA.String()
	if r.tsi == nil || r.tsr == nil {
		sa.respondError(pk, message.NotifyInvalidSyntax, ResultError)
		return
	}
	old, ok := sa.rekeyTarget(pk, r)
	if !ok {
		return
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
	sa.refuseCreateChild(pk, fail, old != nil)
}

// rekeyTarget finds the CHILD SA a request's REKEY_SA names (nil for a new
// child) or answers why it cannot be rekeyed.
func (sa *ikeSA) rekeyTarget(pk packet, r payloads) (*childSA, bool) {
	if r.rekey == nil {
		return nil, true
	}
	if r.rekey.Protocol != message.ProtocolESP || len(r.rekey.SPI) != 4 {
		sa.respondError(pk, message.NotifyInvalidSyntax, ResultError)
		return nil, false
	}
	spi := uint32(r.rekey.SPI[0])<<24 | uint32(r.rekey.SPI[1])<<16 | uint32(r.rekey.SPI[2])<<8 | uint32(r.rekey.SPI[3])
	// The notify names the SPI the peer receives on: our outbound.
	old := sa.childByOut(spi)
	switch {
	case old == nil:
		sa.e.log.Info("peer rekeys a CHILD SA we do not have; sending CHILD_SA_NOT_FOUND", sa.fields(zap.String("spi", fmt.Sprintf("%08x", spi)))...)
		sa.respondError(pk, message.NotifyChildSANotFound, ResultError)
		return nil, false
	case old.retired || old.peerRekey != nil || (old.state != childInstalled && old.state != childRekeying):
		// Already replaced, or a rekey of the peer's is pending.
		sa.respondError(pk, message.NotifyTemporaryFailure, ResultTemporaryFailure)
		return nil, false
	}
	return old, true
}

// refuseCreateChild answers a CREATE_CHILD_SA request we cannot grant.
func (sa *ikeSA) refuseCreateChild(pk packet, fail *childFailure, rekey bool) {
	exch := message.ExchangeCreateChildSA.String()
	sa.e.log.Warn("CHILD SA request refused", sa.fields(zap.String("exchange", exch), zap.Bool("rekey", rekey),
		zap.Stringer("notify", fail.notify), zap.Error(fail.err))...)
	n := &message.Notify{NotifyType: fail.notify}
	if fail.notify == message.NotifyInvalidKEPayload {
		n = fail.invalidKE
	}
	sa.e.stats.exchange(exch, false, resultOf(fail.notify))
	if pkt, err := sa.protect(pk.h.Exchange, pk.h.MessageID, true, []message.Payload{n}); err == nil {
		sa.respond(pk.h.MessageID, pk, pkt)
	}
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
