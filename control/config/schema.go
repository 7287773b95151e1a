package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/xdpsec/xdpsec/ike/proposal"
)

// The section decoders below mirror the schema of Config; each applies
// its section's checks once all its keys are read, since YAML keys come
// in any order.

func (d *decoder) config(n *yaml.Node, cfg *Config) {
	seen := d.mapping(n, "", map[string]handler{
		"log": func(v *yaml.Node, p string) {
			d.mapping(v, p, map[string]handler{
				"level":  func(v *yaml.Node, p string) { d.enum(v, p, &cfg.Log.Level, "debug", "info", "warn", "error") },
				"format": func(v *yaml.Node, p string) { d.enum(v, p, &cfg.Log.Format, "console", "json") },
			})
		},
		"api": func(v *yaml.Node, p string) {
			d.mapping(v, p, map[string]handler{
				"socket": func(v *yaml.Node, p string) {
					s, ok := d.str(v, p)
					if !ok {
						return
					}
					if !filepath.IsAbs(s) {
						d.add(v, p, "socket %q must be an absolute path", s)
						return
					}
					cfg.API.Socket = filepath.Clean(s)
				},
			})
		},
		"metrics": func(v *yaml.Node, p string) {
			d.mapping(v, p, map[string]handler{
				"listen": func(v *yaml.Node, p string) {
					s, ok := d.str(v, p)
					if !ok {
						return
					}
					if err := checkListen(s); err != nil {
						d.addErr(v, p, err)
						return
					}
					cfg.Metrics.Listen = s
				},
			})
		},
		"ike":         func(v *yaml.Node, p string) { d.ike(v, p, &cfg.IKE) },
		"dataplane":   func(v *yaml.Node, p string) { d.dataplane(v, p, &cfg.Dataplane) },
		"connections": func(v *yaml.Node, p string) { cfg.Connections = d.connections(v, p) },
	})
	if _, ok := seen["dataplane"]; !ok {
		d.checkDataplane(&cfg.Dataplane, n, "dataplane", nil)
	}
}

// checkListen accepts host:port with an IP or empty host; "" is off.
func checkListen(s string) error {
	if s == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("invalid listen address %q: use host:port, e.g. 127.0.0.1:9469", s)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("invalid listen address %q: host must be an IP address", s)
		}
	}
	if pn, err := strconv.ParseUint(port, 10, 16); err != nil || pn == 0 {
		return fmt.Errorf("invalid listen address %q: port must be 1-65535", s)
	}
	return nil
}

