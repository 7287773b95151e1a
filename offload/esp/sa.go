package esp

import (
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Mode is the IPsec mode of an SA.
type Mode uint8

const (
	Tunnel Mode = iota + 1
	Transport
)

func (m Mode) String() string {
	switch m {
	case Tunnel:
		return "tunnel"
	case Transport:
		return "transport"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// Lifetime holds the volume limits of an SA; 0 means no limit. Bytes count
// the inner packets. Limits are checked after each packet, so several
// workers sharing an SA may pass a few packets beyond a hard limit.
type Lifetime struct {
	SoftBytes, HardBytes     uint64
	SoftPackets, HardPackets uint64
}

// EventKind says why the data plane asks the control plane to act.
type EventKind uint8

const (
	// EventSoft: a soft lifetime was reached; rekey.
	EventSoft EventKind = iota + 1
	// EventHard: a hard lifetime was reached; the SA drops every packet.
	EventHard
	// EventSeqOverflow: the outbound sequence numbers are exhausted
	// (RFC 4303 3.3.3); the SA drops every packet and must be rekeyed.
	EventSeqOverflow
	// EventPeerMoved: an accepted packet of a UDP-encapsulated SA, the
	// newest so far, came from another outer address or port than the
	// current peer (NAT rebinding); Event.Peer is the new one.
	EventPeerMoved
)

func (k EventKind) String() string {
	switch k {
	case EventSoft:
		return "soft"
	case EventHard:
		return "hard"
	case EventSeqOverflow:
		return "seq_overflow"
	case EventPeerMoved:
		return "peer_moved"
	}
	return fmt.Sprintf("event(%d)", uint8(k))
}

// Event is raised at most once per kind and SA, except EventPeerMoved,
// which is raised once per change of the peer.
type Event struct {
	SPI  uint32
	Kind EventKind
	// Peer is the new outer address and UDP port (EventPeerMoved only).
	Peer netip.AddrPort
}

// Config describes an SA. Keys are the raw KEYMAT slices: for the AEAD
// ciphers EncKey ends with the 4-byte salt.
type Config struct {
	SPI       uint32
	Cipher    Cipher
	Integrity Integrity
	EncKey    []byte
	AuthKey   []byte
	Mode      Mode
	// ESN enables 64-bit extended sequence numbers (RFC 4303 2.2.1).
	ESN bool
	// ReplayWindow is the anti-replay window of an inbound SA in packets,
	// up to MaxReplayWindow; 0 means DefaultReplayWindow.
	ReplayWindow int
	// Local and Remote are the SA's outer addresses, both of one family:
	// ours and the peer's. Encrypt sends from Local to Remote in tunnel
	// mode (transport mode keeps the packet's own header). Decrypt drops
	// ESP whose outer destination is not Local, and raw ESP whose outer
	// source is not Remote (DropAddress). Tunnel mode needs them; in
	// transport mode both are set or neither, and without them Decrypt
	// checks no address.
	Local, Remote netip.Addr
	// EncapSrcPort and EncapDstPort select ESP-in-UDP (RFC 3948) when
	// non-zero; both are set or neither. EncapDstPort is the peer's port.
	// Decrypt drops raw ESP for such an SA and ESP-in-UDP for one without
	// them (DropEncap).
	EncapSrcPort, EncapDstPort uint16
	// TTL is the outer TTL or hop limit in tunnel mode; 0 means 64.
	TTL uint8
	// LocalTS and RemoteTS are the negotiated traffic selectors. A
	// decrypted packet must come from RemoteTS and go to LocalTS; an empty
	// list matches nothing.
	LocalTS, RemoteTS []Selector
	Lifetime          Lifetime
	// Notify receives lifetime, overflow and peer events. It is called on
	// the data path and must not block; nil discards events.
	Notify func(Event)
}

// SA is one unidirectional ESP security association. Its methods are safe
// for concurrent use.
type SA struct {
	spi    uint32
	mode   Mode
	esn    bool
	t      *transform
	addrs  bool // local and remote are set
	v6     bool // their family
	local  [16]byte
	remote [16]byte
	// addrSumV4 is the IPv4 addresses' share of the outer header's
	// checksum, the same for every packet.
	addrSumV4 uint64
	encap     bool
	// learns is set for a UDP-encapsulated SA with addresses: it follows
	// the peer through NAT rebinding.
	learns     bool
	peer       atomic.Pointer[netip.AddrPort]
	encapSrc   uint16
	encapDst   uint16
	ttl        uint8
	localTS    []rule
	remoteTS   []rule
	deepTS     bool // some selector has a protocol or ports
	life       Lifetime
	notify     func(Event)
	maxSeq     uint64
	replay     *replayWindow
	cbcPool    sync.Pool
	seqOut     atomic.Uint64
	packetsIn  atomic.Uint64
	bytesIn    atomic.Uint64
	packetsOut atomic.Uint64
	bytesOut   atomic.Uint64
	drops      dropCounters
	dead       atomic.Bool
	fired      [EventSeqOverflow + 1]atomic.Bool
}

// NewSA validates c and builds an SA. The keys are copied.
func NewSA(c Config) (*SA, error) {
	t, err := newTransform(c.Cipher, c.Integrity, c.EncKey, c.AuthKey)
	if err != nil {
		return nil, fmt.Errorf("sa %#x: %w", c.SPI, err)
	}
	if c.SPI < 256 {
		// RFC 4303 2.1: 1-255 are reserved by IANA, 0 is never sent.
		return nil, fmt.Errorf("sa %#x: reserved spi", c.SPI)
	}
	if c.Mode != Tunnel && c.Mode != Transport {
		return nil, fmt.Errorf("sa %#x: unknown mode %v", c.SPI, c.Mode)
	}
	if (c.EncapSrcPort == 0) != (c.EncapDstPort == 0) {
		return nil, fmt.Errorf("sa %#x: encapsulation needs both ports", c.SPI)
	}
	w := c.ReplayWindow
	if w == 0 {
		w = DefaultReplayWindow
	}
	if w < 0 || w > MaxReplayWindow {
		return nil, fmt.Errorf("sa %#x: replay window %d out of range 1-%d", c.SPI, w, MaxReplayWindow)
	}
	sa := &SA{
		spi:      c.SPI,
		mode:     c.Mode,
		esn:      c.ESN,
		t:        t,
		encap:    c.EncapSrcPort != 0,
		encapSrc: c.EncapSrcPort,
		encapDst: c.EncapDstPort,
		ttl:      c.TTL,
		life:     c.Lifetime,
		notify:   c.Notify,
		maxSeq:   math.MaxUint32,
		replay:   newReplayWindow(w),
	}
	if sa.localTS, err = compileSelectors(c.LocalTS); err != nil {
		return nil, fmt.Errorf("sa %#x: local: %w", c.SPI, err)
	}
	if sa.remoteTS, err = compileSelectors(c.RemoteTS); err != nil {
		return nil, fmt.Errorf("sa %#x: remote: %w", c.SPI, err)
	}
	sa.deepTS = deep(sa.localTS, sa.remoteTS)
	if sa.ttl == 0 {
		sa.ttl = 64
	}
	if c.ESN {
		sa.maxSeq = math.MaxUint64
	}
	if err := sa.setAddrs(c); err != nil {
		return nil, err
	}
	if t.block != nil {
		// The first state proves the cipher's modes can take a new IV; the
		// pool's later ones are built the same way and cannot fail.
		s, err := newCBCState(t)
		if err != nil {
			return nil, fmt.Errorf("sa %#x: %w", c.SPI, err)
		}
		sa.cbcPool.New = func() any { s, _ := newCBCState(t); return s }
		sa.cbcPool.Put(s)
	}
	return sa, nil
}

// setAddrs stores the outer addresses and the peer they start with.
func (sa *SA) setAddrs(c Config) error {
	if !c.Local.IsValid() && !c.Remote.IsValid() && c.Mode == Transport {
		sa.peer.Store(&netip.AddrPort{})
		return nil
	}
	if !c.Local.IsValid() || !c.Remote.IsValid() || c.Local.Is4() != c.Remote.Is4() {
		return fmt.Errorf("sa %#x: needs local and remote addresses of one family", c.SPI)
	}
	sa.addrs, sa.v6 = true, !c.Local.Is4()
	if sa.v6 {
		sa.local, sa.remote = c.Local.As16(), c.Remote.As16()
	} else {
		l, r := c.Local.As4(), c.Remote.As4()
		copy(sa.local[:], l[:])
		copy(sa.remote[:], r[:])
		sa.addrSumV4 = uint64(binary.BigEndian.Uint32(l[:])) + uint64(binary.BigEndian.Uint32(r[:]))
	}
	// Built from the stored bytes, without a zone, so that it compares
	// equal to the source addresses Decrypt reads.
	remote := netip.AddrFrom16(sa.remote)
	if !sa.v6 {
		remote = netip.AddrFrom4([4]byte(sa.remote[:4]))
	}
	peer := netip.AddrPortFrom(remote, c.EncapDstPort)
	sa.peer.Store(&peer)
	sa.learns = sa.encap
	return nil
}

// SPI returns the SA's SPI.
func (sa *SA) SPI() uint32 { return sa.spi }

// Mode returns the SA's mode.
func (sa *SA) Mode() Mode { return sa.mode }

// MaxHeadroom and MaxTailroom are the room any SA needs around a packet
// for Encrypt: outer IPv6 header, UDP header, ESP header and a 16-byte IV in
// front; up to 15 bytes of padding, the pad length, next header and a
// 32-byte ICV behind.
const (
	MaxHeadroom = ipv6HeaderLen + udpHeaderLen + espHeaderLen + 16
	MaxTailroom = 15 + 2 + 32
)

// Headroom is the room Encrypt needs in front of a packet for this SA.
func (sa *SA) Headroom() int {
	n := espHeaderLen + sa.t.ivLen
	if sa.encap {
		n += udpHeaderLen
	}
	if sa.mode == Tunnel {
		n += ipv4HeaderLen
		if sa.v6 {
			n += ipv6HeaderLen - ipv4HeaderLen
		}
	}
	return n
}

// Tailroom is the room Encrypt needs behind a packet for this SA.
func (sa *SA) Tailroom() int { return sa.t.align - 1 + 2 + sa.t.icvLen }

// Stats is a snapshot of an SA's counters.
type Stats struct {
	PacketsIn, BytesIn   uint64
	PacketsOut, BytesOut uint64
	Drops                DropCounts
}

// Stats returns the SA's counters.
func (sa *SA) Stats() Stats {
	return Stats{
		PacketsIn:  sa.packetsIn.Load(),
		BytesIn:    sa.bytesIn.Load(),
		PacketsOut: sa.packetsOut.Load(),
		BytesOut:   sa.bytesOut.Load(),
		Drops:      sa.drops.snapshot(),
	}
}

// Peer returns the peer's outer address and, for a UDP-encapsulated SA,
// its port: Config.Remote and EncapDstPort until an authenticated packet
// shows that a NAT rebound them. It is the zero AddrPort for an SA
// without addresses.
func (sa *SA) Peer() netip.AddrPort { return *sa.peer.Load() }

// Expired reports whether the SA has stopped taking packets.
func (sa *SA) Expired() bool { return sa.dead.Load() }

func (sa *SA) drop(v Verdict) Verdict {
	sa.drops[v].Add(1)
	return v
}

func (sa *SA) raise(k EventKind) {
	if sa.fired[k].CompareAndSwap(false, true) && sa.notify != nil {
		sa.notify(Event{SPI: sa.spi, Kind: k})
	}
}

// account adds one packet of n bytes to a direction's counters and checks
// the lifetimes against the total.
func (sa *SA) account(packets, bytes *atomic.Uint64, n int) {
	p := packets.Add(1)
	b := bytes.Add(uint64(n))
	l := &sa.life
	if *l == (Lifetime{}) {
		return
	}
	if (l.HardPackets != 0 && p >= l.HardPackets) || (l.HardBytes != 0 && b >= l.HardBytes) {
		sa.dead.Store(true)
		sa.raise(EventHard)
	}
	if (l.SoftPackets != 0 && p >= l.SoftPackets) || (l.SoftBytes != 0 && b >= l.SoftBytes) {
		sa.raise(EventSoft)
	}
}

// ReserveSeq allocates n consecutive outbound sequence numbers in one
// atomic step and returns the first, for a caller that numbers packets
// before it encrypts them (EncryptSeq), so that several workers can seal
// one SA's packets at once and still send them in order. The rules are
// Encrypt's: an expired SA gives none, and a range that would pass the end
// of the sequence space (2^32-1 without ESN) gives none and stops the SA,
// raising EventSeqOverflow once. When it reports false, the n packets it
// was asked for are counted as dropped (DropExpired), as Encrypt counts a
// packet it refuses. n must be positive.
func (sa *SA) ReserveSeq(n int) (first uint64, ok bool) {
	if n <= 0 {
		return 0, false
	}
	if !sa.dead.Load() {
		if first, ok = sa.nextSeq(uint64(n)); ok {
			return first, true
		}
	}
	sa.drops[DropExpired].Add(uint64(n))
	return 0, false
}

// nextSeq allocates n consecutive outbound sequence numbers and returns the
// first, or false when they would pass the end of the sequence space, in
// which case the SA stops.
func (sa *SA) nextSeq(n uint64) (uint64, bool) {
	last := sa.seqOut.Add(n)
	if last < n || last > sa.maxSeq {
		sa.dead.Store(true)
		sa.raise(EventSeqOverflow)
		return 0, false
	}
	return last - n + 1, true
}

// cbcState is the mutable per-operation state of AES-CBC + HMAC; the SA
// keeps a pool of them so that workers never share one.
type cbcState struct {
	enc   cipher.BlockMode
	dec   cipher.BlockMode
	ivSet interface{ SetIV([]byte) }
	dvSet interface{ SetIV([]byte) }
	mac   hash.Hash
	sum   [64]byte
	hi    [4]byte
	// rnd is random bytes for IVs, fetched in bulk so that a packet costs
	// no system call.
	rnd [64 * 16]byte
	off int
}

var errNoSetIV = errors.New("cbc mode cannot set iv")

func newCBCState(t *transform) (*cbcState, error) {
	var zero [16]byte
	s := &cbcState{
		enc: cipher.NewCBCEncrypter(t.block, zero[:]),
		dec: cipher.NewCBCDecrypter(t.block, zero[:]),
		mac: hmac.New(t.integ.newHash(), t.authKey),
	}
	var ok bool
	if s.ivSet, ok = s.enc.(interface{ SetIV([]byte) }); !ok {
		return nil, errNoSetIV
	}
	if s.dvSet, ok = s.dec.(interface{ SetIV([]byte) }); !ok {
		return nil, errNoSetIV
	}
	s.off = len(s.rnd)
	return s, nil
}

// iv returns 16 fresh random bytes.
func (s *cbcState) iv() []byte {
	if s.off == len(s.rnd) {
		// crypto/rand.Read never fails on supported platforms (Go 1.24+).
		rand.Read(s.rnd[:])
		s.off = 0
	}
	b := s.rnd[s.off : s.off+16]
	s.off += 16
	return b
}
