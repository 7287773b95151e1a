package config

import (
	"fmt"

	"go.yaml.in/yaml/v3"
)

// MarshalYAML writes durations as people write them ("4h", "1d") rather
// than yaml.v3's integer nanoseconds, so a marshaled config parses back
// to an equal one. A PSK read from psk_file is left out (the file is
// referenced instead); an inline psk is written as "<redacted>", which
// Parse refuses, so a dumped config never carries or fakes a secret.
func (c Connection) MarshalYAML() (any, error) {
	type plain Connection // drops the methods, avoiding recursion
	p := plain(c)
	if p.PSKFile != "" {
		p.PSK = nil
	}
	var n yaml.Node
	if err := n.Encode(p); err != nil {
		return nil, fmt.Errorf("marshal connection %q: %w", c.Name, err)
	}
	setScalar(&n, "ike_lifetime", formatDuration(c.IKELifetime))
	setScalar(&n, "dpd_delay", formatDuration(c.DPDDelay))
	return &n, nil
}

// MarshalYAML writes the lifetime as a duration string; see
// Connection.MarshalYAML.
func (ch Child) MarshalYAML() (any, error) {
	type plain Child
	var n yaml.Node
	if err := n.Encode(plain(ch)); err != nil {
		return nil, fmt.Errorf("marshal child %q: %w", ch.Name, err)
	}
	setScalar(&n, "lifetime", formatDuration(ch.Lifetime))
	return &n, nil
}

func setScalar(m *yaml.Node, key, value string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: value}
			return
		}
	}
}
