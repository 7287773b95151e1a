package ike

import (
	"container/list"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/xdpsec/xdpsec/ike/crypto"
	"github.com/xdpsec/xdpsec/ike/message"
)

type saState uint8

const (
	stateConnecting saState = iota
	stateEstablished
	stateDeleting
	// stateRekeyed: a rekey moved the children to a new IKE SA; this one
	// only waits for its Delete exchange.
	stateRekeyed
)

func (s saState) String() string {
	switch s {
	case stateEstablished:
		return "ESTABLISHED"
	case stateDeleting:
		return "DELETING"
	case stateRekeyed:
		return "REKEYED"
	}
	return "CONNECTING"
}

// ikeSA is one IKE SA in either role. Everything is guarded by mu.
type ikeSA struct {
	mu sync.Mutex
	e  *Engine

	conn       *Conn
	candidates []*Conn // responder: connections matching the addresses
	initiator  bool
	spii, spir uint64
	state      saState
	gone       bool // removed from the engine

	local, remote       netip.AddrPort
	initFrom            netip.AddrPort // responder: source of IKE_SA_INIT
	natt                bool           // IKE runs over the NAT-T port
	natLocal, natRemote bool

	// IKE_SA_INIT state.
	kex        crypto.KeyExchange
	ni, nr     []byte
	initReq    []byte // the IKE_SA_INIT request as sent/received (RealMessage1)
	initResp   []byte // the IKE_SA_INIT response (RealMessage2)
	cookie     []byte
	initTries  int
	ikeProp    chosen
	prf        *crypto.PRF
	keys       *crypto.IKEKeys
	seal, open crypto.SKCipher
	peerID     Identity
	localID    Identity

	// Message IDs (window size 1).
	nextReqID   uint32 // ID of our next request
	expectReqID uint32 // ID of the next request we expect
	out         *outstanding
	resp        responseCache

	// IKE_AUTH child negotiation of the initiator.
	pendingChild *Child
	pendingSPI   uint32

	children []*childSA
	// contact is what the engine counts the SA under for INITIAL_CONTACT
	// (guarded by e.mu, not mu).
	contact     *contact
	established time.Time
	// halfOpen is the SA's place in e.halfOpen (guarded by e.mu), nil
	// once IKE_AUTH completed or for an initiator; knownPeer says that
	// the request came from a configured peer's address.
	halfOpen  *list.Element
	knownPeer bool
	expiry    *time.Timer
	done      chan error // initiator's Initiate waits here
	finished  bool
	deleted   chan struct{} // closed when our Delete was answered

	// lastSent is when we last sent the peer anything; the NAT-T
	// keepalive waits for it to be KeepaliveInterval ago, since any
	// datagram refreshes the NAT mapping.
	lastSent time.Time
	// lastRecv is when the peer last sent us an authentic message; DPD
	// checks liveness only after DPDDelay of silence.
	lastRecv time.Time
	// dpdInbound is the CHILD SAs' inbound packet count at the last DPD
	// round: if it moved, the peer is alive without asking.
	dpdInbound uint64
	// quietIn and quietOut are the CHILD SAs' packet counts at the last
	// quiet-peer round (quietSeen: there was one).
	quietIn, quietOut uint64
	quietSeen         bool
	// created is when the SA was made; INITIAL_CONTACT clears only SAs
	// of the peer established before it.
	created time.Time

	// queue holds our requests waiting for the window (size 1); out.task
	// is the one in flight.
	queue []task
	// rekeys counts the IKE SAs this one's lineage replaced; rekeyAt is
	// when it rekeys itself.
	rekeys   int
	rekeyAt  time.Time
	timers   timers // IKE rekey and its retry, DPD, the end of a rekeyed SA
	ikeRekey bool   // our IKE rekey is queued or in flight
	// pendingCreate names the children a createChildTask is on its way
	// for (Acquire's de-duplication).
	pendingCreate map[string]bool
	// hold: the peer was found dead and the connection's dpd_action is
	// hold, so its children get trap policies once they are gone.
	hold bool
	// fragmentsSeen: the peer's use of RFC 7383 fragments was logged.
	fragmentsSeen bool
}

// childState is where a CHILD SA is in its life.
type childState uint8

