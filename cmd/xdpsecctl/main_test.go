package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/xdpsec/xdpsec/control/api"
)

// backend answers like a daemon with connection site-b (child net) and
// records the actions asked of it.
type backend struct {
	mu    sync.Mutex
	calls []string
	sas   []api.IKESA
}

func (b *backend) act(call, conn, child string) error {
	b.mu.Lock()
	b.calls = append(b.calls, call)
	b.mu.Unlock()
	switch {
	case conn != "site-b":
		return fmt.Errorf("%q: %w", conn, api.ErrUnknownConn)
	case child != "" && child != "net":
		return fmt.Errorf("%q: %w", child, api.ErrUnknownChild)
	}
	return nil
}

func (b *backend) Status(context.Context) api.Status                { return api.Status{} }
func (b *backend) Conns(context.Context) []api.Conn                 { return nil }
func (b *backend) SAs(context.Context) []api.IKESA                  { return b.sas }
func (b *backend) Stats(context.Context) (api.Stats, error)         { return api.Stats{}, nil }
func (b *backend) Reload(context.Context) (api.ReloadResult, error) { return api.ReloadResult{}, nil }
func (b *backend) Initiate(_ context.Context, conn string) error    { return b.act("up "+conn, conn, "") }
func (b *backend) Terminate(_ context.Context, conn string) error {
	return b.act("down "+conn, conn, "")
}
func (b *backend) Rekey(_ context.Context, conn, child string) error {
	return b.act("rekey "+conn+"/"+child, conn, child)
}

func serve(t *testing.T, b api.Backend) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "api.sock")
	ln, err := api.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.NewServer(b, zap.NewNop()).Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return sock
}

func run(t *testing.T, sock string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	root := newRootCommand(&out)
	root.SetArgs(append([]string{"--socket", sock}, args...))
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func TestDownAndRekey(t *testing.T) {
	b := &backend{}
	sock := serve(t, b)
	for _, tc := range []struct {
		args     []string
		wantCall string // "" when no request may be sent
		wantOut  string
		wantErr  string
	}{
		{[]string{"down", "site-b"}, "down site-b", "connection site-b closed\n", ""},
		{[]string{"down", "nope"}, "down nope", "", "no such connection"},
		{[]string{"--json", "down", "site-b"}, "down site-b", `"conn": "site-b"`, ""},
		{[]string{"rekey", "site-b"}, "rekey site-b/", "IKE SA of site-b rekeyed\n", ""},
		{[]string{"rekey", "site-b/net"}, "rekey site-b/net", "CHILD SA site-b/net rekeyed\n", ""},
		{[]string{"--json", "rekey", "site-b/net"}, "rekey site-b/net", `"child": "net"`, ""},
		{[]string{"rekey", "site-b/other"}, "rekey site-b/other", "", "no such child"},
		{[]string{"rekey", "nope/net"}, "rekey nope/net", "", "no such connection"},
		{[]string{"rekey", "site-b/"}, "", "", "want CONN or CONN/CHILD"},
		{[]string{"rekey", "/net"}, "", "", "want CONN or CONN/CHILD"},
		{[]string{"down"}, "", "", "accepts 1 arg"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			b.mu.Lock()
			b.calls = nil
			b.mu.Unlock()
			out, err := run(t, sock, tc.args...)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("error %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one saying %q", err, tc.wantErr)
			case !strings.Contains(out, tc.wantOut):
				t.Errorf("output %q, want %q in it", out, tc.wantOut)
			}
			b.mu.Lock()
			defer b.mu.Unlock()
			var want []string
			if tc.wantCall != "" {
				want = []string{tc.wantCall}
			}
			if fmt.Sprint(b.calls) != fmt.Sprint(want) {
				t.Errorf("requests %q, want %q", b.calls, want)
			}
		})
	}
}

