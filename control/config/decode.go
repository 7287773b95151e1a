package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// decoder walks the yaml.Node tree by hand instead of yaml.Unmarshal so
// that every value keeps its line for error messages, unknown keys are
// caught, and decoding goes on after a problem to report all of them.
type decoder struct {
	file  string
	dir   string // for relative file names inside the config
	probs []Problem
	// visits counts nodes walked; aliases can make a small file expand
	// into a huge walk, so the walk stops at maxVisits.
	visits int
	tooBig bool
}

// maxVisits is far above any real configuration (a thousand connections
// with ten children each stay below 100,000 nodes).
const maxVisits = 1_000_000

// visit charges n nodes to the walk budget and reports whether the walk
// may go on.
func (d *decoder) visit(at *yaml.Node, n int) bool {
	d.visits += n
	if d.visits <= maxVisits {
		return true
	}
	if !d.tooBig {
		d.tooBig = true
		d.add(at, "", "document too large: more than %d values after alias expansion", maxVisits)
	}
	return false
}

func newDecoder(file string) *decoder {
	return &decoder{file: file, dir: filepath.Dir(file)}
}

func line(n *yaml.Node) int {
	if n == nil {
		return 0
	}
	return n.Line
}

func (d *decoder) add(n *yaml.Node, path, format string, args ...any) {
	d.probs = append(d.probs, Problem{File: d.file, Line: line(n), Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) addErr(n *yaml.Node, path string, err error) {
	d.probs = append(d.probs, Problem{File: d.file, Line: line(n), Path: path, Msg: err.Error(), Err: err})
}

func (d *decoder) err() error {
	if len(d.probs) == 0 {
		return nil
	}
	sortProblems(d.probs)
	return &Errors{Problems: d.probs}
}

// syntax turns yaml.v3's "yaml: line N: msg" into a located problem. data
// is the file, so the problem can point at a common cause on that line.
func (d *decoder) syntax(err error, data []byte) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	ln := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, m, ok := strings.Cut(rest, ": "); ok {
			if v, err := strconv.Atoi(num); err == nil {
				ln, msg = v, m
			}
		}
	}
	// "%" cannot start a plain YAML scalar, and "%any" is what operators
	// type for a responder-only connection: say how to write it.
	if lines := bytes.Split(data, []byte("\n")); ln > 0 && ln <= len(lines) && bytes.Contains(lines[ln-1], []byte(": %")) {
		msg += ` (quote values that start with %, e.g. remote_addr: "%any")`
	}
	d.probs = append(d.probs, Problem{File: d.file, Line: ln, Msg: "invalid YAML: " + msg, Err: err})
}

func (d *decoder) document(data []byte) *Config {
	cfg := defaultConfig()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	err := dec.Decode(&doc)
	if err != nil && !errors.Is(err, io.EOF) {
		d.syntax(err, data)
		return nil
	}
	if err == nil {
		var extra yaml.Node
		if err := dec.Decode(&extra); err == nil {
			d.add(&extra, "", "a config file holds a single YAML document")
		} else if !errors.Is(err, io.EOF) {
			d.syntax(err, data)
		}
	}
	// An empty file (or one of comments only) means all defaults: a nil
	// root walks as an empty mapping.
	var root *yaml.Node
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		root = doc.Content[0]
	}
	d.config(root, &cfg)
	return &cfg
}

// resolve follows aliases; anchors let operators share blocks.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 16; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "a document"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

type handler func(v *yaml.Node, path string)

// mapping walks a mapping node, dispatching known keys to their handler
// and reporting unknown and repeated keys. It returns the value node of
// each key seen, so callers can tell absent keys from present ones and
// point at the right line in later checks.
func (d *decoder) mapping(n *yaml.Node, path string, handlers map[string]handler) map[string]*yaml.Node {
	seen := make(map[string]*yaml.Node)
	n = resolve(n)
	if isNull(n) {
		return seen
	}
	if n.Kind != yaml.MappingNode {
		d.add(n, path, "must be a mapping, got %s", kindName(n))
		return seen
	}
	if !d.visit(n, len(n.Content)/2) {
		return seen
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.add(k, path, "keys must be plain strings, got %s", kindName(k))
			continue
		}
		key := k.Value
		kp := join(path, key)
		if key == "<<" {
			d.add(k, path, "YAML merge keys (<<) are not supported: repeat the keys or use an alias for a whole value")
			continue
		}
		h, ok := handlers[key]
		if !ok {
			d.add(k, kp, "unknown key%s", suggest(key, handlers))
			continue
		}
		if first, dup := seen[key]; dup {
			d.add(k, kp, "key given twice (first at line %d)", line(first))
			continue
		}
		seen[key] = v
		h(resolve(v), kp)
	}
	return seen
}

// keyNode returns the node to blame for a problem with key: its value if
// present, else the enclosing mapping.
func keyNode(seen map[string]*yaml.Node, key string, parent *yaml.Node) *yaml.Node {
	if v, ok := seen[key]; ok {
		return v
	}
	return parent
}