func (d *decoder) ike(n *yaml.Node, path string, ike *IKE) {
	seen := d.mapping(n, path, map[string]handler{
		"listen": func(v *yaml.Node, p string) {
			items, _ := d.seq(v, p)
			first := make(map[netip.Addr]int)
			for i, it := range items {
				ip := index(p, i)
				s, ok := d.str(it, ip)
				if !ok {
					continue
				}
				a, err := netip.ParseAddr(s)
				if err != nil {
					d.add(it, ip, "invalid IP address %q", s)
					continue
				}
				if j, dup := first[a]; dup {
					d.add(it, ip, "address %s already listed at %s", a, index(p, j))
					continue
				}
				first[a] = i
				ike.Listen = append(ike.Listen, a)
			}
		},
		"cookie_threshold": func(v *yaml.Node, p string) {
			if x, ok := d.integer(v, p); ok {
				if x < 1 {
					d.add(v, p, "must be at least 1, got %d", x)
					return
				}
				ike.CookieThreshold = x
			}
		},
		"half_open_limit":      d.intIn(&ike.HalfOpenLimit, 1, maxHalfOpen),
		"half_open_per_source": d.intIn(&ike.HalfOpenPerSource, 1, maxHalfOpen),
		"init_rate_limit":      d.intIn(&ike.InitRateLimit, 0, maxInitRate),
		"socket_buffer":        d.intIn(&ike.SocketBuffer, minSocketBuffer, maxSocketBuffer),
		"fragment_size":        d.intIn(&ike.FragmentSize, minFragmentSize, maxFragmentSize),
		"nat_keepalive":        func(v *yaml.Node, p string) { d.duration(v, p, &ike.NATKeepalive, true) },
		"retransmit_timeout":   func(v *yaml.Node, p string) { d.duration(v, p, &ike.RetransmitTimeout, false) },
		// The engine reads 0 as its default, so 0 cannot mean "never
		// retransmit" here either.
		"retransmit_tries": d.intIn(&ike.RetransmitTries, 1, maxRetransmitTries),
		"retransmit_base": func(v *yaml.Node, p string) {
			if x, ok := d.float(v, p); ok {
				// Below 1 the waits would shrink: retransmissions would
				// pile up exactly when the path is congested.
				if !(x >= 1 && x <= maxRetransmitBase) {
					d.add(v, p, "must be between 1 and %d, got %v", maxRetransmitBase, x)
					return
				}
				ike.RetransmitBase = x
			}
		},
		// Zero would leave no time for packets in flight; the engine
		// also reads it as its default.
		"rekey_grace": func(v *yaml.Node, p string) { d.duration(v, p, &ike.RekeyGrace, false) },
	})
	if at := seen["half_open_limit"]; at == nil {
		// Unset, the limit follows the threshold as before the key.
		ike.HalfOpenLimit = max(ike.CookieThreshold, min(10*ike.CookieThreshold, maxHalfOpen))
	} else if ike.HalfOpenLimit < ike.CookieThreshold {
		// A full table must demand COOKIEs: it gives room only to
		// requests that carry one (or come from a configured peer).
		d.add(at, join(path, "half_open_limit"), "must be at least cookie_threshold (%d), got %d", ike.CookieThreshold, ike.HalfOpenLimit)
	}
}

func (d *decoder) dataplane(n *yaml.Node, path string, dp *Dataplane) {
	iface := func(dst *string) handler {
		return func(v *yaml.Node, p string) {
			s, ok := d.str(v, p)
			if !ok {
				return
			}
			if err := checkInterface(s); err != nil {
				d.addErr(v, p, err)
				return
			}
			*dst = s
		}
	}
	var offloadSeen map[string]*yaml.Node
	var offloadNode *yaml.Node
	seen := d.mapping(n, path, map[string]handler{
		"mode": func(v *yaml.Node, p string) { d.enum(v, p, &dp.Mode, "afxdp", "xfrm", "xfrm-offload", "none") },
		"wan":  iface(&dp.WAN),
		"lan":  iface(&dp.LAN),
		"tun":  iface(&dp.TUN),
		"workers": func(v *yaml.Node, p string) {
			if x, ok := d.integer(v, p); ok {
				if x < 0 || x > 4096 {
					d.add(v, p, "must be between 0 (one per CPU) and 4096, got %d", x)
					return
				}
				dp.Workers = x
			}
		},
		"xdp_mode":     func(v *yaml.Node, p string) { d.enum(v, p, &dp.XDPMode, "auto", "native", "generic") },
		"cpu_steering": func(v *yaml.Node, p string) { d.enum(v, p, &dp.CPUSteering, "sa", "packet", "off") },
		"decrypt_sharing": func(v *yaml.Node, p string) {
			d.enum(v, p, &dp.DecryptSharing, "auto", "on", "off")
		},
		"lan_output":  func(v *yaml.Node, p string) { d.enum(v, p, &dp.LANOutput, "auto", "af_xdp", "tun") },
		"fail_closed": func(v *yaml.Node, p string) { d.enum(v, p, &dp.FailClosed, "crash", "always") },
		"offload": func(v *yaml.Node, p string) {
			offloadNode = v
			offloadSeen = d.mapping(v, p, map[string]handler{
				"dev":      iface(&dp.Offload.Dev),
				"type":     func(v *yaml.Node, p string) { d.enum(v, p, &dp.Offload.Type, "crypto", "packet") },
				"required": func(v *yaml.Node, p string) { d.boolean(v, p, &dp.Offload.Required) },
			})
		},
	})
	d.checkDataplane(dp, n, path, func(key string) *yaml.Node {
		if key == "offload.dev" && offloadNode != nil {
			return keyNode(offloadSeen, "dev", offloadNode)
		}
		return keyNode(seen, key, n)
	})
}

