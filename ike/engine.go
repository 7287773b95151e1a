package ike

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/xdpsec/xdpsec/ike/message"
)

// Defaults of Options.
const (
	DefaultPort              = 500
	DefaultNATPort           = 4500
	DefaultCookieThreshold   = 1000
	DefaultRetransmitTimeout = 4 * time.Second
	DefaultRetransmitBase    = 1.8
	DefaultRetransmitTries   = 5
	DefaultHalfOpenTimeout   = 30 * time.Second
	// DefaultSocketBuffer holds about 2,000 IKE messages of 2 KB: a burst
	// from every peer of a large gateway at once.
	DefaultSocketBuffer = 4 << 20
	// DefaultKeepaliveInterval is strongSwan's and RFC 3948's suggested
	// 20 s, well below the UDP timeouts of common NATs (30 s and more).
	DefaultKeepaliveInterval = 20 * time.Second
)

const (
	// installTimeout bounds each Installer call.
	installTimeout = 5 * time.Second
	// maxDatagram is the largest IKE datagram we read.
	maxDatagram = 65535
	// maxInitRetries bounds COOKIE and INVALID_KE_PAYLOAD round trips of
	// one Initiate, so two misconfigured peers cannot loop forever.
	maxInitRetries = 5
)

// ErrClosed is returned by Initiate once the engine has stopped.
var ErrClosed = errors.New("ike engine stopped")

// Engine runs IKEv2 for a set of connections.
type Engine struct {
	opts    Options
	log     *zap.Logger
	socks   []*udpSocket
	probe   *routeProbe
	cookies *cookieJar
	stats   *counters
	// initRate switches the front door's IKE_SA_INIT rate limit.
	initRate *initRateGuard

	// ctx lives as long as the engine and bounds Installer calls.
	ctx    context.Context
	cancel context.CancelFunc

	// mu guards the maps below. Lock order: an ikeSA's mu may be held
	// when taking e.mu, never the other way round.
	mu      sync.Mutex
	conns   []*Conn
	sas     map[uint64]*ikeSA // by our own SPI
	initIdx map[initKey]*ikeSA
	// contacts and contactAddrs count IKE SAs for INITIAL_CONTACT (see
	// contact.go).
	contacts     map[contactKey]int
	contactAddrs map[contactAddrKey]int
	halfOpen     halfOpenTable
	closed       bool
	logLimit     *logLimiter
	// liveChildren counts the sending CHILD SAs per conn/child (see
	// childUp); restarting holds the cancel of each background restart,
	// acquiring the connections an Acquire is initiating.
	liveChildren map[string]int
	restarting   map[string]*restart
	acquiring    map[string]bool
	// lost holds the children that went without a successor, by
	// conn/child (see childloss.go).
	lost map[string]*lostChild

	// dropHook, set only by tests before Run, discards received datagrams
	// to simulate loss.
	dropHook func(h message.Header) bool
	// rxHook, set only by tests before Run, sees every received datagram
	// before it is processed, so that a test can check what came in on
	// the wire (the NAT-T keepalive's byte and source).
	rxHook func(b []byte, from, local netip.AddrPort, natt bool)
	// resendClock, set only by tests before Run, is the response cache's
	// clock, so that a test decides when resend tokens refill.
	resendClock func() time.Time
}

// resendNow is the response cache's time.
func (e *Engine) resendNow() time.Time {
	if e.resendClock != nil {
		return e.resendClock()
	}
	return time.Now()
}

// initKey finds a responder's half-open SA for a retransmitted IKE_SA_INIT.
type initKey struct {
	remote netip.AddrPort
	spii   uint64
}

// New opens the UDP sockets in the calling thread's network namespace and
// returns an engine that serves them once Run is called.
func New(opts Options) (*Engine, error) {
	e := newEngine(opts)
	addrs := e.opts.Listen
	if len(addrs) == 0 {
		addrs = []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()}
	}
	for _, a := range addrs {
		for _, p := range []struct {
			port int
			natt bool
		}{{e.opts.Port, false}, {e.opts.NATPort, true}} {
			s, err := listenUDP(a, p.port, p.natt, e.opts.KernelESPInUDP, e.opts.SocketBuffer)
			if err != nil {
				// A host without IPv6 still serves IPv4 on the wildcard.
				if len(e.opts.Listen) == 0 && a.Is6() {
					e.log.Debug("no IPv6 IKE socket", zap.Error(err))
					continue
				}
				e.closeSockets()
				return nil, err
			}
			e.socks = append(e.socks, s)
		}
	}
	e.probe = newRouteProbe()
	return e, nil
}

