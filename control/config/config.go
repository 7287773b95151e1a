// Package config loads, validates and defaults xdpsec's YAML configuration
// (schema in DESIGN.md and docs/configuration.md). Parsing is strict:
// unknown keys are errors, and every problem of a file is reported at
// once with its file, line and key path, so an operator fixes a file in
// one round.
package config

import (
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/xdpsec/xdpsec/ike/proposal"
)

// DefaultPath is where the daemon looks for its configuration.
const DefaultPath = "/etc/xdpsec/xdpsec.yaml"

// Config is a parsed, defaulted and validated configuration file.
type Config struct {
	Path        string       `yaml:"-"`
	Log         Log          `yaml:"log"`
	API         API          `yaml:"api"`
	Metrics     Metrics      `yaml:"metrics"`
	IKE         IKE          `yaml:"ike"`
	Dataplane   Dataplane    `yaml:"dataplane"`
	Connections []Connection `yaml:"connections"`
}

// Log configures the daemon's logger.
type Log struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // console | json
}

// API configures the control socket used by xdpsecctl.
type API struct {
	Socket string `yaml:"socket"`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	// Listen is host:port; "" switches the endpoint off.
	Listen string `yaml:"listen"`
}

// Enabled reports whether the metrics endpoint is to be served.
func (m Metrics) Enabled() bool { return m.Listen != "" }

// IKE configures the IKE sockets.
type IKE struct {
	// Listen lists the local addresses to bind; empty means all.
	Listen []netip.Addr `yaml:"listen"`
	// CookieThreshold is the number of half-open IKE SAs above which
	// responders demand COOKIEs (RFC 7296 2.6).
	CookieThreshold int `yaml:"cookie_threshold"`
	// HalfOpenLimit caps half-open IKE SAs in all, HalfOpenPerSource
	// those of one source address; InitRateLimit is the per-source
	// IKE_SA_INIT rate the XDP front door enforces while COOKIEs are
	// demanded (0: never).
	HalfOpenLimit     int `yaml:"half_open_limit"`
	HalfOpenPerSource int `yaml:"half_open_per_source"`
	InitRateLimit     int `yaml:"init_rate_limit"`
	// SocketBuffer is each IKE socket's receive and send buffer, bytes.
	SocketBuffer int `yaml:"socket_buffer"`
	// FragmentSize is the largest IP datagram an IKE message is sent in
	// once the peer takes RFC 7383 fragments; larger ones are fragmented.
	FragmentSize int `yaml:"fragment_size"`
	// NATKeepalive is the idle time after which a gateway behind a NAT
	// sends a NAT-T keepalive (RFC 3948) to keep the mapping open; 0
	// switches keepalives off.
	NATKeepalive time.Duration `yaml:"nat_keepalive"`
	// RetransmitTimeout is how long a request waits for its answer before
	// its first retransmission; each further wait is RetransmitBase times
	// the one before, and after RetransmitTries retransmissions the peer
	// counts as dead (strongSwan's defaults: 4s, 1.8, 5, about 165s).
	RetransmitTimeout time.Duration `yaml:"retransmit_timeout"`
	RetransmitTries   int           `yaml:"retransmit_tries"`
	RetransmitBase    float64       `yaml:"retransmit_base"`
	// RekeyGrace keeps a rekeyed CHILD SA in the data plane after its
	// delete, so packets still in flight on it decrypt.
	RekeyGrace time.Duration `yaml:"rekey_grace"`
}

