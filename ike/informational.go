package ike

import (
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/xdpsec/xdpsec/ike/message"
)

// processInformationalRequest answers INFORMATIONAL requests: deletes of the
// IKE SA or of CHILD SAs, AUTHENTICATION_FAILED from an initiator that
// rejected our AUTH (RFC 7296 2.21.2), and liveness checks (empty).
func (sa *ikeSA) processInformationalRequest(pk packet) {
	e := sa.e
	ps, ok := sa.openRequest(pk)
	if !ok {
		return
	}
	var (
		out       []message.Payload
		deleteIKE bool
		authFail  bool
	)
	for _, p := range ps {
		switch p := p.(type) {
		case *message.Delete:
			switch p.Protocol {
			case message.ProtocolIKE:
				deleteIKE = true
			case message.ProtocolESP:
				if ours := sa.deleteChildren(p.SPIs); len(ours) > 0 {
					out = append(out, &message.Delete{Protocol: message.ProtocolESP, SPIs: ours})
				}
			}
		case *message.Notify:
			if p.NotifyType == message.NotifyAuthenticationFailed {
				authFail = true
			}
		}
	}
	if deleteIKE {
		out = nil
	}
	pkt, err := sa.protect(message.ExchangeInformational, pk.h.MessageID, true, out)
	if err != nil {
		return
	}
	sa.respond(pk.h.MessageID, pk, pkt)
	e.stats.exchange(message.ExchangeInformational.String(), false, ResultOK)
	switch {
	case authFail:
		e.log.Warn(fmt.Sprintf("peer %s rejected our authentication (AUTHENTICATION_FAILED) without saying why: "+
			"check that the pre-shared keys match and that its remote_id accepts %s (our local_id)", sa.remote, sa.localID),
			sa.fields(zap.String("exchange", message.ExchangeInformational.String()))...)
		sa.remove(errors.New("peer sent AUTHENTICATION_FAILED"))
	case deleteIKE:
		e.log.Info("peer deleted the IKE SA", sa.fields()...)
		sa.remove(errors.New("deleted by peer"))
	}
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
// one of a rekey collision that was never installed here.
type deleteChildTask struct {
	c      *childSA
	reason string
	// lost, when set, says why the child goes without a successor, for
	// its connection to bring it back (childLost).
	lost string
}

func (t *deleteChildTask) request(sa *ikeSA) (message.ExchangeType, []message.Payload, bool) {
	if t.c.removed {
		return 0, nil, false
	}
	sa.e.log.Debug("deleting CHILD SA", sa.fields(zap.String("child", t.c.sa.Child), zap.String("reason", t.reason),
		zap.String("spi", fmt.Sprintf("%08x", t.c.sa.SPIIn)))...)
	return message.ExchangeInformational, []message.Payload{&message.Delete{Protocol: message.ProtocolESP, SPIs: []uint32{t.c.sa.SPIIn}}}, true
}

func (t *deleteChildTask) response(sa *ikeSA, _ []message.Payload, err error) {
	c := t.c
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
		if t.lost != "" {
			sa.childLost(c, t.lost)
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
type dpdTask struct{}

func (dpdTask) request(*ikeSA) (message.ExchangeType, []message.Payload, bool) {
	return message.ExchangeInformational, nil, true
}

func (dpdTask) response(sa *ikeSA, _ []message.Payload, err error) {
	if err == nil {
		sa.e.stats.exchange(message.ExchangeInformational.String(), true, ResultOK)
	}
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
