package ike

import (
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/xdpsec/xdpsec/ike/crypto"
	"github.com/xdpsec/xdpsec/ike/message"
)

// rekeyIKETask rekeys the IKE SA (RFC 7296 1.3.2): a new IKE SA with new
// SPIs and keys derived from the old SK_d, the CHILD SAs move to it, and
// the old one is deleted.
type rekeyIKETask struct {
	done  chan error
	group uint16
	tries int
	spi   uint64
	ni    []byte
	kex   crypto.KeyExchange
}

func (t *rekeyIKETask) finish(err error) {
	if t.done != nil {
		t.done <- err
		t.done = nil
	}
}

func (t *rekeyIKETask) request(sa *ikeSA) (message.ExchangeType, []message.Payload, bool) {
	if sa.state != stateEstablished {
		sa.ikeRekey = false
		t.finish(fmt.Errorf("IKE SA is %s", sa.state))
		return 0, nil, false
	}
	if t.group == 0 {
		t.group = sa.ikeProp.ke
	}
	kex, err := crypto.NewKeyExchange(t.group)
	if err != nil {
		sa.ikeRekey = false
		t.finish(err)
		return 0, nil, false
	}
	e := sa.e
	e.mu.Lock()
	t.spi = e.newSPILocked()
	e.mu.Unlock()
	t.ni, t.kex = randomBytes(nonceLen), kex
	var spi [8]byte
	putSPI(spi[:], t.spi)
	return message.ExchangeCreateChildSA, []message.Payload{
		&message.SA{Proposals: toWire(sa.conn.IKEProposals, message.ProtocolIKE, spi[:])},
		&message.Nonce{Data: t.ni},
		&message.KE{Group: message.KEGroup(kex.Group()), Data: kex.PublicKey()},
	}, true
}

func (t *rekeyIKETask) response(sa *ikeSA, ps []message.Payload, err error) {
	e := sa.e
	sa.ikeRekey = false
	exch := message.ExchangeCreateChildSA.String()
	retry := func() {
		if sa.gone || sa.state != stateEstablished {
			return
		}
		d := rekeyRetryMin + time.Duration(randomBytes(1)[0])*(rekeyRetryMax-rekeyRetryMin)/256
		sa.rekeyAt = time.Now().Add(d)
		sa.timers.set("rekey", sa.afterFunc(d, func() { sa.queueIKERekey(nil) }))
	}
	if err != nil {
		retry()
		t.finish(err)
		return
	}
	a := collect(ps)
	if a.errN != nil {
		n := a.errN.NotifyType
		e.stats.exchange(exch, true, resultOf(n))
		if n == message.NotifyInvalidKEPayload && t.tries < maxInitRetries {
			if g, err := a.errN.InvalidKEGroup(); err == nil && sa.offersGroup(uint16(g)) && uint16(g) != t.group {
				t.group, t.tries = uint16(g), t.tries+1
				sa.ikeRekey = true
				sa.queue = append([]task{t}, sa.queue...)
				return
			}
		}
		if n == message.NotifyTemporaryFailure {
			e.log.Debug("peer is busy (TEMPORARY_FAILURE), rekeying the IKE SA later", sa.fields()...)
		} else {
			e.log.Warn("IKE SA rekey refused by peer; trying again later", sa.fields(zap.Stringer("notify", n))...)
		}
		retry()
		if n == message.NotifyNoProposalChosen && sa.conn != nil {
			t.finish(fmt.Errorf("peer sent %s: we offered %s with a %s key exchange", n,
				offerString(toWire(sa.conn.IKEProposals, message.ProtocolIKE, nil)), message.KEGroup(t.group)))
		} else {
			t.finish(fmt.Errorf("peer sent %s", n))
		}
		return
	}
	ns, err := t.accept(sa, a)
	if err != nil {
		e.stats.exchange(exch, true, ResultError)
		e.log.Warn("invalid IKE SA rekey response", sa.fields(zap.Error(err))...)
		retry()
		t.finish(err)
		return
	}
	e.stats.exchange(exch, true, ResultOK)
	sa.handOver(ns)
	// The initiator of the rekey deletes the old IKE SA (RFC 7296 2.8).
	sa.sendIKEDelete("rekeyed")
	t.finish(nil)
}

