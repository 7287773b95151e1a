// Package ike is xdpsec's IKEv2 (RFC 7296) state machine: the IKE_SA_INIT
// and IKE_AUTH exchanges in both roles with pre-shared key authentication,
// NAT detection and the float to UDP 4500 with NAT-T keepalives from the
// end behind the NAT, COOKIEs under load, INVALID_KE_PAYLOAD retries,
// retransmission and the responder's response cache; and the SA
// lifecycle: CREATE_CHILD_SA for additional CHILD SAs and for CHILD and IKE
// SA rekeys (make-before-break, collisions resolved), INFORMATIONAL
// deletes and liveness checks (DPD with its actions), INITIAL_CONTACT and
// on-demand CHILD SAs for trap policies.
//
// The design follows strongSwan's libcharon: every exchange is a list of
// phases (libcharon's tasks: key exchange, NAT detection, fragmentation
// support; authentication, INITIAL_CONTACT, the first CHILD SA; a CHILD
// SA's offer, REKEY_SA, an IKE rekey; Delete) that build and process their
// payloads in both roles (phase.go); our requests are tasks in one queue
// per IKE SA (window size 1), and whatever the data plane must do is
// behind the Installer interface. The package
// knows nothing of netlink, XDP or ESP packet processing.
//
// Who owns what:
//   - engine.go, socket.go: the Engine, its sockets and its maps of IKE SAs;
//     init.go, cookie.go, halfopen.go: IKE_SA_INIT and what guards it, with
//     its phases in initphases.go; natd.go: NAT detection; fragments.go:
//     RFC 7383 fragmentation.
//   - sa.go: an IKE SA's state and its CHILD SAs; messages.go its message
//     layer (message IDs, SK protection, retransmission, dispatch) over a
//     transport (transport.go), with respcache.go (the responder's cached
//     answers); tasks.go the queue of our requests, responders.go who
//     answers the peer's by exchange; payloads.go collects what a message
//     carries.
//   - authphases.go (IKE_AUTH's phases in both roles), auth.go (its
//     identities and AUTH), authenticator.go (how an identity is proved:
//     PSK today, behind the authenticator interface), child.go (the first
//     CHILD SA), createchild.go,
//     rekeychild.go, childphases.go, rekeyike.go (CREATE_CHILD_SA in both
//     roles), rekeyswitch.go (when a rekey responder moves to the new SA),
//     informational.go (Delete, liveness checks).
//   - lifecycle.go: timers, Acquire, Expire, Terminate, Rekey; dpd.go and
//     quietpeer.go notice dead peers; childloss.go brings lost children
//     back; reconf.go applies a new configuration; shutdown.go stops.
//
// Lock order: an ikeSA's mu may be held when taking the Engine's mu, never
// the other way round; the SAs' locks are taken one at a time.
package ike

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/xdpsec/xdpsec/ike/dn"
	"github.com/xdpsec/xdpsec/ike/message"
	"github.com/xdpsec/xdpsec/ike/proposal"
)

// Mode is a CHILD SA's IPsec mode.
type Mode uint8

// CHILD SA modes.
const (
	ModeTunnel Mode = iota
	ModeTransport
)

func (m Mode) String() string {
	if m == ModeTransport {
		return "TRANSPORT"
	}
	return "TUNNEL"
}

// Identity is an IKE identity as carried in IDi/IDr (RFC 7296 3.5): the ID
// type and the identification data exactly as on the wire.
type Identity struct {
	Type message.IDType
	Data []byte
}

// NewIdentity builds an identity from its configuration form. kind is one of
// "ipv4", "ipv6", "fqdn", "rfc822" and "dn"; a DN is written like
// "C=CH, O=xdpsec, CN=gw-a" and DER-encoded as strongSwan does (package
// ike/dn).
func NewIdentity(kind, value string) (Identity, error) {
	switch kind {
	case "ipv4", "ipv6":
		a, err := netip.ParseAddr(value)
		if err != nil {
			return Identity{}, fmt.Errorf("identity %q: %w", value, err)
		}
		if kind == "ipv4" && !a.Unmap().Is4() || kind == "ipv6" && !a.Is6() {
			return Identity{}, fmt.Errorf("identity %q is not an %s address", value, kind)
		}
		id := message.IDFromAddr(a, false)
		return Identity{Type: id.IDType, Data: id.Data}, nil
	case "fqdn":
		if value == "" {
			return Identity{}, fmt.Errorf("empty fqdn identity")
		}
		return Identity{Type: message.IDFQDN, Data: []byte(value)}, nil
	case "rfc822":
		if !strings.Contains(value, "@") {
			return Identity{}, fmt.Errorf("rfc822 identity %q has no @", value)
		}
		return Identity{Type: message.IDRFC822Addr, Data: []byte(value)}, nil
	case "dn":
		der, err := dn.Encode(value)
		if err != nil {
			return Identity{}, err
		}
		return Identity{Type: message.IDDERASN1DN, Data: der}, nil
	}
	return Identity{}, fmt.Errorf("unknown identity type %q (want ipv4, ipv6, fqdn, rfc822 or dn)", kind)
}

