// Package offload is the boundary between the control plane and the data
// planes. The IKE layer negotiates SAs; control translates them into the
// value types here and hands them to a Dataplane, which may be xdpsec's own
// AF_XDP engine, the kernel's XFRM, a NIC, or nothing at all (mode none).
package offload

import (
	"context"
	"fmt"
	"net/netip"
	"time"
)

// Direction of an SA or policy, seen from this gateway.
type Direction uint8

const (
	// In is traffic arriving from the peer (decrypted here).
	In Direction = iota + 1
	// Out is traffic leaving towards the peer (encrypted here).
	Out
)

func (d Direction) String() string {
	switch d {
	case In:
		return "in"
	case Out:
		return "out"
	default:
		return fmt.Sprintf("direction(%d)", uint8(d))
	}
}

// Mode is the ESP mode of an SA.
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
	default:
		return fmt.Sprintf("mode(%d)", uint8(m))
	}
}

// IANA IKEv2 transform IDs (RFC 7296 3.3.2) that SA.Encr and SA.Integ
// carry for the algorithms the data planes implement.
const (
	EncrAESCBC           = 12
	EncrAESGCM16         = 20
	EncrChaCha20Poly1305 = 28
	IntegNone            = 0
	IntegHMACSHA256_128  = 12
	IntegHMACSHA384_192  = 13
	IntegHMACSHA512_256  = 14
)

// Key is keying material. It never prints, so an SA can be logged whole.
type Key []byte

func (Key) String() string   { return "<redacted>" }
func (Key) GoString() string { return "offload.Key(<redacted>)" }

// Encap describes UDP encapsulation (RFC 3948) of an SA's ESP packets.
type Encap struct {
	SrcPort, DstPort uint16
}

// Lifetime bounds an SA. Zero fields mean no limit. Soft limits raise an
// event so the control plane rekeys; hard limits make the data plane stop
// using the SA.
type Lifetime struct {
	SoftBytes, HardBytes     uint64
	SoftPackets, HardPackets uint64
	SoftTime, HardTime       time.Duration
}

// SA is one direction of a negotiated CHILD SA: everything a data plane
// needs to process its packets.
type SA struct {
	// Conn and Child name the configuration the SA belongs to; counters are
	// kept per conn/child lineage so they survive rekeys.
	Conn, Child string
	SPI         uint32
	Dir         Direction
	// Encr, Integ are IANA IKEv2 transform IDs (ENCR_AES_GCM_16 = 20, ...);
	// KeyBits is the cipher's key length without the salt.
	Encr     uint16
	KeyBits  int
	Integ    uint16
	ESN      bool
	EncrKey  Key // includes the 4-byte salt for AEAD transforms
	IntegKey Key
	Mode     Mode
	// Src and Dst are the outer addresses as they appear on this SA's
	// packets (for In: Src is the peer).
	Src, Dst netip.Addr
	Encap    *Encap
	// LocalTS and RemoteTS are the negotiated traffic selectors; inbound
	// packets must match them after decryption (RFC 4301).
	LocalTS, RemoteTS []netip.Prefix
	ReplayWindow      int
	Lifetime          Lifetime
}

// Action is what a policy does with matching plaintext traffic.
type Action uint8

const (
	Protect Action = iota + 1
	Bypass
	Discard
)

func (a Action) String() string {
	switch a {
	case Protect:
		return "protect"
	case Bypass:
		return "bypass"
	case Discard:
		return "discard"
	default:
		return fmt.Sprintf("action(%d)", uint8(a))
	}
}

// Policy is a security policy database entry. Outbound protect policies
// name the SA that carries their traffic; inbound ones say which SA
// traffic from Src to Dst must have arrived through.
type Policy struct {
	Conn, Child string
	Dir         Direction
	Src, Dst    netip.Prefix
	// Proto is an IP protocol number, 0 for any.
	Proto  uint8
	Action Action
	// SPI of the SA for Protect (0 = trap: no SA yet; matching traffic
	// raises an Acquire event and is dropped).
	SPI uint32
	// Tunnel endpoints for Protect in tunnel mode.
	TunnelSrc, TunnelDst netip.Addr
	Mode                 Mode
}

// PolicyKey identifies a policy the way the data planes match it:
// direction, selectors (masked) and protocol. Adding a policy with the key
// of an installed one replaces it.
type PolicyKey struct {
	Dir      Direction
	Src, Dst netip.Prefix
	Proto    uint8
}

// Key returns the policy's key.
func (p Policy) Key() PolicyKey {
	return PolicyKey{Dir: p.Dir, Src: p.Src.Masked(), Dst: p.Dst.Masked(), Proto: p.Proto}
}

