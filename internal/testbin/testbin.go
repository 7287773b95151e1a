// Package testbin builds the project's commands for tests that exercise the
// real executables, as an operator runs them.
package testbin

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// Build compiles the named commands (import paths) into a temporary
// directory removed after the test, and returns that directory. The build
// cache makes repeated builds in one test run cheap.
func Build(t testing.TB, pkgs ...string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		// CI runs with /usr/local/go/bin outside PATH on some machines.
		goBin = filepath.Join("/usr/local/go/bin", "go")
	}
	dir := t.TempDir()
	args := append([]string{"build", "-o", dir + "/"}, pkgs...)
	if out, err := exec.Command(goBin, args...).CombinedOutput(); err != nil {
		t.Fatalf("go build %v: %v\n%s", pkgs, err, out)
	}
	return dir
}
