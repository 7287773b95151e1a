package ike

import (
	"fmt"
	"net/netip"

	"go.uber.org/zap"

	"github.com/xdpsec/xdpsec/ike/crypto"
	"github.com/xdpsec/xdpsec/ike/message"
)

// The phases of IKE_SA_INIT (RFC 7296 1.2): the proposal, key exchange and
// nonces (kePhase), NAT detection (natdPhase, natd.go) and the RFC 7383
// fragmentation announcement (fragPhase). The responder's choice of a
// connection and a proposal, and its KE check, happen before there is an
// IKE SA (Engine.handleInitRequest), so its kePhase only answers.

// initPhases returns the phases of one IKE_SA_INIT run in role r. pk is
// the message received (the request, or the response to ours).
func initPhases(pk packet, r role) []phase {
	return []phase{kePhase{r: r, pk: pk}, &natdPhase{r: r, pk: pk}, fragPhase{r: r}}
}

// kePhase is SA, KE and Nonce.
type kePhase struct {
	r  role
	pk packet
}

func (p kePhase) build(sa *ikeSA, out []message.Payload) ([]message.Payload, error) {
	if p.r == roleResponder {
		return append(out,
			&message.SA{Proposals: []message.Proposal{sa.ikeProp.wire(message.ProtocolIKE)}},
			&message.KE{Group: message.KEGroup(sa.ikeProp.ke), Data: sa.kex.PublicKey()},
			&message.Nonce{Data: sa.nr},
		), nil
	}
	if sa.cookie != nil {
		// The COOKIE goes first (RFC 7296 2.6).
		out = append(out, &message.Notify{NotifyType: message.NotifyCookie, Data: sa.cookie})
	}
	return append(out,
		&message.SA{Proposals: toWire(sa.conn.IKEProposals, message.ProtocolIKE, nil)},
		&message.KE{Group: message.KEGroup(sa.kex.Group()), Data: sa.kex.PublicKey()},
		&message.Nonce{Data: sa.ni},
	), nil
}

// process checks the responder's choice against our proposals and our key
// exchange and derives the IKE SA's keys.
func (p kePhase) process(sa *ikeSA, in *payloads) error {
	if p.r == roleResponder {
		return nil
	}
	e := sa.e
	if in.sa == nil || in.ke == nil || in.nonce == nil || p.pk.h.SPIr == 0 {
		e.stats.drop(DropMalformed)
		return errDropped
	}
	prop, err := acceptAnswer(in.sa, sa.conn.IKEProposals, message.ProtocolIKE)
	if err == nil && prop.ke != uint16(in.ke.Group) {
		err = fmt.Errorf("responder chose %s but sent a %s key exchange", message.KEGroup(prop.ke), in.ke.Group)
	}
	if err == nil && prop.ke != sa.kex.Group() {
		err = fmt.Errorf("responder chose %s, our key exchange is %s", message.KEGroup(prop.ke), message.KEGroup(sa.kex.Group()))
	}
	if err != nil {
		e.log.Warn("invalid IKE_SA_INIT response", sa.fields(zap.String("exchange", message.ExchangeIKESAInit.String()), zap.Error(err))...)
		return fmt.Errorf("IKE_SA_INIT: %w", err)
	}
	gir, err := sa.kex.SharedSecret(in.ke.Data)
	if err != nil {
		e.stats.drop(DropInvalidKE)
		return errDropped
	}
	sa.spir = p.pk.h.SPIr
	sa.nr = append([]byte(nil), in.nonce.Data...)
	sa.initResp = append([]byte(nil), p.pk.b...)
	return sa.deriveKeys(prop, gir)
}

// natdPhase is NAT detection (RFC 7296 2.23): both ends send the hashes,
// each works out from the other's which of them sits behind a NAT, and the
// initiator then floats to the NAT-T port. The responder answers with
// hashes only when the initiator sent some.
type natdPhase struct {
	r        role
	pk       packet
	peerSent bool
}

func (p *natdPhase) build(sa *ikeSA, out []message.Payload) ([]message.Payload, error) {
	switch {
	case p.r == roleRequester:
		return append(out, sa.natdPayloads(0)...), nil
	case p.peerSent:
		return append(out, sa.natdPayloads(sa.spir)...), nil
	}
	return out, nil
}

func (p *natdPhase) process(sa *ikeSA, in *payloads) error {
	spir := uint64(0) // the request's hashes were made before there was one
	if p.r == roleRequester {
		spir = sa.spir
	}
	nl, nr, ok := detectNAT(in.natd, sa.spii, spir, p.pk.from, p.pk.local)
	if !ok {
		return nil
	}
	p.peerSent = true
	sa.natLocal, sa.natRemote = nl, nr
	if p.r == roleRequester && (nl || nr || sa.conn.ForceEncap) {
		// Float to the NAT-T port (RFC 7296 2.23).
		port := uint16(sa.e.opts.NATPort)
		sa.natt = true
		sa.local = netip.AddrPortFrom(sa.local.Addr(), port)
		sa.remote = netip.AddrPortFrom(sa.remote.Addr(), port)
	}
	return nil
}

// fragPhase announces IKEV2_FRAGMENTATION_SUPPORTED (RFC 7383 2.3): the
// initiator always (we reassemble what the peer fragments), the responder
// when the initiator did. Either end fragments only when both announced.
type fragPhase struct{ r role }

func (p fragPhase) build(sa *ikeSA, out []message.Payload) ([]message.Payload, error) {
	if p.r == roleRequester || sa.fragOK {
		out = append(out, &message.Notify{NotifyType: message.NotifyIKEv2FragmentationSupported})
	}
	return out, nil
}

func (p fragPhase) process(sa *ikeSA, in *payloads) error {
	sa.fragOK = in.fragmentation
	return nil
}

// newKeyExchange returns a key exchange of group with a fresh nonce, or the
// SA's own when it is of that group already (a retry after a COOKIE keeps
// both).
func (sa *ikeSA) newKeyExchange(group uint16) error {
	if sa.kex != nil && sa.kex.Group() == group {
		return nil
	}
	kex, err := crypto.NewKeyExchange(group)
	if err != nil {
		return fmt.Errorf("key exchange %s: %w", message.KEGroup(group), err)
	}
	sa.kex = kex
	sa.ni = randomBytes(nonceLen)
	return nil
}
