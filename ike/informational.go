package ike

import (
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/xdpsec/xdpsec/ike/message"
)

// The phases of INFORMATIONAL (RFC 7296 1.4, 2.21.2): Delete of the IKE SA
// or of CHILD SAs (deletePhase) and AUTHENTICATION_FAILED from an
// initiator that rejected our AUTH (rejectedPhase). A liveness check is an
// empty request (dpdTask): no phase has anything to do, the answer is
// empty.

// respondInformational answers the peer's INFORMATIONAL request (sa.mu
// held).
func (sa *ikeSA) respondInformational(pk packet) {
	e := sa.e
	ps, ok := sa.openRequest(pk)
	if !ok {
		return
	}
	sa.lastRecv = time.Now()
	in := collect(ps)
	del, rej := &deletePhase{r: roleResponder}, &rejectedPhase{}
	if !sa.respondWith(pk, &in, []phase{del, rej}) {
		return
	}
	e.stats.exchange(message.ExchangeInformational.String(), false, ResultOK)
	switch {
	case rej.rejected:
		e.log.Warn(fmt.Sprintf("peer %s rejected our authentication (AUTHENTICATION_FAILED) without saying why: "+
			"check that the pre-shared keys match and that its remote_id accepts %s (our local_id)", sa.remote, sa.localID),
			sa.fields(zap.String("exchange", message.ExchangeInformational.String()))...)
		sa.remove(errors.New("peer sent AUTHENTICATION_FAILED"))
	case del.ike:
		e.log.Info("peer deleted the IKE SA", sa.fields()...)
		sa.remove(errors.New("deleted by peer"))
	}
}

// deletePhase is the Delete payload (RFC 7296 1.4.1, 3.11). As requester
// it deletes one of our CHILD SAs at the peer; as responder it handles the
// peer's Deletes of CHILD SAs, answered with our SPIs of them, and of the
// IKE SA, answered empty (the SA goes once the answer is out).
type deletePhase struct {
	r      role
	child  *childSA // the requester's
	reason string   // the requester's, for the log
	ike    bool     // the responder's: the peer deleted the IKE SA
	answer []message.Payload
}

func (p *deletePhase) build(sa *ikeSA, out []message.Payload) ([]message.Payload, error) {
	if p.r == roleResponder {
		if p.ike {
			return out, nil
		}
		return append(out, p.answer...), nil
	}
	if p.child.removed {
		return nil, errMoot
	}
	sa.e.log.Debug("deleting CHILD SA", sa.fields(zap.String("child", p.child.sa.Child), zap.String("reason", p.reason),
		zap.String("spi", fmt.Sprintf("%08x", p.child.sa.SPIIn)))...)
	return append(out, &message.Delete{Protocol: message.ProtocolESP, SPIs: []uint32{p.child.sa.SPIIn}}), nil
}

// process, as responder, acts on the peer's Deletes; the requester's
// answer (our SA's SPIs at the peer) needs nothing: deleteChildDone acts
// on the exchange's outcome.
func (p *deletePhase) process(sa *ikeSA, in *payloads) error {
	if p.r == roleRequester {
		return nil
	}
	for _, d := range in.deletes {
		switch d.Protocol {
		case message.ProtocolIKE:
			p.ike = true
		case message.ProtocolESP:
			if ours := sa.deleteChildren(d.SPIs); len(ours) > 0 {
				p.answer = append(p.answer, &message.Delete{Protocol: message.ProtocolESP, SPIs: ours})
			}
		}
	}
	return nil
}

// rejectedPhase notices AUTHENTICATION_FAILED in an INFORMATIONAL request:
// the initiator did not accept our AUTH (RFC 7296 2.21.2).
type rejectedPhase struct{ rejected bool }

func (p *rejectedPhase) build(_ *ikeSA, out []message.Payload) ([]message.Payload, error) {
	return out, nil
}

func (p *rejectedPhase) process(_ *ikeSA, in *payloads) error {
	for _, n := range in.notifies {
		if n.NotifyType == message.NotifyAuthenticationFailed {
			p.rejected = true
		}
	}
	return nil
}