// Dataplane selects and configures the ESP data plane.
type Dataplane struct {
	Mode    string  `yaml:"mode"` // afxdp | xfrm | xfrm-offload | none
	WAN     string  `yaml:"wan"`
	LAN     string  `yaml:"lan"`
	TUN     string  `yaml:"tun"`
	Workers int     `yaml:"workers"`  // 0 = one per CPU
	XDPMode string  `yaml:"xdp_mode"` // auto | native | generic
	Offload Offload `yaml:"offload"`
	// CPUSteering spreads kernel-bound ESP (modes xfrm, xfrm-offload)
	// over the CPUs from XDP: "sa" sends each SA to one CPU, "packet"
	// spreads one SA's packets, "off" leaves it to the NIC's RSS.
	CPUSteering string `yaml:"cpu_steering"`
	// DecryptSharing says whether an afxdp worker shares the decryption
	// of its big WAN batches with the other workers: "on", "off", or
	// "auto", on with 4 workers or more.
	DecryptSharing string `yaml:"decrypt_sharing"`
	// LANOutput is where afxdp writes decrypted packets for the LAN:
	// "af_xdp" (the LAN socket), "tun" (the TUN port, TCP merged into
	// super-packets, forwarded by the stack) or "auto" (tun where there
	// is a TUN port, forwarding and a virtual LAN NIC).
	LANOutput string `yaml:"lan_output"`
	// FailClosed says when the kill switch holds protected traffic
	// without a daemon: "crash" while no daemon runs after one died,
	// "always" also after a clean stop, until the next daemon or
	// `xdpsecd --remove-kill-switch` takes it down (mode afxdp).
	FailClosed string `yaml:"fail_closed"`
}

// Offload configures NIC offload for mode xfrm-offload.
type Offload struct {
	Dev  string `yaml:"dev"`
	Type string `yaml:"type"` // crypto | packet
	// Required fails an SA the NIC will not offload instead of falling
	// back to the kernel's software ESP.
	Required bool `yaml:"required"`
}

// Connection is one IKE connection (an IKE SA and its children), named
// after swanctl.conf's connections section.
type Connection struct {
	Name string `yaml:"name"`
	// LocalAddr and RemoteAddr keep the configured text: an IP address
	// or "%any". Use LocalAddress and RemoteAddress for parsed values.
	LocalAddr  string   `yaml:"local_addr"`
	RemoteAddr string   `yaml:"remote_addr"`
	LocalID    Identity `yaml:"local_id"`
	RemoteID   Identity `yaml:"remote_id"`
	Auth       string   `yaml:"auth"` // psk | pubkey
	// PSK holds the pre-shared key, from psk or read from PSKFile. It
	// never prints or marshals in clear.
	PSK      Secret `yaml:"psk,omitempty"`
	PSKFile  string `yaml:"psk_file,omitempty"`
	CertFile string `yaml:"cert_file,omitempty"`
	KeyFile  string `yaml:"key_file,omitempty"`
	CAFile   string `yaml:"ca_file,omitempty"`
	// IKEProposalStrings and ESPProposalStrings are the configured
	// proposal strings; IKEProposals and ESPProposals their parsed form,
	// index for index.
	IKEProposalStrings []string            `yaml:"ike_proposals"`
	IKEProposals       []proposal.Proposal `yaml:"-"`
	ESPProposalStrings []string            `yaml:"esp_proposals"`
	ESPProposals       []proposal.Proposal `yaml:"-"`
	IKELifetime        time.Duration       `yaml:"ike_lifetime"`
	// RekeyJitter is the percentage (0-100) of a lifetime by which a
	// rekey is randomly brought forward, so peers do not rekey in step.
	RekeyJitter float64 `yaml:"rekey_jitter"`
	// DPDDelay is the idle time before a liveness check; 0 disables DPD.
	DPDDelay    time.Duration `yaml:"dpd_delay"`
	DPDAction   string        `yaml:"dpd_action"`   // clear | restart | hold
	StartAction string        `yaml:"start_action"` // start | trap | none
	// KeyingTries bounds the initiations of a start_action start
	// connection that fail in a row before the daemon gives up; 0 (the
	// default) keeps trying forever.
	KeyingTries int     `yaml:"keyingtries"`
	Encap       string  `yaml:"encap"` // auto | always
	Children    []Child `yaml:"children"`
}

// LocalAddress returns the parsed local address; the bool is true for
// "%any" (the address is then invalid).
func (c Connection) LocalAddress() (netip.Addr, bool) {
	return parseEndpoint(c.LocalAddr)
}

// RemoteAddress returns the parsed remote address; the bool is true for
// "%any", a responder-only connection.
func (c Connection) RemoteAddress() (netip.Addr, bool) {
	return parseEndpoint(c.RemoteAddr)
}

// Responder reports whether the connection only responds (remote_addr
// is "%any").
func (c Connection) Responder() bool { return c.RemoteAddr == anyAddr }