// checkDataplane checks what each mode needs. at maps a key to the node
// to blame; nil when the whole section is absent.
func (d *decoder) checkDataplane(dp *Dataplane, n *yaml.Node, path string, at func(string) *yaml.Node) {
	if at == nil {
		at = func(string) *yaml.Node { return n }
	}
	need := func(key, val, why string) {
		if val == "" {
			d.add(at(key), join(path, key), "required for mode %s (%s)", dp.Mode, why)
		}
	}
	switch dp.Mode {
	case "afxdp":
		need("wan", dp.WAN, "the ciphertext interface")
		need("lan", dp.LAN, "the plaintext interface")
	case "xfrm":
		need("wan", dp.WAN, "the ciphertext interface")
	case "xfrm-offload":
		need("wan", dp.WAN, "the ciphertext interface")
		need("offload.dev", dp.Offload.Dev, "the NIC that does the crypto")
	}
	if dp.FailClosed == "always" && dp.Mode != "afxdp" {
		d.add(at("fail_closed"), join(path, "fail_closed"),
			"always needs mode afxdp, whose kill switch outlives the daemon; mode %s holds protected traffic only while xdpsecd runs", dp.Mode)
	}
	if dp.WAN != "" && dp.WAN == dp.LAN {
		d.add(at("lan"), join(path, "lan"), "must differ from wan (%s)", dp.WAN)
	}
	if dp.TUN != "" && (dp.TUN == dp.WAN || dp.TUN == dp.LAN) {
		d.add(at("tun"), join(path, "tun"), "must differ from wan and lan")
	}
	if dp.LANOutput == "tun" && (dp.Mode != "afxdp" || dp.TUN == "") {
		d.add(at("lan_output"), join(path, "lan_output"), "tun needs mode afxdp and a tun port (dataplane.tun) to write the decrypted packets to")
	}
}

func checkInterface(s string) error {
	if s == "" {
		return nil
	}
	if len(s) > maxInterfaceName || s == "." || s == ".." || strings.ContainsAny(s, "/: \t\n") {
		return fmt.Errorf("invalid interface name %q", s)
	}
	return nil
}

// validName keeps names usable in CLI arguments ("CONN/CHILD"), metric
// labels and file names.
func validName(s string) bool {
	if s == "" || len(s) > maxNameLength {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case i > 0 && (r == '.' || r == '_' || r == '-'):
		default:
			return false
		}
	}
	return true
}

func (d *decoder) name(n *yaml.Node, path string) (string, bool) {
	s, ok := d.str(n, path)
	if !ok {
		return "", false
	}
	if !validName(s) {
		d.add(n, path, "invalid name %q: use letters, digits, '.', '_' and '-' (at most %d)", s, maxNameLength)
		return "", false
	}
	return s, true
}

func (d *decoder) connections(n *yaml.Node, path string) []Connection {
	items, _ := d.seq(n, path)
	var conns []Connection
	first := make(map[string]string)
	for i, it := range items {
		ip := index(path, i)
		c, nameNode := d.connection(it, ip)
		if c.Name != "" {
			if prev, dup := first[c.Name]; dup {
				d.add(nameNode, join(ip, "name"), "duplicate connection name %q (also %s)", c.Name, prev)
			} else {
				first[c.Name] = ip
			}
		}
		conns = append(conns, c)
	}
	return conns
}

func (d *decoder) endpoint(n *yaml.Node, path string, dst *string) {
	s, ok := d.str(n, path)
	if !ok {
		return
	}
	if s == anyAddr {
		*dst = s
		return
	}
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		d.add(n, path, "invalid address %q: must be an IP address or %s", s, anyAddr)
	case a.IsUnspecified():
		d.add(n, path, "unspecified address %q: write %s to accept any", s, anyAddr)
	case a.Zone() != "":
		d.add(n, path, "address %q has a zone: zones are not supported", s)
	default:
		*dst = a.Unmap().String()
	}
}