func suggest(key string, handlers map[string]handler) string {
	best, bestDist := "", math.MaxInt
	for k := range handlers {
		dist := levenshtein(strings.ToLower(key), k)
		if dist < bestDist || (dist == bestDist && k < best) {
			best, bestDist = k, dist
		}
	}
	if best == "" || bestDist > max(2, len(best)/2) {
		keys := make([]string, 0, len(handlers))
		for k := range handlers {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		return " (known keys: " + strings.Join(keys, ", ") + ")"
	}
	return ", did you mean " + best + "?"
}

func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// str decodes a scalar as text; null reads as "".
func (d *decoder) str(n *yaml.Node, path string) (string, bool) {
	if isNull(n) {
		return "", true
	}
	if n.Kind != yaml.ScalarNode {
		d.add(n, path, "must be a string, got %s", kindName(n))
		return "", false
	}
	return n.Value, true
}

// intIn returns a handler that stores an integer within [lo, hi] in dst.
func (d *decoder) intIn(dst *int, lo, hi int) handler {
	return func(v *yaml.Node, p string) {
		if x, ok := d.integer(v, p); ok {
			if x < lo || x > hi {
				d.add(v, p, "must be between %d and %d, got %d", lo, hi, x)
				return
			}
			*dst = x
		}
	}
}

func (d *decoder) integer(n *yaml.Node, path string) (int, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		d.add(n, path, "must be an integer, got %s", kindName(n))
		return 0, false
	}
	var v int
	if err := n.Decode(&v); err != nil {
		d.add(n, path, "must be an integer, got %s", kindName(n))
		return 0, false
	}
	return v, true
}

// boolean decodes true or false (YAML 1.2: not yes/no, which read as
// strings and are refused with the reason).
func (d *decoder) boolean(n *yaml.Node, path string, dst *bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		d.add(n, path, "must be true or false, got %s", kindName(n))
		return
	}
	var v bool
	if err := n.Decode(&v); err != nil {
		d.add(n, path, "must be true or false, got %s", kindName(n))
		return
	}
	*dst = v
}

// float decodes a number; integers are numbers too.
func (d *decoder) float(n *yaml.Node, path string) (float64, bool) {
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!float" && n.ShortTag() != "!!int") {
		d.add(n, path, "must be a number, got %s", kindName(n))
		return 0, false
	}
	var v float64
	if err := n.Decode(&v); err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		d.add(n, path, "must be a number, got %s", kindName(n))
		return 0, false
	}
	return v, true
}

// seq returns the items of a list; null reads as an empty list.
func (d *decoder) seq(n *yaml.Node, path string) ([]*yaml.Node, bool) {
	if isNull(n) {
		return nil, true
	}
	if n.Kind != yaml.SequenceNode {
		d.add(n, path, "must be a list, got %s", kindName(n))
		return nil, false
	}
	if !d.visit(n, len(n.Content)) {
		return nil, false
	}
	items := make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		items[i] = resolve(c)
	}
	return items, true
}

func (d *decoder) enum(n *yaml.Node, path string, dst *string, allowed ...string) {
	s, ok := d.str(n, path)
	if !ok {
		return
	}
	if !slices.Contains(allowed, s) {
		d.add(n, path, "invalid value %q: must be one of %s", s, strings.Join(allowed, ", "))
		return
	}
	*dst = s
}

func (d *decoder) duration(n *yaml.Node, path string, dst *time.Duration, allowZero bool) {
	s, ok := d.str(n, path)
	if !ok {
		return
	}
	v, err := parseDuration(s)
	if err != nil {
		d.addErr(n, path, err)
		return
	}
	if v < 0 || (v == 0 && !allowZero) {
		d.add(n, path, "duration %q must be positive", s)
		return
	}
	*dst = v
}

// parseDuration accepts Go durations plus a leading whole number of days,
// e.g. "1d", "1d12h", "90m".
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	in := s
	var days time.Duration
	if before, after, ok := strings.Cut(s, "d"); ok {
		n, err := strconv.ParseUint(before, 10, 16)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q: use e.g. 30s, 4h or 1d", in)
		}
		days = time.Duration(n) * 24 * time.Hour
		s = after
		if s == "" {
			return days, nil
		}
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		if _, numErr := strconv.ParseFloat(s, 64); numErr == nil {
			return 0, fmt.Errorf("invalid duration %q: add a unit, e.g. %ss", in, s)
		}
		return 0, fmt.Errorf("invalid duration %q: use e.g. 30s, 4h or 1d", in)
	}
	if days > 0 && v < 0 {
		return 0, fmt.Errorf("invalid duration %q: use e.g. 30s, 4h or 1d", in)
	}
	if v > math.MaxInt64-days {
		return 0, fmt.Errorf("duration %q is too long", in)
	}
	return days + v, nil
}

// formatDuration writes durations the way people configure them, so a
// marshaled config reads naturally and parses back to the same value.
func formatDuration(v time.Duration) string {
	const day = 24 * time.Hour
	if v > 0 && v%day == 0 {
		return strconv.FormatInt(int64(v/day), 10) + "d"
	}
	s := v.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func (d *decoder) percent(n *yaml.Node, path string, dst *float64) {
	s, ok := d.str(n, path)
	if !ok {
		return
	}
	num := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s), "%"))
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || !(v >= 0 && v <= 100) {
		d.add(n, path, "invalid percentage %q: must be between 0 and 100, e.g. 10%%", s)
		return
	}
	*dst = v
}
