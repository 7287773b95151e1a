package ike

import (
	"errors"

	"github.com/xdpsec/xdpsec/ike/message"
)

// A phase is one job of an exchange, what libcharon calls a task (ike_init,
// ike_natd, ike_auth, child_create): an exchange is a list of phases, and
// the same phases serve both roles. The requester builds its request from
// each phase in order and has each process the response; the responder
// has each process the request, then builds its response from each. A
// phase value lives for one run of its exchange, so what process learns
// (the peer's identity, its CHILD SA offer) is there for build.
//
// IKE_SA_INIT is kePhase, natdPhase and fragPhase (initphases.go);
// IKE_AUTH is authPhase, contactPhase, establishPhase and childPhase
// (authphases.go); CREATE_CHILD_SA is childOfferPhase, with
// rekeyNotifyPhase for a CHILD SA rekey (childphases.go), or ikeRekeyPhase
// (rekeyike.go); INFORMATIONAL is deletePhase and rejectedPhase, or no
// phase at all for a liveness check (informational.go). A new job of an
// existing exchange, such as CERTREQ or a second key exchange, is one more
// phase in its list; a new exchange is a list of phases, a responder
// (responders.go) and, for our requests, an exchangeTask. The message
// layer (messages.go) sees neither.
type phase interface {
	// build appends this job's payloads to the message this end sends.
	build(sa *ikeSA, out []message.Payload) ([]message.Payload, error)
	// process reads this job's payloads from the message received. An
	// error ends the exchange: the responder refuses the request (see
	// refusal), the requester's task gets the error.
	process(sa *ikeSA, in *payloads) error
}

// role is this end's part in one run of an exchange: it sent the request
// or it answers it. In IKE_SA_INIT and IKE_AUTH the requester is the IKE
// SA's initiator; CREATE_CHILD_SA and INFORMATIONAL go either way, so a
// phase goes by its role, not by sa.initiator.
type role uint8

const (
	roleRequester role = iota
	roleResponder
)

// refusal is a responder phase's reason to refuse a request: the answer is
// notify alone, counted as result, and the IKE SA goes away with err unless
// keep is set. The phase has logged why.
type refusal struct {
	notify message.NotifyType
	result string
	err    error
	// answer, when set, is the notification to send instead of a bare
	// notify (INVALID_KE_PAYLOAD carries the group we want).
	answer *message.Notify
	// keep leaves the IKE SA up: a refused CHILD SA or rekey is not the
	// IKE SA's failure (RFC 7296 2.21.3).
	keep bool
}

func (r *refusal) Error() string { return r.err.Error() }

func (r *refusal) Unwrap() error { return r.err }

// errDropped ends the initiator's processing of an IKE_SA_INIT response
// that is to be ignored, not acted on (malformed, or a key exchange that
// does not compute; the phase counted the drop): unprotected, it may be
// forged, so the request stays outstanding and is retransmitted.
var errDropped = errors.New("response dropped")

// errMoot is a requester phase's answer to build when its request has
// become pointless while it waited in the queue (the CHILD SA it was for
// is gone); the task is dropped unsent.
var errMoot = errors.New("request moot")

// buildPhases returns the payloads of a message built by phases in order.
func buildPhases(sa *ikeSA, phases []phase) ([]message.Payload, error) {
	var out []message.Payload
	for _, p := range phases {
		var err error
		if out, err = p.build(sa, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// processPhases has each phase process the received message, in order,
// and stops at the first error.
func processPhases(sa *ikeSA, phases []phase, in *payloads) error {
	for _, p := range phases {
		if err := p.process(sa, in); err != nil {
			return err
		}
	}
	return nil
}

// respondWith answers the request pk, whose payloads are in, from phases:
// each processes it, then each builds its part of the response, which goes
// out through the message layer. A refusal is answered with its notify and
// ends the IKE SA, as does any other error (answered with
// AUTHENTICATION_FAILED when it happens before we answered); it reports
// whether the response went out.
func (sa *ikeSA) respondWith(pk packet, in *payloads, phases []phase) bool {
	err := processPhases(sa, phases, in)
	var out []message.Payload
	if err == nil {
		out, err = buildPhases(sa, phases)
	}
	if err == nil {
		var pkt [][]byte
		if pkt, err = sa.protect(pk.h.Exchange, pk.h.MessageID, true, out); err == nil {
			sa.respond(pk.h.MessageID, pk, pkt)
			return true
		}
		sa.remove(err)
		return false
	}
	sa.refuse(pk, err)
	return false
}

// refuse answers the request pk with err's refusal (AUTHENTICATION_FAILED
// for an error that is none) and removes the IKE SA unless the refusal
// keeps it.
func (sa *ikeSA) refuse(pk packet, err error) {
	r := &refusal{notify: message.NotifyAuthenticationFailed, result: ResultError, err: err}
	errors.As(err, &r)
	n := r.answer
	if n == nil {
		n = &message.Notify{NotifyType: r.notify}
	}
	sa.respondNotify(pk, n, r.result)
	if !r.keep {
		sa.remove(r.err)
	}
}

// exchangeTask is one of our requests built from phases; done gets the
// response's outcome: nil when every phase processed it, else the error
// (the exchange failed, or with errAborted the SA went away first).
type exchangeTask struct {
	exch   message.ExchangeType
	phases []phase
	// setup marks an exchange of the IKE SA's set-up (IKE_AUTH), sent
	// before the SA is established; the others wait for that.
	setup bool
	done  func(sa *ikeSA, err error)
}

func (t *exchangeTask) request(sa *ikeSA) (message.ExchangeType, []message.Payload, bool) {
	ps, err := buildPhases(sa, t.phases)
	if err == errMoot {
		return t.exch, nil, false
	}
	if err != nil {
		t.done(sa, err)
		return t.exch, nil, false
	}
	return t.exch, ps, true
}

func (t *exchangeTask) response(sa *ikeSA, ps []message.Payload, err error) {
	if err != nil {
		t.done(sa, err)
		return
	}
	in := collect(ps)
	t.done(sa, processPhases(sa, t.phases, &in))
}

// setupTask reports whether t belongs to the IKE SA's set-up.
func setupTask(t task) bool {
	x, ok := t.(*exchangeTask)
	return ok && x.setup
}
