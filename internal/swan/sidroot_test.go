package swan

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xdpsec/xdpsec/internal/netlab"
)

// fakeMmdebstrap puts an mmdebstrap running script first on PATH; the
// script gets the target directory as "$t".
func fakeMmdebstrap(t *testing.T, script string) {
	t.Helper()
	bin := t.TempDir()
	sh := "#!/bin/sh\nfor t; do :; done\n" + script + "\n"
	if err := os.WriteFile(filepath.Join(bin, "mmdebstrap"), []byte(sh), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
}

func TestEnsureSidRoot(t *testing.T) {
	netlab.RequireRoot(t) // unshare -m
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t.Run("built and renamed", func(t *testing.T) {
		fakeMmdebstrap(t, `mkdir -p "$t/usr/lib/ipsec" && touch "$t/usr/lib/ipsec/charon"`)
		dir := filepath.Join(t.TempDir(), "root")
		if _, err := EnsureSidRoot(ctx, dir, nil); err != nil {
			t.Fatal(err)
		}
		if !rootReady(dir) {
			t.Fatalf("%s has no charon", dir)
		}
		if fi, err := os.Stat(filepath.Join(dir, rootMount)); err != nil || !fi.IsDir() {
			t.Errorf("mount point %s in the root: %v", rootMount, err)
		}
		if left, _ := filepath.Glob(dir + ".tmp-*"); len(left) != 0 {
			t.Errorf("temporary roots left: %v", left)
		}
	})
	t.Run("failure remembered", func(t *testing.T) {
		fakeMmdebstrap(t, `echo "E: Failed to fetch sid InRelease" >&2; exit 25`)
		dir := filepath.Join(t.TempDir(), "root")
		_, err := EnsureSidRoot(ctx, dir, nil)
		if err == nil || !strings.Contains(err.Error(), "Failed to fetch") {
			t.Fatalf("error %v, want apt's reason", err)
		}
		_, err = EnsureSidRoot(ctx, dir, nil)
		if err == nil || !strings.Contains(err.Error(), dir+".failed") {
			t.Fatalf("second try: %v, want the recorded failure", err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after a failed build: %v", dir, err)
		}
	})
	t.Run("hung build stopped", func(t *testing.T) {
		fakeMmdebstrap(t, `mkdir -p "$t/usr"; sleep 60`)
		dir := filepath.Join(t.TempDir(), "root")
		sctx, scancel := context.WithTimeout(ctx, time.Second)
		defer scancel()
		start := time.Now()
		if _, err := EnsureSidRoot(sctx, dir, nil); err == nil || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("error %v, want the deadline", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("stopping the build took %v", d)
		}
		if left, _ := filepath.Glob(dir + ".tmp-*"); len(left) != 0 {
			t.Errorf("temporary roots left: %v", left)
		}
	})
	t.Run("no mmdebstrap", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		_, err := EnsureSidRoot(ctx, filepath.Join(t.TempDir(), "root"), nil)
		if err == nil || !strings.Contains(err.Error(), "mmdebstrap is not installed") {
			t.Fatalf("error %v", err)
		}
	})
}