const (
	// childInbound: created by the peer's rekey; it decrypts, but we keep
	// sending on the SA it replaces until the peer deletes that one.
	childInbound childState = iota
	childInstalled
	// childRekeying: our rekey of it is in flight.
	childRekeying
	// childRekeyed: replaced; it stays for late packets until deleted.
	childRekeyed
)

func (s childState) String() string {
	switch s {
	case childInbound:
		return "INBOUND"
	case childRekeying:
		return "REKEYING"
	case childRekeyed:
		return "REKEYED"
	}
	return "INSTALLED"
}

type childSA struct {
	sa       ChildSA
	proposal string
	cfg      *Child
	// owner is the IKE SA the child lives under; an IKE rekey moves it,
	// so timers find the current owner through it.
	owner    atomic.Pointer[ikeSA]
	state    childState
	outbound bool // its outbound SA is installed
	rekeys   int
	rekeyAt  time.Time
	timers   timers // rekey, hard expiry, retry, the wait for the peer's switch, retirement
	// rekeyQueued: a rekey task for it waits in the queue.
	rekeyQueued bool
	// ourNi is the nonce of our rekey request in flight (collisions).
	ourNi []byte
	// peerRekey is the SA the peer created to replace this one, with the
	// nonces of that exchange; it takes over sending when the peer
	// deletes this one (or when we win a collision, never).
	peerRekey     *childSA
	peerNi, ourNr []byte
	// retired: its removal after the grace period is scheduled;
	// removed: it is out of the data plane.
	retired, removed bool
	// expiring: its hard lifetime ran out and its Delete is queued; the
	// IKE timer and the data plane's limits on either SA all report it.
	expiring bool
	// lastRefusal is the peer's answer to its last refused rekey.
	lastRefusal string
}

// timers are an SA's pending timers by purpose. Setting one stops the one
// it replaces, so timers that re-arm themselves (DPD, retries) do not pile
// up over an SA's life.
type timers map[string]*time.Timer

func (ts *timers) set(purpose string, t *time.Timer) {
	if *ts == nil {
		*ts = timers{}
	}
	if old := (*ts)[purpose]; old != nil {
		old.Stop()
	}
	(*ts)[purpose] = t
}

// stop stops the timer for purpose, if any.
func (ts timers) stop(purpose string) {
	if t := ts[purpose]; t != nil {
		t.Stop()
		delete(ts, purpose)
	}
}

func (ts timers) stopAll() {
	for _, t := range ts {
		t.Stop()
	}
}

// outstanding is our request waiting for its response.
type outstanding struct {
	id      uint32
	exch    message.ExchangeType
	pkt     []byte // framed
	tries   int
	timer   *time.Timer
	started time.Time
	task    task
}

func (sa *ikeSA) ourSPI() uint64 {
	if sa.initiator {
		return sa.spii
	}
	return sa.spir
}

func (sa *ikeSA) peerSPI() uint64 {
	if sa.initiator {
		return sa.spir
	}
	return sa.spii
}

func (sa *ikeSA) connName() string {
	if sa.conn == nil {
		return ""
	}
	return sa.conn.Name
}

// fields are the structured log fields every line about this SA carries.
func (sa *ikeSA) fields(extra ...zap.Field) []zap.Field {
	f := []zap.Field{
		zap.String("conn", sa.connName()),
		zap.Stringer("peer", sa.remote),
		zap.String("spi", fmt.Sprintf("%016x_i %016x_r", sa.spii, sa.spir)),
	}
	return append(f, extra...)
}

func (sa *ikeSA) info() IKESAInfo {
	in := IKESAInfo{
		Conn: sa.connName(), State: sa.state.String(), SPIi: sa.spii, SPIr: sa.spir,
		Initiator: sa.initiator, Local: sa.local, Remote: sa.remote,
		NATLocal: sa.natLocal, NATRemote: sa.natRemote, Established: sa.established,
		LocalID: sa.localID.String(), RemoteID: sa.peerID.String(),
	}
	if sa.keys != nil {
		in.Proposal = sa.ikeProp.String()
	}
	in.Rekeys, in.RekeyAt = sa.rekeys, sa.rekeyAt
	for _, c := range sa.children {
		in.Children = append(in.Children, ChildInfo{
			Name: c.sa.Child, State: c.state.String(), SPIIn: c.sa.SPIIn, SPIOut: c.sa.SPIOut,
			Mode: c.sa.Mode.String(), Encap: c.sa.Encap, LocalTS: c.sa.LocalTS, RemoteTS: c.sa.RemoteTS,
			Proposal: c.proposal, Established: c.sa.Established, RekeyAt: c.rekeyAt, Rekeys: c.rekeys,
			Reason: c.lastRefusal,
		})
	}
	return in
}