func (d *decoder) identity(n *yaml.Node, path string, dst *Identity) {
	s, ok := d.str(n, path)
	if !ok {
		return
	}
	id, err := ParseIdentity(s)
	if err != nil {
		d.add(n, path, "invalid identity: %v", err)
		return
	}
	*dst = id
}

func (d *decoder) proposals(n *yaml.Node, path string, esp bool, strs *[]string, props *[]proposal.Proposal) {
	items, ok := d.seq(n, path)
	if !ok {
		return
	}
	if len(items) == 0 {
		d.add(n, path, "at least one proposal is required (leave the key out for the defaults)")
		return
	}
	parse := proposal.ParseIKE
	if esp {
		parse = proposal.ParseESP
	}
	*strs, *props = nil, nil
	first := make(map[string]string)
	for i, it := range items {
		ip := index(path, i)
		s, ok := d.str(it, ip)
		if !ok {
			continue
		}
		p, err := parse(s)
		if err != nil {
			d.addErr(it, ip, err)
			continue
		}
		if prev, dup := first[p.String()]; dup {
			d.add(it, ip, "proposal %q repeats %s", s, prev)
			continue
		}
		first[p.String()] = ip
		*strs = append(*strs, s)
		*props = append(*props, p)
	}
}

// connection decodes one connection. Cross-key checks run after the walk
// because YAML keys may come in any order.
func (d *decoder) connection(n *yaml.Node, path string) (Connection, *yaml.Node) {
	c := defaultConnection()
	if n.Kind != yaml.MappingNode {
		// Reported once here; the checks below would only echo it.
		d.add(n, path, "must be a mapping, got %s", kindName(n))
		return Connection{}, n
	}
	var childrenNode *yaml.Node
	var ikeProps, espProps []proposal.Proposal
	var ikeStrs, espStrs []string
	var psk string
	str := func(dst *string) handler {
		return func(v *yaml.Node, p string) {
			if s, ok := d.str(v, p); ok {
				*dst = s
			}
		}
	}
	seen := d.mapping(n, path, map[string]handler{
		"name": func(v *yaml.Node, p string) {
			if s, ok := d.name(v, p); ok {
				c.Name = s
			}
		},
		"local_addr":  func(v *yaml.Node, p string) { d.endpoint(v, p, &c.LocalAddr) },
		"remote_addr": func(v *yaml.Node, p string) { d.endpoint(v, p, &c.RemoteAddr) },
		"local_id":    func(v *yaml.Node, p string) { d.identity(v, p, &c.LocalID) },
		"remote_id":   func(v *yaml.Node, p string) { d.identity(v, p, &c.RemoteID) },
		"auth":        func(v *yaml.Node, p string) { d.enum(v, p, &c.Auth, "psk", "pubkey") },
		"psk":         str(&psk),
		"psk_file":    str(&c.PSKFile),
		"cert_file":   str(&c.CertFile),
		"key_file":    str(&c.KeyFile),
		"ca_file":     str(&c.CAFile),
		"ike_proposals": func(v *yaml.Node, p string) {
			d.proposals(v, p, false, &ikeStrs, &ikeProps)
		},
		"esp_proposals": func(v *yaml.Node, p string) {
			d.proposals(v, p, true, &espStrs, &espProps)
		},
		"ike_lifetime": func(v *yaml.Node, p string) { d.duration(v, p, &c.IKELifetime, false) },
		"rekey_jitter": func(v *yaml.Node, p string) { d.percent(v, p, &c.RekeyJitter) },
		"dpd_delay":    func(v *yaml.Node, p string) { d.duration(v, p, &c.DPDDelay, true) },
		"dpd_action":   func(v *yaml.Node, p string) { d.enum(v, p, &c.DPDAction, "clear", "restart", "hold") },
		"start_action": func(v *yaml.Node, p string) { d.enum(v, p, &c.StartAction, "start", "trap", "none") },
		"encap":        func(v *yaml.Node, p string) { d.enum(v, p, &c.Encap, "auto", "always") },
		"keyingtries": func(v *yaml.Node, p string) {
			if x, ok := d.integer(v, p); ok {
				if x < 0 {
					d.add(v, p, "must be 0 (keep trying) or a positive number of attempts, got %d", x)
					return
				}
				c.KeyingTries = x
			}
		},
		"children": func(v *yaml.Node, p string) { childrenNode = v },
	})
	at := func(key string) *yaml.Node { return keyNode(seen, key, n) }
	if _, ok := seen["name"]; !ok {
		d.add(n, join(path, "name"), "required")
	}

	// Proposals: defaults when absent; a bad list stays empty so no
	// half-parsed list is used.
	if _, ok := seen["ike_proposals"]; ok {
		c.IKEProposalStrings, c.IKEProposals = ikeStrs, ikeProps
	} else {
		c.IKEProposalStrings = DefaultIKEProposals()
		d.proposals(&yaml.Node{Kind: yaml.SequenceNode, Content: scalars(c.IKEProposalStrings)},
			join(path, "ike_proposals"), false, &c.IKEProposalStrings, &c.IKEProposals)
	}
	if _, ok := seen["esp_proposals"]; ok {
		c.ESPProposalStrings, c.ESPProposals = espStrs, espProps
	} else {
		c.ESPProposalStrings = DefaultESPProposals()
		d.proposals(&yaml.Node{Kind: yaml.SequenceNode, Content: scalars(c.ESPProposalStrings)},
			join(path, "esp_proposals"), true, &c.ESPProposalStrings, &c.ESPProposals)
	}

	// Endpoints and identities.
	if _, ok := seen["remote_addr"]; !ok {
		d.add(n, join(path, "remote_addr"), "required (an IP address, or %s for a responder-only connection)", anyAddr)
	}
	local, _ := c.LocalAddress()
	remote, remoteAny := c.RemoteAddress()
	if local.IsValid() && remote.IsValid() && local.Is4() != remote.Is4() {
		d.add(at("remote_addr"), join(path, "remote_addr"), "address family of %s does not match local_addr %s", remote, local)
	}
	if _, ok := seen["local_id"]; !ok && local.IsValid() {
		c.LocalID = addrIdentity(local)
	}
	if _, ok := seen["remote_id"]; !ok && remote.IsValid() {
		c.RemoteID = addrIdentity(remote)
	}

	// Actions: a responder-only connection cannot initiate.
	if _, ok := seen["dpd_action"]; !ok {
		c.DPDAction = "restart"
		if remoteAny {
			c.DPDAction = "clear"
		}
	}
	if remoteAny {
		if c.StartAction == "start" || c.StartAction == "trap" {
			d.add(at("start_action"), join(path, "start_action"),
				"start_action %s needs a concrete remote_addr (remote_addr is %s, responder only)", c.StartAction, anyAddr)
		}
		if c.DPDAction == "restart" {
			d.add(at("dpd_action"), join(path, "dpd_action"),
				"dpd_action restart needs a concrete remote_addr (remote_addr is %s, responder only)", anyAddr)
		}
	}

	d.auth(&c, n, path, seen, psk)

	// Children come last: transport mode defaults depend on the addresses.
	if childrenNode == nil {
		d.add(n, join(path, "children"), "at least one child is required")
	} else {
		c.Children = d.children(childrenNode, join(path, "children"), &c)
	}
	return c, at("name")
}