// newEngine builds an engine without sockets (tests and fuzzing feed its
// packet handler directly).
func newEngine(opts Options) *Engine {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Port == 0 {
		opts.Port = DefaultPort
	}
	if opts.NATPort == 0 {
		opts.NATPort = DefaultNATPort
	}
	if opts.CookieThreshold <= 0 {
		opts.CookieThreshold = DefaultCookieThreshold
	}
	if opts.HalfOpenLimit <= 0 {
		opts.HalfOpenLimit = 10 * opts.CookieThreshold
	}
	// A full table must demand COOKIEs, or its evictions would be open
	// to spoofed sources.
	opts.HalfOpenLimit = max(opts.HalfOpenLimit, opts.CookieThreshold)
	if opts.SocketBuffer == 0 {
		opts.SocketBuffer = DefaultSocketBuffer
	}
	if opts.HalfOpenPerSource <= 0 {
		opts.HalfOpenPerSource = DefaultHalfOpenPerSource
	}
	if opts.InitRateLimit == 0 {
		opts.InitRateLimit = DefaultInitRateLimit
	}
	if opts.RetransmitTimeout <= 0 {
		opts.RetransmitTimeout = DefaultRetransmitTimeout
	}
	if opts.RetransmitBase < 1 {
		opts.RetransmitBase = DefaultRetransmitBase
	}
	if opts.RetransmitTries <= 0 {
		opts.RetransmitTries = DefaultRetransmitTries
	}
	if opts.HalfOpenTimeout <= 0 {
		opts.HalfOpenTimeout = DefaultHalfOpenTimeout
	}
	if opts.KeepaliveInterval == 0 {
		opts.KeepaliveInterval = DefaultKeepaliveInterval
	}
	if opts.RekeyGrace <= 0 {
		opts.RekeyGrace = DefaultRekeyGrace
	}
	if opts.FragmentSize <= 0 {
		opts.FragmentSize = DefaultFragmentSize
	}
	if opts.QuietPeerCheck <= 0 {
		opts.QuietPeerCheck = DefaultQuietPeerCheck
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Engine{
		opts: opts, log: opts.Logger.Named("ike"),
		cookies: newCookieJar(time.Now), stats: newCounters(), initRate: newInitRateGuard(),
		ctx: ctx, cancel: cancel,
		sas: map[uint64]*ikeSA{}, initIdx: map[initKey]*ikeSA{}, logLimit: newLogLimiter(),
		contacts: map[contactKey]int{}, contactAddrs: map[contactAddrKey]int{},
		liveChildren: map[string]int{}, restarting: map[string]*restart{}, acquiring: map[string]bool{},
		lost:  map[string]*lostChild{},
		probe: &routeProbe{fd4: -1, fd6: -1},
	}
}

func (e *Engine) closeSockets() {
	for _, s := range e.socks {
		_ = s.conn.Close()
	}
}

// Run serves the sockets until ctx is done, then deletes every established
// IKE SA (an INFORMATIONAL Delete, best effort and bounded), removes their
// CHILD SAs through the Installer and closes the sockets.
func (e *Engine) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, s := range e.socks {
		wg.Go(func() { e.readLoop(s) })
	}
	// One ticker for all SAs, not a timer per SA: its walk costs a few
	// lock operations per SA every quarter interval.
	kaDone := make(chan struct{})
	go func() {
		defer close(kaDone)
		if e.opts.KeepaliveInterval > 0 {
			e.keepaliveLoop(ctx)
		}
	}()
	rlDone := make(chan struct{})
	go func() {
		defer close(rlDone)
		if e.opts.SetInitRateLimit != nil {
			e.initRate.run(ctx, e, e.opts.SetInitRateLimit)
		}
	}()
	<-ctx.Done()
	<-rlDone
	// Keepalives end before the Deletes go out, so none races with the
	// shutdown or with the closing of the sockets.
	<-kaDone
	e.shutdown()
	e.closeSockets()
	wg.Wait()
	e.probe.close()
	e.cancel()
	return nil
}

func (e *Engine) readLoop(s *udpSocket) {
	buf := make([]byte, maxDatagram)
	oob := make([]byte, 128)
	for {
		n, from, local, err := s.read(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			e.log.Debug("ike socket read", zap.Error(err))
			continue
		}
		e.handlePacket(buf[:n], from, local, s.natt)
	}
}

