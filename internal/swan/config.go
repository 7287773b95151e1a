package swan

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/strongswan/govici/vici"
)

// Conn is one swanctl connection (the connections.<name> section of
// swanctl.conf). Zero values mean "strongSwan's default" and are left out.
type Conn struct {
	Name string
	// LocalAddrs, RemoteAddrs: addresses or "%any".
	LocalAddrs, RemoteAddrs []string
	LocalPort, RemotePort   int
	LocalID, RemoteID       string
	// PSK, when set, is loaded with load-shared for LocalID and RemoteID
	// and both ends authenticate with it.
	PSK string
	// Proposals are IKE proposals ("aes256gcm16-prfsha256-x25519").
	Proposals []string
	// Encap forces UDP encapsulation even without a detected NAT.
	Encap bool
	// Mobike: nil keeps the default (on).
	Mobike *bool
	// IKE SA lifetimes: rekey_time, reauth_time, over_time.
	RekeyTime, ReauthTime, OverTime time.Duration
	DPDDelay                        time.Duration
	Children                        []Child
}

// Child is one CHILD_SA configuration (connections.<conn>.children.<name>).
type Child struct {
	Name              string
	LocalTS, RemoteTS []string
	// ESPProposals ("aes256gcm16", "aes256gcm16-x25519" for PFS).
	ESPProposals []string
	// Mode: "tunnel" (default) or "transport".
	Mode string
	// StartAction: "none" (default), "start" or "trap".
	StartAction string
	DPDAction   string
	// CHILD SA lifetimes: rekey_time, life_time.
	RekeyTime, LifeTime time.Duration
	// ReplayWindow: 0 keeps the default (32).
	ReplayWindow int
}

// kv is one entry of a configuration section: a string, a list or a
// nested section. Conn and Child render to this tree once, and the tree
// renders both to a VICI message and to swanctl.conf text, so what is
// loaded and what is logged cannot disagree.
type kv struct {
	key     string
	str     string
	list    []string
	section []kv
}

func (c Conn) tree() []kv {
	var s []kv
	s = addList(s, "local_addrs", c.LocalAddrs)
	s = addList(s, "remote_addrs", c.RemoteAddrs)
	s = addInt(s, "local_port", c.LocalPort)
	s = addInt(s, "remote_port", c.RemotePort)
	s = append(s, kv{key: "version", str: "2"})
	s = addList(s, "proposals", c.Proposals)
	if c.Encap {
		s = append(s, kv{key: "encap", str: "yes"})
	}
	if c.Mobike != nil {
		s = append(s, kv{key: "mobike", str: yesNo(*c.Mobike)})
	}
	s = addDur(s, "rekey_time", c.RekeyTime)
	s = addDur(s, "reauth_time", c.ReauthTime)
	s = addDur(s, "over_time", c.OverTime)
	s = addDur(s, "dpd_delay", c.DPDDelay)
	auth := "pubkey"
	if c.PSK != "" {
		auth = "psk"
	}
	local := []kv{{key: "auth", str: auth}}
	local = addStr(local, "id", c.LocalID)
	remote := []kv{{key: "auth", str: auth}}
	remote = addStr(remote, "id", c.RemoteID)
	s = append(s, kv{key: "local", section: local}, kv{key: "remote", section: remote})
	var children []kv
	for _, ch := range c.Children {
		children = append(children, kv{key: ch.Name, section: ch.tree()})
	}
	if len(children) > 0 {
		s = append(s, kv{key: "children", section: children})
	}
	return s
}

func (ch Child) tree() []kv {
	var s []kv
	s = addList(s, "local_ts", ch.LocalTS)
	s = addList(s, "remote_ts", ch.RemoteTS)
	s = addList(s, "esp_proposals", ch.ESPProposals)
	s = addStr(s, "mode", ch.Mode)
	s = addStr(s, "start_action", ch.StartAction)
	s = addStr(s, "dpd_action", ch.DPDAction)
	s = addDur(s, "rekey_time", ch.RekeyTime)
	s = addDur(s, "life_time", ch.LifeTime)
	s = addInt(s, "replay_window", ch.ReplayWindow)
	return s
}

func addStr(s []kv, k, v string) []kv {
	if v == "" {
		return s
	}
	return append(s, kv{key: k, str: v})
}

func addList(s []kv, k string, v []string) []kv {
	if len(v) == 0 {
		return s
	}
	return append(s, kv{key: k, list: v})
}

func addInt(s []kv, k string, v int) []kv {
	if v == 0 {
		return s
	}
	return append(s, kv{key: k, str: strconv.Itoa(v)})
}

// addDur writes durations in whole seconds, the unit strongSwan assumes
// for a bare number.
func addDur(s []kv, k string, d time.Duration) []kv {
	if d == 0 {
		return s
	}
	return append(s, kv{key: k, str: strconv.FormatInt(int64(d/time.Second), 10)})
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// message renders the tree as a VICI message, preserving key order.
func message(tree []kv) (*vici.Message, error) {
	m := vici.NewMessage()
	for _, e := range tree {
		var err error
		switch {
		case e.section != nil:
			var sub *vici.Message
			if sub, err = message(e.section); err == nil {
				err = m.Set(e.key, sub)
			}
		case e.list != nil:
			err = m.Set(e.key, e.list)
		default:
			err = m.Set(e.key, e.str)
		}
		if err != nil {
			return nil, fmt.Errorf("swan: vici key %s: %w", e.key, err)
		}
	}
	return m, nil
}

// render writes the tree in swanctl.conf syntax.
func render(b *strings.Builder, tree []kv, indent string) {
	for _, e := range tree {
		switch {
		case e.section != nil:
			fmt.Fprintf(b, "%s%s {\n", indent, e.key)
			render(b, e.section, indent+"  ")
			fmt.Fprintf(b, "%s}\n", indent)
		case e.list != nil:
			fmt.Fprintf(b, "%s%s = %s\n", indent, e.key, strings.Join(e.list, ","))
		default:
			fmt.Fprintf(b, "%s%s = %s\n", indent, e.key, e.str)
		}
	}
}

// Message returns the load-conn request for c: {name: {settings}}.
func (c Conn) Message() (*vici.Message, error) {
	if c.Name == "" {
		return nil, fmt.Errorf("swan: connection without a name")
	}
	return message([]kv{{key: c.Name, section: c.tree()}})
}

// SwanctlConf renders c as a swanctl.conf "connections" block (and its
// secret, masked), for logs and for users who want to reproduce a test
// by hand with swanctl --load-all.
func (c Conn) SwanctlConf() string {
	var b strings.Builder
	render(&b, []kv{{key: "connections", section: []kv{{key: c.Name, section: c.tree()}}}}, "")
	if c.PSK != "" {
		sec := []kv{{key: "ike-" + c.Name, section: []kv{
			{key: "id-1", str: c.LocalID},
			{key: "id-2", str: c.RemoteID},
			{key: "secret", str: "<redacted>"},
		}}}
		render(&b, []kv{{key: "secrets", section: sec}}, "")
	}
	return b.String()
}