func addrIdentity(a netip.Addr) Identity {
	if a.Is4() {
		return Identity{IDIPv4Addr, a.String()}
	}
	return Identity{IDIPv6Addr, a.String()}
}

func scalars(ss []string) []*yaml.Node {
	out := make([]*yaml.Node, len(ss))
	for i, s := range ss {
		out[i] = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
	}
	return out
}

func (d *decoder) auth(c *Connection, n *yaml.Node, path string, seen map[string]*yaml.Node, psk string) {
	at := func(key string) *yaml.Node { return keyNode(seen, key, n) }
	_, hasPSK := seen["psk"]
	_, hasPSKFile := seen["psk_file"]
	switch c.Auth {
	case "psk":
		for _, k := range []string{"cert_file", "key_file", "ca_file"} {
			if _, ok := seen[k]; ok {
				d.add(at(k), join(path, k), "only used with auth: pubkey")
			}
		}
		switch {
		case hasPSK && hasPSKFile:
			d.add(at("psk_file"), join(path, "psk_file"), "psk and psk_file are mutually exclusive: keep one")
		case hasPSK:
			d.checkPSK(at("psk"), join(path, "psk"), []byte(psk), "psk")
			c.PSK = Secret(psk)
		case hasPSKFile:
			p := join(path, "psk_file")
			file, ok := d.privateFile(at("psk_file"), p, c.PSKFile, true)
			if !ok {
				return
			}
			data, err := readSmall(file, maxPSKFile)
			if err != nil {
				d.add(at("psk_file"), p, "cannot read %q: %v", c.PSKFile, err)
				return
			}
			// One trailing newline is an editor artefact, not key material.
			data = bytes.TrimSuffix(data, []byte("\n"))
			data = bytes.TrimSuffix(data, []byte("\r"))
			if d.checkPSK(at("psk_file"), p, data, "the key in "+strconv.Quote(c.PSKFile)) {
				c.PSK = Secret(data)
			}
		default:
			d.add(at("auth"), join(path, "auth"), "auth psk needs psk_file (or an inline psk)")
		}
	case "pubkey":
		for _, k := range []string{"psk", "psk_file"} {
			if _, ok := seen[k]; ok {
				d.add(at(k), join(path, k), "not used with auth: pubkey")
			}
		}
		for _, f := range []struct {
			key     string
			val     string
			private bool
		}{{"cert_file", c.CertFile, false}, {"key_file", c.KeyFile, true}, {"ca_file", c.CAFile, false}} {
			if _, ok := seen[f.key]; !ok {
				d.add(at("auth"), join(path, f.key), "required for auth: pubkey")
				continue
			}
			d.privateFile(at(f.key), join(path, f.key), f.val, f.private)
		}
	}
}

