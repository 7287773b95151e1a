package swan

import (
	"context"
	"os"
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

// Start starts charon in ns with its log going to t (lines tagged with
// the namespace name) and stops it when the test ends.
func Start(t testing.TB, ns *netlab.NS, opts Options) *Charon {
	t.Helper()
	RequireCharon(t)
	var stopLog func()
	if opts.Output == nil {
		opts.Output, stopLog = netlab.LogWriter(t, "charon "+ns.Name)
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
