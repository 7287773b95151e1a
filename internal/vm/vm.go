// Package vm runs static test binaries inside qemu (TCG) booting Debian's
// kernel, for tests that need kernel features the build machines lack:
// their kernel has no ESP, so the xfrm data plane is only testable in a
// guest. The guest is an initramfs built per run from busybox-static, the
// needed modules of Debian's linux-image-amd64 (cached) and the binaries;
// results come back on the serial console between markers.
package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Binary is a static executable to run in the guest, in order.
type Binary struct {
	Name string // a plain word: the guest path and the marker name
	Path string // on the host
	Args []string
	// Env adds NAME=value pairs to the binary's environment.
	Env []string
}

// Options describe one guest run.
type Options struct {
	Binaries []Binary
	// Files maps host paths to absolute guest paths, for data the
	// binaries read.
	Files map[string]string
	// Memory in MiB (default 1024) and CPUs (default 2: multi-CPU paths,
	// per-CPU maps, must exist in the guest).
	Memory int
	CPUs   int
	// Timeout bounds the whole run, boot included; qemu is killed when it
	// passes (default 3 minutes).
	Timeout time.Duration
	// CacheDir keeps prepared kernels (default $XDPSEC_VM_CACHE,
	// $XDG_CACHE_HOME/xdpsec-vm, /var/cache/xdpsec/vm for root).
	CacheDir string
	// KernelArgs are appended to the kernel command line.
	KernelArgs []string
	// Console, when set, receives the serial console as it comes, e.g.
	// for a test's -v output while the guest runs.
	Console io.Writer
}

// BinaryResult is what one binary did in the guest.
type BinaryResult struct {
	Name     string
	ExitCode int  // -1 when it never finished
	Finished bool // its exit marker was seen
	Output   string
}

// Result of a run.
type Result struct {
	Kernel   string // uname -r of the guest
	Binaries []BinaryResult
	Console  string        // the whole serial log
	Boot     time.Duration // qemu start to /init's modules loaded
	Elapsed  time.Duration // qemu start to exit
}

// Binary returns the result of the named binary.
func (r Result) Binary(name string) (BinaryResult, bool) {
	for _, b := range r.Binaries {
		if b.Name == name {
			return b, true
		}
	}
	return BinaryResult{}, false
}

// FailedModules lists guest modules /init could not load.
func (r Result) FailedModules() []string {
	var out []string
	for _, line := range strings.Split(r.Console, "\n") {
		if m, ok := strings.CutPrefix(strings.TrimSpace(line), "=== VM-MODPROBE-FAILED "); ok {
			out = append(out, m)
		}
	}
	return out
}

// Run boots the guest, runs the binaries and returns their results. An
// error means the rig itself failed (no qemu, no kernel, timeout, a binary
// that never finished); a binary's non-zero exit is in its result only.
func Run(ctx context.Context, opts Options) (Result, error) {
	if opts.Memory == 0 {
		opts.Memory = 1024
	}
	if opts.CPUs == 0 {
		opts.CPUs = 2
	}
	if opts.Timeout == 0 {
		opts.Timeout = 3 * time.Minute
	}
	if opts.CacheDir == "" {
		opts.CacheDir = defaultCacheDir()
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return Result{}, fmt.Errorf("qemu-system-x86_64 not found (scripts/deps.sh installs qemu-system-x86): %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()

	k, err := prepareKernel(ctx, opts.CacheDir)
	if err != nil {
		return Result{}, fmt.Errorf("prepare kernel: %w", err)
	}
	tmp, err := os.MkdirTemp("", "xdpsec-vm-")
	if err != nil {
		return Result{}, fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	initrd := filepath.Join(tmp, "initramfs.cpio")
	if err := writeInitramfs(initrd, k, opts); err != nil {
		return Result{}, err
	}

	cmd := exec.CommandContext(ctx, qemu,
		"-accel", "tcg", "-cpu", "max",
		"-m", fmt.Sprint(opts.Memory), "-smp", fmt.Sprint(opts.CPUs),
		"-kernel", k.Image, "-initrd", initrd,
		// quiet keeps kernel messages from interleaving with results;
		// panic=-1 with -no-reboot turns a guest panic into qemu's exit;
		// mitigations=off saves about a second of emulated boot, and the
		// guest runs nothing but the tests.
		"-append", strings.Join(append([]string{"console=ttyS0 quiet loglevel=3 panic=-1 mitigations=off rdinit=/init"}, opts.KernelArgs...), " "),
		"-nodefaults", "-display", "none", "-serial", "stdio", "-monitor", "none",
		"-no-reboot",
	)
	// A killed qemu must not leave Wait blocked on the pipe.
	cmd.WaitDelay = 5 * time.Second
	con := &console{start: time.Now(), tee: opts.Console}
	cmd.Stdout = con
	cmd.Stderr = con
	start := time.Now()
	runErr := cmd.Run()
	res := Result{Kernel: k.Version, Elapsed: time.Since(start)}
	res.Console, res.Boot = con.result()
	res.Binaries = parseConsole(res.Console)

	if ctx.Err() != nil {
		return res, fmt.Errorf("vm: killed after %v: %w", opts.Timeout, ctx.Err())
	}
	if runErr != nil {
		return res, fmt.Errorf("qemu: %w", runErr)
	}
	for _, b := range opts.Binaries {
		br, ok := res.Binary(b.Name)
		if !ok || !br.Finished {
			return res, fmt.Errorf("vm: %s did not finish (guest crashed or powered off early)", b.Name)
		}
	}
	return res, nil
}

// console collects the serial log and notes when the boot marker passes.
type console struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	start time.Time
	boot  time.Duration
	tee   io.Writer
}

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.Write(p)
	if c.boot == 0 && bytes.Contains(c.buf.Bytes(), []byte(markerBooted)) {
		c.boot = time.Since(c.start)
	}
	if c.tee != nil {
		// A slow or failing reader must not stop the guest.
		_, _ = c.tee.Write(p)
	}
	return len(p), nil
}

func (c *console) result() (string, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.ReplaceAll(c.buf.String(), "\r\n", "\n"), c.boot
}

// BuildTest compiles the test binary of the Go package in pkgDir to out,
// statically (CGO_ENABLED=0), as the guest has no libc.
func BuildTest(ctx context.Context, pkgDir, out string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		// CI runs with /usr/local/go/bin outside PATH on some machines.
		goBin = "/usr/local/go/bin/go"
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return fmt.Errorf("build test: %w", err)
	}
	cmd := exec.CommandContext(ctx, goBin, "test", "-c", "-o", abs, ".")
	cmd.Dir = pkgDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go test -c %s: %w: %s", pkgDir, err, bytes.TrimSpace(b))
	}
	if _, err := os.Stat(abs); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("go test -c %s: no test files", pkgDir)
		}
		return fmt.Errorf("build test: %w", err)
	}
	return nil
}