// IsZero reports whether the identity is unset (accept any).
func (id Identity) IsZero() bool { return id.Type == 0 && len(id.Data) == 0 }

// Equal reports whether two identities name the same peer, as peers
// compare them: FQDNs ignoring case, user@fqdn ignoring the domain's case,
// DNs by attribute type and value (dn.Equal: string types, case and
// insignificant spaces do not matter), addresses by their bytes.
func (id Identity) Equal(o Identity) bool {
	return id.Type == o.Type && id.key() == o.key()
}

// key is the identity's data in the form Equal compares.
func (id Identity) key() string {
	switch id.Type {
	case message.IDFQDN:
		return strings.ToLower(string(id.Data))
	case message.IDRFC822Addr:
		s := string(id.Data)
		if at := strings.LastIndexByte(s, '@'); at >= 0 {
			return s[:at] + strings.ToLower(s[at:])
		}
		return s
	case message.IDDERASN1DN:
		// Tagged, so that undecodable bytes never pass for a DN's form.
		if c, err := dn.Canonical(id.Data); err == nil {
			return "dn:" + c
		}
		return "raw:" + string(id.Data)
	}
	return string(id.Data)
}

// String renders the identity for logs.
func (id Identity) String() string {
	switch id.Type {
	case 0:
		return "%any"
	case message.IDIPv4Addr, message.IDIPv6Addr:
		if a, ok := netip.AddrFromSlice(id.Data); ok {
			return a.String()
		}
	case message.IDFQDN, message.IDRFC822Addr:
		return string(id.Data)
	case message.IDDERASN1DN:
		// strongSwan's rendering (DER order, ", "), as in its logs.
		if s, err := dn.String(id.Data); err == nil {
			return s
		}
	}
	return fmt.Sprintf("%s:%x", id.Type, id.Data)
}

func (id Identity) payload(responder bool) *message.ID {
	return &message.ID{Responder: responder, IDType: id.Type, Data: id.Data}
}

// Conn is one configured connection.
type Conn struct {
	Name       string
	LocalAddr  netip.Addr // zero: any local address
	RemoteAddr netip.Addr // zero: %any, responder only
	// RemoteID zero accepts any identity (meaningful with PSK for a %any
	// responder).
	LocalID, RemoteID Identity
	PSK               []byte
	IKEProposals      []proposal.Proposal
	// ForceEncap uses UDP 4500 from the start and fakes the NAT detection
	// source hash, as RFC 7296 2.23 allows, so the peer encapsulates too.
	ForceEncap bool
	// IKELifetime is the IKE SA's lifetime; it is rekeyed at about 90% of
	// it, brought forward by up to RekeyJitter (a fraction 0-1 of the
	// lifetime) so that the two ends do not rekey in step. Zero: never.
	IKELifetime time.Duration
	RekeyJitter float64
	// DPDDelay is the idle time after which an established IKE SA sends a
	// liveness check (an empty INFORMATIONAL); 0 disables DPD. DPDAction
	// says what happens when the peer is found dead (a request of ours
	// goes unanswered through all retransmissions).
	DPDDelay  time.Duration
	DPDAction DPDAction
	// StartAction trap installs trap policies for the children while no
	// CHILD SA is up; the data plane's Acquire then starts negotiation
	// (Engine.Acquire). StartStart is carried out by the caller (Initiate
	// at start-up); the engine only uses it to tell trap from the rest.
	StartAction StartAction
	// Children[0] is created in IKE_AUTH.
	Children []Child
}

// DPDAction is what happens to a connection whose peer is found dead.
type DPDAction uint8

// DPD actions, named as in swanctl.conf.
const (
	// DPDClear removes the SAs and leaves the connection down.
	DPDClear DPDAction = iota
	// DPDHold removes the SAs and installs trap policies, so the next
	// packet for the connection negotiates it again.
	DPDHold
	// DPDRestart removes the SAs and initiates the connection again,
	// retrying until the peer answers.
	DPDRestart
)

