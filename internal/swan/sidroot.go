package swan

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A second interop peer, strongSwan 6 from Debian unstable: Debian 12 has
// only 5.9.8, and sid packages must never be installed on the machine
// itself. So a sid root file system holding charon is built once per
// machine with mmdebstrap and cached; StartCharon runs charon chrooted
// into it (Options.Root).

// SidRoot is where EnsureSidRoot builds and caches the sid root. Remove
// the directory to have the next test run rebuild it from current sid.
const SidRoot = "/var/cache/xdpsec/sid-strongswan"

// SidBuildTimeout bounds one build of the sid root (about 20 s on a
// machine with a good mirror; a stuck mirror must not hang CI).
const SidBuildTimeout = 10 * time.Minute

// sidFailedFor is how long a failed build is remembered (SidRoot+".failed"):
// the test binaries of one `go test` run do not each wait for a mirror
// that is down.
const sidFailedFor = 30 * time.Minute

// rootMount is the directory inside the root where StartCharon bind-mounts
// the instance directory (strongswan.conf and the VICI socket).
const rootMount = "/xdpsec"

// SidPackages are the sid packages of the root (recommends off, as in
// scripts/deps.sh): charon, swanctl for reproducing a test by hand, and
// the plugins of DefaultPlugins (kernel-libipsec is in the extra plugins
// of libcharon, openssl and gcm in the standard ones of libstrongswan,
// chapoly and curve25519 in its extra ones).
var SidPackages = []string{
	"strongswan-charon", "strongswan-swanctl", "libcharon-extra-plugins",
	"libstrongswan-standard-plugins", "libstrongswan-extra-plugins",
}

// EnsureSidRoot returns dir, building it first when it holds no charon.
// Builds are serialized across processes by dir+".lock", made in a
// temporary directory beside dir and renamed into place, so dir is either
// absent or complete. log receives mmdebstrap's output; ctx bounds the
// wait for the lock and the build.
func EnsureSidRoot(ctx context.Context, dir string, log io.Writer) (string, error) {
	if rootReady(dir) {
		return dir, nil
	}
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		return "", fmt.Errorf("mmdebstrap is not installed (scripts/deps.sh installs it): %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	unlock, err := lockFile(ctx, dir+".lock")
	if err != nil {
		return "", err
	}
	defer unlock()
	if rootReady(dir) { // another process built it while we waited
		return dir, nil
	}
	if err := recentFailure(dir + ".failed"); err != nil {
		return "", err
	}
	if err := buildSidRoot(ctx, dir, log); err != nil {
		msg := fmt.Sprintf("%s: %v\n", time.Now().Format(time.RFC3339), err)
		_ = os.WriteFile(dir+".failed", []byte(msg), 0o644)
		return "", err
	}
	_ = os.Remove(dir + ".failed")
	return dir, nil
}

func rootReady(dir string) bool {
	fi, err := os.Stat(filepath.Join(dir, DefaultCharon))
	return err == nil && fi.Mode().IsRegular()
}

// lockFile takes an exclusive flock on path, polling so that ctx bounds
// the wait. The lock goes with the process, however it ends.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for %s (another build of the root): %w", path, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// recentFailure returns the failure recorded in path when it is recent.
func recentFailure(path string) error {
	fi, err := os.Stat(path)
	if err != nil || time.Since(fi.ModTime()) > sidFailedFor {
		return nil
	}
	msg, _ := os.ReadFile(path)
	return fmt.Errorf("the last build failed less than %v ago (remove %s to retry now): %s", sidFailedFor, path, strings.TrimSpace(string(msg)))
}

// buildSidRoot runs mmdebstrap into a temporary directory and renames it
// to dir. mmdebstrap runs in a private mount namespace (unshare -m): the
// /dev, /proc and /sys it mounts into the root die with it, even when it
// is killed, so removing a half-built root never reaches through a mount.
func buildSidRoot(ctx context.Context, dir string, log io.Writer) error {
	parent := filepath.Dir(dir)
	if err := removeStale(parent, filepath.Base(dir)+".tmp-*"); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, filepath.Base(dir)+".tmp-")
	if err != nil {
		return err
	}
	// Readable by apt's download user, as a root's top directory is.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return errors.Join(err, removeRoot(tmp))
	}
	ctx, cancel := context.WithTimeout(ctx, SidBuildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "-m", "--propagation", "private",
		"mmdebstrap", "--variant=apt",
		// sid's Release file reads as expired on these machines' clock.
		`--aptopt=Acquire::Check-Valid-Until "false"`,
		"--dpkgopt=path-exclude=/usr/share/man/*",
		"--dpkgopt=path-exclude=/usr/share/locale/*",
		"--dpkgopt=path-exclude=/usr/share/doc/*",
		"--include="+strings.Join(SidPackages, ","), "sid", tmp)
	// apt's E: lines say why (no mirror, a package gone from sid).
	tail := &tailWriter{max: 4 << 10}
	out := io.Writer(tail)
	if log != nil {
		out = io.MultiWriter(log, tail)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("stopped (build limit %v): %w", SidBuildTimeout, ctx.Err())
	} else if err != nil {
		err = fmt.Errorf("%w%s", err, aptErrors(tail.String()))
	}
	if err == nil && !rootReady(tmp) {
		err = fmt.Errorf("no %s in the new root", DefaultCharon)
	}
	if err == nil {
		err = os.Mkdir(filepath.Join(tmp, rootMount), 0o755)
	}
	if err == nil {
		// An incomplete dir (no charon) is replaced.
		if err = os.RemoveAll(dir); err == nil {
			err = os.Rename(tmp, dir)
		}
	}
	if err != nil {
		return errors.Join(fmt.Errorf("mmdebstrap sid (%s): %w", strings.Join(SidPackages, " "), err), removeRoot(tmp))
	}
	return nil
}

// aptErrors returns the first few E: lines of mmdebstrap's output.
func aptErrors(out string) string {
	var errs []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "E: ") && len(errs) < 3 {
			errs = append(errs, strings.TrimSpace(l))
		}
	}
	if len(errs) == 0 {
		return ""
	}
	return ": " + strings.Join(errs, "; ")
}

// removeStale removes the temporary roots of builds that were killed.
func removeStale(parent, pattern string) error {
	old, _ := filepath.Glob(filepath.Join(parent, pattern))
	for _, d := range old {
		if err := removeRoot(d); err != nil {
			return err
		}
	}
	return nil
}

// removeRoot removes a root file system unless something is mounted in it.
func removeRoot(dir string) error {
	if m := mountedUnder(dir); m != "" {
		return fmt.Errorf("not removing %s: %s is mounted", dir, m)
	}
	return os.RemoveAll(dir)
}

// mountedUnder returns a mount point at or below dir, "" if none.
func mountedUnder(dir string) string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 {
			if mp := fields[4]; mp == dir || strings.HasPrefix(mp, dir+"/") {
				return mp
			}
		}
	}
	return ""
}

// RootVersion returns the version of strongswan-charon installed in root,
// from its dpkg status file.
func RootVersion(root string) (string, error) {
	f, err := os.Open(filepath.Join(root, "var/lib/dpkg/status"))
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	var pkg string
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "Package: "); ok {
			pkg = v
		} else if v, ok := strings.CutPrefix(line, "Version: "); ok && pkg == "strongswan-charon" {
			return v, nil
		}
	}
	return "", fmt.Errorf("no strongswan-charon in %s's dpkg status", root)
}
