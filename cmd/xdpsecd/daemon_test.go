package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xdpsec/xdpsec/control/api"
	"github.com/xdpsec/xdpsec/internal/netlab"
	"github.com/xdpsec/xdpsec/internal/testbin"
	"github.com/xdpsec/xdpsec/offload/xfrm"
)

// binaries are built once per test binary run; the tests exercise the real
// executables, as an operator would, not the packages behind them.
type binaries struct{ daemon, ctl string }

func buildBinaries(t *testing.T) binaries {
	t.Helper()
	dir := testbin.Build(t, "github.com/xdpsec/xdpsec/cmd/xdpsecd", "github.com/xdpsec/xdpsec/cmd/xdpsecctl")
	return binaries{daemon: filepath.Join(dir, "xdpsecd"), ctl: filepath.Join(dir, "xdpsecctl")}
}

// syncBuffer collects a child's log output while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type labDir struct {
	dir, config, socket, psk string
}

func newLabDir(t *testing.T) labDir {
	t.Helper()
	// Unix socket paths are limited to 108 bytes; t.TempDir() can be long.
	dir, err := os.MkdirTemp("", "xdpsecd-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d := labDir{dir: dir, config: filepath.Join(dir, "xdpsec.yaml"), socket: filepath.Join(dir, "run", "xdpsec.sock"), psk: filepath.Join(dir, "site-b.psk")}
	if err := os.WriteFile(d.psk, []byte("correct horse battery staple\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d labDir) writeConfig(t *testing.T, metrics string, conns ...string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "log: {level: debug, format: console}\napi: {socket: %s}\nmetrics: {listen: %q}\ndataplane: {mode: none}\nconnections:\n", d.socket, metrics)
	for _, c := range conns {
		b.WriteString(c)
	}
	if err := os.WriteFile(d.config, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

func connYAML(name, remote, psk string) string {
	return fmt.Sprintf(`  - name: %s
    local_addr: 192.0.2.1
    remote_addr: %s
    local_id: gw-a.example.com
    remote_id: %s.example.com
    auth: psk
    psk_file: %s
    ike_proposals: [aes256gcm16-prfsha384-ecp384, aes256gcm16-prfsha256-x25519]
    esp_proposals: [aes256gcm16]
    children:
      - name: net
        local_ts: [10.1.0.0/24]
        remote_ts: [10.2.0.0/24]
`, name, remote, name, psk)
}

type daemon struct {
	ns   *netlab.NS
	proc *netlab.Process
	logs *syncBuffer
}

// get fetches url from inside the daemon's namespace: the connection is
// made on a thread in the namespace, then used from anywhere.
func (dm *daemon) get(t *testing.T, url string) string {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
			derr := dm.ns.Do(func() error {
				conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return conn, derr
		},
	}}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// startDaemon runs xdpsecd in a network namespace of its own, so its IKE
// sockets on 500/4500 never touch the host's; the API socket is a file and
// reachable from the test as it is.
func startDaemon(t *testing.T, bins binaries, d labDir, extra ...string) *daemon {
	t.Helper()
	netlab.RequireRoot(t)
	return startDaemonIn(t, bins, netlab.NewTestNS(t, netlab.RandomPrefix("xd"), "gw"), d, extra...)
}

// startDaemonIn runs xdpsecd in ns and waits until its API answers.
func startDaemonIn(t *testing.T, bins binaries, ns *netlab.NS, d labDir, extra ...string) *daemon {
	t.Helper()
	return startCommandIn(t, ns, d, exec.Command(bins.daemon, append([]string{"--config", d.config}, extra...)...))
}

// startCommandIn runs cmd, which starts xdpsecd for d, in ns and waits
// until the daemon's API answers.
func startCommandIn(t *testing.T, ns *netlab.NS, d labDir, cmd *exec.Cmd) *daemon {
	t.Helper()
	logs := &syncBuffer{}
	cmd.Stdout = logs
	cmd.Stderr = logs
	proc, err := ns.Start(cmd, nil)
	if err != nil {
		t.Fatal(err)
	}
	dm := &daemon{ns: ns, proc: proc, logs: logs}
	t.Cleanup(func() {
		_ = proc.Stop(5 * time.Second)
		t.Logf("xdpsecd log:\n%s", logs.String())
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		if c, err := net.Dial("unix", d.socket); err == nil {
			c.Close()
			return dm
		}
		select {
		case <-proc.Done():
			t.Fatalf("xdpsecd exited before listening: %v\n%s", proc.Err(), logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("xdpsecd did not open %s within 15s\n%s", d.socket, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (dm *daemon) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := dm.proc.Cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// waitLog waits until the daemon's log contains all of the given strings.
func (dm *daemon) waitLog(t *testing.T, want ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		logs := dm.logs.String()
		missing := ""
		for _, w := range want {
			if !strings.Contains(logs, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("log never contained %q:\n%s", missing, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func ctl(t *testing.T, bins binaries, socket string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bins.ctl, append([]string{"--socket", socket}, args...)...).CombinedOutput()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exitErr):
		return string(out), exitErr.ExitCode()
	default:
		t.Fatalf("xdpsecctl %v: %v", args, err)
		return "", -1
	}
}

func ctlJSON(t *testing.T, bins binaries, socket string, v any, args ...string) {
	t.Helper()
	out, code := ctl(t, bins, socket, append(args, "--json")...)
	if code != 0 {
		t.Fatalf("xdpsecctl %v: exit %d: %s", args, code, out)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("xdpsecctl %v: bad JSON: %v\n%s", args, err, out)
	}
}

func connNames(conns []api.Conn) []string {
	names := make([]string, 0, len(conns))
	for _, c := range conns {
		names = append(names, c.Name)
	}
	return names
}

func TestDaemonLifecycle(t *testing.T) {
	bins := buildBinaries(t)
	d := newLabDir(t)
	// The daemon has a namespace of its own, so the default port is free.
	metricsAddr := "127.0.0.1:9469"
	d.writeConfig(t, metricsAddr, connYAML("site-b", "198.51.100.2", d.psk), connYAML("site-c", "203.0.113.3", d.psk))
	dm := startDaemon(t, bins, d)

	fi, err := os.Stat(d.socket)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("socket mode = %o, want 600", perm)
	}
	if fi, err := os.Stat(filepath.Dir(d.socket)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("socket directory: %v, mode %o, want 700", err, fi.Mode().Perm())
	}

	var st api.Status
	ctlJSON(t, bins, d.socket, &st, "status")
	if st.DataplaneMode != "none" || st.Connections != 2 || st.ConfigFile != d.config || st.Version == "" || st.PID != dm.proc.Pid() {
		t.Errorf("status = %+v", st)
	}

	var conns []api.Conn
	ctlJSON(t, bins, d.socket, &conns, "conns")
	if got := strings.Join(connNames(conns), ","); got != "site-b,site-c" {
		t.Fatalf("conns = %s, want site-b,site-c", got)
	}
	b := conns[0]
	if b.RemoteAddr != "198.51.100.2" || b.LocalID != "gw-a.example.com" || b.RemoteID != "site-b.example.com" || b.Auth != "psk" {
		t.Errorf("site-b = %+v", b)
	}
	if strings.Join(b.IKEProposals, ",") != "aes256gcm16-prfsha384-ecp384,aes256gcm16-prfsha256-x25519" || strings.Join(b.ESPProposals, ",") != "aes256gcm16" {
		t.Errorf("site-b proposals = %v / %v", b.IKEProposals, b.ESPProposals)
	}
	if len(b.Children) != 1 || b.Children[0].Name != "net" || b.Children[0].LocalTS[0] != "10.1.0.0/24" || b.Children[0].RemoteTS[0] != "10.2.0.0/24" || b.Children[0].Mode != "tunnel" {
		t.Errorf("site-b children = %+v", b.Children)
	}
	raw, _ := json.Marshal(conns)
	if strings.Contains(string(raw), "horse") {
		t.Errorf("conns output leaks the PSK: %s", raw)
	}

	table, code := ctl(t, bins, d.socket, "conns")
	if code != 0 || !strings.Contains(table, "site-b/net") || !strings.Contains(table, "10.2.0.0/24") {
		t.Errorf("conns table (exit %d):\n%s", code, table)
	}
	table, code = ctl(t, bins, d.socket, "status")
	if code != 0 || !strings.Contains(table, "data plane:") || !strings.Contains(table, d.config) {
		t.Errorf("status table (exit %d):\n%s", code, table)
	}

	body := dm.get(t, "http://"+metricsAddr+"/metrics")
	for _, want := range []string{"xdpsec_connections_configured 2", `xdpsec_ike_sas{state="ESTABLISHED"} 0`, "xdpsec_ike_half_open_sas 0"} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q:\n%.3000s", want, body)
		}
	}

	// A broken file on SIGHUP: the error is logged, the old config stays.
	if err := os.WriteFile(d.config, []byte("connections:\n  - name: x\n    childs: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dm.signal(t, syscall.SIGHUP)
	dm.waitLog(t, "reload failed, keeping the running configuration", "childs")
	ctlJSON(t, bins, d.socket, &conns, "conns")
	if got := strings.Join(connNames(conns), ","); got != "site-b,site-c" {
		t.Fatalf("after a bad reload conns = %s, want site-b,site-c", got)
	}
	out, code := ctl(t, bins, d.socket, "reload")
	if code == 0 || !strings.Contains(out, "childs") {
		t.Errorf("xdpsecctl reload of a broken file: exit %d: %s", code, out)
	}

	// A good file: site-c removed, site-d added, site-b untouched.
	d.writeConfig(t, metricsAddr, connYAML("site-b", "198.51.100.2", d.psk), connYAML("site-d", "203.0.113.4", d.psk))
	dm.signal(t, syscall.SIGHUP)
	dm.waitLog(t, "configuration reloaded", "connection removed", "site-d")
	ctlJSON(t, bins, d.socket, &conns, "conns")
	if got := strings.Join(connNames(conns), ","); got != "site-b,site-d" {
		t.Fatalf("after reload conns = %s, want site-b,site-d", got)
	}
	var res api.ReloadResult
	ctlJSON(t, bins, d.socket, &res, "reload")
	if strings.Join(res.Unchanged, ",") != "site-b,site-d" || len(res.Added)+len(res.Removed)+len(res.Changed) != 0 {
		t.Errorf("reload of an unchanged file = %+v", res)
	}

	dm.signal(t, syscall.SIGTERM)
	select {
	case <-dm.proc.Done():
		if err := dm.proc.Err(); err != nil {
			t.Fatalf("xdpsecd exit after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("xdpsecd did not exit within 10s of SIGTERM")
	}
	if _, err := os.Stat(d.socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there after exit: %v", err)
	}
	out, code = ctl(t, bins, d.socket, "status")
	if want := "cannot reach xdpsecd at " + d.socket + ": is it running?"; code != 1 || !strings.Contains(out, want) {
		t.Errorf("status without daemon: exit %d, %q; want exit 1 and %q", code, out, want)
	}
}

func TestDaemonRefusesToStart(t *testing.T) {
	bins := buildBinaries(t)
	run := func(t *testing.T, args ...string) (string, int) {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, bins.daemon, args...).CombinedOutput()
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			return string(out), exitErr.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}

	t.Run("check-valid", func(t *testing.T) {
		d := newLabDir(t)
		d.writeConfig(t, "", connYAML("site-b", "198.51.100.2", d.psk))
		out, code := run(t, "--config", d.config, "--check")
		if code != 0 || !strings.Contains(out, "is valid (1 connections") {
			t.Errorf("exit %d: %s", code, out)
		}
		// esp_proposals [aes256gcm16] has no PFS group.
		if !strings.Contains(out, "warning: connection site-b: esp_proposals [aes256gcm16] name no key exchange group") {
			t.Errorf("--check does not warn of esp_proposals without PFS:\n%s", out)
		}
	})
	t.Run("check-lists-every-problem", func(t *testing.T) {
		d := newLabDir(t)
		d.writeConfig(t, "", connYAML("site-b", "198.51.100.2", d.psk),
			strings.Replace(connYAML("site-b", "198.51.100.300", d.psk), "aes256gcm16]", "3des-sha1]", 1))
		if err := os.Chmod(d.psk, 0o644); err != nil {
			t.Fatal(err)
		}
		out, code := run(t, "--config", d.config, "--check")
		if code == 0 {
			t.Fatalf("exit 0 for a broken file: %s", out)
		}
		for _, want := range []string{"connections[1].name", "connections[1].remote_addr", "connections[1].esp_proposals[0]", "3des", "psk_file"} {
			if !strings.Contains(out, want) {
				t.Errorf("--check output lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "horse") {
			t.Errorf("--check output leaks the PSK:\n%s", out)
		}
	})
	t.Run("pubkey-not-implemented", func(t *testing.T) {
		// The schema takes certificate settings, the engine cannot use
		// them yet: both --check and start must say so, not start and
		// fail every IKE_AUTH with an empty pre-shared key.
		d := newLabDir(t)
		dir := t.TempDir()
		for _, f := range []string{"gw.crt", "gw.key", "ca.crt"} {
			if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		conn := strings.Replace(connYAML("site-b", "198.51.100.2", d.psk),
			"    auth: psk\n    psk_file: "+d.psk+"\n",
			fmt.Sprintf("    auth: pubkey\n    cert_file: %s/gw.crt\n    key_file: %s/gw.key\n    ca_file: %s/ca.crt\n", dir, dir, dir), 1)
		d.writeConfig(t, "", conn)
		for _, args := range [][]string{{"--config", d.config, "--check"}, {"--config", d.config}} {
			out, code := run(t, args...)
			for _, want := range []string{"connections[0].auth", "auth: pubkey", "not implemented", "use auth: psk"} {
				if code == 0 || !strings.Contains(out, want) {
					t.Errorf("%v: exit %d, output lacks %q: %s", args, code, want, out)
				}
			}
		}
	})
	t.Run("kernel-without-esp", func(t *testing.T) {
		if xfrm.Probe() == nil {
			t.Skip("this kernel has ESP: the refusal is for kernels without it (the VM tests run mode xfrm)")
		}
		d := newLabDir(t)
		d.writeConfig(t, "", connYAML("site-b", "198.51.100.2", d.psk))
		cfg, _ := os.ReadFile(d.config)
		cfg = bytes.Replace(cfg, []byte("dataplane: {mode: none}"), []byte("dataplane: {mode: xfrm, wan: lo}"), 1)
		if err := os.WriteFile(d.config, cfg, 0o600); err != nil {
			t.Fatal(err)
		}
		out, code := run(t, "--config", d.config)
		for _, want := range []string{"lacks ESP support", "esp4", "mode: afxdp"} {
			if code == 0 || !strings.Contains(out, want) {
				t.Errorf("exit %d, output lacks %q: %s", code, want, out)
			}
		}
	})
	t.Run("missing-file", func(t *testing.T) {
		out, code := run(t, "--config", "/nonexistent/xdpsec.yaml")
		if code == 0 || !strings.Contains(out, "/nonexistent/xdpsec.yaml") {
			t.Errorf("exit %d: %s", code, out)
		}
	})
	t.Run("socket-in-use", func(t *testing.T) {
		d := newLabDir(t)
		d.writeConfig(t, "", connYAML("site-b", "198.51.100.2", d.psk))
		startDaemon(t, bins, d)
		out, code := run(t, "--config", d.config)
		if code == 0 || !strings.Contains(out, "another xdpsecd is already listening on "+d.socket) {
			t.Errorf("exit %d: %s", code, out)
		}
	})
}
