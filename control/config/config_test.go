package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.yaml.in/yaml/v3"

	"github.com/xdpsec/xdpsec/ike/proposal"
)

const testPSK = "s3cret-psk-material-0123456789"

// setup copies a testdata file into a temporary directory next to the
// key files it references (written with the modes the checks demand, as
// git does not keep 0600) and returns its path.
func setup(t *testing.T, name string) string {
	t.Helper()
	dir := t.TempDir()
	files := []struct {
		name string
		data string
		mode os.FileMode
	}{
		{"site-b.psk", testPSK + "\n", 0o600},
		{"lab.psk", testPSK, 0o600},
		{"gw.key", "key", 0o600},
		{"gw.crt", "cert", 0o644},
		{"ca.crt", "ca", 0o644},
	}
	for _, f := range files {
		writeFile(t, filepath.Join(dir, f.name), f.data, f.mode)
	}
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(data), "/etc/xdpsec/site-b.psk", filepath.Join(dir, "site-b.psk"))
	path := filepath.Join(dir, name)
	writeFile(t, path, text, 0o644)
	return path
}

func writeFile(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode is filtered by the umask; tests need it exact.
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func mustParseIKE(t *testing.T, s string) proposal.Proposal {
	t.Helper()
	p, err := proposal.ParseIKE(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustParseESP(t *testing.T, s string) proposal.Proposal {
	t.Helper()
	p, err := proposal.ParseESP(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDesignExample(t *testing.T) {
	path := setup(t, "design.yaml")
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := &Config{
		Path:    path,
		Log:     Log{Level: "info", Format: "console"},
		API:     API{Socket: "/run/xdpsec/xdpsec.sock"},
		Metrics: Metrics{Listen: "127.0.0.1:9469"},
		IKE: IKE{CookieThreshold: 1000, HalfOpenLimit: 10000, HalfOpenPerSource: 10, InitRateLimit: 10, SocketBuffer: 4 << 20, FragmentSize: 1280, NATKeepalive: 20 * time.Second,
			RetransmitTimeout: 4 * time.Second, RetransmitTries: 5, RetransmitBase: 1.8, RekeyGrace: 2 * time.Second},
		Dataplane: Dataplane{Mode: "afxdp", WAN: "eth0", LAN: "eth1", XDPMode: "auto", CPUSteering: "sa", DecryptSharing: "auto", LANOutput: "auto", FailClosed: "crash",
			Offload: Offload{Type: "crypto"}},
		Connections: []Connection{{
			Name:               "site-b",
			LocalAddr:          "192.0.2.1",
			RemoteAddr:         "198.51.100.2",
			LocalID:            Identity{IDFQDN, "gw-a.example.com"},
			RemoteID:           Identity{IDFQDN, "gw-b.example.com"},
			Auth:               "psk",
			PSK:                Secret(testPSK),
			PSKFile:            filepath.Join(filepath.Dir(path), "site-b.psk"),
			IKEProposalStrings: []string{"aes256gcm16-prfsha384-ecp384", "aes256gcm16-prfsha256-x25519"},
			IKEProposals: []proposal.Proposal{
				mustParseIKE(t, "aes256gcm16-prfsha384-ecp384"),
				mustParseIKE(t, "aes256gcm16-prfsha256-x25519"),
			},
			ESPProposalStrings: []string{"aes256gcm16"},
			ESPProposals:       []proposal.Proposal{mustParseESP(t, "aes256gcm16")},
			IKELifetime:        4 * time.Hour,
			RekeyJitter:        10,
			DPDDelay:           30 * time.Second,
			DPDAction:          "restart",
			StartAction:        "start",
			Encap:              "auto",
			Children: []Child{{
				Name:         "net",
				LocalTS:      []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24")},
				RemoteTS:     []netip.Prefix{netip.MustParsePrefix("10.2.0.0/24")},
				Mode:         "tunnel",
				Lifetime:     time.Hour,
				ReplayWindow: 1024,
			}},
		}},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("Load(design.yaml):\n got %#v\nwant %#v", cfg, want)
	}
	c := cfg.Connections[0]
	if a, isAny := c.LocalAddress(); a != netip.MustParseAddr("192.0.2.1") || isAny {
		t.Errorf("LocalAddress() = %v, %v", a, isAny)
	}
	if c.Responder() {
		t.Errorf("Responder() = true for a concrete remote_addr")
	}
	if got := c.IKEProposals[0].PRF; !reflect.DeepEqual(got, []proposal.PRF{proposal.PRFHMACSHA2_384}) {
		t.Errorf("IKE PRF = %v", got)
	}
	roundTrip(t, cfg)
}

// roundTrip marshals cfg to YAML and parses it again under the same
// name, which must give an equal Config.
func roundTrip(t *testing.T, cfg *Config) {
	t.Helper()
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	again, err := Parse(cfg.Path, out)
	if err != nil {
		t.Fatalf("parse of marshaled config: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(again, cfg) {
		t.Fatalf("round trip differs:\n got %#v\nwant %#v\nyaml:\n%s", again, cfg, out)
	}
}

func TestFullAndMinimal(t *testing.T) {
	full, err := Load(setup(t, "full.yaml"))
	if err != nil {
		t.Fatalf("full.yaml: %v", err)
	}
	c := full.Connections[0]
	checks := []struct {
		name      string
		got, want any
	}{
		{"metrics off", full.Metrics.Enabled(), false},
		{"ike listen", full.IKE.Listen, []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}},
		{"offload", full.Dataplane.Offload, Offload{Dev: "eth0", Type: "packet"}},
		{"retransmit", [3]any{full.IKE.RetransmitTimeout, full.IKE.RetransmitTries, full.IKE.RetransmitBase}, [3]any{2 * time.Second, 3, 2.0}},
		{"rekey grace", full.IKE.RekeyGrace, 500 * time.Millisecond},
		{"local id forced fqdn", c.LocalID, Identity{IDFQDN, "gw-a.example.com"}},
		{"remote id dn", c.RemoteID, Identity{IDDERASN1DN, "CN=gw-b,O=Example,C=CH"}},
		{"inline psk", string(c.PSK), "correct horse battery staple"},
		{"days", c.IKELifetime, 24 * time.Hour},
		{"jitter number", c.RekeyJitter, 5.0},
		{"dpd off", c.DPDDelay, time.Duration(0)},
		{"esp pfs", c.ESPProposals[0].KE, []proposal.KEGroup{proposal.KECurve25519}},
		{"esn", c.ESPProposals[0].ESN, []bool{true}},
		{"child lifetime", c.Children[0].Lifetime, 90 * time.Minute},
		{"replay off", c.Children[0].ReplayWindow, 0},
		{"transport default local ts", c.Children[1].LocalTS, []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}},
		{"transport default remote ts", c.Children[1].RemoteTS, []netip.Prefix{netip.MustParsePrefix("198.51.100.2/32")}},
		{"responder dpd default", full.Connections[1].DPDAction, "clear"},
		{"responder remote id any", full.Connections[1].RemoteID.IsZero(), true},
		{"dn id not zero", c.RemoteID.IsZero(), false},
		{"id type names match ike.NewIdentity kinds", c.RemoteID.Type.String(), "dn"},
		{"rfc822 id", full.Connections[1].LocalID, Identity{IDRFC822Addr, "vpn@example.com"}},
		{"pubkey key file", full.Connections[1].KeyFile, "gw.key"},
	}
	for _, ck := range checks {
		if !reflect.DeepEqual(ck.got, ck.want) {
			t.Errorf("full.yaml %s: got %#v, want %#v", ck.name, ck.got, ck.want)
		}
	}
	if a, isAny := full.Connections[1].RemoteAddress(); a.IsValid() || !isAny || !full.Connections[1].Responder() {
		t.Errorf("RemoteAddress() of %%any = %v, %v", a, isAny)
	}

	minimal, err := Load(setup(t, "minimal.yaml"))
	if err != nil {
		t.Fatalf("minimal.yaml: %v", err)
	}
	m := minimal.Connections[0]
	defaults := []struct {
		name      string
		got, want any
	}{
		{"log", minimal.Log, Log{Level: "info", Format: "console"}},
		{"socket", minimal.API.Socket, "/run/xdpsec/xdpsec.sock"},
		{"metrics", minimal.Metrics.Listen, "127.0.0.1:9469"},
		{"cookie", minimal.IKE.CookieThreshold, 1000},
		{"half-open limit", minimal.IKE.HalfOpenLimit, 10000},
		{"half-open per source", minimal.IKE.HalfOpenPerSource, 10},
		{"init rate limit", minimal.IKE.InitRateLimit, 10},
		{"socket buffer", minimal.IKE.SocketBuffer, 4 << 20},
		{"fragment size", minimal.IKE.FragmentSize, 1280},
		{"retransmit timeout", minimal.IKE.RetransmitTimeout, 4 * time.Second},
		{"retransmit tries", minimal.IKE.RetransmitTries, 5},
		{"retransmit base", minimal.IKE.RetransmitBase, 1.8},
		{"rekey grace", minimal.IKE.RekeyGrace, 2 * time.Second},
		{"listen", minimal.IKE.Listen, []netip.Addr(nil)},
		{"xdp mode", minimal.Dataplane.XDPMode, "auto"},
		{"offload type", minimal.Dataplane.Offload.Type, "crypto"},
		{"auth", m.Auth, "psk"},
		{"psk from file", string(m.PSK), testPSK},
		{"ike proposals", m.IKEProposalStrings, DefaultIKEProposals()},
		{"esp proposals", m.ESPProposalStrings, DefaultESPProposals()},
		{"parsed ike proposals", len(m.IKEProposals), 2},
		{"ike lifetime", m.IKELifetime, 4 * time.Hour},
		{"jitter", m.RekeyJitter, 10.0},
		{"dpd delay", m.DPDDelay, 30 * time.Second},
		{"dpd action", m.DPDAction, "restart"},
		{"start action", m.StartAction, "none"},
		{"encap", m.Encap, "auto"},
		{"keyingtries", m.KeyingTries, 0},
		{"local id from addr", m.LocalID, Identity{IDIPv4Addr, "192.0.2.1"}},
		{"remote id from addr", m.RemoteID, Identity{IDIPv4Addr, "192.0.2.2"}},
		{"child mode", m.Children[0].Mode, "tunnel"},
		{"child lifetime", m.Children[0].Lifetime, time.Hour},
		{"replay window", m.Children[0].ReplayWindow, 1024},
	}
	for _, ck := range defaults {
		if !reflect.DeepEqual(ck.got, ck.want) {
			t.Errorf("default %s: got %#v, want %#v", ck.name, ck.got, ck.want)
		}
	}
	roundTrip(t, minimal)

	// With the key in a file, full.yaml round-trips too (pubkey files,
	// DN and %any identities, days, ESN, transport defaults).
	text, err := os.ReadFile(full.Path)
	if err != nil {
		t.Fatal(err)
	}
	viaFile, err := Parse(full.Path, []byte(strings.Replace(string(text),
		`psk: "correct horse battery staple"`, "psk_file: site-b.psk", 1)))
	if err != nil {
		t.Fatalf("full.yaml with psk_file: %v", err)
	}
	roundTrip(t, viaFile)

	// full.yaml has an inline psk, which marshals redacted and must then
	// be refused rather than taken as a key.
	out, err := yaml.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "correct horse") {
		t.Fatalf("marshaled YAML leaks the psk:\n%s", out)
	}
	_, err = Parse(full.Path, out)
	if err == nil || !strings.Contains(err.Error(), "connections[0].psk: psk is the <redacted> placeholder") {
		t.Fatalf("reparse of redacted psk: got %v", err)
	}
}

func TestEmptyAndIdle(t *testing.T) {
	tests := []struct{ name, doc string }{
		{"no connections", "dataplane: {mode: none}\n"},
		{"empty list", "dataplane: {mode: none}\nconnections: []\n"},
		{"afxdp idle", "dataplane: {wan: eth0, lan: eth1}\n"},
	}
	for _, tt := range tests {
		cfg, err := Parse("x.yaml", []byte(tt.doc))
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if len(cfg.Connections) != 0 {
			t.Errorf("%s: connections = %v", tt.name, cfg.Connections)
		}
	}
	// An empty file is all defaults, and afxdp needs its interfaces.
	for _, empty := range []string{"", "# nothing\n", "---\n"} {
		_, err := Parse("x.yaml", []byte(empty))
		if err == nil || !strings.Contains(err.Error(), "dataplane.wan: required for mode afxdp") {
			t.Errorf("empty file %q: got %v", empty, err)
		}
	}
}

const base = `dataplane: {mode: none}
connections:
  - name: a
    local_addr: 192.0.2.1
    remote_addr: 198.51.100.2
    psk: 0123456789abcdef0123
    children:
      - name: net
        local_ts: [10.1.0.0/24]
        remote_ts: [10.2.0.0/24]
`

// edit replaces old with new in the base document, failing loudly when
// old is not there so a case cannot silently test the base.
func edit(pairs ...string) func(*testing.T) string {
	return func(t *testing.T) string {
		doc := base
		for i := 0; i+1 < len(pairs); i += 2 {
			if !strings.Contains(doc, pairs[i]) {
				t.Fatalf("base has no %q", pairs[i])
			}
			doc = strings.Replace(doc, pairs[i], pairs[i+1], 1)
		}
		return doc
	}
}

func doc(s string) func(*testing.T) string { return func(*testing.T) string { return s } }

func TestInvalid(t *testing.T) {
	if _, err := Parse("t.yaml", []byte(base)); err != nil {
		t.Fatalf("base document is invalid: %v", err)
	}
	tests := []struct {
		name string
		doc  func(*testing.T) string
		path string
		msg  string
		line int // 0: not checked
	}{
		{"unknown root key", doc("conections: []\n"), "conections", "unknown key, did you mean connections?", 1},
		{"unknown child key", edit("        local_ts", "        childs: []\n        local_ts"), "connections[0].children[0].childs", "unknown key", 9},
		{"unknown conn key", edit("    children:", "    childs:"), "connections[0].childs", "did you mean children?", 7},
		{"unknown far off", doc("zzzzzzzz: 1\n"), "zzzzzzzz", "known keys: api, connections, dataplane, ike, log, metrics", 1},
		{"key twice", edit("    local_addr: 192.0.2.1\n", "    local_addr: 192.0.2.1\n    local_addr: 192.0.2.3\n"), "connections[0].local_addr", "key given twice (first at line 4)", 5},
		{"log level", doc("log: {level: verbose}\ndataplane: {mode: none}\n"), "log.level", `invalid value "verbose": must be one of debug, info, warn, error`, 1},
		{"log format", doc("log:\n  format: xml\ndataplane: {mode: none}\n"), "log.format", "must be one of console, json", 2},
		{"metrics listen", doc("metrics: {listen: localhost}\ndataplane: {mode: none}\n"), "metrics.listen", "use host:port", 1},
		{"metrics port", doc("metrics: {listen: \"127.0.0.1:99999\"}\ndataplane: {mode: none}\n"), "metrics.listen", "port must be 1-65535", 1},
		{"api socket relative", doc("api: {socket: xdpsec.sock}\ndataplane: {mode: none}\n"), "api.socket", "must be an absolute path", 1},
		{"cookie threshold", doc("ike: {cookie_threshold: 0}\ndataplane: {mode: none}\n"), "ike.cookie_threshold", "must be at least 1", 1},
		{"half-open limit below threshold", doc("ike: {cookie_threshold: 500, half_open_limit: 100}\ndataplane: {mode: none}\n"), "ike.half_open_limit", "must be at least cookie_threshold (500), got 100", 1},
		{"half-open per source zero", doc("ike: {half_open_per_source: 0}\ndataplane: {mode: none}\n"), "ike.half_open_per_source", "must be between 1 and 1000000, got 0", 1},
		{"socket buffer small", doc("ike: {socket_buffer: 4096}\ndataplane: {mode: none}\n"), "ike.socket_buffer", "must be between 65536 and 268435456, got 4096", 1},
		{"fragment size small", doc("ike: {fragment_size: 100}\ndataplane: {mode: none}\n"), "ike.fragment_size", "must be between 256 and 65535, got 100", 1},
		{"init rate negative", doc("ike: {init_rate_limit: -1}\ndataplane: {mode: none}\n"), "ike.init_rate_limit", "must be between 0 and 1000000, got -1", 1},
		{"nat keepalive negative", doc("ike: {nat_keepalive: -5s}\ndataplane: {mode: none}\n"), "ike.nat_keepalive", "must be positive", 1},
		{"retransmit timeout zero", doc("ike: {retransmit_timeout: 0s}\ndataplane: {mode: none}\n"), "ike.retransmit_timeout", "must be positive", 1},
		{"retransmit timeout unit", doc("ike: {retransmit_timeout: 4}\ndataplane: {mode: none}\n"), "ike.retransmit_timeout", "add a unit", 1},
		{"retransmit tries zero", doc("ike: {retransmit_tries: 0}\ndataplane: {mode: none}\n"), "ike.retransmit_tries", "must be between 1 and 20, got 0", 1},
		{"retransmit tries huge", doc("ike: {retransmit_tries: 100}\ndataplane: {mode: none}\n"), "ike.retransmit_tries", "must be between 1 and 20, got 100", 1},
		{"retransmit tries type", doc("ike: {retransmit_tries: many}\ndataplane: {mode: none}\n"), "ike.retransmit_tries", "must be an integer", 1},
		{"retransmit base below 1", doc("ike: {retransmit_base: 0.5}\ndataplane: {mode: none}\n"), "ike.retransmit_base", "must be between 1 and 10, got 0.5", 1},
		{"retransmit base type", doc("ike: {retransmit_base: fast}\ndataplane: {mode: none}\n"), "ike.retransmit_base", `must be a number, got "fast"`, 1},
		{"retransmit base nan", doc("ike: {retransmit_base: .nan}\ndataplane: {mode: none}\n"), "ike.retransmit_base", "must be a number", 1},
		{"rekey grace zero", doc("ike: {rekey_grace: 0s}\ndataplane: {mode: none}\n"), "ike.rekey_grace", "must be positive", 1},
		{"ike listen", doc("ike:\n  listen: [192.0.2.1, 300.1.1.1]\ndataplane: {mode: none}\n"), "ike.listen[1]", `invalid IP address "300.1.1.1"`, 2},
		{"dataplane mode", doc("dataplane: {mode: dpdk}\n"), "dataplane.mode", "must be one of afxdp, xfrm, xfrm-offload, none", 1},
		{"afxdp needs lan", doc("dataplane:\n  wan: eth0\n"), "dataplane.lan", "required for mode afxdp", 2},
		{"offload needs dev", doc("dataplane: {mode: xfrm-offload, wan: eth0}\n"), "dataplane.offload.dev", "required for mode xfrm-offload", 1},
		{"workers", doc("dataplane: {mode: none, workers: -1}\n"), "dataplane.workers", "must be between 0", 1},
		{"workers type", doc("dataplane: {mode: none, workers: four}\n"), "dataplane.workers", `must be an integer, got "four"`, 1},
		{"xdp mode", doc("dataplane: {mode: none, xdp_mode: fast}\n"), "dataplane.xdp_mode", "must be one of auto, native, generic", 1},
		{"cpu steering", doc("dataplane: {mode: none, cpu_steering: rss}\n"), "dataplane.cpu_steering", "must be one of sa, packet, off", 1},
		{"decrypt sharing", doc("dataplane: {mode: none, decrypt_sharing: yes}\n"), "dataplane.decrypt_sharing", "must be one of auto, on, off", 1},
		{"lan output", doc("dataplane: {mode: none, lan_output: xsk}\n"), "dataplane.lan_output", "must be one of auto, af_xdp, tun", 1},
		{"lan output tun without tun", doc("dataplane: {mode: afxdp, wan: eth0, lan: eth1, lan_output: tun}\n"), "dataplane.lan_output", "tun needs mode afxdp and a tun port", 1},
		{"fail closed", doc("dataplane: {mode: none, fail_closed: never}\n"), "dataplane.fail_closed", "must be one of crash, always", 1},
		{"fail closed always without kill switch", doc("dataplane: {mode: xfrm, wan: eth0, fail_closed: always}\n"), "dataplane.fail_closed", "always needs mode afxdp", 1},
		{"offload required not a bool", doc("dataplane: {mode: none, offload: {required: yes}}\n"), "dataplane.offload.required", "must be true or false", 1},
		{"offload type", doc("dataplane: {mode: none, offload: {type: full}}\n"), "dataplane.offload.type", "must be one of crypto, packet", 1},
		{"interface name", doc("dataplane: {wan: a-very-long-interface-name, lan: eth1}\n"), "dataplane.wan", "invalid interface name", 1},
		{"wan equals lan", doc("dataplane: {wan: eth0, lan: eth0}\n"), "dataplane.lan", "must differ from wan", 1},
		{"missing name", edit("  - name: a\n    local_addr", "  - local_addr"), "connections[0].name", "required", 3},
		{"bad name", edit("name: a\n", "name: a/b\n"), "connections[0].name", `invalid name "a/b"`, 3},
		{"duplicate conn", doc(base + strings.Replace(strings.SplitN(base, "connections:\n", 2)[1], "name: net", "name: other", 1)),
			"connections[1].name", `duplicate connection name "a" (also connections[0])`, 11},
		{"local addr", edit("192.0.2.1", "192.0.2.256"), "connections[0].local_addr", `invalid address "192.0.2.256": must be an IP address or %any`, 4},
		{"unspecified addr", edit("192.0.2.1", "0.0.0.0"), "connections[0].local_addr", "write %any", 4},
		{"family mismatch", edit("198.51.100.2", `"2001:db8::2"`), "connections[0].remote_addr", "address family of 2001:db8::2 does not match local_addr 192.0.2.1", 5},
		{"missing remote", edit("    remote_addr: 198.51.100.2\n", ""), "connections[0].remote_addr", "required", 3},
		{"junk local id", edit("    psk:", "    local_id: \"foo bar!\"\n    psk:"), "connections[0].local_id", "invalid identity", 6},
		{"bad dn", edit("    psk:", "    remote_id: \"CN=gw;O=x\"\n    psk:"), "connections[0].remote_id", "separate RDNs with ','", 6},
		{"bad dn attr", edit("    psk:", "    remote_id: \"XX=a,O=x\"\n    psk:"), "connections[0].remote_id", `unknown attribute type "XX"`, 6},
		{"auth enum", edit("    psk:", "    auth: cert\n    psk:"), "connections[0].auth", "must be one of psk, pubkey", 6},
		{"psk and file", edit("    psk:", "    psk_file: /x.psk\n    psk:"), "connections[0].psk_file", "psk and psk_file are mutually exclusive", 6},
		{"no psk", edit("    psk: 0123456789abcdef0123\n", ""), "connections[0].auth", "auth psk needs psk_file", 3},
		{"short psk", edit("0123456789abcdef0123", "short"), "connections[0].psk", "psk is too short: use at least 16 bytes", 6},
		{"pubkey without files", edit("    psk: 0123456789abcdef0123\n", "    auth: pubkey\n"), "connections[0].cert_file", "required for auth: pubkey", 6},
		{"pubkey with psk", edit("    psk:", "    auth: pubkey\n    cert_file: /nonexistent/x.crt\n    psk:"), "connections[0].psk", "not used with auth: pubkey", 8},
		{"cert file missing", edit("    psk:", "    auth: pubkey\n    cert_file: /nonexistent/x.crt\n    psk:"), "connections[0].cert_file", `file "/nonexistent/x.crt" does not exist`, 7},
		{"cert with psk auth", edit("    psk:", "    ca_file: /x\n    psk:"), "connections[0].ca_file", "only used with auth: pubkey", 6},
		{"weak ike proposal", edit("    psk:", "    ike_proposals: [aes256gcm16-prfsha256-x25519, aes256-sha1-modp2048]\n    psk:"),
			"connections[0].ike_proposals[1]", `weak algorithm "sha1": use sha256`, 6},
		{"weak esp group", edit("    psk:", "    esp_proposals:\n      - aes256gcm16-modp1024\n    psk:"),
			"connections[0].esp_proposals[0]", `weak algorithm "modp1024": use modp2048 or x25519`, 7},
		{"unknown proposal token", edit("    psk:", "    esp_proposals: [aes256gcm16-foo]\n    psk:"),
			"connections[0].esp_proposals[0]", `unknown algorithm "foo": valid: `, 6},
		{"aead without prf", edit("    psk:", "    ike_proposals: [aes256gcm16-x25519]\n    psk:"),
			"connections[0].ike_proposals[0]", "add e.g. prfsha256", 6},
		{"empty proposals", edit("    psk:", "    ike_proposals: []\n    psk:"), "connections[0].ike_proposals", "at least one proposal is required", 6},
		{"duplicate proposal", edit("    psk:", "    esp_proposals: [aes256gcm16, aes256gcm128]\n    psk:"), "connections[0].esp_proposals[1]", "repeats connections[0].esp_proposals[0]", 6},
		{"negative lifetime", edit("    psk:", "    ike_lifetime: -1h\n    psk:"), "connections[0].ike_lifetime", `duration "-1h" must be positive`, 6},
		{"duration unit", edit("    psk:", "    ike_lifetime: 3600\n    psk:"), "connections[0].ike_lifetime", `add a unit, e.g. 3600s`, 6},
		{"duration junk", edit("    psk:", "    dpd_delay: soon\n    psk:"), "connections[0].dpd_delay", `invalid duration "soon"`, 6},
		{"jitter range", edit("    psk:", "    rekey_jitter: 150%\n    psk:"), "connections[0].rekey_jitter", `invalid percentage "150%": must be between 0 and 100`, 6},
		{"dpd action", edit("    psk:", "    dpd_action: explode\n    psk:"), "connections[0].dpd_action", "must be one of clear, restart, hold", 6},
		{"start action responder", edit("198.51.100.2", `"%any"`, "    psk:", "    start_action: start\n    psk:"), "connections[0].start_action", "start_action start needs a concrete remote_addr", 6},
		{"dpd restart responder", edit("198.51.100.2", `"%any"`, "    psk:", "    dpd_action: restart\n    psk:"), "connections[0].dpd_action", "dpd_action restart needs a concrete remote_addr", 6},
		{"encap", edit("    psk:", "    encap: never\n    psk:"), "connections[0].encap", "must be one of auto, always", 6},
		{"keyingtries negative", edit("    psk:", "    keyingtries: -1\n    psk:"), "connections[0].keyingtries", "must be 0 (keep trying) or a positive number of attempts, got -1", 6},
		{"keyingtries not a number", edit("    psk:", "    keyingtries: forever\n    psk:"), "connections[0].keyingtries", "must be an integer", 6},
		{"no children", doc(strings.SplitN(base, "    children:", 2)[0]), "connections[0].children", "at least one child is required", 3},
		{"children not list", doc(strings.SplitN(base, "    children:", 2)[0] + "    children: {name: x}\n"), "connections[0].children", "must be a list, got a mapping", 7},
		{"duplicate child", doc(base + "      - name: net\n        local_ts: [10.3.0.0/24]\n        remote_ts: [10.4.0.0/24]\n"),
			"connections[0].children[1].name", `duplicate child name "net" (also connections[0].children[0])`, 11},
		{"host bits", edit("[10.1.0.0/24]", "[10.1.0.1/24]"), "connections[0].children[0].local_ts[0]", `prefix "10.1.0.1/24" has host bits set: use 10.1.0.0/24`, 9},
		{"host bits v6", edit("[10.2.0.0/24]", `[10.2.0.0/24, "2001:db8::1/64"]`), "connections[0].children[0].remote_ts[1]", "use 2001:db8::/64", 10},
		{"bad prefix", edit("[10.2.0.0/24]", "[10.2.0.0/33]"), "connections[0].children[0].remote_ts[0]", `invalid prefix "10.2.0.0/33"`, 10},
		{"duplicate prefix", edit("[10.2.0.0/24]", "[10.2.0.0/24, 10.2.0.0/24]"), "connections[0].children[0].remote_ts[1]", "repeats connections[0].children[0].remote_ts[0]", 10},
		{"tunnel needs ts", edit("        remote_ts: [10.2.0.0/24]\n", ""), "connections[0].children[0].remote_ts", "tunnel mode needs at least one traffic selector", 8},
		{"child mode", edit("        remote_ts: [10.2.0.0/24]\n", "        remote_ts: [10.2.0.0/24]\n        mode: beet\n"), "connections[0].children[0].mode", "must be one of tunnel, transport", 11},
		{"replay window", edit("        remote_ts: [10.2.0.0/24]\n", "        remote_ts: [10.2.0.0/24]\n        replay_window: 5000\n"), "connections[0].children[0].replay_window", "must be between 0 (off) and 4096, got 5000", 11},
		{"child lifetime zero", edit("        remote_ts: [10.2.0.0/24]\n", "        remote_ts: [10.2.0.0/24]\n        lifetime: 0s\n"), "connections[0].children[0].lifetime", "must be positive", 11},
		{"child missing name", edit("      - name: net\n        local_ts", "      - local_ts"), "connections[0].children[0].name", "required", 8},
		{"syntax", doc("log:\n  level: info\n bad: [\n"), "", "invalid YAML", 0},
		{"unquoted %any", edit("remote_addr: 198.51.100.2", "remote_addr: %any"), "", `quote values that start with %, e.g. remote_addr: "%any"`, 0},
		{"two documents", doc("dataplane: {mode: none}\n---\nlog: {}\n"), "", "a config file holds a single YAML document", 2},
		{"merge key", doc("x: &x {mode: none}\ndataplane:\n  <<: *x\n"), "dataplane", "merge keys (<<) are not supported", 3},
		{"root not mapping", doc("- a\n- b\n"), "", "must be a mapping, got a list", 1},
		{"connection not mapping", doc("dataplane: {mode: none}\nconnections: [site-b]\n"), "connections[0]", `must be a mapping, got "site-b"`, 2},
		{"child not mapping", edit("      - name: net\n        local_ts: [10.1.0.0/24]\n        remote_ts: [10.2.0.0/24]\n", "      - [net]\n"), "connections[0].children[0]", "must be a mapping, got a list", 8},
		{"string for list", doc("dataplane: {mode: none}\nike: {listen: 192.0.2.1}\n"), "ike.listen", "must be a list", 2},
	}
	if len(tests) < 30 {
		t.Fatalf("only %d cases", len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := tt.doc(t)
			_, err := Parse("t.yaml", []byte(text))
			if err == nil {
				t.Fatalf("no error for:\n%s", text)
			}
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %T is not *Errors: %v", err, err)
			}
			for _, p := range errs.Problems {
				if p.Path == tt.path && strings.Contains(p.Msg, tt.msg) && (tt.line == 0 || p.Line == tt.line) {
					want := fmt.Sprintf("t.yaml:%d: ", p.Line)
					if p.Line == 0 {
						want = "t.yaml: "
					}
					if tt.path != "" {
						want += tt.path + ": "
					}
					if !strings.Contains(err.Error(), want+p.Msg) {
						t.Errorf("Error() lacks %q:\n%v", want+p.Msg, err)
					}
					return
				}
			}
			t.Errorf("want problem at line %d, path %q, containing %q; got:\n%v\ndocument:\n%s", tt.line, tt.path, tt.msg, err, text)
		})
	}
}

func TestAllProblemsReported(t *testing.T) {
	text := `log: {level: loud}
dataplane: {mode: none, workers: -2}
connections:
  - name: a
    local_addr: 192.0.2.1
    remote_addr: 198.51.100.2
    psk: tiny
    ike_proposals: [3des-md5-modp1024]
    children:
      - name: net
        local_ts: [10.1.0.1/24]
        remote_ts: [10.2.0.0/24]
        replay_window: 9999
  - name: a
    remote_addr: "%any"
    start_action: start
    psk: 0123456789abcdef0123
    children: []
`
	_, err := Parse("multi.yaml", []byte(text))
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("want *Errors, got %v", err)
	}
	want := []string{
		"multi.yaml:1: log.level: invalid value \"loud\"",
		"multi.yaml:2: dataplane.workers: must be between 0",
		"multi.yaml:7: connections[0].psk: psk is too short",
		"multi.yaml:8: connections[0].ike_proposals[0]: weak algorithm \"3des\": use aes256gcm16",
		"multi.yaml:11: connections[0].children[0].local_ts[0]: prefix \"10.1.0.1/24\" has host bits set: use 10.1.0.0/24",
		"multi.yaml:13: connections[0].children[0].replay_window: must be between 0 (off) and 4096",
		"multi.yaml:14: connections[1].name: duplicate connection name \"a\"",
		"multi.yaml:16: connections[1].start_action: start_action start needs a concrete remote_addr",
		"multi.yaml:18: connections[1].children: at least one child is required",
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Errorf("got %d problems, want %d:\n%v", len(lines), len(want), err)
	}
	for i, w := range want {
		if i >= len(lines) || !strings.HasPrefix(lines[i], w) {
			t.Errorf("problem %d: want prefix %q\ngot:\n%v", i, w, err)
			break
		}
	}
	if strings.Contains(err.Error(), "tiny") {
		t.Errorf("error leaks the psk: %v", err)
	}
	var pe *proposal.ParseError
	if !errors.As(err, &pe) || pe.Token != "3des" || !errors.Is(err, proposal.ErrWeak) {
		t.Errorf("errors.As(*proposal.ParseError) = %v", pe)
	}
}

