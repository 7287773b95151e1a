package swan

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/strongswan/govici/vici"
)

// IKESA is one IKE SA as charon reports it in list-sas.
type IKESA struct {
	Conn     string // connection (config) name
	UniqueID uint32
	State    string // CREATED, CONNECTING, ESTABLISHED, REKEYING, DELETING, ...
	// SPIi and SPIr are the initiator's and responder's IKE SPIs.
	SPIi, SPIr    uint64
	Initiator     bool // true when this charon initiated the SA
	Local, Remote netip.AddrPort
	LocalID       string
	RemoteID      string
	// NAT flags as charon reports them: NATLocal/NATRemote when NAT-D
	// saw a NAT on that side, NATFake, NATAny when any is set.
	// kernel-libipsec requires UDP encapsulation, so charon sends a
	// deliberately wrong NAT-D hash for its own address (as with
	// encap=yes): its peer then concludes "remote host is behind NAT".
	// With charon on both ends, both report NATRemote and NATAny without
	// any NAT, and NATFake stays false (strongSwan 5.9.8). A peer of
	// charon (xdpsec) therefore always sees charon "behind NAT".
	NATLocal, NATRemote, NATFake, NATAny bool
	EncrAlg, PRFAlg, DHGroup             string
	Children                             []ChildSA
}

// ChildSA is one CHILD SA of an IKE SA.
type ChildSA struct {
	Name     string
	UniqueID uint32
	ReqID    uint32
	State    string // INSTALLED, REKEYING, ...
	Mode     string // TUNNEL, TRANSPORT
	Protocol string // ESP
	// Encap is true for ESP-in-UDP.
	Encap                 bool
	SPIIn, SPIOut         uint32
	EncrAlg               string
	LocalTS, RemoteTS     []netip.Prefix
	BytesIn, BytesOut     uint64
	PacketsIn, PacketsOut uint64
}

// Established reports whether the IKE SA is ESTABLISHED.
func (s IKESA) Established() bool { return s.State == "ESTABLISHED" }

// Child returns the first CHILD SA named name.
func (s IKESA) Child(name string) (ChildSA, bool) {
	for _, c := range s.Children {
		if c.Name == name {
			return c, true
		}
	}
	return ChildSA{}, false
}

// rawIKESA and rawChildSA mirror list-sa events; charon sends every value
// as a string, so they are converted after unmarshalling.
type rawIKESA struct {
	UniqueID     string                `vici:"uniqueid"`
	State        string                `vici:"state"`
	LocalHost    string                `vici:"local-host"`
	LocalPort    string                `vici:"local-port"`
	LocalID      string                `vici:"local-id"`
	RemoteHost   string                `vici:"remote-host"`
	RemotePort   string                `vici:"remote-port"`
	RemoteID     string                `vici:"remote-id"`
	Initiator    string                `vici:"initiator"`
	InitiatorSPI string                `vici:"initiator-spi"`
	ResponderSPI string                `vici:"responder-spi"`
	NATLocal     string                `vici:"nat-local"`
	NATRemote    string                `vici:"nat-remote"`
	NATFake      string                `vici:"nat-fake"`
	NATAny       string                `vici:"nat-any"`
	EncrAlg      string                `vici:"encr-alg"`
	EncrKeySize  string                `vici:"encr-keysize"`
	PRFAlg       string                `vici:"prf-alg"`
	DHGroup      string                `vici:"dh-group"`
	Children     map[string]rawChildSA `vici:"child-sas"`
}

type rawChildSA struct {
	Name        string   `vici:"name"`
	UniqueID    string   `vici:"uniqueid"`
	ReqID       string   `vici:"reqid"`
	State       string   `vici:"state"`
	Mode        string   `vici:"mode"`
	Protocol    string   `vici:"protocol"`
	Encap       string   `vici:"encap"`
	SPIIn       string   `vici:"spi-in"`
	SPIOut      string   `vici:"spi-out"`
	EncrAlg     string   `vici:"encr-alg"`
	EncrKeySize string   `vici:"encr-keysize"`
	BytesIn     string   `vici:"bytes-in"`
	PacketsIn   string   `vici:"packets-in"`
	BytesOut    string   `vici:"bytes-out"`
	PacketsOut  string   `vici:"packets-out"`
	LocalTS     []string `vici:"local-ts"`
	RemoteTS    []string `vici:"remote-ts"`
}

// LoadShared loads an IKE pre-shared key for the given identities
// (load-shared). id names the secret so it can be replaced later.
func (c *Charon) LoadShared(ctx context.Context, id, psk string, owners ...string) error {
	m := vici.NewMessage()
	for _, kv := range []struct {
		k string
		v any
	}{{"id", id}, {"type", "IKE"}, {"data", psk}, {"owners", owners}} {
		if err := m.Set(kv.k, kv.v); err != nil {
			return fmt.Errorf("swan: load-shared %s: %w", kv.k, err)
		}
	}
	_, err := c.Call(ctx, "load-shared", m)
	return err
}

