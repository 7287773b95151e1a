// Package api is the daemon's management interface: HTTP/JSON on a unix
// socket under /v1/. xdpsecctl is its only client; the types here are the
// wire contract, so fields are only ever added, never renamed.
package api

import (
	"errors"
	"time"
)

// ErrUnknownConn is returned by backends for a connection name not in the
// running configuration.
var ErrUnknownConn = errors.New("no such connection")

// ErrUnknownChild is returned by backends for a child name its connection
// does not configure.
var ErrUnknownChild = errors.New("no such child")

// Status describes the running daemon.
type Status struct {
	Version        string    `json:"version"`
	PID            int       `json:"pid"`
	StartedAt      time.Time `json:"started_at"`
	UptimeSeconds  float64   `json:"uptime_seconds"`
	ConfigFile     string    `json:"config_file"`
	ConfigLoadedAt time.Time `json:"config_loaded_at"`
	DataplaneMode  string    `json:"dataplane_mode"`
	Connections    int       `json:"connections"`
	// Initiations lists the start_action start connections not up yet:
	// still trying, or given up after keyingtries failures.
	Initiations []ConnInitiation `json:"initiations"`
}

// Initiation is where the bring-up of a start_action start connection
// stands: State is connecting, waiting (for NextAttempt), established or
// gave_up; Failures counts the failed attempts in a row, LastReason
// classifies the last one (timeout, auth_failed, no_proposal_chosen,
// ts_unacceptable, other).
type Initiation struct {
	State       string     `json:"state"`
	Failures    int        `json:"failures"`
	LastError   string     `json:"last_error,omitempty"`
	LastReason  string     `json:"last_reason,omitempty"`
	LastFailure *time.Time `json:"last_failure,omitempty"`
	NextAttempt *time.Time `json:"next_attempt,omitempty"`
}

// ConnInitiation is a connection's Initiation, for status.
type ConnInitiation struct {
	Conn string `json:"conn"`
	Initiation
}

// Conn is one configured connection as the daemon currently runs it.
type Conn struct {
	Name         string   `json:"name"`
	LocalAddr    string   `json:"local_addr"`
	RemoteAddr   string   `json:"remote_addr"`
	LocalID      string   `json:"local_id"`
	RemoteID     string   `json:"remote_id"`
	Auth         string   `json:"auth"`
	IKEProposals []string `json:"ike_proposals"`
	ESPProposals []string `json:"esp_proposals"`
	IKELifetime  string   `json:"ike_lifetime"`
	DPDDelay     string   `json:"dpd_delay"`
	DPDAction    string   `json:"dpd_action"`
	StartAction  string   `json:"start_action"`
	Encap        string   `json:"encap"`
	Children     []Child  `json:"children"`
	// Initiation is the connection's bring-up; absent where there has
	// been none (start_action other than start).
	Initiation *Initiation `json:"initiation,omitempty"`
}

// Child is one configured CHILD SA template of a connection.
type Child struct {
	Name         string   `json:"name"`
	Mode         string   `json:"mode"`
	LocalTS      []string `json:"local_ts"`
	RemoteTS     []string `json:"remote_ts"`
	Lifetime     string   `json:"lifetime"`
	ReplayWindow int      `json:"replay_window"`
}