func TestPSKFile(t *testing.T) {
	tests := []struct {
		name  string
		data  string
		mode  os.FileMode
		setup func(t *testing.T, dir string) string // returns psk_file value
		want  string                                // problem text; "" = valid
	}{
		{name: "private", data: testPSK + "\r\n", mode: 0o600},
		{name: "owner read only", data: testPSK, mode: 0o400},
		{name: "world readable", data: testPSK, mode: 0o644, want: `"k.psk" has mode 0644: it must not be accessible by group or others`},
		{name: "group readable", data: testPSK, mode: 0o640, want: "has mode 0640"},
		{name: "group writable", data: testPSK, mode: 0o620, want: "has mode 0620"},
		{name: "empty", data: "\n", mode: 0o600, want: `the key in "k.psk" is empty`},
		{name: "short", data: "abc", mode: 0o600, want: "is too short"},
		{name: "huge", data: strings.Repeat("k", maxPSKFile+1), mode: 0o600, want: "larger than 4096 bytes"},
		{name: "missing", setup: func(*testing.T, string) string { return "nope.psk" }, want: `file "nope.psk" does not exist`},
		{name: "directory", setup: func(t *testing.T, dir string) string {
			if err := os.Mkdir(filepath.Join(dir, "d"), 0o700); err != nil {
				t.Fatal(err)
			}
			return "d"
		}, want: `"d" is not a regular file`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			name := "k.psk"
			if tt.setup != nil {
				name = tt.setup(t, dir)
			} else {
				writeFile(t, filepath.Join(dir, name), tt.data, tt.mode)
			}
			text := strings.Replace(base, "psk: 0123456789abcdef0123", "psk_file: "+name, 1)
			path := filepath.Join(dir, "c.yaml")
			writeFile(t, path, text, 0o644)
			cfg, err := Load(path)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if string(cfg.Connections[0].PSK) != testPSK {
					t.Errorf("psk not read from file correctly")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "c.yaml:6: connections[0].psk_file: ") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("want %q at connections[0].psk_file, got %v", tt.want, err)
			}
			if strings.Contains(err.Error(), testPSK) || strings.Contains(err.Error(), "abc") {
				t.Errorf("error leaks key material: %v", err)
			}
		})
	}
	if _, err := Load(filepath.Join(t.TempDir(), "absent.yaml")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file: %v", err)
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	cfg, err := Load(setup(t, "design.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Connections[0]
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	y, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{
		"json": string(js),
		"yaml": string(y),
		"%v":   fmt.Sprintf("%v", cfg),
		"%+v":  fmt.Sprintf("%+v", c),
		"%#v":  fmt.Sprintf("%#v", c),
		"%s":   fmt.Sprintf("%s", c.PSK),
		"%x":   fmt.Sprintf("%x", c.PSK),
		"%d":   fmt.Sprintf("%d", c.PSK),
		"%q":   fmt.Sprintf("%q", c.PSK),
	}
	for name, out := range outputs {
		if strings.Contains(out, testPSK) || strings.Contains(out, fmt.Sprintf("%x", []byte(testPSK))) ||
			strings.Contains(out, fmt.Sprint([]byte(testPSK))) {
			t.Errorf("%s output leaks the psk: %s", name, out)
		}
	}
	if !strings.Contains(string(js), `"PSK":"\u003credacted\u003e"`) {
		t.Errorf("json lacks redacted psk: %s", js)
	}
	f := zap.Any("psk", c.PSK)
	if f.Type != zapcore.ObjectMarshalerType {
		t.Fatalf("zap.Any treats Secret as %v", f.Type)
	}
	enc := zapcore.NewMapObjectEncoder()
	f.AddTo(enc)
	if got := fmt.Sprint(enc.Fields); strings.Contains(got, testPSK) || !strings.Contains(got, redacted) {
		t.Errorf("zap fields = %s", got)
	}
	if got := c.PSK.LogValue().String(); got != redacted {
		t.Errorf("slog value = %q", got)
	}
}

func TestIdentity(t *testing.T) {
	tests := []struct {
		in   string
		want Identity
		err  string
	}{
		{"192.0.2.1", Identity{IDIPv4Addr, "192.0.2.1"}, ""},
		{"2001:db8::1", Identity{IDIPv6Addr, "2001:db8::1"}, ""},
		{"gw.example.com", Identity{IDFQDN, "gw.example.com"}, ""},
		{"@gw", Identity{IDFQDN, "gw"}, ""},
		{"@192.0.2.1", Identity{}, "looks like a malformed address"},
		{"alice@example.com", Identity{IDRFC822Addr, "alice@example.com"}, ""},
		{"CN=gw, O=Example\\, Inc., C=CH", Identity{}, "strongSwan has no escapes"},
		{"/C=CH/O=Example, Inc./CN=gw", Identity{IDDERASN1DN, "/C=CH/O=Example, Inc./CN=gw"}, ""},
		{"UID=gw,O=x", Identity{IDDERASN1DN, "UID=gw,O=x"}, ""},
		{"CN=gw;O=Example", Identity{}, "does not separate RDNs with ';'"},
		{"CN=,O=x", Identity{IDDERASN1DN, "CN=,O=x"}, ""},
		{"2.5.4.3=gw", Identity{IDDERASN1DN, "2.5.4.3=gw"}, ""},
		{"%any", Identity{}, ""},
		{"", Identity{}, "empty identity"},
		{"foo bar", Identity{}, "bad character"},
		{"-gw.example.com", Identity{}, "invalid host name"},
		{"10.1.2", Identity{}, "malformed address"},
		{"@", Identity{}, "invalid host name"},
		{"a b@example.com", Identity{}, "invalid user part"},
		{"alice@", Identity{}, "invalid host name"},
		{"CN gw,O=x", Identity{}, "each part is TYPE=value"},
	}
	for _, tt := range tests {
		got, err := ParseIdentity(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseIdentity(%q) error = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseIdentity(%q) = %#v, %v; want %#v", tt.in, got, err, tt.want)
			continue
		}
		again, err := ParseIdentity(got.String())
		if err != nil || again != got {
			t.Errorf("identity %q does not round-trip via %q: %#v, %v", tt.in, got.String(), again, err)
		}
	}
}

func TestDurations(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"30s", 30 * time.Second, true},
		{"1d", 24 * time.Hour, true},
		{"1d12h", 36 * time.Hour, true},
		{"1h30m", 90 * time.Minute, true},
		{"0", 0, true},
		{"d", 0, false},
		{"1.5d", 0, false},
		{"-1d", 0, false},
		{"1d-1h", 0, false},
		{"10", 0, false},
		{"100000d", 0, false},
	}
	for _, tt := range tests {
		got, err := parseDuration(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseDuration(%q) = %v, %v", tt.in, got, err)
		}
		if tt.ok {
			back, err := parseDuration(formatDuration(got))
			if err != nil || back != got {
				t.Errorf("formatDuration(%v) = %q does not parse back", got, formatDuration(got))
			}
		}
	}
}