func (t *rekeyIKETask) accept(sa *ikeSA, a payloads) (*ikeSA, error) {
	if a.sa == nil || a.nonce == nil || a.ke == nil {
		return nil, errors.New("response lacks SA, nonce or KE")
	}
	prop, err := acceptAnswer(a.sa, sa.conn.IKEProposals, message.ProtocolIKE)
	if err != nil {
		return nil, err
	}
	if prop.ke != t.kex.Group() || uint16(a.ke.Group) != prop.ke {
		return nil, fmt.Errorf("responder chose %s, our key exchange is %s", message.KEGroup(prop.ke), message.KEGroup(t.kex.Group()))
	}
	if len(prop.spi) != 8 {
		return nil, errors.New("IKE proposal without an 8-byte SPI")
	}
	gir, err := t.kex.SharedSecret(a.ke.Data)
	if err != nil {
		return nil, fmt.Errorf("key exchange: %w", err)
	}
	var spir uint64
	for _, b := range prop.spi {
		spir = spir<<8 | uint64(b)
	}
	return sa.newRekeyedSA(prop, true, t.spi, spir, gir, t.ni, a.nonce.Data)
}

// respondIKERekey answers the peer's IKE SA rekey.
func (sa *ikeSA) respondIKERekey(pk packet, r payloads, inFlight task) {
	e := sa.e
	exch := message.ExchangeCreateChildSA.String()
	switch inFlight.(type) {
	case *rekeyChildTask, *createChildTask:
		// RFC 7296 2.25.2: a CHILD SA exchange of ours is in flight on
		// this IKE SA; the peer retries later.
		sa.respondError(pk, message.NotifyTemporaryFailure, ResultTemporaryFailure)
		return
	}
	if r.ke == nil {
		sa.respondError(pk, message.NotifyInvalidSyntax, ResultError)
		return
	}
	prop, ok := selectProposal(r.sa.Proposals, sa.conn.IKEProposals, message.ProtocolIKE, uint16(r.ke.Group))
	if !ok {
		e.log.Warn("IKE SA rekey refused: no common proposal", sa.fields(zap.String("received", offerString(r.sa.Proposals)))...)
		sa.respondError(pk, message.NotifyNoProposalChosen, ResultNoProposal)
		return
	}
	if prop.ke != uint16(r.ke.Group) {
		e.stats.exchange(exch, false, ResultInvalidKE)
		if pkt, err := sa.protect(pk.h.Exchange, pk.h.MessageID, true, []message.Payload{message.NewInvalidKEPayload(message.KEGroup(prop.ke))}); err == nil {
			sa.respond(pk.h.MessageID, pk, pkt)
		}
		return
	}
	if len(prop.spi) != 8 {
		sa.respondError(pk, message.NotifyInvalidSyntax, ResultError)
		return
	}
	kex, err := crypto.NewKeyExchange(prop.ke)
	var gir []byte
	if err == nil {
		gir, err = kex.SharedSecret(r.ke.Data)
	}
	if err != nil {
		sa.respondError(pk, message.NotifyInvalidSyntax, ResultError)
		return
	}
	var spii uint64
	for _, b := range prop.spi {
		spii = spii<<8 | uint64(b)
	}
	e.mu.Lock()
	spir := e.newSPILocked()
	e.mu.Unlock()
	nr := randomBytes(nonceLen)
	ns, err := sa.newRekeyedSA(prop, false, spii, spir, gir, r.nonce.Data, nr)
	if err != nil {
		e.log.Warn("IKE SA rekey failed", sa.fields(zap.Error(err))...)
		sa.respondError(pk, message.NotifyNoProposalChosen, ResultError)
		return
	}
	var spi [8]byte
	putSPI(spi[:], spir)
	prop.spi = spi[:]
	pkt, err := sa.protect(pk.h.Exchange, pk.h.MessageID, true, []message.Payload{
		&message.SA{Proposals: []message.Proposal{prop.wire(message.ProtocolIKE)}},
		&message.Nonce{Data: nr},
		&message.KE{Group: message.KEGroup(kex.Group()), Data: kex.PublicKey()},
	})
	if err != nil {
		return
	}
	sa.respond(pk.h.MessageID, pk, pkt)
	e.stats.exchange(exch, false, ResultOK)
	sa.handOver(ns)
	// The peer deletes the old IKE SA; should it not, it goes anyway.
	sa.timers.set("rekeyed", sa.afterFunc(e.opts.HalfOpenTimeout, func() {
		if sa.state == stateRekeyed {
			sa.remove(errors.New("rekeyed IKE SA never deleted by the peer"))
		}
	}))
}

