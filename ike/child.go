package ike

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/xdpsec/xdpsec/ike/crypto"
	"github.com/xdpsec/xdpsec/ike/message"
)

func selectors(ps []netip.Prefix) []message.TrafficSelector {
	out := make([]message.TrafficSelector, len(ps))
	for i, p := range ps {
		out[i] = message.SelectorFromPrefix(p)
	}
	return out
}

func tsString(ts []message.TrafficSelector) string {
	var b strings.Builder
	for i, s := range ts {
		if i > 0 {
			b.WriteString(" ")
		}
		if ps := s.Prefixes(); len(ps) > 0 {
			for j, p := range ps {
				if j > 0 {
					b.WriteByte(',')
				}
				b.WriteString(p.String())
			}
		} else {
			fmt.Fprintf(&b, "%s-%s", s.StartAddr, s.EndAddr)
		}
		if s.IPProtocol != 0 || !s.IsAnyPort() {
			fmt.Fprintf(&b, "[%d/%d-%d]", s.IPProtocol, s.StartPort, s.EndPort)
		}
	}
	return b.String()
}

func prefixesString(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, " ")
}

// intersect returns the overlap of two selectors, if any.
func intersect(a, b message.TrafficSelector) (message.TrafficSelector, bool) {
	if a.Type != b.Type || len(a.Opaque) > 0 || len(b.Opaque) > 0 {
		return message.TrafficSelector{}, false
	}
	r := message.TrafficSelector{Type: a.Type}
	switch {
	case a.IPProtocol == 0:
		r.IPProtocol = b.IPProtocol
	case b.IPProtocol == 0 || a.IPProtocol == b.IPProtocol:
		r.IPProtocol = a.IPProtocol
	default:
		return r, false
	}
	r.StartPort, r.EndPort = max(a.StartPort, b.StartPort), min(a.EndPort, b.EndPort)
	if r.StartPort > r.EndPort {
		return r, false
	}
	r.StartAddr = a.StartAddr
	if b.StartAddr.Compare(r.StartAddr) > 0 {
		r.StartAddr = b.StartAddr
	}
	r.EndAddr = a.EndAddr
	if b.EndAddr.Compare(r.EndAddr) < 0 {
		r.EndAddr = b.EndAddr
	}
	if r.StartAddr.Compare(r.EndAddr) > 0 {
		return r, false
	}
	return r, true
}

func covers(a, b message.TrafficSelector) bool {
	return a.Type == b.Type && (a.IPProtocol == 0 || a.IPProtocol == b.IPProtocol) &&
		a.StartPort <= b.StartPort && a.EndPort >= b.EndPort &&
		a.StartAddr.Compare(b.StartAddr) <= 0 && a.EndAddr.Compare(b.EndAddr) >= 0
}

// narrow intersects the peer's selectors with ours (RFC 7296 2.9). The
// peer's first selector may be the packet that triggered the request; it is
// intersected like the others and dropped when a wider result covers it.
func narrow(peer []message.TrafficSelector, ours []netip.Prefix) []message.TrafficSelector {
	var out []message.TrafficSelector
	for _, p := range peer {
		for _, o := range ours {
			if r, ok := intersect(p, message.SelectorFromPrefix(o)); ok {
				out = append(out, r)
			}
		}
	}
	// Drop duplicates and selectors another one covers.
	var res []message.TrafficSelector
	for i, r := range out {
		dup := false
		for j, o := range out {
			if i != j && covers(o, r) && (!covers(r, o) || j < i) {
				dup = true
				break
			}
		}
		if !dup {
			res = append(res, r)
		}
	}
	return res
}

func tsPrefixes(ts []message.TrafficSelector) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ts {
		out = append(out, s.Prefixes()...)
	}
	return out
}

// childFailure is a CHILD SA negotiation failure with the notification to
// send (responder) or that was received (initiator).
type childFailure struct {
	notify message.NotifyType
	err    error
	// invalidKE is the INVALID_KE_PAYLOAD to send, naming our group.
	invalidKE *message.Notify
}

func (c *childFailure) Error() string { return c.err.Error() }
func (c *childFailure) Unwrap() error { return c.err }

