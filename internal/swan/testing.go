package swan

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/xdpsec/xdpsec/internal/netlab"
)

// RequireCharon skips the test when charon is not installed (CI installs
// it with `make deps`; a developer machine may lack it).
func RequireCharon(t testing.TB) {
	t.Helper()
	netlab.RequireRoot(t)
	if _, err := os.Stat(DefaultCharon); err != nil {
		t.Skipf("swan: %s not installed (apt-get install strongswan-charon libcharon-extra-plugins): %v", DefaultCharon, err)
	}
}

// sidRoot builds the sid root at most once per test binary; the first
// caller's test logs the build.
var sidRoot struct {
	once sync.Once
	dir  string
	err  error
}

// RequireCharon6 returns the root holding strongSwan 6 (SidRoot), for
// Options.Root, building it first if this machine has none (about 20 s,
// bounded by SidBuildTimeout). It skips the test when the root cannot be
// had: not root, no mmdebstrap, no mirror, a failed build.
func RequireCharon6(t testing.TB) string {
	t.Helper()
	netlab.RequireRoot(t)
	sidRoot.once.Do(func() {
		if rootReady(SidRoot) {
			sidRoot.dir = SidRoot
			return
		}
		t.Logf("swan: no strongSwan 6 root at %s yet: building it from Debian sid with mmdebstrap (once per machine; another test binary may be at it)", SidRoot)
		start := time.Now()
		w, stop := netlab.LogWriter(t, "mmdebstrap")
		defer stop()
		// Beyond one build's limit: another process may be building.
		ctx, cancel := context.WithTimeout(context.Background(), SidBuildTimeout+time.Minute)
		defer cancel()
		sidRoot.dir, sidRoot.err = EnsureSidRoot(ctx, SidRoot, w)
		if sidRoot.err == nil {
			t.Logf("swan: root ready after %v", time.Since(start).Round(time.Second))
		}
	})
	if sidRoot.err != nil {
		t.Skipf("swan: no strongSwan 6 root: %v", sidRoot.err)
	}
	v, err := RootVersion(sidRoot.dir)
	if err != nil {
		t.Skipf("swan: strongSwan 6 root %s unusable (remove it to rebuild): %v", sidRoot.dir, err)
	}
	t.Logf("swan: strongSwan %s from %s", v, sidRoot.dir)
	return sidRoot.dir
}

// Start starts charon in ns with its log going to t (lines tagged with
// the namespace name) and stops it when the test ends.
func Start(t testing.TB, ns *netlab.NS, opts Options) *Charon {
	t.Helper()
	if opts.Root == "" {
		RequireCharon(t)
	} else if !rootReady(opts.Root) {
		t.Skipf("swan: no %s in root %s", DefaultCharon, opts.Root)
	}
	var stopLog func()
	if opts.Output == nil {
		tag := "charon " + ns.Name
		if opts.Root != "" {
			tag = "charon6 " + ns.Name
		}
		opts.Output, stopLog = netlab.LogWriter(t, tag)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := StartCharon(ctx, ns, opts)
	if err != nil {
		if stopLog != nil {
			stopLog()
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("charon %s: %v", ns.Name, err)
		}
		// After Close charon has exited and its output is drained, so
		// nothing logs to t once the test is over.
		if stopLog != nil {
			stopLog()
		}
	})
	return c
}
