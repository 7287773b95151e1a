package api

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestUnreachableCause dials sockets that fail in each way a user meets
// and checks that the error names the cause.
func TestUnreachableCause(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.sock")
	// A socket whose listener is gone: what a killed daemon leaves.
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()

	for _, tc := range []struct {
		name, socket, want string
	}{
		{"no socket", missing, "is it running?"},
		{"stale socket", stale, "nothing listens there"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewClient(tc.socket).Status(context.Background())
			var ue *UnreachableError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want an UnreachableError saying %q", err, tc.want)
			}
		})
	}
	// Root passes every permission check, so the refusal a non-root user
	// meets is built from the error its connect gets.
	denied := &UnreachableError{Socket: "/run/xdpsec/xdpsec.sock",
		Err: &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.EACCES)}}
	if !strings.Contains(denied.Error(), "permission denied") || !strings.Contains(denied.Error(), "as root") {
		t.Errorf("EACCES: %q, want it to say permission denied and to run as root", denied.Error())
	}
}