// finish reports the outcome of Initiate, once.
func (sa *ikeSA) finish(err error) {
	if sa.finished || sa.done == nil {
		return
	}
	sa.finished = true
	sa.done <- err
}

// remove takes the SA out of the engine, stops its timers and deletes its
// CHILD SAs from the data plane. It is idempotent.
func (sa *ikeSA) remove(err error) {
	if sa.gone {
		return
	}
	sa.gone = true
	sa.abortTasks(err)
	if sa.expiry != nil {
		sa.expiry.Stop()
	}
	sa.timers.stopAll()
	// Children leave the data plane before the SA leaves the list, so
	// whoever sees the SA gone also sees its CHILD SAs gone.
	sa.uninstallChildren()
	if sa.pendingChild != nil {
		sa.releaseSPI(sa.pendingChild, sa.pendingSPI)
		sa.pendingChild = nil
	}
	e := sa.e
	e.mu.Lock()
	if e.sas[sa.ourSPI()] == sa {
		delete(e.sas, sa.ourSPI())
	}
	e.dropContactLocked(sa)
	if !sa.initiator {
		k := initKey{sa.initRemote(), sa.spii}
		if e.initIdx[k] == sa {
			delete(e.initIdx, k)
		}
	}
	e.halfOpen.remove(sa)
	e.mu.Unlock()
	if sa.deleted != nil {
		select {
		case <-sa.deleted:
		default:
			close(sa.deleted)
		}
	}
	sa.finish(err)
}

// fail ends a negotiation or an SA for good.
func (sa *ikeSA) fail(err error) { sa.remove(err) }

func (sa *ikeSA) uninstallChildren() {
	for _, c := range sa.children {
		sa.deleteFromDataplane(c)
	}
	sa.children = nil
}

// deleteFromDataplane removes c's SAs (and the policies still naming
// them) and stops its timers; once the last SA of a child that has trap
// policies configured is gone, the trap comes back.
func (sa *ikeSA) deleteFromDataplane(c *childSA) {
	if c.removed {
		return
	}
	c.removed = true
	c.timers.stopAll()
	if inst := sa.e.opts.Installer; inst != nil {
		ctx, cancel := context.WithTimeout(sa.e.ctx, installTimeout)
		if err := inst.DeleteChild(ctx, c.sa); err != nil {
			sa.e.log.Warn("removing CHILD SA from the data plane failed", sa.fields(zap.String("child", c.sa.Child), zap.Error(err))...)
		}
		cancel()
	}
	if c.outbound {
		c.outbound = false
		sa.e.childDown(c.sa.Conn, c.sa.Child, sa.hold)
	}
}

// setEstablished marks the end of IKE_AUTH: no longer half-open.
func (sa *ikeSA) setEstablished() {
	sa.state = stateEstablished
	sa.established = time.Now()
	sa.lastRecv = sa.established
	sa.armIKETimers()
	if sa.expiry != nil {
		sa.expiry.Stop()
	}
	e := sa.e
	e.mu.Lock()
	if sa.contact == nil {
		// The responder, and an initiator whose peer named itself.
		e.countContactLocked(sa, newContact(sa.localID, sa.peerID, sa.remote.Addr()))
	}
	e.halfOpen.remove(sa)
	if !sa.initiator {
		k := initKey{sa.initRemote(), sa.spii}
		if e.initIdx[k] == sa {
			delete(e.initIdx, k)
		}
	}
	e.mu.Unlock()
}

// initRemote is the address the IKE_SA_INIT request came from, under which
// the half-open SA is indexed.
func (sa *ikeSA) initRemote() netip.AddrPort { return sa.initFrom }

func (sa *ikeSA) retransmitDelay(tries int) time.Duration {
	o := sa.e.opts
	return time.Duration(float64(o.RetransmitTimeout) * math.Pow(o.RetransmitBase, float64(tries)))
}

