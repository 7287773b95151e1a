package ike

import (
	"container/list"
	"context"
	"crypto/rand"
	"fmt"
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
	// fragOK: both ends announced IKE fragmentation (RFC 7383), so the
	// peer may send SKF fragments; fragIn collects them, [0] those of a
	// request, [1] of a response (see fragments.go).
	fragOK bool
	fragIn [2]*reassembly
	// tr carries the SA's datagrams; nil: the engine's UDP sockets.
	tr transport
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
	pkt     [][]byte // framed datagrams: the message or its fragments
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

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}
