package bpf

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// generateCommands returns the argument lists of gen.go's //go:generate
// lines, so the check compiles exactly what `make generate` does.
func generateCommands(t *testing.T) [][]string {
	t.Helper()
	f, err := os.Open("gen.go")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cmds [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "//go:generate ")
		if !ok {
			continue
		}
		args, err := splitQuoted(line)
		if err != nil {
			t.Fatalf("gen.go: %v", err)
		}
		cmds = append(cmds, args)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(cmds) == 0 {
		t.Fatal("gen.go has no //go:generate lines")
	}
	return cmds
}

// splitQuoted splits a go:generate line into words the way go generate
// does: on spaces, with double-quoted strings as single words.
func splitQuoted(s string) ([]string, error) {
	var words []string
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		if s[0] == '"' {
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				return nil, strconv.ErrSyntax
			}
			w, err := strconv.Unquote(s[:end+2])
			if err != nil {
				return nil, err
			}
			words = append(words, w)
			s = s[end+2:]
			continue
		}
		end := strings.IndexByte(s, ' ')
		if end < 0 {
			end = len(s)
		}
		words = append(words, s[:end])
		s = s[end:]
	}
	return words, nil
}

// TestGeneratedUpToDate regenerates the bpf2go output into a temporary
// directory and compares it with the committed files: an edit of the C
// sources without `make generate` fails here. Clang's output is
// deterministic for a given clang, and CI uses Debian's, like make generate.
func TestGeneratedUpToDate(t *testing.T) {
	if _, err := exec.LookPath("clang"); err != nil {
		t.Skip("clang not installed: cannot check that the committed BPF objects match the C sources (make deps installs it)")
	}
	tmp := t.TempDir()
	for _, args := range generateCommands(t) {
		if len(args) < 3 || args[0] != "go" || args[1] != "tool" || args[2] != "bpf2go" {
			t.Fatalf("unexpected generator %q", args)
		}
		ident := args[len(args)-2]
		cmdArgs := append([]string{"tool", "bpf2go", "-output-dir", tmp, "-go-package", "bpf"}, args[3:]...)
		cmd := exec.Command("go", cmdArgs...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("bpf2go %s: %v\n%s", ident, err, out.String())
		}
		for _, ext := range []string{".o", ".go"} {
			name := strings.ToLower(ident) + "_bpfel" + ext
			want, err := os.ReadFile(filepath.Join(tmp, name))
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(name)
			if err != nil {
				t.Fatalf("committed output: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s is stale: it differs from what the C sources compile to; run `make generate` and commit the result", name)
			}
		}
	}
}