// ReloadResult reports what a reload changed.
type ReloadResult struct {
	Added     []string `json:"added"`
	Removed   []string `json:"removed"`
	Changed   []string `json:"changed"`
	Unchanged []string `json:"unchanged"`
	// Actions says per connection what the change needed: none, timers
	// (re-armed on the existing SAs), child (just the CHILD SAs named in
	// the log were replaced), ike (a new IKE SA), added or removed.
	Actions map[string]string `json:"actions,omitempty"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
}

// IKESA is one IKE SA as `xdpsecctl sas` shows it. SPIs are hex strings:
// 64-bit values do not survive JSON numbers in every consumer.
type IKESA struct {
	Conn        string    `json:"conn"`
	State       string    `json:"state"`
	Initiator   bool      `json:"initiator"`
	SPIi        string    `json:"spi_i"`
	SPIr        string    `json:"spi_r"`
	Local       string    `json:"local"`
	Remote      string    `json:"remote"`
	NAT         NAT       `json:"nat"`
	Proposal    string    `json:"proposal"`
	Established time.Time `json:"established,omitzero"`
	// RekeyAt is when the SA will be rekeyed (omitted: never); Rekeys
	// counts the rekeys of its lineage.
	RekeyAt  time.Time `json:"rekey_at,omitzero"`
	Rekeys   int       `json:"rekeys"`
	Children []ChildSA `json:"children"`
}

// NAT says on which side NAT detection found a translation.
type NAT struct {
	Local  bool `json:"local"`
	Remote bool `json:"remote"`
}

// ChildSA is one CHILD SA of an IKE SA. Counters follow the data plane's
// view; with data plane none they stay zero.
type ChildSA struct {
	Name       string   `json:"name"`
	State      string   `json:"state"`
	SPIIn      string   `json:"spi_in"`
	SPIOut     string   `json:"spi_out"`
	Mode       string   `json:"mode"`
	Encap      bool     `json:"encap"`
	Proposal   string   `json:"proposal"`
	LocalTS    []string `json:"local_ts"`
	RemoteTS   []string `json:"remote_ts"`
	BytesIn    uint64   `json:"bytes_in"`
	BytesOut   uint64   `json:"bytes_out"`
	PacketsIn  uint64   `json:"packets_in"`
	PacketsOut uint64   `json:"packets_out"`
	// Offload is the NIC offload in force for the SA pair as the data
	// plane reports it ("crypto", "packet"), "" for software ESP.
	Offload string `json:"offload,omitempty"`
	// Established is when this SA pair was installed, RekeyAt when it
	// will be rekeyed (omitted: never); Rekeys counts the rekeys of the
	// child's lineage.
	Established time.Time `json:"established,omitzero"`
	RekeyAt     time.Time `json:"rekey_at,omitzero"`
	Rekeys      int       `json:"rekeys"`
	// Reason says what is wrong: why a DOWN child went (and why the last
	// attempt to bring it back failed), or the peer's refusal of an
	// installed child's last rekey. DownSince, RetryAt (omitted while a
	// fresh IKE SA is to bring it) and Attempts describe a DOWN child's
	// return.
	Reason    string    `json:"reason,omitempty"`
	DownSince time.Time `json:"down_since,omitzero"`
	RetryAt   time.Time `json:"retry_at,omitzero"`
	Attempts  int       `json:"attempts,omitempty"`
}

// Stats is what `xdpsecctl stats` shows: the data plane's drops by reason,
// its workers, the XDP programs' verdicts and the IKE engine's counters.
type Stats struct {
	Dataplane string            `json:"dataplane"`
	Drops     map[string]uint64 `json:"drops"`
	// Workers counts the packets each data-plane worker handled (afxdp).
	Workers []uint64 `json:"workers,omitempty"`
	// Paths names the path packets take per port and direction (afxdp:
	// "wan", "lan_in", "lan_out"; "af_xdp copy", "tun (gro)" ...).
	Paths map[string]string `json:"paths,omitempty"`
	// XDP maps "wan"/"lan" to the program's verdict counters (afxdp).
	XDP map[string]map[string]uint64 `json:"xdp,omitempty"`
	// AFXDP sums the kernel's AF_XDP socket statistics (afxdp): drops
	// before any worker saw the packet, such as a full RX ring.
	AFXDP map[string]uint64 `json:"af_xdp,omitempty"`
	// SAs lists every SA installed in the data plane, including rekeyed
	// ones still in their grace period: what `sas` shows per child is the
	// IKE engine's view, this is what actually processes packets.
	SAs []DataplaneSA `json:"sas"`
	IKE IKEStats      `json:"ike"`
}

// DataplaneSA is one installed SA with its own counters.
type DataplaneSA struct {
	SPI     string `json:"spi"` // 8 hex digits
	Dir     string `json:"dir"` // in | out
	Bytes   uint64 `json:"bytes"`
	Packets uint64 `json:"packets"`
	Offload string `json:"offload,omitempty"` // NIC offload in force; "" = software
}

// IKEStats are the IKE engine's counters.
type IKEStats struct {
	IKESAs   int `json:"ike_sas"`
	HalfOpen int `json:"half_open"`
	// HalfOpenEvicted counts half-open SAs that made room in a full
	// table for a request with a valid COOKIE or from a configured peer.
	HalfOpenEvicted uint64 `json:"half_open_evicted"`
	CookiesSent     uint64 `json:"cookies_sent"`
	Retransmits     uint64 `json:"retransmits"`
	CachedResponses uint64 `json:"cached_responses"`
	// Reassembled counts messages the peer sent in RFC 7383 fragments,
	// Fragmented those we sent so.
	Reassembled uint64 `json:"reassembled"`
	Fragmented  uint64 `json:"fragmented"`
	// NAT-T keepalives (RFC 3948) sent by this end behind a NAT, and
	// received from a peer behind one.
	KeepalivesSent     uint64            `json:"keepalives_sent"`
	KeepalivesReceived uint64            `json:"keepalives_received"`
	Dropped            map[string]uint64 `json:"dropped"`
	// Completed rekeys (either side's) and IKE SAs given up because the
	// peer stopped answering.
	ChildRekeys uint64 `json:"child_rekeys"`
	IKERekeys   uint64 `json:"ike_rekeys"`
	DeadPeers   uint64 `json:"dead_peers"`
}
