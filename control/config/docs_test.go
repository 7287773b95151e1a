package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/xdpsec/xdpsec/ike/proposal"
)

// schemaKeys lists the dotted path of every YAML key reachable from t,
// e.g. "connections[].children[].replay_window", sections included.
func schemaKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for f := range t.Fields() {
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		key := tag
		if prefix != "" {
			key = prefix + "." + tag
		}
		keys = append(keys, key)
		ft := f.Type
		if ft.Kind() == reflect.Slice && hasYAMLFields(ft.Elem()) {
			keys = append(keys, schemaKeys(ft.Elem(), key+"[]")...)
		} else if hasYAMLFields(ft) {
			keys = append(keys, schemaKeys(ft, key)...)
		}
	}
	return keys
}

// hasYAMLFields tells schema sections from leaf values such as
// netip.Addr or Identity, which are structs without yaml tags.
func hasYAMLFields(t reflect.Type) bool {
	if t.Kind() != reflect.Struct {
		return false
	}
	for f := range t.Fields() {
		if f.Tag.Get("yaml") != "" {
			return true
		}
	}
	return false
}

func readDocs(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatalf("read docs: %v", err)
	}
	return string(data)
}

func TestDocsCoverEverySchemaKey(t *testing.T) {
	docs := readDocs(t)
	keys := schemaKeys(reflect.TypeFor[Config](), "")
	// Guard the walk itself: a broken walk would find nothing to check.
	for _, k := range []string{"dataplane.offload.type", "connections[].psk_file", "connections[].children[].replay_window"} {
		if !strings.Contains(strings.Join(keys, " "), k) {
			t.Fatalf("schema walk misses %s: %v", k, keys)
		}
	}
	for _, k := range keys {
		if !strings.Contains(docs, "`"+k+"`") {
			t.Errorf("docs/configuration.md does not document `%s`", k)
		}
	}
}

func TestDocsListProposalKeywords(t *testing.T) {
	docs := readDocs(t)
	for _, esp := range []bool{false, true} {
		for _, tok := range proposal.ValidTokens(esp) {
			if !strings.Contains(docs, "`"+tok+"`") {
				t.Errorf("docs/configuration.md does not list keyword `%s`", tok)
			}
		}
	}
	for tok, repl := range proposal.WeakTokens() {
		if !strings.Contains(docs, "`"+tok+"`") {
			t.Errorf("docs/configuration.md does not list weak keyword `%s` (replacement %s)", tok, repl)
		}
	}
}

// The examples in the reference must stay valid configurations. Their
// /etc/xdpsec/ files are created in a temporary directory.
func TestDocsExamplesParse(t *testing.T) {
	docs := readDocs(t)
	dir := t.TempDir()
	for _, f := range []string{"site-b.psk", "vpn.key"} {
		writeFile(t, filepath.Join(dir, f), testPSK, 0o600)
	}
	for _, f := range []string{"vpn.crt", "ca.crt"} {
		writeFile(t, filepath.Join(dir, f), "cert", 0o644)
	}
	blocks := strings.Split(docs, "```yaml\n")[1:]
	if len(blocks) < 2 {
		t.Fatalf("found %d yaml examples, want at least 2", len(blocks))
	}
	for i, b := range blocks {
		text, _, ok := strings.Cut(b, "```")
		if !ok {
			t.Fatalf("example %d is not closed", i)
		}
		text = strings.ReplaceAll(text, "/etc/xdpsec/", dir+"/")
		if _, err := Parse(fmt.Sprintf("example%d.yaml", i), []byte(text)); err != nil {
			t.Errorf("docs example %d does not parse:\n%v\n%s", i, err, text)
		}
	}
}