// newRekeyedSA builds the IKE SA that replaces sa: initiator is whether we
// initiated the rekey, which makes us the new SA's original initiator.
func (sa *ikeSA) newRekeyedSA(prop chosen, initiator bool, spii, spir uint64, gir, ni, nr []byte) (*ikeSA, error) {
	var si, sr [8]byte
	putSPI(si[:], spii)
	putSPI(sr[:], spir)
	keys, err := crypto.DeriveRekeyedIKEKeys(sa.ikeProp.prf, sa.keys.SKd, prop.suite(), gir, ni, nr, si[:], sr[:])
	if err != nil {
		return nil, fmt.Errorf("derive rekeyed IKE keys: %w", err)
	}
	seal, open, err := keys.SKCiphers(prop.suite(), initiator)
	if err != nil {
		return nil, fmt.Errorf("sk ciphers: %w", err)
	}
	prf, err := crypto.NewPRF(prop.prf)
	if err != nil {
		return nil, fmt.Errorf("prf: %w", err)
	}
	now := time.Now()
	ns := &ikeSA{
		e: sa.e, conn: sa.conn, initiator: initiator, spii: spii, spir: spir,
		state: stateEstablished, local: sa.local, remote: sa.remote, natt: sa.natt,
		natLocal: sa.natLocal, natRemote: sa.natRemote, fragOK: sa.fragOK,
		ni: append([]byte(nil), ni...), nr: append([]byte(nil), nr...),
		ikeProp: prop, prf: prf, keys: keys, seal: seal, open: open,
		peerID: sa.peerID, localID: sa.localID,
		established: now, created: now, lastRecv: now, lastSent: sa.lastSent,
		rekeys: sa.rekeys + 1, pendingCreate: map[string]bool{},
	}
	e := sa.e
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, ErrClosed
	}
	our := ns.ourSPI()
	if e.sas[our] != nil {
		return nil, errors.New("new IKE SPI collides")
	}
	e.sas[our] = ns
	if sa.contact != nil {
		// The rekeyed SA carries on between the same identities.
		e.countContactLocked(ns, sa.contact)
	}
	return ns, nil
}

// handOver moves the CHILD SAs and queued requests to ns, which replaces
// sa, and leaves sa REKEYED.
func (sa *ikeSA) handOver(ns *ikeSA) {
	e := sa.e
	ns.mu.Lock()
	defer ns.mu.Unlock()
	for _, c := range sa.children {
		c.sa.IKESPIi, c.sa.IKESPIr = ns.spii, ns.spir
		ns.addChild(c)
	}
	sa.children = nil
	ns.queue, sa.queue = sa.queue, nil
	ns.pendingCreate, sa.pendingCreate = sa.pendingCreate, map[string]bool{}
	sa.timers.stopAll()
	sa.timers = nil
	sa.state = stateRekeyed
	ns.armIKETimers()
	e.stats.add(&e.stats.ikeRekeys)
	e.log.Info("IKE SA rekeyed", ns.fields(zap.String("old_spi", fmt.Sprintf("%016x_i %016x_r", sa.spii, sa.spir)), zap.Int("rekeys", ns.rekeys))...)
	ns.kick()
}