// LoadConn loads conn (load-conn), after its PSK (load-shared) if it has
// one.
func (c *Charon) LoadConn(ctx context.Context, conn Conn) error {
	if conn.PSK != "" {
		var owners []string
		for _, id := range []string{conn.LocalID, conn.RemoteID} {
			if id != "" {
				owners = append(owners, id)
			}
		}
		if err := c.LoadShared(ctx, "ike-"+conn.Name, conn.PSK, owners...); err != nil {
			return err
		}
	}
	m, err := conn.Message()
	if err != nil {
		return err
	}
	_, err = c.Call(ctx, "load-conn", m)
	return err
}

// Initiate starts child (and its IKE SA if needed; ike may be empty when
// the child name is unique) and waits for the result. The ctx deadline
// becomes charon's own timeout so charon gives up when we do.
func (c *Charon) Initiate(ctx context.Context, ike, child string) error {
	m := vici.NewMessage()
	if err := setOpt(m, "child", child); err != nil {
		return err
	}
	if err := setOpt(m, "ike", ike); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		if err := m.Set("timeout", strconv.FormatInt(time.Until(dl).Milliseconds(), 10)); err != nil {
			return fmt.Errorf("swan: initiate timeout: %w", err)
		}
	}
	// initiate streams control-log events while it works; they would be
	// duplicates of charon's own log, so they are only drained here.
	return c.session(func(s *vici.Session) error {
		for _, err := range s.CallStreaming(ctx, "initiate", "control-log", m) {
			if err != nil {
				return fmt.Errorf("swan: initiate %s/%s: %w", ike, child, err)
			}
		}
		return nil
	})
}

// Terminate deletes the IKE SA of connection ike (with its children),
// waiting for the peer's answer.
func (c *Charon) Terminate(ctx context.Context, ike string) error {
	m := vici.NewMessage()
	if err := setOpt(m, "ike", ike); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		if err := m.Set("timeout", strconv.FormatInt(time.Until(dl).Milliseconds(), 10)); err != nil {
			return fmt.Errorf("swan: terminate timeout: %w", err)
		}
	}
	return c.session(func(s *vici.Session) error {
		for _, err := range s.CallStreaming(ctx, "terminate", "control-log", m) {
			if err != nil {
				return fmt.Errorf("swan: terminate %s: %w", ike, err)
			}
		}
		return nil
	})
}

// Rekey asks charon to rekey the named CHILD SA (child set) or IKE SA
// (child empty) of connection ike. charon only queues the rekey: poll
// ListSAs for the result.
func (c *Charon) Rekey(ctx context.Context, ike, child string) error {
	m := vici.NewMessage()
	if err := setOpt(m, "child", child); err != nil {
		return err
	}
	if child == "" {
		if err := setOpt(m, "ike", ike); err != nil {
			return err
		}
	}
	resp, err := c.Call(ctx, "rekey", m)
	if err != nil {
		return fmt.Errorf("swan: rekey %s/%s: %w", ike, child, err)
	}
	if resp.Get("success") == "no" {
		return fmt.Errorf("swan: rekey %s/%s refused: %v", ike, child, resp.Get("errmsg"))
	}
	return nil
}

func setOpt(m *vici.Message, k, v string) error {
	if v == "" {
		return nil
	}
	if err := m.Set(k, v); err != nil {
		return fmt.Errorf("swan: vici key %s: %w", k, err)
	}
	return nil
}

// ListSAs returns all IKE SAs with their CHILD SAs (list-sas), ordered by
// connection name and unique id.
func (c *Charon) ListSAs(ctx context.Context) ([]IKESA, error) {
	var out []IKESA
	err := c.session(func(s *vici.Session) error {
		for m, err := range s.CallStreaming(ctx, "list-sas", "list-sa", nil) {
			if err != nil {
				return fmt.Errorf("swan: list-sas: %w", err)
			}
			if err := appendSAs(&out, m); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Conn != out[j].Conn {
			return out[i].Conn < out[j].Conn
		}
		return out[i].UniqueID < out[j].UniqueID
	})
	return out, nil
}

// appendSAs converts one list-sa event, {conn-name: {ike sa}}.
func appendSAs(out *[]IKESA, m *vici.Message) error {
	for _, name := range m.Keys() {
		sub, ok := m.Get(name).(*vici.Message)
		if !ok {
			continue
		}
		var raw rawIKESA
		if err := vici.UnmarshalMessage(sub, &raw); err != nil {
			return fmt.Errorf("swan: list-sas %s: %w", name, err)
		}
		sa, err := raw.convert(name)
		if err != nil {
			return fmt.Errorf("swan: list-sas %s: %w", name, err)
		}
		*out = append(*out, sa)
	}
	return nil
}

// WaitEstablished polls ListSAs until connection conn has an ESTABLISHED
// IKE SA whose CHILD SAs are all INSTALLED (at least one), and returns it.
// Polling, not events, because the responder side never sees a command of
// ours and list-sas is cheap.
func (c *Charon) WaitEstablished(ctx context.Context, conn string) (IKESA, error) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last []IKESA
	for {
		sas, err := c.ListSAs(ctx)
		if err != nil {
			return IKESA{}, err
		}
		last = sas
		for _, sa := range sas {
			if sa.Conn == conn && sa.Established() && len(sa.Children) > 0 &&
				!slices.ContainsFunc(sa.Children, func(ch ChildSA) bool { return ch.State != "INSTALLED" }) {
				return sa, nil
			}
		}
		select {
		case <-ctx.Done():
			return IKESA{}, fmt.Errorf("swan: %s not established in %s (SAs: %s): %w", conn, c.NS.Name, summary(last), ctx.Err())
		case <-c.proc.Done():
			return IKESA{}, fmt.Errorf("swan: charon in %s exited: %v", c.NS.Name, c.proc.Err())
		case <-tick.C:
		}
	}
}