func TestAliasBomb(t *testing.T) {
	// 20 connections aliasing 20 children lists, each aliasing 5000
	// selectors: tiny text, about 2 million values when expanded.
	var b strings.Builder
	b.WriteString("x: &ts [")
	for i := range 5000 {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "10.%d.%d.0/24", i/256, i%256)
	}
	b.WriteString("]\ny: &c {name: c, remote_addr: 192.0.2.2, psk: 0123456789abcdef0123, children: [")
	for i := range 20 {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "{name: n%d, local_ts: *ts, remote_ts: *ts}", i)
	}
	b.WriteString("]}\nconnections: [")
	for i := range 20 {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("*c")
	}
	b.WriteString("]\n")
	_, err := Parse("bomb.yaml", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "document too large") {
		t.Fatalf("want a too-large error, got %.300v", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"design.yaml", "minimal.yaml", "full.yaml"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(base))
	f.Add([]byte("a: &a [*a]\nconnections: *a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data)
		if err != nil {
			var errs *Errors
			if !errors.As(err, &errs) || len(errs.Problems) == 0 {
				t.Fatalf("error is not a non-empty *Errors: %v", err)
			}
			return
		}
		if _, err := yaml.Marshal(cfg); err != nil {
			t.Fatalf("marshal of a valid config: %v", err)
		}
	})
}

