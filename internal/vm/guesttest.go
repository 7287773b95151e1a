package vm

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// GuestTests names tests of the calling package to run in the guest.
type GuestTests struct {
	// Run is the -test.run pattern.
	Run string
	// MustPass lists tests that must report PASS in the guest: a test
	// that skips there (its kernel feature missing after all) fails.
	MustPass []string
	// Files and Env go to the guest as in Options and Binary.
	Files map[string]string
	Env   []string
	// Timeout bounds the guest run (default 5 minutes).
	Timeout time.Duration
}

// RunGuestTests builds the test binary of the package in the current
// directory (a test's working directory is its package), runs the tests g
// names in the guest and fails t unless they all pass there.
func RunGuestTests(t testing.TB, g GuestTests) Result {
	t.Helper()
	if g.Timeout == 0 {
		g.Timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.Timeout+2*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "guest.test")
	if err := BuildTest(ctx, ".", bin); err != nil {
		t.Fatal(err)
	}
	res, err := Run(ctx, Options{
		Binaries: []Binary{{
			Name: "guest-test", Path: bin, Env: g.Env,
			Args: []string{"-test.run", g.Run, "-test.v", "-test.timeout", g.Timeout.String()},
		}},
		Files: g.Files, Memory: 2048, CPUs: 2, Timeout: g.Timeout + time.Minute,
	})
	if err != nil {
		t.Fatalf("vm: %v\n%s", err, res.Console)
	}
	r, _ := res.Binary("guest-test")
	t.Logf("guest kernel %s, boot %s, run %s", res.Kernel, res.Boot.Round(time.Millisecond), res.Elapsed.Round(time.Millisecond))
	t.Logf("guest output:\n%s", r.Output)
	if !r.Finished || r.ExitCode != 0 {
		t.Fatalf("tests in the guest: finished %v, exit %d", r.Finished, r.ExitCode)
	}
	for _, name := range g.MustPass {
		if !strings.Contains(r.Output, "--- PASS: "+name+" ") {
			t.Errorf("%s did not pass in the guest (skipped or missing)", name)
		}
	}
	return res
}
