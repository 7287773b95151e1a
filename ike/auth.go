package ike

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/xdpsec/xdpsec/ike/message"
)

func idOf(p *message.ID) Identity {
	return Identity{Type: p.IDType, Data: append([]byte(nil), p.Data...)}
}

func (sa *ikeSA) allocSPI(child string) (uint32, error) {
	if inst := sa.e.opts.Installer; inst != nil {
		ctx, cancel := context.WithTimeout(sa.e.ctx, installTimeout)
		defer cancel()
		spi, err := inst.AllocSPI(ctx, sa.connName(), child)
		if err != nil {
			return 0, fmt.Errorf("allocate SPI for child %q: %w", child, err)
		}
		return spi, nil
	}
	for {
		b := randomBytes(4)
		spi := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		// SPIs 1-255 are reserved by IANA (RFC 4303 2.1).
		if spi > 255 {
			return spi, nil
		}
	}
}

func spiBytes(spi uint32) []byte {
	return []byte{byte(spi >> 24), byte(spi >> 16), byte(spi >> 8), byte(spi)}
}

// authFailedMsg is the operator's hint for a PSK authentication failure.
const authFailedMsg = "authentication failed for peer %s: pre-shared key mismatch?"

// authPhase is IKE_AUTH's identities and AUTH payloads, built and checked
// by the connection's authenticator (authenticator.go): IDi, the IDr the
// initiator asks for and its AUTH in the request, IDr and AUTH in the
// response.
type authPhase struct {
	r     role
	authn authenticator // the responder's, chosen with the connection
}

func (p *authPhase) build(sa *ikeSA, out []message.Payload) ([]message.Payload, error) {
	if p.r == roleResponder {
		idr := sa.localID.payload(true)
		auth, err := p.authn.build(sa.prf, signedOctets{sa.initResp, sa.ni, sa.keys.SKpr, idr})
		if err != nil {
			return nil, err
		}
		return append(out, idr, auth), nil
	}
	c := sa.conn
	idi := sa.localID.payload(false)
	auth, err := authenticatorFor(c).build(sa.prf, signedOctets{sa.initReq, sa.nr, sa.keys.SKpi, idi})
	if err != nil {
		return nil, err
	}
	out = append(out, idi)
	if !c.RemoteID.IsZero() {
		out = append(out, c.RemoteID.payload(true))
	}
	return append(out, auth), nil
}

func (p *authPhase) process(sa *ikeSA, in *payloads) error {
	if p.r == roleRequester {
		return sa.verifyResponder(*in)
	}
	authn, err := sa.authenticatePeer(*in)
	p.authn = authn
	return err
}

// authenticatePeer chooses the connection for the initiator's IDi and
// IDr and verifies its AUTH with that connection's authenticator, which
// it returns, or the refusal to answer with. The peer is not
// authenticated until it returns: its failures go through the log
// limiter like IKE_SA_INIT's.
func (sa *ikeSA) authenticatePeer(a payloads) (authenticator, error) {
	e := sa.e
	exch := message.ExchangeIKEAuth.String()
	if a.idi == nil || a.auth == nil {
		if !e.rateLimited("auth syntax " + sa.remote.Addr().String()) {
			e.log.Warn("IKE_AUTH request without IDi or AUTH (EAP is not supported); sending INVALID_SYNTAX",
				sa.fields(zap.String("exchange", exch))...)
		}
		return nil, &refusal{notify: message.NotifyInvalidSyntax, result: ResultError, err: errors.New("invalid IKE_AUTH request")}
	}
	sa.peerID = idOf(a.idi)
	conn := sa.pickConn(a)
	if conn == nil {
		if !e.rateLimited("auth identity " + sa.remote.Addr().String()) {
			e.log.Warn(sa.whyNoConn(a), sa.fields(zap.String("exchange", exch), zap.Stringer("remote_id", sa.peerID))...)
		}
		return nil, &refusal{notify: message.NotifyAuthenticationFailed, result: ResultAuthFailed, err: errors.New("no matching connection")}
	}
	sa.conn = conn
	sa.localID = conn.LocalID
	if sa.localID.IsZero() {
		id := message.IDFromAddr(sa.local.Addr(), true)
		sa.localID = Identity{Type: id.IDType, Data: id.Data}
	}
	authn := authenticatorFor(conn)
	if err := authn.verify(sa.prf, a.auth, signedOctets{sa.initReq, sa.nr, sa.keys.SKpi, a.idi}); err != nil {
		reason := fmt.Sprintf(authFailedMsg, sa.remote)
		var me *methodError
		if errors.As(err, &me) {
			reason = fmt.Sprintf("authentication failed for peer %s: %v", sa.remote, me)
		}
		if !e.rateLimited("auth failed " + sa.remote.Addr().String()) {
			e.log.Warn(reason, sa.fields(zap.String("exchange", exch), zap.Stringer("remote_id", sa.peerID))...)
		}
		return nil, &refusal{notify: message.NotifyAuthenticationFailed, result: ResultAuthFailed, err: errors.New("authentication failed")}
	}
	return authn, nil
}

// pickConn chooses, among the connections matching the addresses, the one
// whose remote identity matches IDi (an exact match before a wildcard) and
// whose local identity matches the IDr the initiator asked for, if any.
func (sa *ikeSA) pickConn(a payloads) *Conn {
	var wild *Conn
	for _, c := range sa.candidates {
		if !sa.e.connLive(c) || !sa.acceptsIKE(c) {
			continue
		}
		if a.idr != nil && !c.LocalID.IsZero() && !c.LocalID.Equal(idOf(a.idr)) {
			continue
		}
		switch {
		case c.RemoteID.Equal(sa.peerID):
			return c
		case c.RemoteID.IsZero() && wild == nil:
			wild = c
		}
	}
	return wild
}