func summary(sas []IKESA) string {
	if len(sas) == 0 {
		return "none"
	}
	var parts []string
	for _, sa := range sas {
		s := sa.Conn + ":" + sa.State
		for _, ch := range sa.Children {
			s += " " + ch.Name + ":" + ch.State
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

func (r rawIKESA) convert(conn string) (IKESA, error) {
	sa := IKESA{
		Conn: conn, State: r.State, LocalID: r.LocalID, RemoteID: r.RemoteID,
		Initiator: r.Initiator == "yes",
		NATLocal:  r.NATLocal == "yes", NATRemote: r.NATRemote == "yes",
		NATFake: r.NATFake == "yes", NATAny: r.NATAny == "yes",
		EncrAlg: algName(r.EncrAlg, r.EncrKeySize), PRFAlg: r.PRFAlg, DHGroup: r.DHGroup,
	}
	var err error
	p := parser{}
	sa.UniqueID = uint32(p.uint(r.UniqueID, 10, 32))
	sa.SPIi = p.uint(r.InitiatorSPI, 16, 64)
	sa.SPIr = p.uint(r.ResponderSPI, 16, 64)
	sa.Local = p.addrPort(r.LocalHost, r.LocalPort)
	sa.Remote = p.addrPort(r.RemoteHost, r.RemotePort)
	for _, rc := range r.Children {
		ch := ChildSA{
			Name: rc.Name, State: rc.State, Mode: rc.Mode, Protocol: rc.Protocol,
			Encap: rc.Encap == "yes", EncrAlg: algName(rc.EncrAlg, rc.EncrKeySize),
		}
		ch.UniqueID = uint32(p.uint(rc.UniqueID, 10, 32))
		ch.ReqID = uint32(p.uint(rc.ReqID, 10, 32))
		ch.SPIIn = uint32(p.uint(rc.SPIIn, 16, 32))
		ch.SPIOut = uint32(p.uint(rc.SPIOut, 16, 32))
		ch.BytesIn = p.uint(rc.BytesIn, 10, 64)
		ch.BytesOut = p.uint(rc.BytesOut, 10, 64)
		ch.PacketsIn = p.uint(rc.PacketsIn, 10, 64)
		ch.PacketsOut = p.uint(rc.PacketsOut, 10, 64)
		ch.LocalTS = p.prefixes(rc.LocalTS)
		ch.RemoteTS = p.prefixes(rc.RemoteTS)
		sa.Children = append(sa.Children, ch)
	}
	sort.Slice(sa.Children, func(i, j int) bool { return sa.Children[i].UniqueID < sa.Children[j].UniqueID })
	if err = p.err; err != nil {
		return IKESA{}, err
	}
	return sa, nil
}

func algName(alg, keySize string) string {
	if keySize == "" {
		return alg
	}
	return alg + "-" + keySize
}

// parser collects the first conversion error so convert stays linear.
// Empty strings (fields charon leaves out, e.g. the responder SPI of a
// half-open SA) convert to zero values.
type parser struct{ err error }

func (p *parser) uint(s string, base, bits int) uint64 {
	if s == "" || p.err != nil {
		return 0
	}
	v, err := strconv.ParseUint(s, base, bits)
	if err != nil {
		p.err = fmt.Errorf("parse %q: %w", s, err)
	}
	return v
}

func (p *parser) addrPort(host, port string) netip.AddrPort {
	if host == "" || p.err != nil {
		return netip.AddrPort{}
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		p.err = fmt.Errorf("parse address %q: %w", host, err)
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a, uint16(p.uint(port, 10, 16)))
}

// prefixes parses traffic selectors. charon prints subnets as CIDR and
// ranges as "a-b"; only CIDR (and bare addresses, as /32 or /128) are
// representable here, so a range is an error rather than a silent drop.
func (p *parser) prefixes(ts []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ts {
		if p.err != nil {
			return nil
		}
		// Protocol/port restrictions come as "10.1.0.0/24[udp/53]".
		if i := strings.IndexByte(s, '['); i >= 0 {
			s = s[:i]
		}
		if pf, err := netip.ParsePrefix(s); err == nil {
			out = append(out, pf)
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			p.err = fmt.Errorf("parse traffic selector %q: %w", s, err)
			return nil
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out
}
