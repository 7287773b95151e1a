package ike

import (
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/xdpsec/xdpsec/ike/message"
)

// The phases of IKE_AUTH (RFC 7296 1.2, 2.15): identities and AUTH through
// the connection's authenticator (authPhase), INITIAL_CONTACT
// (contactPhase), the IKE SA becoming established (establishPhase) and the
// first CHILD SA (childPhase). Both roles run the same list.

func authPhases(r role) []phase {
	return []phase{&authPhase{r: r}, contactPhase{r: r}, establishPhase{r: r}, &childPhase{r: r}}
}

// authTask is the initiator's IKE_AUTH request, sent right after
// IKE_SA_INIT.
func (sa *ikeSA) authTask() task {
	return &exchangeTask{exch: message.ExchangeIKEAuth, phases: authPhases(roleRequester), setup: true, done: (*ikeSA).authDone}
}

// respondAuth is the responder's IKE_AUTH (sa.mu held).
func (sa *ikeSA) respondAuth(pk packet) {
	ps, ok := sa.openRequest(pk)
	if !ok {
		return
	}
	// The request is authentic: follow the peer to the NAT-T port and to
	// its (possibly NAT-mapped) address.
	sa.local, sa.remote, sa.natt = pk.local, pk.from, pk.natt
	in := collect(ps)
	phases := authPhases(roleResponder)
	if !sa.respondWith(pk, &in, phases) {
		return
	}
	sa.e.stats.exchange(message.ExchangeIKEAuth.String(), false, ResultOK)
	sa.logEstablished()
	if c := phases[3].(*childPhase).child; c != nil {
		sa.e.log.Info("CHILD SA established", sa.fields(zap.String("child", c.sa.Child),
			zap.String("spis", fmt.Sprintf("%08x_i %08x_o", c.sa.SPIIn, c.sa.SPIOut)),
			zap.Any("local_ts", c.sa.LocalTS), zap.Any("remote_ts", c.sa.RemoteTS))...)
	}
}

// authDone ends the initiator's IKE_AUTH: the IKE SA is up (and the first
// CHILD SA, or the reason it is not), or the exchange failed.
func (sa *ikeSA) authDone(err error) {
	e := sa.e
	exch := message.ExchangeIKEAuth.String()
	var cf *childOutcome
	switch {
	case sa.gone:
		return // timed out or removed: counted and logged there
	case errors.As(err, &cf):
		// Only the CHILD SA failed; the IKE SA is up.
		err = cf.err
	case err != nil:
		var af *authFailure
		if errors.As(err, &af) {
			err = af.err // logged and counted by verifyResponder
		} else {
			e.log.Warn("IKE_AUTH failed", sa.fields(zap.String("exchange", exch), zap.Error(err))...)
			e.stats.exchange(exch, true, ResultError)
		}
		sa.fail(err)
		return
	}
	e.stats.exchange(exch, true, ResultOK)
	sa.logEstablished()
	sa.finish(err)
	// The other configured children follow with CREATE_CHILD_SA.
	for i := 1; i < len(sa.conn.Children); i++ {
		ch := &sa.conn.Children[i]
		sa.pendingCreate[ch.Name] = true
		sa.enqueue(&createChildTask{cfg: ch})
	}
}

func (sa *ikeSA) logEstablished() {
	sa.e.log.Info("IKE SA established", sa.fields(zap.String("exchange", message.ExchangeIKEAuth.String()), zap.Stringer("remote_id", sa.peerID),
		zap.String("proposal", sa.ikeProp.String()), zap.Bool("nat_local", sa.natLocal), zap.Bool("nat_remote", sa.natRemote))...)
}

// authFailure is an IKE_AUTH failure that its phase has logged and counted.
type authFailure struct{ err error }

func (f *authFailure) Error() string { return f.err.Error() }

func (f *authFailure) Unwrap() error { return f.err }

// childOutcome carries the first CHILD SA's failure out of a completed
// IKE_AUTH: the exchange succeeded, the IKE SA is up.
type childOutcome struct{ err error }

func (c *childOutcome) Error() string { return c.err.Error() }

// contactPhase is INITIAL_CONTACT (RFC 7296 2.4): the initiator sends it
// when it has no other IKE SA with the peer; the responder, on receiving
// it, deletes the older SAs of the same pair of identities.
type contactPhase struct{ r role }

func (p contactPhase) build(sa *ikeSA, out []message.Payload) ([]message.Payload, error) {
	if p.r == roleRequester && !sa.e.claimContact(sa, newContact(sa.localID, sa.conn.RemoteID, sa.remote.Addr())) {
		out = append(out, &message.Notify{NotifyType: message.NotifyInitialContact})
	}
	return out, nil
}

func (p contactPhase) process(sa *ikeSA, in *payloads) error {
	if p.r == roleResponder && in.initialContact {
		// Checked without our lock held: the other SAs' locks are taken
		// one by one.
		go sa.e.initialContact(sa, sa.localID, sa.peerID, sa.created)
	}
	return nil
}

// establishPhase marks the IKE SA established once the peer is
// authenticated: for the responder before its CHILD SA is installed, for
// the initiator before it installs the one the response carries.
type establishPhase struct{ r role }

func (p establishPhase) build(sa *ikeSA, out []message.Payload) ([]message.Payload, error) {
	if p.r == roleResponder {
		sa.setEstablished()
	}
	return out, nil
}

func (p establishPhase) process(sa *ikeSA, _ *payloads) error {
	if p.r == roleRequester {
		sa.setEstablished()
	}
	return nil
}

// childPhase is the CHILD SA created with IKE_AUTH (RFC 7296 1.2): the
// initiator offers its first configured child; the responder picks the
// child that accepts the offer, installs it and answers, or answers why
// not and keeps the IKE SA (RFC 7296 2.21.3).
type childPhase struct {
	r     role
	offer *payloads // the responder's: the request's CHILD SA payloads
	child *childSA  // the responder's: the child it installed, if any
}

func (p *childPhase) build(sa *ikeSA, out []message.Payload) ([]message.Payload, error) {
	if p.r == roleResponder {
		ps, child, _ := sa.respondChild(*p.offer)
		p.child = child
		return append(out, ps...), nil
	}
	if len(sa.conn.Children) == 0 {
		return out, nil
	}
	ch := &sa.conn.Children[0]
	spi, err := sa.allocSPI(ch.Name)
	if err != nil {
		return nil, err
	}
	sa.pendingChild, sa.pendingSPI = ch, spi
	if ch.Mode == ModeTransport {
		out = append(out, &message.Notify{NotifyType: message.NotifyUseTransportMode})
	}
	return append(out,
		&message.SA{Proposals: toWire(ch.ESPProposals, message.ProtocolESP, spiBytes(spi))},
		&message.TS{Selectors: selectors(ch.LocalTS)},
		&message.TS{Responder: true, Selectors: selectors(ch.RemoteTS)},
	), nil
}

func (p *childPhase) process(sa *ikeSA, in *payloads) error {
	if p.r == roleResponder {
		p.offer = in
		return nil
	}
	if sa.pendingChild == nil {
		return nil
	}
	if err := sa.acceptChild(*in); err != nil {
		return &childOutcome{err: err}
	}
	return nil
}
