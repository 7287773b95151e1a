package ike

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"

	"go.uber.org/zap"

	"github.com/xdpsec/xdpsec/ike/message"
)

// The message layer of an IKE SA: our requests go out with the next message
// ID and are retransmitted with back-off until answered; the peer's are
// answered once and the answer cached; everything after IKE_SA_INIT is
// protected with SK (RFC 7296 2.1-2.3).

func (sa *ikeSA) retransmitDelay(tries int) time.Duration {
	o := sa.e.opts
	return time.Duration(float64(o.RetransmitTimeout) * math.Pow(o.RetransmitBase, float64(tries)))
}

// sendRequest sends a request and arms its retransmission. The request
// must use sa.nextReqID, which is advanced when its response arrives.
func (sa *ikeSA) sendRequest(exch message.ExchangeType, pkt [][]byte) {
	if sa.out != nil {
		sa.out.timer.Stop()
	}
	o := &outstanding{id: sa.nextReqID, exch: exch, pkt: pkt, started: time.Now()}
	sa.out = o
	sa.send(sa.local, sa.remote, pkt)
	o.timer = time.AfterFunc(sa.retransmitDelay(0), func() { sa.retransmit(o) })
}

func (sa *ikeSA) retransmit(o *outstanding) {
	sa.mu.Lock()
	defer sa.mu.Unlock()
	if sa.out != o || sa.gone {
		return
	}
	if o.tries >= sa.e.opts.RetransmitTries {
		took := time.Since(o.started).Round(time.Millisecond)
		sa.e.stats.exchange(o.exch.String(), true, ResultTimeout)
		err := fmt.Errorf("%s timed out: no response from %s after %d retransmits (%s)", o.exch, sa.remote, o.tries, took)
		if sa.state == stateDeleting || sa.state == stateRekeyed {
			sa.e.log.Debug("no answer to our delete", sa.fields(zap.Stringer("exchange", o.exch))...)
		} else if sa.state == stateEstablished {
			sa.peerDead(o.exch, o.tries, took, err)
			return
		} else {
			sa.e.log.Warn("giving up: peer does not answer; is it reachable and running IKE on this address?",
				sa.fields(zap.Stringer("exchange", o.exch), zap.Int("retransmits", o.tries), zap.Duration("waited", took))...)
		}
		sa.fail(failure(FailTimeout, err))
		return
	}
	o.tries++
	sa.e.stats.add(&sa.e.stats.retrans)
	sa.e.log.Debug("retransmitting request", sa.fields(zap.Stringer("exchange", o.exch), zap.Int("try", o.tries))...)
	sa.send(sa.local, sa.remote, o.pkt)
	o.timer = time.AfterFunc(sa.retransmitDelay(o.tries), func() { sa.retransmit(o) })
}

// respond sends a response and caches it for retransmitted requests.
func (sa *ikeSA) respond(id uint32, pk packet, pkt [][]byte) {
	// Every response is framed as sa.natt says (protect, IKE_SA_INIT).
	sa.resp.store(id, pk, pkt, sa.natt, sa.e.resendNow())
	sa.expectReqID = id + 1
	sa.send(pk.local, pk.from, pkt)
}

// send transmits the datagrams of one message (all its fragments) for
// this SA and notes when, which defers its next NAT-T keepalive.
func (sa *ikeSA) send(local, remote netip.AddrPort, pkt [][]byte) {
	for _, d := range pkt {
		if sa.transport().transmit(local, remote, d) == nil {
			sa.lastSent = time.Now()
		}
	}
}

// protect builds an SK-protected message with the inner payloads, framed
// for the socket it goes out on: one datagram, or its RFC 7383 fragments
// when the peer takes them and the message is larger than FragmentSize.
func (sa *ikeSA) protect(exch message.ExchangeType, id uint32, response bool, inner []message.Payload) ([][]byte, error) {
	var flags message.Flags
	if sa.initiator {
		flags |= message.FlagInitiator
	}
	if response {
		flags |= message.FlagResponse
	}
	next := message.PayloadNone
	if len(inner) > 0 {
		next = inner[0].Type()
	}
	pt, err := message.AppendPayloads(nil, inner)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", exch, err)
	}
	h := message.Header{SPIi: sa.spii, SPIr: sa.spir, Exchange: exch, Flags: flags, MessageID: id}
	if sa.fragOK && sa.wholeSize(len(pt)) > sa.e.opts.FragmentSize {
		return sa.fragmentMessage(h, next, pt)
	}
	out, err := sa.seal1(h, &message.SK{NextPayload: next}, pt)
	if err != nil {
		return nil, fmt.Errorf("seal %s: %w", exch, err)
	}
	return [][]byte{out}, nil
}