// respondChild negotiates the CHILD SA of an IKE_AUTH request and returns
// the payloads for the response.
func (sa *ikeSA) respondChild(a payloads) ([]message.Payload, *childSA, error) {
	e := sa.e
	if a.sa == nil || a.tsi == nil || a.tsr == nil {
		// Childless IKE_AUTH (RFC 6023) or a peer that asked for none.
		return nil, nil, nil
	}
	var firstFail *childFailure
	for i := range sa.conn.Children {
		ch := &sa.conn.Children[i]
		prop, ok := selectProposal(a.sa.Proposals, ch.ESPProposals, message.ProtocolESP, 0)
		if !ok {
			if firstFail == nil {
				firstFail = &childFailure{notify: message.NotifyNoProposalChosen, err: fmt.Errorf("no common ESP proposal for child %q: received %s, configured %s", ch.Name, offerString(a.sa.Proposals), confString(ch.ESPProposals))}
			}
			continue
		}
		tsi := narrow(a.tsi.Selectors, ch.RemoteTS)
		tsr := narrow(a.tsr.Selectors, ch.LocalTS)
		if len(tsi) == 0 || len(tsr) == 0 {
			if firstFail == nil || firstFail.notify == message.NotifyNoProposalChosen {
				firstFail = &childFailure{notify: message.NotifyTSUnacceptable, err: fmt.Errorf("traffic selectors unacceptable for child %q: received TSi %s TSr %s, configured local %s remote %s",
					ch.Name, tsString(a.tsi.Selectors), tsString(a.tsr.Selectors), prefixesString(ch.LocalTS), prefixesString(ch.RemoteTS))}
			}
			continue
		}
		peerSPI, ok := prop.spiValue()
		if !ok {
			firstFail = &childFailure{notify: message.NotifyInvalidSyntax, err: errors.New("ESP proposal without a 4-byte SPI")}
			break
		}
		ourSPI, err := sa.allocSPI(ch.Name)
		if err != nil {
			e.log.Warn("cannot allocate an SPI", sa.fields(zap.String("child", ch.Name), zap.Error(err))...)
			firstFail = &childFailure{notify: message.NotifyNoProposalChosen, err: err}
			break
		}
		mode := ModeTunnel
		if a.transport && ch.Mode == ModeTransport {
			mode = ModeTransport
		}
		c, err := sa.installChild(ch, prop, ourSPI, peerSPI, mode, tsr, tsi)
		if err != nil {
			e.log.Warn("installing the CHILD SA failed", sa.fields(zap.String("child", ch.Name), zap.Error(err))...)
			firstFail = &childFailure{notify: message.NotifyNoProposalChosen, err: err}
			break
		}
		prop.spi = spiBytes(ourSPI)
		out := []message.Payload{}
		if mode == ModeTransport {
			out = append(out, &message.Notify{NotifyType: message.NotifyUseTransportMode})
		}
		out = append(out,
			&message.SA{Proposals: []message.Proposal{prop.wire(message.ProtocolESP)}},
			&message.TS{Selectors: tsi},
			&message.TS{Responder: true, Selectors: tsr},
		)
		e.stats.child(false, ResultOK)
		return out, c, nil
	}
	if firstFail == nil {
		firstFail = &childFailure{notify: message.NotifyNoProposalChosen, err: fmt.Errorf("connection %q has no children", sa.connName())}
	}
	result := ResultNoProposal
	msg := "no common ESP proposal; CHILD SA not created (IKE SA stays up)"
	if firstFail.notify == message.NotifyTSUnacceptable {
		result = ResultTSUnacceptable
		msg = "traffic selectors unacceptable; CHILD SA not created (IKE SA stays up)"
	}
	e.stats.child(false, result)
	e.log.Warn(msg, sa.fields(zap.String("exchange", message.ExchangeIKEAuth.String()), zap.Stringer("notify", firstFail.notify), zap.Error(firstFail.err))...)
	return []message.Payload{&message.Notify{NotifyType: firstFail.notify}}, nil, firstFail
}

func (c chosen) spiValue() (uint32, bool) {
	if len(c.spi) != 4 {
		return 0, false
	}
	return uint32(c.spi[0])<<24 | uint32(c.spi[1])<<16 | uint32(c.spi[2])<<8 | uint32(c.spi[3]), true
}