// sendRequest sends a request and arms its retransmission. The request
// must use sa.nextReqID, which is advanced when its response arrives.
func (sa *ikeSA) sendRequest(exch message.ExchangeType, pkt []byte) {
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
func (sa *ikeSA) respond(id uint32, pk packet, pkt []byte) {
	// Every response is framed as sa.natt says (protect, IKE_SA_INIT).
	sa.resp.store(id, pk, pkt, sa.natt, sa.e.resendNow())
	sa.expectReqID = id + 1
	sa.send(pk.local, pk.from, pkt)
}

// send transmits pkt for this SA and notes when, which defers its next
// NAT-T keepalive.
func (sa *ikeSA) send(local, remote netip.AddrPort, pkt []byte) {
	if sa.e.transmit(local, remote, pkt) == nil {
		sa.lastSent = time.Now()
	}
}

// protect builds an SK-protected message with the inner payloads.
func (sa *ikeSA) protect(exch message.ExchangeType, id uint32, response bool, inner []message.Payload) ([]byte, error) {
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
	m := &message.Message{
		Header:   message.Header{SPIi: sa.spii, SPIr: sa.spir, Exchange: exch, Flags: flags, MessageID: id},
		Payloads: []message.Payload{&message.SK{NextPayload: next}},
	}
	bodyLen := sa.seal.SealedLen(len(pt))
	start := 0
	buf := make([]byte, 0, 4+message.HeaderLen+8+bodyLen)
	if sa.natt {
		buf = append(buf, 0, 0, 0, 0)
		start = 4
	}
	buf, err = m.AppendSKPrefix(buf, bodyLen)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", exch, err)
	}
	aad := buf[start:len(buf):len(buf)]
	out, err := sa.seal.Seal(buf, aad, pt)
	if err != nil {
		return nil, fmt.Errorf("seal %s: %w", exch, err)
	}
	return out, nil
}

var (
	errNotProtected = errors.New("message is not protected")
	errMalformed    = errors.New("malformed message")
	// errFragmented: the message came in encrypted fragments (RFC 7383),
	// which we neither announce nor reassemble.
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
		if _, frag := m.Encrypted().(*message.SKF); frag {
			return nil, errFragmented
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
// corrupted one (integrity), or one in encrypted fragments, which the
// peer should not send since we never announced IKEV2_FRAGMENTATION_SUPPORTED.
// Some peers send them anyway (strongSwan's fragmentation=force); that is
// said once per IKE SA, for the exchange then never completes.
func (sa *ikeSA) dropUnopened(err error, exch message.ExchangeType) {
	if !errors.Is(err, errFragmented) {
		sa.e.stats.drop(DropIntegrity)
		return
	}
	sa.e.stats.drop(DropFragmented)
	if !sa.fragmentsSeen {
		sa.fragmentsSeen = true
		sa.e.log.Info("peer sent an IKE message in encrypted fragments (RFC 7383), which we did not negotiate "+
			"and do not reassemble: dropped; have the peer send whole messages (strongSwan: fragmentation = yes or no, not force)",
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

// handleRequest dispatches a request from the peer (sa.mu held).
func (sa *ikeSA) handleRequest(pk packet) {
	id := pk.h.MessageID
	if sa.resp.answers(pk) {
		sa.resendCached(pk, sa.verifies)
		return
	}
	if id != sa.expectReqID {
		sa.e.stats.drop(DropUnexpectedMsgID)
		return
	}
	switch {
	case pk.h.Exchange == message.ExchangeIKEAuth && !sa.initiator && sa.state == stateConnecting:
		sa.processAuthRequest(pk)
	case sa.state == stateConnecting:
		sa.e.stats.drop(DropUnexpected)
	case pk.h.Exchange == message.ExchangeInformational:
		sa.lastRecv = time.Now()
		sa.processInformationalRequest(pk)
	case pk.h.Exchange == message.ExchangeCreateChildSA:
		sa.processCreateChildRequest(pk)
	default:
		sa.e.stats.drop(DropUnexpected)
	}
}

// handleResponse matches a response with our outstanding request.
func (sa *ikeSA) handleResponse(pk packet) {
	if sa.out == nil || pk.h.MessageID != sa.out.id || pk.h.Exchange != sa.out.exch {
		sa.e.stats.drop(DropUnexpectedMsgID)
		return
	}
	switch pk.h.Exchange {
	case message.ExchangeIKESAInit:
		sa.processInitResponse(pk)
	case message.ExchangeIKEAuth:
		sa.processAuthResponse(pk)
	case message.ExchangeInformational, message.ExchangeCreateChildSA:
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
	default:
		sa.e.stats.drop(DropUnexpected)
	}
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

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}