// deleteChildren handles the peer's Delete of CHILD SAs by their outbound
// SPIs and returns our inbound SPIs of them for the answer (RFC 7296
// 1.4.1). The Delete of an SA the peer rekeyed is the moment we switch to
// the new SA; a replaced SA stays for the grace period, the others go now.
func (sa *ikeSA) deleteChildren(spis []uint32) []uint32 {
	var ours []uint32
	for _, spi := range spis {
		c := sa.childByOut(spi)
		if c == nil {
			continue
		}
		ours = append(ours, c.sa.SPIIn)
		switch {
		case c.state == childInbound:
			// The peer's redundant SA of a rekey collision, or one it
			// gave up on: never used for sending.
			sa.dropChild(c)
		case c.peerRekey != nil && !c.peerRekey.removed && c.peerRekey.state == childInbound:
			// Also after a collision we lost: the winner's SA.
			sa.takeOver(c, c.peerRekey, "delete")
		case c.state == childRekeyed:
			sa.retire(c)
		default:
			sa.e.log.Info("peer deleted a CHILD SA", sa.fields(zap.String("child", c.sa.Child),
				zap.String("spi", fmt.Sprintf("%08x", c.sa.SPIIn)))...)
			sa.dropChild(c)
			sa.childLost(c, "deleted by the peer")
		}
	}
	return ours
}

// deleteChildTask deletes one of our CHILD SAs at the peer: a rekeyed one
// (which then stays for the grace period), an expired one, or a redundant
// one of a rekey collision that was never installed here. lost, when set,
// says why the child goes without a successor, for its connection to bring
// it back (childLost).
func deleteChildTask(c *childSA, reason, lost string) task {
	return &exchangeTask{
		exch:   message.ExchangeInformational,
		phases: []phase{&deletePhase{r: roleRequester, child: c, reason: reason}},
		done:   func(sa *ikeSA, err error) { sa.deleteChildDone(c, lost, err) },
	}
}

// deleteChildDone ends the Delete of c: answered or not, c goes (an
// unanswered Delete leaves the peer's half to its own lifetime).
func (sa *ikeSA) deleteChildDone(c *childSA, lost string, err error) {
	if err == nil {
		sa.e.stats.exchange(message.ExchangeInformational.String(), true, ResultOK)
	}
	switch {
	case err != nil && sa.gone:
		// Its IKE SA went, and the children with it.
	case c.state == childRekeyed && slicesContains(sa.children, c):
		sa.retire(c)
	case slicesContains(sa.children, c):
		sa.dropChild(c)
		if lost != "" {
			sa.childLost(c, lost)
		}
	default:
		// Never installed here: only its SPI reservation goes.
		sa.deleteFromDataplane(c)
	}
}

func slicesContains(cs []*childSA, c *childSA) bool {
	for _, x := range cs {
		if x == c {
			return true
		}
	}
	return false
}

// dpdTask is a liveness check: an empty INFORMATIONAL request. Its answer
// needs no processing; no answer makes the SA's peer dead.
func dpdTask() task {
	return &exchangeTask{exch: message.ExchangeInformational, done: func(sa *ikeSA, err error) {
		if err == nil {
			sa.e.stats.exchange(message.ExchangeInformational.String(), true, ResultOK)
		}
	}}
}

// startDelete deletes an established IKE SA: CHILD SAs leave the data plane
// now, the peer is told with an INFORMATIONAL Delete, and the SA goes once
// the peer answers or the retransmissions give up.
func (sa *ikeSA) startDelete(reason string) {
	if sa.gone || sa.state == stateDeleting {
		return
	}
	sa.state = stateDeleting
	sa.uninstallChildren()
	sa.sendIKEDelete(reason)
}

// sendIKEDelete sends the Delete of this IKE SA, abandoning whatever else
// we were waiting for (window size 1).
func (sa *ikeSA) sendIKEDelete(reason string) {
	sa.deleted = make(chan struct{})
	if sa.out != nil {
		sa.nextReqID++
	}
	sa.abortTasks(errors.New("IKE SA deleted"))
	sa.timers.stopAll()
	pkt, err := sa.protect(message.ExchangeInformational, sa.nextReqID, false,
		[]message.Payload{&message.Delete{Protocol: message.ProtocolIKE}})
	if err != nil {
		sa.remove(err)
		return
	}
	sa.e.log.Info("deleting IKE SA", sa.fields(zap.String("reason", reason))...)
	sa.sendRequest(message.ExchangeInformational, pkt)
}