// acceptChild processes the CHILD SA part of the IKE_AUTH response.
func (sa *ikeSA) acceptChild(a payloads) error {
	e := sa.e
	ch := sa.pendingChild
	sa.pendingChild = nil
	fail := func(result string, n message.NotifyType, msg string, err error) error {
		e.stats.child(true, result)
		e.log.Warn(msg, sa.fields(zap.String("exchange", message.ExchangeIKEAuth.String()), zap.String("child", ch.Name), zap.Stringer("notify", n), zap.Error(err))...)
		sa.releaseSPI(ch, sa.pendingSPI)
		return &NegotiationError{Reason: notifyReason(n), IKEUp: true,
			Err: fmt.Errorf("child %q: %s: %w (IKE SA established)", ch.Name, n, err)}
	}
	if a.errN != nil {
		n := a.errN.NotifyType
		switch n {
		case message.NotifyNoProposalChosen:
			return fail(ResultNoProposal, n, "no common ESP proposal: peer sent NO_PROPOSAL_CHOSEN; CHILD SA not created",
				fmt.Errorf("peer rejected our ESP proposals %s", confString(ch.ESPProposals)))
		case message.NotifyTSUnacceptable:
			return fail(ResultTSUnacceptable, n, "traffic selectors unacceptable: peer sent TS_UNACCEPTABLE; CHILD SA not created",
				fmt.Errorf("peer rejected our selectors local %s remote %s", prefixesString(ch.LocalTS), prefixesString(ch.RemoteTS)))
		default:
			return fail(ResultError, n, "CHILD SA not created: peer sent an error", errors.New("peer refused the CHILD SA"))
		}
	}
	if a.sa == nil || a.tsi == nil || a.tsr == nil {
		return fail(ResultError, message.NotifyInvalidSyntax, "CHILD SA not created: peer sent no SA/TS payloads", errors.New("no CHILD SA in the response"))
	}
	prop, err := acceptAnswer(a.sa, ch.ESPProposals, message.ProtocolESP)
	if err != nil {
		return fail(ResultError, message.NotifyNoProposalChosen, "CHILD SA not created: invalid ESP proposal in response", err)
	}
	peerSPI, ok := prop.spiValue()
	if !ok {
		return fail(ResultError, message.NotifyInvalidSyntax, "CHILD SA not created: ESP proposal without SPI", errors.New("no SPI"))
	}
	tsi := narrow(a.tsi.Selectors, ch.LocalTS)
	tsr := narrow(a.tsr.Selectors, ch.RemoteTS)
	if len(tsi) == 0 || len(tsr) == 0 {
		return fail(ResultTSUnacceptable, message.NotifyTSUnacceptable, "CHILD SA not created: responder's selectors are outside ours",
			fmt.Errorf("received TSi %s TSr %s, configured local %s remote %s", tsString(a.tsi.Selectors), tsString(a.tsr.Selectors), prefixesString(ch.LocalTS), prefixesString(ch.RemoteTS)))
	}
	mode := ModeTunnel
	if a.transport && ch.Mode == ModeTransport {
		mode = ModeTransport
	}
	c, err := sa.installChild(ch, prop, sa.pendingSPI, peerSPI, mode, tsi, tsr)
	if err != nil {
		return fail(ResultError, message.NotifyNoProposalChosen, "installing the CHILD SA failed", err)
	}
	e.stats.child(true, ResultOK)
	e.log.Info("CHILD SA established", sa.fields(zap.String("child", c.sa.Child),
		zap.String("spis", fmt.Sprintf("%08x_i %08x_o", c.sa.SPIIn, c.sa.SPIOut)),
		zap.Any("local_ts", c.sa.LocalTS), zap.Any("remote_ts", c.sa.RemoteTS))...)
	return nil
}

// releaseSPI gives back an SPI we allocated for a CHILD SA that never came
// up, so the data plane can forget it.
func (sa *ikeSA) releaseSPI(ch *Child, spi uint32) {
	inst := sa.e.opts.Installer
	if inst == nil || spi == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(sa.e.ctx, installTimeout)
	defer cancel()
	_ = inst.DeleteChild(ctx, ChildSA{Conn: sa.connName(), Child: ch.Name, IKESPIi: sa.spii, IKESPIr: sa.spir, SPIIn: spi})
}