// whyNoConn says what kept every connection from accepting the IKE_AUTH
// request, in the terms of the configuration: when one accepts the peer's
// identity but not the one it asks us to be (its IDr), that is the cause,
// not the peer's identity.
func (sa *ikeSA) whyNoConn(a payloads) string {
	if a.idr != nil {
		want := idOf(a.idr)
		for _, c := range sa.candidates {
			if !sa.e.connLive(c) || !sa.acceptsIKE(c) || c.LocalID.IsZero() || c.LocalID.Equal(want) {
				continue
			}
			if c.RemoteID.IsZero() || c.RemoteID.Equal(sa.peerID) {
				return fmt.Sprintf("authentication failed for peer %s: it asks for us as %s (its IDr), "+
					"but connection %s has local_id %s", sa.remote, want, c.Name, c.LocalID)
			}
		}
	}
	return fmt.Sprintf("authentication failed for peer %s: no connection accepts identity %s", sa.remote, sa.peerID)
}

// refusedHint is what to check when the peer answers AUTHENTICATION_FAILED,
// which never says why: our key, the identity we present, the one we ask
// for, and with some peers (Libreswan, Windows) a connection that matches
// no CHILD SA proposal or traffic selector of ours.
func (sa *ikeSA) refusedHint() string {
	asked := ""
	if sa.conn != nil && !sa.conn.RemoteID.IsZero() {
		asked = fmt.Sprintf(", that its local_id is %s (our remote_id, sent as IDr)", sa.conn.RemoteID)
	}
	return fmt.Sprintf("peer %s refused our authentication (AUTHENTICATION_FAILED) without saying why: "+
		"check that the pre-shared keys match, that its remote_id accepts %s (our local_id)%s, "+
		"and that its connection accepts our esp_proposals and traffic selectors", sa.remote, sa.localID, asked)
}

// acceptsIKE reports whether connection c would have accepted the proposal
// negotiated in IKE_SA_INIT under another connection.
func (sa *ikeSA) acceptsIKE(c *Conn) bool {
	if c == sa.conn {
		return true
	}
	_, ok := selectProposal([]message.Proposal{sa.ikeProp.wire(message.ProtocolIKE)}, c.IKEProposals, message.ProtocolIKE, 0)
	return ok
}

// respondError answers the current request with an error notification.
func (sa *ikeSA) respondError(pk packet, n message.NotifyType, result string) {
	sa.respondNotify(pk, &message.Notify{NotifyType: n}, result)
}

// respondNotify answers the current request with notification n alone,
// counted as result.
func (sa *ikeSA) respondNotify(pk packet, n *message.Notify, result string) {
	sa.e.stats.exchange(pk.h.Exchange.String(), false, result)
	pkt, err := sa.protect(pk.h.Exchange, pk.h.MessageID, true, []message.Payload{n})
	if err != nil {
		return
	}
	sa.respond(pk.h.MessageID, pk, pkt)
}

// verifyResponder checks the IKE_AUTH response's identity and AUTH, or
// the error it carries instead. Failures are logged and counted here
// (authFailure).
func (sa *ikeSA) verifyResponder(a payloads) error {
	e := sa.e
	exch := message.ExchangeIKEAuth.String()
	if a.auth == nil || a.idr == nil {
		n := message.NotifyInvalidSyntax
		if a.errN != nil {
			n = a.errN.NotifyType
		}
		if n == message.NotifyAuthenticationFailed {
			e.log.Warn(sa.refusedHint(), sa.fields(zap.String("exchange", exch), zap.Stringer("notify", n))...)
			e.stats.exchange(exch, true, ResultAuthFailed)
		} else {
			e.log.Warn("IKE_AUTH failed: peer sent an error", sa.fields(zap.String("exchange", exch), zap.Stringer("notify", n))...)
			e.stats.exchange(exch, true, ResultError)
		}
		return &authFailure{notifyFailure(n, fmt.Errorf("IKE_AUTH: peer %s sent %s", sa.remote, n))}
	}
	sa.peerID = idOf(a.idr)
	var authErr error
	if !sa.conn.RemoteID.IsZero() && !sa.conn.RemoteID.Equal(sa.peerID) {
		authErr = fmt.Errorf("it identified as %s, but our remote_id is %s", sa.peerID, sa.conn.RemoteID)
	} else {
		authErr = authenticatorFor(sa.conn).verify(sa.prf, a.auth, signedOctets{sa.initResp, sa.ni, sa.keys.SKpr, a.idr})
	}
	if authErr == nil {
		return nil
	}
	msg := fmt.Sprintf("authentication failed for peer %s: %v", sa.remote, authErr)
	e.log.Warn(msg, sa.fields(zap.String("exchange", exch), zap.Stringer("remote_id", sa.peerID))...)
	e.stats.exchange(exch, true, ResultAuthFailed)
	// RFC 7296 2.21.2: tell the responder in an INFORMATIONAL.
	if pkt, err := sa.protect(message.ExchangeInformational, sa.nextReqID, false,
		[]message.Payload{&message.Notify{NotifyType: message.NotifyAuthenticationFailed}}); err == nil {
		sa.send(sa.local, sa.remote, pkt)
	}
	return &authFailure{failure(FailAuth, fmt.Errorf("IKE_AUTH: AUTHENTICATION_FAILED: %w", authErr))}
}
