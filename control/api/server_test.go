package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
)

// fakeBackend records the actions asked of it; conn "site-b" with child
// "net" exists, everything else is unknown, and conn "dead" fails.
type fakeBackend struct {
	mu    sync.Mutex
	calls []string
	sas   []IKESA
}

func (f *fakeBackend) record(s string) {
	f.mu.Lock()
	f.calls = append(f.calls, s)
	f.mu.Unlock()
}

func (f *fakeBackend) check(conn, child string) error {
	switch {
	case conn == "dead":
		return errors.New("peer did not answer")
	case conn != "site-b":
		return fmt.Errorf("%q: %w", conn, ErrUnknownConn)
	case child != "" && child != "net":
		return fmt.Errorf("%q: %w", child, ErrUnknownChild)
	}
	return nil
}

func (f *fakeBackend) Status(context.Context) Status { return Status{} }
func (f *fakeBackend) Conns(context.Context) []Conn  { return nil }
func (f *fakeBackend) SAs(context.Context) []IKESA   { return f.sas }
func (f *fakeBackend) Stats(context.Context) (Stats, error) {
	return Stats{}, nil
}
func (f *fakeBackend) Reload(context.Context) (ReloadResult, error) { return ReloadResult{}, nil }

func (f *fakeBackend) Initiate(_ context.Context, conn string) error {
	f.record("up " + conn)
	return f.check(conn, "")
}

func (f *fakeBackend) Terminate(_ context.Context, conn string) error {
	f.record("down " + conn)
	return f.check(conn, "")
}

func (f *fakeBackend) Rekey(_ context.Context, conn, child string) error {
	f.record("rekey " + conn + "/" + child)
	return f.check(conn, child)
}

// serve runs a Server for b on a socket in a temporary directory.
func serve(t *testing.T, b Backend) (*Client, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "api.sock")
	ln, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- NewServer(b, zap.NewNop()).Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return NewClient(sock), sock
}

// post sends a raw request, for the status codes the client hides.
func post(t *testing.T, sock, path string) int {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := hc.Post("http://xdpsecd"+path, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestConnActions(t *testing.T) {
	b := &fakeBackend{}
	c, sock := serve(t, b)
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		call     func() error
		path     string
		wantCall string
		wantErr  string // "" for success
		wantCode int
	}{
		{"down", func() error { return c.Down(ctx, "site-b") }, "/v1/conns/site-b/down", "down site-b", "", http.StatusOK},
		{"down unknown", func() error { return c.Down(ctx, "nope") }, "/v1/conns/nope/down", "down nope", "no such connection", http.StatusNotFound},
		{"down failing", func() error { return c.Down(ctx, "dead") }, "/v1/conns/dead/down", "down dead", "peer did not answer", http.StatusBadGateway},
		{"rekey ike", func() error { return c.Rekey(ctx, "site-b", "") }, "/v1/conns/site-b/rekey", "rekey site-b/", "", http.StatusOK},
		{"rekey child", func() error { return c.Rekey(ctx, "site-b", "net") }, "/v1/conns/site-b/rekey?child=net", "rekey site-b/net", "", http.StatusOK},
		{"rekey unknown child", func() error { return c.Rekey(ctx, "site-b", "x y") }, "/v1/conns/site-b/rekey?child=x+y", "rekey site-b/x y", "no such child", http.StatusNotFound},
		{"rekey unknown conn", func() error { return c.Rekey(ctx, "nope", "net") }, "/v1/conns/nope/rekey?child=net", "rekey nope/net", "no such connection", http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b.mu.Lock()
			b.calls = nil
			b.mu.Unlock()
			err := tc.call()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("error %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one saying %q", err, tc.wantErr)
			}
			if code := post(t, sock, tc.path); code != tc.wantCode {
				t.Errorf("POST %s = %d, want %d", tc.path, code, tc.wantCode)
			}
			b.mu.Lock()
			defer b.mu.Unlock()
			if len(b.calls) != 2 || b.calls[0] != tc.wantCall || b.calls[1] != tc.wantCall {
				t.Errorf("backend calls %q, want %q twice", b.calls, tc.wantCall)
			}
		})
	}
	if code := post(t, sock, "/v1/conns/site-b/reboot"); code != http.StatusNotFound {
		t.Errorf("unknown action: %d", code)
	}
}

// TestSAsLifecycleFields: rekey_at is RFC 3339 when set and left out when
// zero; rekeys is always there.
func TestSAsLifecycleFields(t *testing.T) {
	at := time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)
	b := &fakeBackend{sas: []IKESA{{
		Conn: "site-b", State: "ESTABLISHED", Established: at, RekeyAt: at.Add(time.Hour), Rekeys: 2,
		Children: []ChildSA{
			{Name: "net", State: "INSTALLED", Established: at, RekeyAt: at.Add(30 * time.Minute), Rekeys: 1},
			{Name: "old", State: "REKEYED", Established: at},
		},
	}}}
	_, sock := serve(t, b)
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := hc.Get("http://xdpsecd/v1/sas")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw []map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	sa := raw[0]
	children := sa["children"].([]any)
	net0, old := children[0].(map[string]any), children[1].(map[string]any)
	for _, tc := range []struct {
		name string
		got  any
		want any
	}{
		{"ike rekey_at", sa["rekey_at"], "2026-11-27T07:00:00Z"},
		{"ike rekeys", sa["rekeys"], 2.0},
		{"child established", net0["established"], "2026-11-27T06:00:00Z"},
		{"child rekey_at", net0["rekey_at"], "2026-11-27T06:30:00Z"},
		{"child rekeys", net0["rekeys"], 1.0},
		{"child state", net0["state"], "INSTALLED"},
		{"rekeyed child rekeys", old["rekeys"], 0.0},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %#v, want %#v", tc.name, tc.got, tc.want)
		}
	}
	if _, ok := old["rekey_at"]; ok {
		t.Errorf("zero rekey_at not omitted: %v", old)
	}
}