// cause drops the *PathError wrapper: messages already quote the file
// name as the user wrote it.
func cause(err error) error {
	if u := errors.Unwrap(err); u != nil {
		return u
	}
	return err
}

// readSmall reads a key file, refusing big ones: a mistyped path such
// as /proc/kcore must not make the daemon read gigabytes.
func readSmall(name string, limit int) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, cause(err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, cause(err)
	}
	if len(data) > limit {
		return nil, fmt.Errorf("larger than %d bytes, not a key file", limit)
	}
	return data, nil
}

// checkPSK never puts the key itself into a message.
func (d *decoder) checkPSK(n *yaml.Node, path string, key []byte, what string) bool {
	switch {
	case len(key) == 0:
		d.add(n, path, "%s is empty", what)
	case string(key) == redacted:
		d.add(n, path, "%s is the %s placeholder, not a key", what, redacted)
	case len(key) < MinPSKLength:
		d.add(n, path, "%s is too short: use at least %d bytes of random data", what, MinPSKLength)
	default:
		return true
	}
	return false
}

// privateFile checks that a referenced file exists and is a regular file;
// for key material also that neither group nor others may access it.
func (d *decoder) privateFile(n *yaml.Node, path, name string, private bool) (string, bool) {
	if name == "" {
		d.add(n, path, "empty file name")
		return "", false
	}
	file := name
	if !filepath.IsAbs(file) {
		file = filepath.Join(d.dir, file)
	}
	fi, err := os.Stat(file)
	switch {
	case errors.Is(err, os.ErrNotExist):
		d.add(n, path, "file %q does not exist", name)
	case err != nil:
		d.add(n, path, "cannot use %q: %v", name, cause(err))
	case !fi.Mode().IsRegular():
		d.add(n, path, "%q is not a regular file", name)
	case private && fi.Mode().Perm()&0o077 != 0:
		d.add(n, path, "%q has mode %04o: it must not be accessible by group or others (chmod 600)", name, fi.Mode().Perm())
	default:
		return file, true
	}
	return "", false
}

