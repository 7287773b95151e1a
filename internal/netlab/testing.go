package netlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// RandomPrefix returns a short namespace-name prefix, base plus a random
// hex suffix ("xs" gives "xs3fa9c1"), so labs of parallel tests and of
// other engineers' runs never collide. Names stay short because interface
// and namespace names show up in logs.
func RandomPrefix(base string) string {
	var b [3]byte
	// crypto/rand.Read never returns an error (Go 1.24+).
	_, _ = rand.Read(b[:])
	return base + hex.EncodeToString(b[:])
}

// RequireRoot skips the test unless it runs as root: namespaces, veths and
// raw sockets need CAP_SYS_ADMIN and CAP_NET_ADMIN.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("netlab: needs root (network namespaces, veth, raw sockets); run the tests as root")
	}
}

// NewTestNS creates a namespace named prefix-role (a random prefix when
// prefix is empty) that is closed, with its processes, when the test ends.
func NewTestNS(t testing.TB, prefix, role string) *NS {
	t.Helper()
	RequireRoot(t)
	if prefix == "" {
		prefix = RandomPrefix("xs")
	}
	n, err := NewNS(prefix + "-" + role)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("close namespace: %v", err)
		}
	})
	return n
}

// NewTestLab builds the lab (a random prefix when opts.Prefix is empty)
// and removes it when the test ends, failed or not.
func NewTestLab(t testing.TB, opts LabOptions) *Lab {
	t.Helper()
	RequireRoot(t)
	if opts.Prefix == "" {
		opts.Prefix = RandomPrefix("xs")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := NewLab(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("netlab: lab up (NAT=%v, gateway routes=%v):\n%s", opts.NAT, !opts.NoGatewayRoutes, l.Describe())
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("close lab: %v", err)
		}
	})
	return l
}

// StartT starts cmd in the namespace with its output logged line by line
// to t (each line prefixed with tag), and stops it (SIGTERM, then SIGKILL)
// when the test ends.
func (n *NS) StartT(t testing.TB, tag string, cmd *exec.Cmd) *Process {
	t.Helper()
	w, stopLog := LogWriter(t, tag)
	p, err := n.Start(cmd, w)
	if err != nil {
		stopLog()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(DefaultStopGrace); err != nil {
			t.Errorf("%s: %v", tag, err)
		}
		stopLog()
	})
	return p
}

// LogWriter returns a writer that sends each complete line to t.Log,
// prefixed with tag. Output written after the returned stop function ran
// is dropped, because testing panics on Log after a test has finished;
// call stop from a t.Cleanup registered after the process's own cleanup.
func LogWriter(t testing.TB, tag string) (w io.Writer, stop func()) {
	lw := &logWriter{t: t, tag: tag}
	return lw, lw.stop
}

type logWriter struct {
	t   testing.TB
	tag string

	mu      sync.Mutex
	buf     []byte
	stopped bool
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.t.Logf("%s: %s", w.tag, w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

func (w *logWriter) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 && !w.stopped {
		w.t.Logf("%s: %s", w.tag, w.buf)
	}
	w.stopped = true
	w.buf = nil
}
