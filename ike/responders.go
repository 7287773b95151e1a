package ike

import "github.com/xdpsec/xdpsec/ike/message"

// A responder answers the peer's requests of one exchange type. The
// message layer (messages.go) checks the message ID and the response
// cache and hands every new request to the responder of its exchange;
// the responder opens it (openRequest), acts, and answers through the
// message layer (respond, respondError). Our own requests are tasks
// (tasks.go). A new exchange, such as IKE_INTERMEDIATE (RFC 9242), is a
// responder here and a task there; the message layer does not change.
//
// IKE_SA_INIT has no responder: its requests arrive before there is an
// IKE SA to hand them to (Engine.handleInitRequest).
type responder struct {
	// setup: the exchange belongs to the IKE SA's set-up, which only
	// its responder answers, before it is established; the others
	// come only on an established SA.
	setup bool
	// process opens, acts on and answers one request (sa.mu held).
	process func(sa *ikeSA, pk packet)
}

// responderFor returns the responder of exchange exch.
func responderFor(exch message.ExchangeType) (responder, bool) {
	switch exch {
	case message.ExchangeIKEAuth:
		return responder{setup: true, process: (*ikeSA).respondAuth}, true
	case message.ExchangeInformational:
		return responder{process: (*ikeSA).respondInformational}, true
	case message.ExchangeCreateChildSA:
		return responder{process: (*ikeSA).respondCreateChild}, true
	}
	return responder{}, false
}

// accepts reports whether r's requests may arrive on sa now.
func (r responder) accepts(sa *ikeSA) bool {
	if r.setup {
		return !sa.initiator && sa.state == stateConnecting
	}
	return sa.state != stateConnecting
}