// seal1 encrypts pt into one datagram whose last payload is enc (an SK or
// SKF payload), with the non-ESP marker where the SA uses port 4500.
func (sa *ikeSA) seal1(h message.Header, enc message.Payload, pt []byte) ([]byte, error) {
	m := &message.Message{Header: h, Payloads: []message.Payload{enc}}
	bodyLen := sa.seal.SealedLen(len(pt))
	start := 0
	buf := make([]byte, 0, 4+message.HeaderLen+8+bodyLen)
	if sa.natt {
		buf = append(buf, 0, 0, 0, 0)
		start = 4
	}
	buf, err := m.AppendSKPrefix(buf, bodyLen)
	if err != nil {
		return nil, err
	}
	aad := buf[start:len(buf):len(buf)]
	return sa.seal.Seal(buf, aad, pt)
}

var (
	errNotProtected = errors.New("message is not protected")
	errMalformed    = errors.New("malformed message")
	// errFragmented: the message came in encrypted fragments (RFC 7383)
	// from a peer that did not announce IKE fragmentation in IKE_SA_INIT.
	errFragmented = errors.New("message in encrypted fragments")
)

// innerError is a failure to decode the payloads of an authentic message.
type innerError struct{ err error }

func (e *innerError) Error() string { return "inner payloads: " + e.err.Error() }

func (e *innerError) Unwrap() error { return e.err }

// unprotect checks and decrypts a protected message and returns its inner
// payloads. A message that fails the check yields errMalformed, errNotProtected
// or a crypto error; one that passes but does not decode an *innerError.
func (sa *ikeSA) unprotect(b []byte) ([]message.Payload, error) {
	if sa.open == nil {
		return nil, errNotProtected
	}
	m, err := message.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errMalformed, err)
	}
	sk, ok := m.Encrypted().(*message.SK)
	if !ok {
		if f, frag := m.Encrypted().(*message.SKF); frag {
			return sa.reassemble(m, b, f)
		}
		return nil, errNotProtected
	}
	aad := b[:len(b)-len(sk.Body)]
	pt, err := sa.open.Open(nil, aad, sk.Body)
	if err != nil {
		return nil, err
	}
	ps, err := message.DecodePayloads(sk.NextPayload, pt)
	if err != nil {
		return nil, &innerError{err}
	}
	return ps, nil
}

// dropUnopened counts a message that did not open: a forgery or a
// corrupted one (integrity), a fragment held for or dropped from its set
// (fragments.go), or fragments from a peer that did not announce IKE
// fragmentation, which it should not send; some do anyway (strongSwan's
// fragmentation=force), which is said once per IKE SA, since the exchange
// then never completes.
func (sa *ikeSA) dropUnopened(err error, exch message.ExchangeType) {
	var fd *fragmentDrop
	switch {
	case errors.Is(err, errFragmentHeld):
		return // kept for its message
	case errors.As(err, &fd):
		sa.e.stats.drop(fd.reason)
		return
	case !errors.Is(err, errFragmented):
		sa.e.stats.drop(DropIntegrity)
		return
	}
	sa.e.stats.drop(DropFragmented)
	if !sa.fragmentsSeen {
		sa.fragmentsSeen = true
		sa.e.log.Info("peer sent an IKE message in encrypted fragments (RFC 7383) although it did not announce "+
			"IKE fragmentation in IKE_SA_INIT: dropped; have the peer announce it or send whole messages (strongSwan: fragmentation = yes, not force)",
			sa.fields(zap.Stringer("exchange", exch))...)
	}
}