func (a DPDAction) String() string {
	switch a {
	case DPDHold:
		return "hold"
	case DPDRestart:
		return "restart"
	}
	return "clear"
}

// StartAction is what the gateway does with a connection on its own.
type StartAction uint8

// Start actions, named as in swanctl.conf.
const (
	StartNone StartAction = iota
	StartStart
	StartTrap
)

func (a StartAction) String() string {
	switch a {
	case StartStart:
		return "start"
	case StartTrap:
		return "trap"
	}
	return "none"
}

// Child is one configured CHILD SA.
type Child struct {
	Name              string
	LocalTS, RemoteTS []netip.Prefix
	Mode              Mode
	ESPProposals      []proposal.Proposal
	Lifetime          time.Duration
	ReplayWindow      int
}

// ChildSA is a negotiated CHILD SA pair: everything the data plane needs.
type ChildSA struct {
	Conn, Child      string
	IKESPIi, IKESPIr uint64
	// Initiator is true when we initiated the exchange that created it.
	Initiator bool
	// SPIIn is the SPI we allocated; SPIOut the peer's.
	SPIIn, SPIOut uint32
	// IANA transform IDs of the ESP transforms.
	Encr    uint16
	KeyBits int
	Integ   uint16
	ESN     bool
	// Encryption keys include the 4-byte salt of AEAD ciphers.
	EncrKeyIn, EncrKeyOut, IntegKeyIn, IntegKeyOut []byte
	Mode                                           Mode
	// Local and Remote are the outer addresses; with Encap the ports are
	// the UDP encapsulation ports (4500 or the NAT-mapped remote port).
	Local, Remote netip.AddrPort
	Encap         bool // ESP-in-UDP, RFC 3948
	// LocalTS and RemoteTS are the negotiated (narrowed) selectors.
	LocalTS, RemoteTS []netip.Prefix
	ReplayWindow      int
	Lifetime          time.Duration
	Established       time.Time
}

// Installer programs the data plane. Calls may block briefly.
//
// A CHILD SA is installed in two steps so that rekeying loses nothing
// (make-before-break): InstallInbound makes the new SA decrypt, and only
// later InstallOutbound moves the child's policies to the new outbound SA.
// The old SA pair stays installed (its inbound SA still decrypting late
// packets) until DeleteChild removes it after a grace period; DeleteChild
// must leave alone policies that a newer SA of the same child has taken
// over.
type Installer interface {
	AllocSPI(ctx context.Context, conn, child string) (uint32, error)
	InstallInbound(ctx context.Context, sa ChildSA) error
	InstallOutbound(ctx context.Context, sa ChildSA) error
	DeleteChild(ctx context.Context, sa ChildSA) error
	// Trap installs trap policies for a configured child (traffic that
	// matches raises an Acquire, see Engine.Acquire); Untrap removes them.
	// An installed CHILD SA's policies replace the trap; after the SA is
	// deleted the engine calls Trap again where the connection wants it.
	Trap(ctx context.Context, conn string, child Child) error
	Untrap(ctx context.Context, conn string, child Child) error
}

// PacketCounter is implemented by Installers whose data plane counts the
// packets of each SA both ways. DPD then checks liveness only when
// nothing arrived on the IKE SA's CHILD SAs either: a peer whose ESP keeps
// coming is alive (RFC 7296 2.4 asks for liveness checks only when
// nothing is heard); ESP sent with nothing coming back is what makes a
// gateway without dpd_delay ask whether its peer is still there; and a
// rekey responder switches to the new SA on its first inbound packet.
type PacketCounter interface {
	// Packets sums the packets received on the inbound SAs in and sent
	// on the outbound SAs out, from one reading of the counters.
	Packets(ctx context.Context, in, out []uint32) (received, sent uint64, err error)
}