// installChild derives, installs (both directions) and records a CHILD SA
// negotiated in IKE_AUTH, whose keys come from the IKE SA's own nonces.
// localTS/remoteTS are from our point of view.
func (sa *ikeSA) installChild(ch *Child, prop chosen, spiIn, spiOut uint32, mode Mode, localTS, remoteTS []message.TrafficSelector) (*childSA, error) {
	c, err := sa.buildChild(ch, prop, sa.initiator, spiIn, spiOut, mode, localTS, remoteTS, nil, sa.ni, sa.nr)
	if err != nil {
		return nil, err
	}
	if err := sa.installInbound(c); err != nil {
		return nil, err
	}
	if err := sa.installOutbound(c); err != nil {
		sa.deleteFromDataplane(c)
		return nil, err
	}
	sa.addChild(c)
	return c, nil
}

// buildChild derives a CHILD SA's keys (RFC 7296 2.17) from SK_d, the
// exchange's nonces and, with PFS, the new shared secret gir. exchInit is
// whether we initiated the exchange that creates it: the initiator's keys
// protect initiator-to-responder traffic.
func (sa *ikeSA) buildChild(ch *Child, prop chosen, exchInit bool, spiIn, spiOut uint32, mode Mode, localTS, remoteTS []message.TrafficSelector, gir, ni, nr []byte) (*childSA, error) {
	keys, err := crypto.DeriveChildKeys(sa.ikeProp.prf, sa.keys.SKd,
		crypto.Suite{Encr: prop.encr, KeyBits: prop.keyBits, Integ: prop.integ}, gir, ni, nr)
	if err != nil {
		return nil, fmt.Errorf("derive CHILD SA keys: %w", err)
	}
	encIn, intIn, encOut, intOut := keys.ResponderEncr, keys.ResponderInteg, keys.InitiatorEncr, keys.InitiatorInteg
	if !exchInit {
		encIn, intIn, encOut, intOut = encOut, intOut, encIn, intIn
	}
	encap := sa.natt || sa.natLocal || sa.natRemote
	c := ChildSA{
		Conn: sa.connName(), Child: ch.Name, IKESPIi: sa.spii, IKESPIr: sa.spir,
		Initiator: exchInit, SPIIn: spiIn, SPIOut: spiOut,
		Encr: prop.encr, KeyBits: prop.keyBits, Integ: prop.integ, ESN: prop.esn,
		EncrKeyIn: encIn, EncrKeyOut: encOut, IntegKeyIn: intIn, IntegKeyOut: intOut,
		Mode: mode, Local: sa.local, Remote: sa.remote, Encap: encap,
		LocalTS: tsPrefixes(localTS), RemoteTS: tsPrefixes(remoteTS),
		ReplayWindow: ch.ReplayWindow, Lifetime: ch.Lifetime, Established: time.Now(),
	}
	p := prop
	p.prf = 0
	cs := &childSA{sa: c, proposal: p.String(), cfg: ch, state: childInbound}
	cs.owner.Store(sa)
	return cs, nil
}

// installInbound makes the data plane decrypt with c. On failure whatever
// the data plane half-did goes.
func (sa *ikeSA) installInbound(c *childSA) error {
	inst := sa.e.opts.Installer
	if inst == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(sa.e.ctx, installTimeout)
	defer cancel()
	if err := inst.InstallInbound(ctx, c.sa); err != nil {
		_ = inst.DeleteChild(ctx, c.sa)
		return fmt.Errorf("install CHILD SA %q inbound: %w", c.sa.Child, err)
	}
	return nil
}

// installOutbound moves the child's traffic to c: from now on we send with
// it. It arms c's rekey timer.
func (sa *ikeSA) installOutbound(c *childSA) error {
	if inst := sa.e.opts.Installer; inst != nil {
		ctx, cancel := context.WithTimeout(sa.e.ctx, installTimeout)
		defer cancel()
		if err := inst.InstallOutbound(ctx, c.sa); err != nil {
			return fmt.Errorf("install CHILD SA %q outbound: %w", c.sa.Child, err)
		}
	}
	c.state = childInstalled
	c.outbound = true
	sa.e.childUp(c.sa.Conn, c.sa.Child)
	sa.armChildTimers(c)
	return nil
}

// addChild records c under the IKE SA.
func (sa *ikeSA) addChild(c *childSA) {
	c.owner.Store(sa)
	sa.children = append(sa.children, c)
	slices.SortStableFunc(sa.children, func(a, b *childSA) int { return strings.Compare(a.sa.Child, b.sa.Child) })
}
