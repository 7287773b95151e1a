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
	p     *ikeRekeyPhase
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
	t.p = &ikeRekeyPhase{r: roleRequester, group: t.group}
	ps, err := buildPhases(sa, []phase{t.p})
	if err != nil {
		sa.ikeRekey = false
		t.finish(err)
		return 0, nil, false
	}
	return message.ExchangeCreateChildSA, ps, true
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
	if err := processPhases(sa, []phase{t.p}, &a); err != nil {
		e.stats.exchange(exch, true, ResultError)
		e.log.Warn("invalid IKE SA rekey response", sa.fields(zap.Error(err))...)
		retry()
		t.finish(err)
		return
	}
	e.stats.exchange(exch, true, ResultOK)
	sa.handOver(t.p.ns)
	// The initiator of the rekey deletes the old IKE SA (RFC 7296 2.8).
	sa.sendIKEDelete("rekeyed")
	t.finish(nil)
}

// ikeRekeyPhase is the new IKE SA's proposal (with its SPI), nonce and key
// exchange in a CREATE_CHILD_SA (RFC 7296 1.3.2). Both roles end with ns,
// the new IKE SA, registered but not yet holding the CHILD SAs.
type ikeRekeyPhase struct {
	r     role
	group uint16 // the requester's key exchange
	spi   uint64 // our SPI of the new SA
	nonce []byte // ours
	kex   crypto.KeyExchange
	prop  chosen // the responder's choice
	ns    *ikeSA
}

func (p *ikeRekeyPhase) build(sa *ikeSA, out []message.Payload) ([]message.Payload, error) {
	if p.r == roleRequester {
		kex, err := crypto.NewKeyExchange(p.group)
		if err != nil {
			return nil, err
		}
		p.kex, p.nonce = kex, randomBytes(nonceLen)
		sa.e.mu.Lock()
		p.spi = sa.e.newSPILocked()
		sa.e.mu.Unlock()
	}
	var spi [8]byte
	putSPI(spi[:], p.spi)
	offer := &message.SA{Proposals: toWire(sa.conn.IKEProposals, message.ProtocolIKE, spi[:])}
	if p.r == roleResponder {
		prop := p.prop
		prop.spi = spi[:]
		offer = &message.SA{Proposals: []message.Proposal{prop.wire(message.ProtocolIKE)}}
	}
	return append(out, offer, &message.Nonce{Data: p.nonce},
		&message.KE{Group: message.KEGroup(p.kex.Group()), Data: p.kex.PublicKey()}), nil
}

func (p *ikeRekeyPhase) process(sa *ikeSA, in *payloads) error {
	if p.r == roleResponder {
		return p.processRequest(sa, in)
	}
	if in.sa == nil || in.nonce == nil || in.ke == nil {
		return errors.New("response lacks SA, nonce or KE")
	}
	prop, err := acceptAnswer(in.sa, sa.conn.IKEProposals, message.ProtocolIKE)
	if err != nil {
		return err
	}
	if prop.ke != p.kex.Group() || uint16(in.ke.Group) != prop.ke {
		return fmt.Errorf("responder chose %s, our key exchange is %s", message.KEGroup(prop.ke), message.KEGroup(p.kex.Group()))
	}
	if len(prop.spi) != 8 {
		return errors.New("IKE proposal without an 8-byte SPI")
	}
	gir, err := p.kex.SharedSecret(in.ke.Data)
	if err != nil {
		return fmt.Errorf("key exchange: %w", err)
	}
	p.ns, err = sa.newRekeyedSA(prop, true, p.spi, spiOf(prop.spi), gir, p.nonce, in.nonce.Data)
	return err
}

// processRequest checks the peer's IKE rekey and creates the new SA, or
// refuses (the IKE SA stays).
func (p *ikeRekeyPhase) processRequest(sa *ikeSA, in *payloads) error {
	e := sa.e
	refused := func(n message.NotifyType, result, why string) error {
		return &refusal{notify: n, result: result, keep: true, err: errors.New(why)}
	}
	if sa.out != nil {
		switch sa.out.task.(type) {
		case *rekeyChildTask, *createChildTask:
			// RFC 7296 2.25.2: a CHILD SA exchange of ours is in
			// flight on this IKE SA; the peer retries later.
			return refused(message.NotifyTemporaryFailure, ResultTemporaryFailure, "CHILD SA exchange in flight")
		}
	}
	if in.ke == nil {
		return refused(message.NotifyInvalidSyntax, ResultError, "no KE")
	}
	prop, ok := selectProposal(in.sa.Proposals, sa.conn.IKEProposals, message.ProtocolIKE, uint16(in.ke.Group))
	if !ok {
		e.log.Warn("IKE SA rekey refused: no common proposal", sa.fields(zap.String("received", offerString(in.sa.Proposals)))...)
		return refused(message.NotifyNoProposalChosen, ResultNoProposal, "no common proposal")
	}
	if prop.ke != uint16(in.ke.Group) {
		return &refusal{answer: message.NewInvalidKEPayload(message.KEGroup(prop.ke)), result: ResultInvalidKE, keep: true,
			err: errors.New("another key exchange wanted")}
	}
	if len(prop.spi) != 8 {
		return refused(message.NotifyInvalidSyntax, ResultError, "IKE proposal without an 8-byte SPI")
	}
	kex, err := crypto.NewKeyExchange(prop.ke)
	var gir []byte
	if err == nil {
		gir, err = kex.SharedSecret(in.ke.Data)
	}
	if err != nil {
		return refused(message.NotifyInvalidSyntax, ResultError, "key exchange failed")
	}
	e.mu.Lock()
	p.spi = e.newSPILocked()
	e.mu.Unlock()
	p.kex, p.nonce, p.prop = kex, randomBytes(nonceLen), prop
	if p.ns, err = sa.newRekeyedSA(prop, false, spiOf(prop.spi), p.spi, gir, in.nonce.Data, p.nonce); err != nil {
		e.log.Warn("IKE SA rekey failed", sa.fields(zap.Error(err))...)
		return refused(message.NotifyNoProposalChosen, ResultError, err.Error())
	}
	return nil
}

// spiOf reads an 8-byte IKE SPI.
func spiOf(b []byte) uint64 {
	var spi uint64
	for _, x := range b {
		spi = spi<<8 | uint64(x)
	}
	return spi
}

// rekeyedByPeer moves everything to ns, the IKE SA the peer's rekey
// created, once our answer is out. The peer deletes this SA; should it
// not, it goes anyway.
func (sa *ikeSA) rekeyedByPeer(ns *ikeSA) {
	sa.handOver(ns)
	sa.timers.set("rekeyed", sa.afterFunc(sa.e.opts.HalfOpenTimeout, func() {
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