func (d *decoder) children(n *yaml.Node, path string, c *Connection) []Child {
	items, ok := d.seq(n, path)
	if !ok {
		return nil
	}
	if len(items) == 0 {
		d.add(n, path, "at least one child is required")
		return nil
	}
	var out []Child
	first := make(map[string]string)
	for i, it := range items {
		ip := index(path, i)
		ch, nameNode := d.child(it, ip, c)
		if ch.Name != "" {
			if prev, dup := first[ch.Name]; dup {
				d.add(nameNode, join(ip, "name"), "duplicate child name %q (also %s)", ch.Name, prev)
			} else {
				first[ch.Name] = ip
			}
		}
		out = append(out, ch)
	}
	return out
}

func (d *decoder) child(n *yaml.Node, path string, c *Connection) (Child, *yaml.Node) {
	ch := defaultChild()
	if n.Kind != yaml.MappingNode {
		d.add(n, path, "must be a mapping, got %s", kindName(n))
		return Child{}, n
	}
	seen := d.mapping(n, path, map[string]handler{
		"name": func(v *yaml.Node, p string) {
			if s, ok := d.name(v, p); ok {
				ch.Name = s
			}
		},
		"local_ts":  func(v *yaml.Node, p string) { ch.LocalTS = d.prefixes(v, p) },
		"remote_ts": func(v *yaml.Node, p string) { ch.RemoteTS = d.prefixes(v, p) },
		"mode":      func(v *yaml.Node, p string) { d.enum(v, p, &ch.Mode, "tunnel", "transport") },
		"lifetime":  func(v *yaml.Node, p string) { d.duration(v, p, &ch.Lifetime, false) },
		"replay_window": func(v *yaml.Node, p string) {
			if x, ok := d.integer(v, p); ok {
				if x < 0 || x > MaxReplayWindow {
					d.add(v, p, "must be between 0 (off) and %d, got %d", MaxReplayWindow, x)
					return
				}
				ch.ReplayWindow = x
			}
		},
	})
	at := func(key string) *yaml.Node { return keyNode(seen, key, n) }
	if _, ok := seen["name"]; !ok {
		d.add(n, join(path, "name"), "required")
	}
	for _, ts := range []struct {
		key  string
		dst  *[]netip.Prefix
		addr string
	}{{"local_ts", &ch.LocalTS, c.LocalAddr}, {"remote_ts", &ch.RemoteTS, c.RemoteAddr}} {
		if len(*ts.dst) > 0 {
			continue
		}
		if v := resolve(seen[ts.key]); !isNull(v) && (v.Kind != yaml.SequenceNode || len(v.Content) > 0) {
			continue // present but malformed, already reported
		}
		if ch.Mode == "tunnel" {
			d.add(at(ts.key), join(path, ts.key), "tunnel mode needs at least one traffic selector, e.g. [10.1.0.0/24]")
			continue
		}
		// Transport mode protects traffic between the IKE endpoints;
		// with %any they are only known once the IKE SA is up.
		if a, err := netip.ParseAddr(ts.addr); err == nil {
			*ts.dst = []netip.Prefix{netip.PrefixFrom(a, a.BitLen())}
		}
	}
	return ch, at("name")
}

func (d *decoder) prefixes(n *yaml.Node, path string) []netip.Prefix {
	items, _ := d.seq(n, path)
	var out []netip.Prefix
	first := make(map[netip.Prefix]string)
	for i, it := range items {
		ip := index(path, i)
		s, ok := d.str(it, ip)
		if !ok {
			continue
		}
		p, err := parsePrefix(s)
		if err != nil {
			d.addErr(it, ip, err)
			continue
		}
		if prev, dup := first[p]; dup {
			d.add(it, ip, "%s repeats %s", p, prev)
			continue
		}
		first[p] = ip
		out = append(out, p)
	}
	return out
}

// parsePrefix accepts CIDR prefixes and bare addresses (host prefixes)
// and refuses host bits, which usually mean a typo in the prefix length.
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("invalid prefix %q: use CIDR notation, e.g. 10.1.0.0/24", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid prefix %q: use CIDR notation, e.g. 10.1.0.0/24", s)
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("invalid prefix %q: IPv4-mapped IPv6 prefixes are not supported", s)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("prefix %q has host bits set: use %s", s, m)
	}
	return p, nil
}
