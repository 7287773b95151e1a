package perf

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/xdpsec/xdpsec/internal/netlab"
	"github.com/xdpsec/xdpsec/internal/testbin"
)

// TestDemo runs what `make demo` runs, so the first thing a user tries
// cannot rot unnoticed.
func TestDemo(t *testing.T) {
	netlab.RequireRoot(t)
	if testing.Short() {
		t.Skip("builds binaries and a namespace lab")
	}
	bin := testbin.Build(t, "github.com/xdpsec/xdpsec/cmd/xdpsecd", "github.com/xdpsec/xdpsec/cmd/xdpsecctl")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, logs strings.Builder
	if err := RunDemo(ctx, DemoOptions{BinDir: bin, Out: &out, DaemonLog: &logs}); err != nil {
		t.Fatalf("demo: %v\noutput:\n%s\ndaemon logs:\n%s", err, out.String(), logs.String())
	}
	text := out.String()
	t.Logf("demo output:\n%s", text)
	for _, want := range []string{
		"no route, as intended",
		"data plane:   afxdp",
		"Mbit/s",
		"peer/lan",
		"ESTABLISHED, initiator",
		"ESTABLISHED, responder",
		"10.1.0.0/24 === 10.2.0.0/24",
		"10.2.0.0/24 === 10.1.0.0/24",
		"all namespaces removed",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
}