func TestSAsLifecycle(t *testing.T) {
	now := time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)
	sas := []api.IKESA{{
		Conn: "site-b", State: "ESTABLISHED", Initiator: true, Established: now.Add(-10 * time.Minute),
		RekeyAt: now.Add(3 * time.Hour), Rekeys: 1,
		Children: []api.ChildSA{
			{Name: "net", State: "INSTALLED", Mode: "TUNNEL", Established: now.Add(-90 * time.Second),
				RekeyAt: now.Add(50 * time.Minute), Rekeys: 3},
			{Name: "net", State: "REKEYED", Mode: "TUNNEL", Established: now.Add(-time.Hour)},
			{Name: "net", State: "REKEYING", Mode: "TUNNEL", Established: now.Add(-time.Hour), RekeyAt: now.Add(-time.Second),
				Reason: "last rekey refused: peer sent NO_PROPOSAL_CHOSEN"},
			{Name: "dmz", State: "DOWN", Reason: "peer sent NO_PROPOSAL_CHOSEN to CREATE_CHILD_SA",
				DownSince: now.Add(-30 * time.Second), RetryAt: now.Add(4 * time.Second), Attempts: 2},
			{Name: "voice", State: "DOWN", Reason: "deleted by the peer", DownSince: now.Add(-time.Second)},
		},
	}}
	var out bytes.Buffer
	if err := printSAsAt(&out, sas, now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"established 10m0s ago, rekey in 3h0m0s, 1 rekeys",
		"    age 1m30s, rekey in 50m0s, 3 rekeys\n",
		"    age 1h0m0s, rekey -, 0 rekeys\n",
		"    age 1h0m0s, rekey due, 0 rekeys\n    last rekey refused: peer sent NO_PROPOSAL_CHOSEN\n",
		"  dmz: DOWN for 30s: peer sent NO_PROPOSAL_CHOSEN to CREATE_CHILD_SA; next attempt in 4s, 2 failed so far\n",
		"  voice: DOWN for 1s: deleted by the peer; next attempt with the next IKE SA, 0 failed so far\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("sas output lacks %q:\n%s", want, out.String())
		}
	}

	// --json prints the API's fields.
	sock := serve(t, &backend{sas: sas})
	js, err := run(t, sock, "--json", "sas")
	if err != nil {
		t.Fatal(err)
	}
	var raw []map[string]any
	if err := json.Unmarshal([]byte(js), &raw); err != nil {
		t.Fatalf("sas --json: %v\n%s", err, js)
	}
	child := raw[0]["children"].([]any)[0].(map[string]any)
	if child["rekeys"] != 3.0 || child["rekey_at"] != "2026-11-27T06:50:00Z" || child["established"] != "2026-11-27T05:58:30Z" {
		t.Errorf("sas --json child = %v", child)
	}
	if _, ok := raw[0]["children"].([]any)[1].(map[string]any)["rekey_at"]; ok {
		t.Errorf("zero rekey_at printed: %s", js)
	}
	down := raw[0]["children"].([]any)[3].(map[string]any)
	if down["state"] != "DOWN" || down["reason"] != "peer sent NO_PROPOSAL_CHOSEN to CREATE_CHILD_SA" ||
		down["retry_at"] != "2026-11-27T06:00:04Z" || down["attempts"] != 2.0 || down["down_since"] != "2026-11-27T05:59:30Z" {
		t.Errorf("sas --json DOWN child = %v", down)
	}
}

func TestUnreachable(t *testing.T) {
	_, err := run(t, filepath.Join(t.TempDir(), "none.sock"), "down", "site-b")
	var ue *api.UnreachableError
	if !errors.As(err, &ue) {
		t.Fatalf("down without a daemon: %v", err)
	}
}

// TestPrintInitiations: conns and status show a bring-up's state, its
// failures, when the next attempt comes and the last error's reason.
func TestPrintInitiations(t *testing.T) {
	now := time.Now()
	next := now.Add(5500 * time.Millisecond)
	in := api.Initiation{State: "waiting", Failures: 3, LastError: "IKE_SA_INIT timed out", LastReason: "timeout", NextAttempt: &next}
	var b bytes.Buffer
	if err := printInitiations(&b, []api.Conn{{Name: "site-b", Initiation: &in}, {Name: "other"}}, now); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"BRING-UP", "site-b", "waiting", "3", "in 5s", "timeout: IKE_SA_INIT timed out"} {
		if !strings.Contains(out, want) {
			t.Errorf("conns bring-up table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "other") {
		t.Errorf("a connection without a bring-up is listed:\n%s", out)
	}
	if got := initiationText(in, now); got != "waiting, 3 failed attempts, next in 5s, last error (timeout): IKE_SA_INIT timed out" {
		t.Errorf("status line: %q", got)
	}
}

// TestStatsPaths: `xdpsecctl stats` names the data plane's paths, sorted.
func TestStatsPaths(t *testing.T) {
	var b strings.Builder
	st := api.Stats{Dataplane: "afxdp", Paths: map[string]string{"wan": "af_xdp copy", "lan_out": "tun (gro)", "lan_in": "af_xdp copy"}}
	if err := printStats(&b, st); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "lan_in af_xdp copy, lan_out tun (gro), wan af_xdp copy") {
		t.Errorf("stats without the paths in order:\n%s", b.String())
	}
}