// SACounters are the traffic counters of one installed SA.
type SACounters struct {
	SPI               uint32
	Dir               Direction
	Bytes, Packets    uint64
	LastUsed          time.Time
	OffloadInEffect   string // "" for software; NIC offload type when a NIC does the work
	ReplayDrops       uint64
	IntegrityFailures uint64
}

// ChildCounters are the traffic totals of one connection/child/direction
// lineage: every SA the child has had in that direction, deleted ones
// included, so the totals never go back at a rekey.
type ChildCounters struct {
	Conn, Child    string
	Dir            Direction
	Bytes, Packets uint64
}

// Stats is a snapshot of a data plane's counters.
type Stats struct {
	Mode string
	SAs  []SACounters
	// Children are the lineage totals, sorted by conn, child and
	// direction; data planes that count nothing leave it empty.
	Children []ChildCounters
	// Drops counts packets dropped by reason: unknown_spi, replay, auth,
	// selector, malformed, encap, address, no_route, mtu.
	Drops map[string]uint64
}

// EventKind says what a data plane reports.
type EventKind uint8

const (
	// SoftExpire: a soft lifetime or the sequence-number limit is near;
	// the control plane should rekey.
	SoftExpire EventKind = iota + 1
	// HardExpire: the SA is no longer used.
	HardExpire
	// Acquire: traffic hit a trap policy; the control plane should
	// negotiate the child.
	Acquire
	// PeerMoved: the peer's outer address or port of an SA changed (NAT
	// rebinding), learnt from authenticated ESP; Event.Peer is the new one.
	PeerMoved
)

// Event is something a data plane asks the control plane to act on.
type Event struct {
	Kind        EventKind
	Conn, Child string
	SPI         uint32
	Dir         Direction
	// Src, Dst describe the packet that triggered an Acquire.
	Src, Dst netip.Addr
	// Peer is the peer's new outer address and port (PeerMoved only).
	Peer netip.AddrPort
}

// CheckSuperseded applies DelPolicy's rule to a request p and the
// installed policy cur with the same direction and selectors: nil when
// cur may be removed, an ErrNotFound error when a newer SA (or, for a
// trap, any SA) has taken the policy over since.
func CheckSuperseded(p, cur Policy) error {
	switch {
	case p.SPI != 0 && cur.SPI != p.SPI:
		// A rekey moved the policy to a newer SA; deleting the old
		// child must not take the new one's policy with it.
		return fmt.Errorf("del policy %s %s -> %s: spi %08x superseded by %08x: %w",
			p.Dir, p.Src, p.Dst, p.SPI, cur.SPI, ErrNotFound)
	case p.SPI == 0 && p.Action == Protect && (cur.Action != Protect || cur.SPI != 0):
		// An SA replaced the trap: removing the trap must leave the
		// SA's policy alone.
		return fmt.Errorf("del policy %s %s -> %s: trap superseded by %s %08x: %w",
			p.Dir, p.Src, p.Dst, cur.Action, cur.SPI, ErrNotFound)
	}
	return nil
}

// Dataplane is implemented by every data plane. Calls are safe for
// concurrent use. AddSA for a direction must be complete before the
// matching policy steers traffic to it; implementations document any
// ordering they need beyond that.
type Dataplane interface {
	// Name is the data plane mode ("none", "afxdp", "xfrm", ...).
	Name() string
	// AllocSPI reserves an unused inbound SPI (>= 256, RFC 4303 2.1).
	AllocSPI(ctx context.Context) (uint32, error)
	// ReleaseSPI returns a reserved SPI that was never installed.
	ReleaseSPI(ctx context.Context, spi uint32) error
	AddSA(ctx context.Context, sa SA) error
	DelSA(ctx context.Context, spi uint32, dir Direction) error
	// AddPolicy adds a policy or replaces the one with the same
	// direction and selectors (that is how a trap, or the policy of a
	// rekeyed child, moves to a new SA).
	AddPolicy(ctx context.Context, p Policy) error
	// DelPolicy removes the policy with p's direction and selectors, but
	// only while it is still the one p describes, so that deleting an
	// old SA, or a trap, never takes a successor's policy with it:
	//   - p.SPI != 0: only while the policy names that SPI;
	//   - p.Action Protect with SPI 0: only while the policy is still a
	//     trap (Protect, SPI 0);
	//   - otherwise (bypass, discard, or no action given): whatever the
	//     policy is.
	// A policy that is gone or superseded gives ErrNotFound.
	DelPolicy(ctx context.Context, p Policy) error
	Stats(ctx context.Context) (Stats, error)
	// Events delivers data-plane events; it is closed by Close.
	Events() <-chan Event
	// Close removes everything the data plane installed.
	Close() error
}
