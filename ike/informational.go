package ike

import (
	"context"
	"errors"

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
		e.log.Warn("peer rejected our authentication (AUTHENTICATION_FAILED): pre-shared key mismatch?",
			sa.fields(zap.String("exchange", message.ExchangeInformational.String()))...)
		sa.remove(errors.New("peer sent AUTHENTICATION_FAILED"))
	case deleteIKE:
		e.log.Info("peer deleted the IKE SA", sa.fields()...)
		sa.remove(errors.New("deleted by peer"))
	}
}

// deleteChildren removes the CHILD SAs whose outbound SPIs the peer deleted
// and returns our inbound SPIs of them for the answer (RFC 7296 1.4.1).
func (sa *ikeSA) deleteChildren(spis []uint32) []uint32 {
	var ours []uint32
	kept := sa.children[:0]
	for _, c := range sa.children {
		found := false
		for _, s := range spis {
			if c.sa.SPIOut == s {
				found = true
			}
		}
		if !found {
			kept = append(kept, c)
			continue
		}
		ours = append(ours, c.sa.SPIIn)
		sa.e.log.Info("peer deleted a CHILD SA", sa.fields(zap.String("child", c.sa.Child))...)
		if inst := sa.e.opts.Installer; inst != nil {
			ctx, cancel := context.WithTimeout(sa.e.ctx, installTimeout)
			if err := inst.DeleteChild(ctx, c.sa); err != nil {
				sa.e.log.Warn("removing CHILD SA from the data plane failed", sa.fields(zap.String("child", c.sa.Child), zap.Error(err))...)
			}
			cancel()
		}
	}
	sa.children = kept
	return ours
}

// processCreateChildRequest refuses CREATE_CHILD_SA for now: additional
// CHILD SAs and rekeying come with a later change, and NO_ADDITIONAL_SAS
// tells the peer exactly that (RFC 7296 1.3).
func (sa *ikeSA) processCreateChildRequest(pk packet) {
	if _, ok := sa.openRequest(pk); !ok {
		return
	}
	sa.e.log.Info("refusing CREATE_CHILD_SA (not supported yet): sending NO_ADDITIONAL_SAS", sa.fields()...)
	sa.respondError(pk, message.NotifyNoAdditionalSAs, ResultError)
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
	sa.deleted = make(chan struct{})
	if sa.out != nil {
		// Window size 1: abandon whatever we were waiting for.
		sa.out.timer.Stop()
		sa.out = nil
		sa.nextReqID++
	}
	pkt, err := sa.protect(message.ExchangeInformational, sa.nextReqID, false,
		[]message.Payload{&message.Delete{Protocol: message.ProtocolIKE}})
	if err != nil {
		sa.remove(err)
		return
	}
	sa.e.log.Info("deleting IKE SA", sa.fields(zap.String("reason", reason))...)
	sa.sendRequest(message.ExchangeInformational, pkt)
}
