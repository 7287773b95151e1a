package ike

import (
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/xdpsec/xdpsec/ike/message"
)

// rekeyChildTask rekeys a CHILD SA (RFC 7296 1.3.3). On the answer the new
// SA is installed inbound first, then outbound (the policies move to it),
// and the old SA is deleted with an INFORMATIONAL; it stays in the data
// plane for the grace period after that.
type rekeyChildTask struct {
	old   *childSA
	done  chan error
	group uint16
	tries int
	req   childRequest
	offer *childOfferPhase
}

func (t *rekeyChildTask) finish(err error) {
	if t.done != nil {
		t.done <- err
		t.done = nil
	}
}

func (t *rekeyChildTask) request(sa *ikeSA) (message.ExchangeType, []message.Payload, bool) {
	old := t.old
	old.rekeyQueued = false
	if old.removed || old.state != childInstalled || old.peerRekey != nil {
		// The peer rekeyed or deleted it meanwhile: nothing left to do.
		t.finish(nil)
		return 0, nil, false
	}
	if t.tries == 0 {
		t.group = pfsGroup(old.cfg)
	}
	if err := t.req.start(sa, old.cfg, t.group); err != nil {
		sa.e.log.Warn("cannot rekey CHILD SA", sa.fields(zap.String("child", old.sa.Child), zap.Error(err))...)
		sa.retryChildRekey(old)
		t.finish(err)
		return 0, nil, false
	}
	t.offer = &childOfferPhase{r: roleRequester, cfg: old.cfg, mode: old.sa.Mode,
		localTS: selectors(old.sa.LocalTS), remoteTS: selectors(old.sa.RemoteTS), req: &t.req}
	ps, err := buildPhases(sa, []phase{&rekeyNotifyPhase{r: roleRequester, old: old}, t.offer})
	if err != nil {
		t.req.release(sa, old.cfg)
		sa.retryChildRekey(old)
		t.finish(err)
		return 0, nil, false
	}
	old.state, old.ourNi = childRekeying, t.req.ni
	return message.ExchangeCreateChildSA, ps, true
}

func (t *rekeyChildTask) response(sa *ikeSA, ps []message.Payload, err error) {
	e := sa.e
	old := t.old
	exch := message.ExchangeCreateChildSA.String()
	rekeying := old.state == childRekeying
	if rekeying {
		old.state = childInstalled
	}
	ourNi := old.ourNi
	old.ourNi = nil
	if err != nil {
		t.req.release(sa, old.cfg)
		if !sa.gone && !old.removed && rekeying {
			sa.retryChildRekey(old)
		}
		t.finish(err)
		return
	}
	a := collect(ps)
	if a.errN != nil {
		t.req.release(sa, old.cfg)
		t.refused(sa, a.errN)
		return
	}
	err = processPhases(sa, []phase{t.offer}, &a)
	c := t.offer.child
	if err != nil {
		t.req.release(sa, old.cfg)
		e.stats.exchange(exch, true, ResultError)
		e.log.Warn("invalid CHILD SA rekey response", sa.fields(zap.String("child", old.sa.Child), zap.Error(err))...)
		if !old.removed {
			sa.retryChildRekey(old)
		}
		t.finish(err)
		return
	}
	c.rekeys = old.rekeys + 1
	// RFC 7296 2.8.1: when both ends rekeyed at once, the exchange with
	// the lowest of the four nonces made the redundant SA, which its
	// initiator deletes. The peer's rekey also wins when it has already
	// taken over (its Delete overtook this response).
	lost := !rekeying && !old.removed
	if n := old.peerRekey; rekeying && n != nil && !n.removed {
		lost = cmpNonce(lowerNonce(ourNi, a.nonce.Data), lowerNonce(old.peerNi, old.ourNr)) < 0
	}
	if lost {
		e.log.Info("CHILD SA rekey collision lost: deleting our redundant SA", sa.fields(zap.String("child", old.sa.Child),
			zap.String("spi", fmt.Sprintf("%08x", c.sa.SPIIn)))...)
		e.stats.exchange(exch, true, ResultOK)
		if rekeying {
			// The winner's Delete of the old SA moves us to its SA.
			old.state = childRekeyed
		}
		sa.enqueue(deleteChildTask(c, "redundant after a rekey collision", ""))
		t.finish(nil)
		return
	}
	t.finish(sa.switchToRekeyed(old, c))
}

// refused handles the peer's error answer to our rekey: another key
// exchange group, a child it no longer knows, a busy peer, a refusal.
func (t *rekeyChildTask) refused(sa *ikeSA, errN *message.Notify) {
	e := sa.e
	old := t.old
	n := errN.NotifyType
	e.stats.exchange(message.ExchangeCreateChildSA.String(), true, resultOf(n))
	switch {
	case n == message.NotifyInvalidKEPayload && t.tries < maxInitRetries && retryGroup(errN, old.cfg, t.group) != 0:
		t.group, t.tries = retryGroup(errN, old.cfg, t.group), t.tries+1
		old.rekeyQueued = true
		sa.queue = append([]task{t}, sa.queue...)
		return
	case n == message.NotifyChildSANotFound:
		e.log.Warn("peer does not know the CHILD SA we rekey (CHILD_SA_NOT_FOUND); removing it",
			sa.fields(zap.String("child", old.sa.Child), zap.String("spi", fmt.Sprintf("%08x", old.sa.SPIIn)))...)
		sa.dropChild(old)
		sa.childLost(old, "the peer no longer knows it (CHILD_SA_NOT_FOUND)")
	case n == message.NotifyTemporaryFailure:
		e.log.Debug("peer is busy (TEMPORARY_FAILURE), rekeying later", sa.fields(zap.String("child", old.sa.Child))...)
		if !old.removed && old.state == childInstalled {
			sa.retryChildRekey(old)
		}
	default:
		old.lastRefusal = fmt.Sprintf("last rekey refused: peer sent %s", n)
		e.log.Warn("CHILD SA rekey refused by peer; trying again later", sa.fields(zap.String("child", old.sa.Child), zap.Stringer("notify", n),
			zap.String("offer", offeredChild(old.cfg, t.group)))...)
		if !old.removed && old.state == childInstalled {
			sa.retryChildRekey(old)
		}
	}
	if n == message.NotifyNoProposalChosen {
		t.finish(fmt.Errorf("peer sent %s: %s", n, offeredChild(old.cfg, t.group)))
	} else {
		t.finish(fmt.Errorf("peer sent %s", n))
	}
}