func (e *Engine) conn(name string) *Conn {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range e.conns {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// connLive reports whether c is still part of the configuration (SetConns
// may have replaced it since an SA picked it).
func (e *Engine) connLive(c *Conn) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Contains(e.conns, c)
}

// candidates returns the connections a responder may use for a request from
// remote to local: exact remote address matches first, then %any ones.
func (e *Engine) candidates(local, remote netip.Addr) []*Conn {
	e.mu.Lock()
	defer e.mu.Unlock()
	var exact, anyc []*Conn
	for _, c := range e.conns {
		if c.LocalAddr.IsValid() && !c.LocalAddr.IsUnspecified() && c.LocalAddr.Unmap() != local.Unmap() {
			continue
		}
		switch {
		case c.RemoteAddr.IsValid() && !c.RemoteAddr.IsUnspecified():
			if c.RemoteAddr.Unmap() == remote.Unmap() {
				exact = append(exact, c)
			}
		default:
			anyc = append(anyc, c)
		}
	}
	return append(exact, anyc...)
}

// Initiate establishes connection conn: IKE_SA_INIT, IKE_AUTH and its first
// CHILD SA. It returns once the SAs are up or the attempt failed; the error
// names the cause (a notification from the peer, a timeout, ...). When only
// the CHILD SA fails the IKE SA stays established and the error says so.
func (e *Engine) Initiate(ctx context.Context, conn string) error {
	c := e.conn(conn)
	if c == nil {
		return fmt.Errorf("initiate %q: no such connection", conn)
	}
	if !c.RemoteAddr.IsValid() || c.RemoteAddr.IsUnspecified() {
		return fmt.Errorf("initiate %q: remote address is %%any, responder only", conn)
	}
	if len(c.IKEProposals) == 0 || len(c.IKEProposals[0].KE) == 0 {
		return fmt.Errorf("initiate %q: no IKE proposal with a key exchange", conn)
	}
	sa, err := e.newInitiatorSA(c)
	if err != nil {
		return fmt.Errorf("initiate %q: %w", conn, err)
	}
	sa.mu.Lock()
	err = sa.startInit()
	if err != nil {
		sa.remove(err)
	}
	sa.mu.Unlock()
	if err != nil {
		return fmt.Errorf("initiate %q: %w", conn, err)
	}
	select {
	case err := <-sa.done:
		return err
	case <-ctx.Done():
		sa.mu.Lock()
		if sa.state != stateEstablished {
			sa.fail(ctx.Err())
		}
		sa.mu.Unlock()
		// The SA may have finished just now; prefer its result.
		select {
		case err := <-sa.done:
			return err
		default:
			return fmt.Errorf("initiate %q: %w", conn, ctx.Err())
		}
	}
}

// SAs lists the IKE SAs.
func (e *Engine) SAs() []IKESAInfo {
	e.mu.Lock()
	all := make([]*ikeSA, 0, len(e.sas))
	for _, sa := range e.sas {
		all = append(all, sa)
	}
	e.mu.Unlock()
	out := make([]IKESAInfo, 0, len(all))
	for _, sa := range all {
		sa.mu.Lock()
		if !sa.gone {
			out = append(out, sa.info())
		}
		sa.mu.Unlock()
	}

	slices.SortFunc(out, func(a, b IKESAInfo) int {
		if a.Conn != b.Conn {
			if a.Conn < b.Conn {
				return -1
			}
			return 1
		}
		return a.Established.Compare(b.Established)
	})
	// A lost child shows under its connection's newest established IKE
	// SA, the one that is to bring it back.
	e.mu.Lock()
	shown := map[string]bool{}
	for i := len(out) - 1; i >= 0; i-- {
		if out[i].State == stateEstablished.String() && !shown[out[i].Conn] {
			shown[out[i].Conn] = true
			out[i].Children = append(out[i].Children, e.lostInfoLocked(out[i].Conn)...)
		}
	}
	e.mu.Unlock()
	return out
}

// Stats returns a snapshot of the counters.
func (e *Engine) Stats() Stats {
	s := e.stats.snapshot()
	e.mu.Lock()
	s.HalfOpen = e.halfOpen.len()
	s.IKESAs = len(e.sas)
	e.mu.Unlock()
	return s
}

// newSPILocked returns a fresh, non-zero SPI not in use (e.mu held); the
// caller registers it.
func (e *Engine) newSPILocked() uint64 {
	for {
		var b [8]byte
		_, _ = rand.Read(b[:])
		spi := binary.BigEndian.Uint64(b[:])
		if spi != 0 && e.sas[spi] == nil {
			return spi
		}
	}
}

// transmit sends an already framed datagram (with the non-ESP marker when
// it goes over the NAT-T port) from local to remote. Failures are logged
// at debug level (retransmission or the next keepalive deals with them);
// the error is for callers that count what left.
func (e *Engine) transmit(local, remote netip.AddrPort, b []byte) error {
	natt := int(local.Port()) == e.opts.NATPort
	port := e.opts.Port
	if natt {
		port = e.opts.NATPort
	}
	v6 := remote.Addr().Is6() && !remote.Addr().Is4In6()
	var s *udpSocket
	for _, c := range e.socks {
		if int(c.local.Port()) != port || c.v6 != v6 {
			continue
		}
		if c.wildcard || c.local.Addr() == local.Addr().Unmap() || !local.Addr().IsValid() {
			s = c
			break
		}
	}
	if s == nil {
		e.log.Debug("no socket to send from", zap.Stringer("local", local), zap.Stringer("remote", remote))
		return errNoSocket
	}
	if err := s.write(b, local.Addr(), remote); err != nil {
		e.log.Debug("ike send", zap.Stringer("remote", remote), zap.Error(err))
		return err
	}
	return nil
}

var errNoSocket = errors.New("no IKE socket for this local address and port")

// frame prefixes the non-ESP marker for the NAT-T port (RFC 3948 2.2).
func frame(natt bool, ike []byte) []byte {
	if !natt {
		return ike
	}
	out := make([]byte, 4+len(ike))
	copy(out[4:], ike)
	return out
}

// rateLimited reports whether a log line of kind key must be left out;
// lines caused by unauthenticated packets go through it so that a flood
// cannot flood the log (see logLimiter). A line that may be written is
// preceded by the count of those left out before it.
func (e *Engine) rateLimited(key string) bool {
	now := time.Now()
	ok, n, since := e.logLimit.allow(key, now)
	if ok && n > 0 {
		e.log.Warn("similar log lines suppressed (a flood of unauthenticated messages?)",
			zap.Int("suppressed", n), zap.Duration("over", now.Sub(since).Round(time.Millisecond)))
	}
	return !ok
}

// handlePacket processes one datagram received on the IKE port (natt false)
// or the NAT-T port.
func (e *Engine) handlePacket(b []byte, from, local netip.AddrPort, natt bool) {
	if e.rxHook != nil {
		e.rxHook(b, from, local, natt)
	}
	if natt {
		if isNATKeepalive(b) {
			// Nothing to answer (RFC 3948 2.3); counted apart for the
			// operator, and as non_ike as it always was.
			e.stats.keepaliveIn()
			return
		}
		var ok bool
		if b, ok = message.StripNonESPMarker(b); !ok {
			e.stats.drop(DropNonIKE)
			return
		}
	}
	h, err := message.DecodeHeader(b)
	if err != nil {
		e.stats.drop(DropMalformed)
		return
	}
	if e.dropHook != nil && e.dropHook(h) {
		return
	}
	if h.Exchange == message.ExchangeIKESAInit && !h.IsResponse() && h.SPIr == 0 {
		// RFC 7296 3.1: the initiator's SPI is never zero.
		if !h.IsInitiator() || h.SPIi == 0 {
			e.stats.drop(DropMalformed)
			return
		}
		e.handleInitRequest(b, h, from, local, natt)
		return
	}
	// The I flag marks the original initiator's messages: we are then the
	// original responder and our SPI is SPIr.
	ours, theirs := h.SPIi, h.SPIr
	if h.IsInitiator() {
		ours, theirs = h.SPIr, h.SPIi
	}
	e.mu.Lock()
	sa := e.sas[ours]
	e.mu.Unlock()
	if sa == nil {
		e.stats.drop(DropUnknownSPI)
		return
	}
	sa.mu.Lock()
	defer sa.mu.Unlock()
	if sa.gone || sa.initiator == h.IsInitiator() {
		e.stats.drop(DropUnknownSPI)
		return
	}
	if sa.peerSPI() != theirs && !(sa.initiator && sa.spir == 0 && h.Exchange == message.ExchangeIKESAInit) {
		e.stats.drop(DropUnknownSPI)
		return
	}
	pk := packet{b: b, h: h, from: from, local: local, natt: natt}
	if h.IsResponse() {
		sa.handleResponse(pk)
	} else {
		sa.handleRequest(pk)
	}
}

type packet struct {
	b           []byte
	h           message.Header
	from, local netip.AddrPort
	natt        bool
}