// Options configures an Engine.
type Options struct {
	Logger *zap.Logger
	// Listen lists local addresses; empty means wildcard sockets that
	// learn each packet's local address with IP_PKTINFO.
	Listen []netip.Addr
	// Port and NATPort are the IKE and NAT-T ports; 0 means 500 and 4500.
	// A peer is assumed to use the same ports.
	Port, NATPort int
	// CookieThreshold is the number of half-open SAs beyond which
	// IKE_SA_INIT requests must carry a COOKIE (default 1000).
	CookieThreshold int
	// HalfOpenLimit caps half-open SAs (default 10 x CookieThreshold):
	// in a full table, a request with a valid COOKIE or from a configured
	// peer takes the place of the oldest half-open SA that is neither,
	// others are dropped. HalfOpenPerSource caps those of one source
	// address (default DefaultHalfOpenPerSource).
	HalfOpenLimit     int
	HalfOpenPerSource int
	// InitRateLimit is the per-source IKE_SA_INIT rate (a second) that
	// SetInitRateLimit is asked to enforce while COOKIEs are demanded
	// (default DefaultInitRateLimit); SetInitRateLimit(0) lifts it.
	// SetInitRateLimit nil: nothing in front to ask (no XDP front door).
	InitRateLimit    uint32
	SetInitRateLimit func(perSecond uint32) error
	// SocketBuffer is the receive and send buffer size of each IKE
	// socket in bytes (default DefaultSocketBuffer; negative keeps the
	// kernel's default).
	SocketBuffer int
	// Retransmission: the first timeout, the back-off base and the number
	// of retransmits before giving up (defaults 4 s, 1.8, 5 as strongSwan).
	RetransmitTimeout time.Duration
	RetransmitBase    float64
	RetransmitTries   int
	// HalfOpenTimeout removes half-open SAs that do not complete
	// (default 30 s).
	HalfOpenTimeout time.Duration
	// KeepaliveInterval is the idle time after which an established IKE
	// SA whose local end is behind a NAT sends a NAT-T keepalive (RFC 3948
	// section 4, RFC 7296 section 2.23) to keep the NAT mapping open;
	// 0 means DefaultKeepaliveInterval (20 s), negative disables them.
	// Forced encapsulation (Conn.ForceEncap) without a real NAT on our
	// side sends none: there is no mapping of ours to keep alive, and
	// RFC 7296 2.23 leaves keepalives to the host behind the NAT
	// (strongSwan does the same for its faked NAT).
	KeepaliveInterval time.Duration
	// RekeyGrace is how long a rekeyed CHILD SA stays in the data plane
	// after its Delete exchange, so that packets still in flight on it
	// decrypt (default 2 s).
	RekeyGrace time.Duration
	// KernelESPInUDP marks the NAT-T sockets UDP_ENCAP_ESPINUDP, so that
	// the kernel decapsulates ESP-in-UDP for its XFRM data plane (modes
	// xfrm and xfrm-offload); the AF_XDP data plane takes ESP before
	// the socket and leaves this off.
	KernelESPInUDP bool
	// FragmentSize is the largest IP datagram an IKE message goes out in
	// once the peer takes RFC 7383 fragments; larger ones are fragmented
	// (default DefaultFragmentSize).
	FragmentSize int
	// QuietPeerCheck is how often an IKE SA whose connection has no
	// dpd_delay compares its CHILD SAs' traffic to notice a peer that
	// left silently (see quietpeer.go; default 30 s).
	QuietPeerCheck time.Duration
	Installer      Installer
}

// IKESAInfo describes an IKE SA for the operator.
type IKESAInfo struct {
	Conn, State         string // CONNECTING, ESTABLISHED, DELETING
	SPIi, SPIr          uint64
	Initiator           bool
	Local, Remote       netip.AddrPort
	LocalID, RemoteID   string
	NATLocal, NATRemote bool
	Proposal            string // e.g. AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE_25519
	Established         time.Time
	// RekeyAt is when the IKE SA will be rekeyed (zero: never); Rekeys
	// counts the rekeys of its lineage (the IKE SAs it replaced).
	RekeyAt  time.Time
	Rekeys   int
	Children []ChildInfo
}

// ChildInfo describes a CHILD SA for the operator.
type ChildInfo struct {
	// State is INSTALLED (in use), REKEYING (a rekey is under way),
	// REKEYED (replaced, kept for late packets until deleted), INBOUND
	// (new, decrypting, not yet used for sending) or DOWN (lost; its
	// connection brings it back, see childloss.go).
	Name, State       string
	SPIIn, SPIOut     uint32
	Mode              string
	Encap             bool
	LocalTS, RemoteTS []netip.Prefix
	Proposal          string
	// Established is when this SA pair was installed; RekeyAt when it
	// will be rekeyed (zero: never); Rekeys counts the rekeys of the
	// child's lineage.
	Established time.Time
	RekeyAt     time.Time
	Rekeys      int
	// Reason says what is wrong with the child: why a DOWN one went (and
	// why the last attempt to bring it back failed), or the peer's
	// refusal of an installed one's last rekey. DownSince, RetryAt (zero
	// while a fresh IKE SA is to bring it) and Attempts describe a DOWN
	// child's return.
	Reason    string
	DownSince time.Time
	RetryAt   time.Time
	Attempts  int
}