// openRequest authenticates and decodes a request. An unauthentic one is
// dropped; an authentic one whose payloads do not decode is answered with
// the notification the codec names (INVALID_SYNTAX, or
// UNSUPPORTED_CRITICAL_PAYLOAD as RFC 7296 2.5 requires), and during
// IKE_AUTH the SA goes.
func (sa *ikeSA) openRequest(pk packet) ([]message.Payload, bool) {
	ps, err := sa.unprotect(pk.b)
	if err == nil {
		return ps, true
	}
	var ie *innerError
	switch {
	case errors.As(err, &ie):
	case errors.Is(err, errMalformed):
		sa.e.stats.drop(DropMalformed)
		return nil, false
	default:
		sa.dropUnopened(err, pk.h.Exchange)
		return nil, false
	}
	sa.e.stats.drop(DropMalformed)
	n, data, ok := message.NotifyOf(ie.err)
	if !ok {
		n, data = message.NotifyInvalidSyntax, nil
	}
	// Before IKE_AUTH completes the peer is not authenticated yet.
	if sa.state != stateConnecting || !sa.e.rateLimited("undecodable "+sa.remote.Addr().String()) {
		sa.e.log.Warn("undecodable request from peer", sa.fields(zap.Stringer("exchange", pk.h.Exchange), zap.Stringer("notify", n), zap.Error(ie.err))...)
	}
	sa.e.stats.exchange(pk.h.Exchange.String(), false, ResultError)
	if pkt, err := sa.protect(pk.h.Exchange, pk.h.MessageID, true, []message.Payload{&message.Notify{NotifyType: n, Data: data}}); err == nil {
		sa.respond(pk.h.MessageID, pk, pkt)
	}
	if sa.state == stateConnecting {
		sa.remove(fmt.Errorf("undecodable %s request: %w", pk.h.Exchange, ie.err))
	}
	return nil, false
}

// handleRequest hands a new request from the peer to the responder of its
// exchange (responders.go), and answers a retransmitted one from the
// cache (sa.mu held).
func (sa *ikeSA) handleRequest(pk packet) {
	id := pk.h.MessageID
	if sa.resp.answers(pk) {
		if !laterFragment(pk.b) {
			sa.resendCached(pk, sa.verifies)
		}
		return
	}
	if id != sa.expectReqID {
		sa.e.stats.drop(DropUnexpectedMsgID)
		return
	}
	r, ok := responderFor(pk.h.Exchange)
	if !ok || !r.accepts(sa) {
		sa.e.stats.drop(DropUnexpected)
		return
	}
	r.process(sa, pk)
}

// handleResponse matches a response with our outstanding request and hands
// it, opened, to the request's task: whatever the exchange, only
// IKE_SA_INIT's unprotected answer has a path of its own.
func (sa *ikeSA) handleResponse(pk packet) {
	if sa.out == nil || pk.h.MessageID != sa.out.id || pk.h.Exchange != sa.out.exch {
		sa.e.stats.drop(DropUnexpectedMsgID)
		return
	}
	if pk.h.Exchange == message.ExchangeIKESAInit {
		sa.processInitResponse(pk)
		return
	}
	ps, err := sa.unprotect(pk.b)
	if err != nil && !isInner(err) {
		sa.dropUnopened(err, pk.h.Exchange)
		return
	}
	sa.lastRecv = time.Now()
	t := sa.out.task
	sa.completeRequest()
	if t == nil {
		// Only our IKE SA Delete goes without a task.
		if sa.state == stateDeleting || sa.state == stateRekeyed {
			sa.e.log.Info("IKE SA deleted", sa.fields()...)
			sa.remove(errors.New("IKE SA deleted"))
		}
		return
	}
	if err != nil {
		sa.e.log.Warn("undecodable response from peer", sa.fields(zap.Stringer("exchange", pk.h.Exchange), zap.Error(err))...)
		t.response(sa, nil, fmt.Errorf("undecodable %s response: %w", pk.h.Exchange, err))
	} else {
		t.response(sa, ps, nil)
	}
	sa.kick()
}

// completeRequest retires the outstanding request after its response.
func (sa *ikeSA) completeRequest() {
	if sa.out != nil {
		sa.out.timer.Stop()
		sa.out = nil
	}
	sa.nextReqID++
}

func isInner(err error) bool {
	var ie *innerError
	return errors.As(err, &ie)
}