// switchToRekeyed installs c, the new SA of our rekey of old, inbound then
// outbound, and deletes old at the peer. Should installing fail, the peer
// has an SA we do not: it is deleted there and old stays, rekeyed again
// later.
func (sa *ikeSA) switchToRekeyed(old, c *childSA) error {
	e := sa.e
	exch := message.ExchangeCreateChildSA.String()
	err := sa.installInbound(c)
	if err == nil {
		if err = sa.installOutbound(c); err != nil {
			sa.deleteFromDataplane(c)
		}
	}
	if err != nil {
		e.log.Warn("installing the rekeyed CHILD SA failed", sa.fields(zap.String("child", old.sa.Child), zap.Error(err))...)
	}
	if c.outbound {
		sa.addChild(c)
		e.stats.exchange(exch, true, ResultOK)
		e.stats.add(&e.stats.childRekeys)
		e.log.Info("CHILD SA rekeyed", sa.fields(zap.String("child", c.sa.Child),
			zap.String("old_spis", fmt.Sprintf("%08x_i %08x_o", old.sa.SPIIn, old.sa.SPIOut)),
			zap.String("spis", fmt.Sprintf("%08x_i %08x_o", c.sa.SPIIn, c.sa.SPIOut)), zap.Int("rekeys", c.rekeys))...)
		if !old.removed {
			old.state = childRekeyed
			old.timers.stopAll()
			sa.enqueue(deleteChildTask(old, "rekeyed", ""))
		}
		return nil
	}
	e.stats.exchange(exch, true, ResultError)
	sa.enqueue(deleteChildTask(c, "not installed", ""))
	if !old.removed {
		sa.retryChildRekey(old)
	}
	if err == nil {
		err = errors.New("the rekeyed CHILD SA is not sending")
	}
	return fmt.Errorf("install rekeyed CHILD SA: %w", err)
}

// childByOut finds the CHILD SA with outbound SPI spi.
func (sa *ikeSA) childByOut(spi uint32) *childSA {
	for _, c := range sa.children {
		if c.sa.SPIOut == spi && !c.removed {
			return c
		}
	}
	return nil
}

// takeOver switches sending from old to n, the SA the peer created by
// rekeying old, and retires old. on says what showed that the peer has n:
// "traffic" (rekeyswitch.go), "delete" or "timeout".
func (sa *ikeSA) takeOver(old, n *childSA, on string) {
	old.peerRekey = nil
	if err := sa.installOutbound(n); err != nil {
		sa.e.log.Warn("switching to the rekeyed CHILD SA failed; keeping the old one", sa.fields(zap.String("child", n.sa.Child), zap.Error(err))...)
		sa.dropChild(n)
		return
	}
	sa.e.stats.add(&sa.e.stats.childRekeys)
	sa.e.log.Info("CHILD SA rekeyed by peer", sa.fields(zap.String("child", n.sa.Child),
		zap.String("old_spis", fmt.Sprintf("%08x_i %08x_o", old.sa.SPIIn, old.sa.SPIOut)),
		zap.String("spis", fmt.Sprintf("%08x_i %08x_o", n.sa.SPIIn, n.sa.SPIOut)), zap.Int("rekeys", n.rekeys),
		zap.String("switched_on", on))...)
	old.state = childRekeyed
	sa.retire(old)
}

// inboundExpired handles a CHILD SA the peer created by rekeying old whose
// Delete of old never came: the peer sends with it, so we switch too and
// delete old ourselves. A redundant SA of a lost collision just goes.
func (sa *ikeSA) inboundExpired(old, n *childSA) {
	if n.state != childInbound {
		return
	}
	if old.peerRekey == n && !old.removed {
		sa.e.log.Warn("peer rekeyed a CHILD SA but never deleted the old one; switching anyway",
			sa.fields(zap.String("child", n.sa.Child))...)
		sa.takeOver(old, n, "timeout")
		sa.enqueue(deleteChildTask(old, "rekeyed", ""))
		return
	}
	sa.dropChild(n)
}

// retire removes a replaced CHILD SA after the grace period, during which
// its inbound SA still decrypts packets that were in flight.
func (sa *ikeSA) retire(c *childSA) {
	if c.retired || c.removed {
		return
	}
	c.retired = true
	c.timers.stopAll()
	c.rekeyAt = time.Time{}
	c.timers = nil
	c.timers.set("retire", c.afterFunc(sa.e.opts.RekeyGrace, func(sa *ikeSA) { sa.dropChild(c) }))
}

// dropChild removes a CHILD SA from the data plane and the IKE SA now.
func (sa *ikeSA) dropChild(c *childSA) {
	sa.deleteFromDataplane(c)
	for i, cc := range sa.children {
		if cc == c {
			sa.children = append(sa.children[:i], sa.children[i+1:]...)
			break
		}
	}
}