func parseEndpoint(s string) (netip.Addr, bool) {
	if s == anyAddr {
		return netip.Addr{}, true
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a, false
}

// Child is a CHILD_SA template: traffic selectors and ESP parameters.
type Child struct {
	Name         string         `yaml:"name"`
	LocalTS      []netip.Prefix `yaml:"local_ts"`
	RemoteTS     []netip.Prefix `yaml:"remote_ts"`
	Mode         string         `yaml:"mode"` // tunnel | transport
	Lifetime     time.Duration  `yaml:"lifetime"`
	ReplayWindow int            `yaml:"replay_window"` // packets; 0 = off
}

// Enumerations and limits of the schema.
const (
	anyAddr          = "%any"
	MaxReplayWindow  = 4096
	MinPSKLength     = 16
	maxPSKFile       = 4096
	maxNameLength    = 64
	maxInterfaceName = 15 // IFNAMSIZ - 1
	// maxRetransmitTries and maxRetransmitBase keep the give-up time of
	// a request within hours: beyond that a dead peer is never noticed.
	maxRetransmitTries = 20
	// maxHalfOpen bounds the half-open limits: each half-open SA keeps
	// its request and keys, a few KB.
	maxHalfOpen = 1_000_000
	maxInitRate = 1_000_000
	// Socket buffers: at least a few large messages, at most what a
	// kernel gives one socket without complaint.
	minSocketBuffer = 64 << 10
	maxSocketBuffer = 256 << 20
	// A fragment must hold some data after its headers (IPv6, UDP,
	// marker, IKE, SKF) and the cipher's IV, padding and ICV.
	minFragmentSize   = 256
	maxFragmentSize   = 65535
	maxRetransmitBase = 10
)

// DefaultIKEProposals returns the IKE proposals used when a connection
// sets none: AES-256-GCM with X25519 first, a NIST-curve fallback second
// for peers without Curve25519.
func DefaultIKEProposals() []string {
	return []string{"aes256gcm16-prfsha256-x25519", "aes256gcm16-prfsha384-ecp384"}
}

// DefaultESPProposals returns the ESP proposals used when a connection
// sets none (no PFS, as swanctl's default).
func DefaultESPProposals() []string { return []string{"aes256gcm16", "aes128gcm16"} }

func defaultConfig() Config {
	return Config{
		Log:     Log{Level: "info", Format: "console"},
		API:     API{Socket: "/run/xdpsec/xdpsec.sock"},
		Metrics: Metrics{Listen: "127.0.0.1:9469"},
		IKE: IKE{
			CookieThreshold:   1000,
			HalfOpenLimit:     10000,
			HalfOpenPerSource: 10,
			InitRateLimit:     10,
			SocketBuffer:      4 << 20,
			FragmentSize:      1280,
			NATKeepalive:      20 * time.Second,
			RetransmitTimeout: 4 * time.Second,
			RetransmitTries:   5,
			RetransmitBase:    1.8,
			RekeyGrace:        2 * time.Second,
		},
		Dataplane: Dataplane{
			Mode:           "afxdp",
			XDPMode:        "auto",
			Offload:        Offload{Type: "crypto"},
			CPUSteering:    "sa",
			DecryptSharing: "auto",
			LANOutput:      "auto",
			FailClosed:     "crash",
		},
	}
}

func defaultConnection() Connection {
	return Connection{
		LocalAddr:   anyAddr,
		Auth:        "psk",
		IKELifetime: 4 * time.Hour,
		RekeyJitter: 10,
		DPDDelay:    30 * time.Second,
		StartAction: "none",
		Encap:       "auto",
	}
}

func defaultChild() Child {
	return Child{Mode: "tunnel", Lifetime: time.Hour, ReplayWindow: 1024}
}

// Load reads, parses and validates the configuration file at path. A
// returned *Errors lists every problem found.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse parses and validates data as the configuration file filename.
// Relative file names inside it (psk_file, ...) are resolved against the
// directory of filename, and those files are read and checked. A
// returned *Errors lists every problem found.
func Parse(filename string, data []byte) (*Config, error) {
	d := newDecoder(filename)
	cfg := d.document(data)
	if err := d.err(); err != nil {
		return nil, err
	}
	cfg.Path = filename
	return cfg, nil
}
