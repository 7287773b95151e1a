// Package testbin builds the project's commands for tests that exercise the
// real executables, as an operator runs them.
package testbin

import (
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"testing"
)

// DirEnv names the environment variable of a directory with the commands
// already built.
const DirEnv = "XDPSEC_TEST_BINDIR"

// Build compiles the named commands (import paths) into a temporary
// directory removed after the test, and returns that directory. The build
// cache makes repeated builds in one test run cheap.
//
// Where DirEnv names a directory, the commands are taken from there
// instead: the VM test rig boots a kernel with no Go toolchain and brings
// them prebuilt (statically).
func Build(t testing.TB, pkgs ...string) string {
	t.Helper()
	if dir := os.Getenv(DirEnv); dir != "" {
		for _, p := range pkgs {
			if _, err := os.Stat(filepath.Join(dir, path.Base(p))); err != nil {
				t.Fatalf("%s=%s: %v", DirEnv, dir, err)
			}
		}
		return dir
	}
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