// TestHalfOpenLimitFollowsThreshold: left out, the half-open limit is ten
// times the COOKIE threshold, so raising the threshold alone stays valid.
func TestHalfOpenLimitFollowsThreshold(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want int
	}{
		{"ike: {cookie_threshold: 5000}\n", 50000},
		{"ike: {cookie_threshold: 500000}\n", maxHalfOpen},
		{"ike: {cookie_threshold: 5000, half_open_limit: 5000}\n", 5000},
	} {
		c, err := Parse("test.yaml", []byte(tc.yaml+"dataplane: {mode: none}\n"))
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		if c.IKE.HalfOpenLimit != tc.want {
			t.Errorf("%q: half_open_limit %d, want %d", tc.yaml, c.IKE.HalfOpenLimit, tc.want)
		}
	}
}

// TestWarningsNoPFS: esp_proposals without a key exchange group are valid
// but fail against peers that require PFS, so --check says so, naming the
// connection; one group anywhere in the list is enough.
func TestWarningsNoPFS(t *testing.T) {
	for _, tc := range []struct {
		esp  string
		warn bool
	}{
		{"[aes256gcm16]", true},
		{"[aes256gcm16, aes128gcm16]", true},
		{"[aes256gcm16-x25519]", false},
		{"[aes256gcm16, aes256gcm16-ecp256]", false},
	} {
		data := strings.Replace(base, "    children:", "    esp_proposals: "+tc.esp+"\n    children:", 1)
		cfg, err := Parse("w.yaml", []byte(data))
		if err != nil {
			t.Fatalf("%s: %v", tc.esp, err)
		}
		w := Warnings(cfg)
		if got := len(w) > 0; got != tc.warn {
			t.Errorf("%s: warnings %q, want a warning: %v", tc.esp, w, tc.warn)
		}
		if tc.warn && (!strings.Contains(w[0], "connection "+cfg.Connections[0].Name) || !strings.Contains(w[0], "PFS")) {
			t.Errorf("%s: warning %q names neither the connection nor PFS", tc.esp, w[0])
		}
	}
}
