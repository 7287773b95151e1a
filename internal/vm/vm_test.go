package vm

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestVMKernelESP boots the guest with the espprobe test binary, which
// adds, reads back and deletes ESP states (rfc4106(gcm(aes)), IPv4, IPv6,
// ESP in UDP) and a veth pair: what the xfrm data plane's tests need. It is
// not skipped when qemu is missing: `make test` installs it, and a rig that
// silently skips would hide the data plane's tests with it.
func TestVMKernelESP(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM (10-20 s under TCG)")
	}
	if os.Geteuid() != 0 {
		// Only for apt-get download into the system cache and the host
		// check below; qemu itself runs unprivileged.
		t.Skip("needs root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	probe := filepath.Join(t.TempDir(), "espprobe.test")
	if err := BuildTest(ctx, "testdata/espprobe", probe); err != nil {
		t.Fatal(err)
	}

	// On the host the same probe fails (no ESP in the build machines'
	// kernel): the reason this rig exists. Logged, not asserted, so the
	// test also passes on a machine whose kernel has ESP.
	host, err := exec.CommandContext(ctx, probe, "-test.run", "TestESPState").CombinedOutput()
	t.Logf("host kernel ESP probe: err=%v\n%s", err, lastLines(string(host), 3))

	opts := Options{
		Binaries: []Binary{{Name: "espprobe", Path: probe, Args: []string{"-test.v"}}},
		Timeout:  3 * time.Minute,
	}
	if testing.Verbose() {
		// The guest's console as it comes, so a hang shows where.
		opts.Console = os.Stderr
	}
	res, err := Run(ctx, opts)
	if err != nil {
		t.Fatalf("vm: %v\nconsole:\n%s", err, res.Console)
	}
	t.Logf("kernel %s, boot %v, total %v", res.Kernel, res.Boot.Round(time.Millisecond), res.Elapsed.Round(time.Millisecond))
	if failed := res.FailedModules(); len(failed) > 0 {
		t.Errorf("modules not loaded in the guest: %v", failed)
	}
	br, _ := res.Binary("espprobe")
	if br.ExitCode != 0 || !strings.Contains(br.Output, "PASS") {
		t.Fatalf("espprobe in the guest: rc=%d\n%s", br.ExitCode, br.Output)
	}
	for _, want := range []string{"--- PASS: TestESPState/v4 ", "--- PASS: TestESPState/v4-udp", "--- PASS: TestESPState/v6", "--- PASS: TestVeth"} {
		if !strings.Contains(br.Output, want) {
			t.Errorf("guest output lacks %q", want)
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestVMPackage runs one package's tests in the guest, for working on tests
// that need the guest's kernel:
//
//	XDPSEC_VM_PKG=./path/to/pkg XDPSEC_VM_ARGS='-test.run=TestX -test.v' \
//		go test -count=1 -run TestVMPackage -v ./internal/vm/
//
// The path is relative to the repository root. Without XDPSEC_VM_PKG it
// skips: TestVMKernelESP is the suite's check of the rig itself.
func TestVMPackage(t *testing.T) {
	pkg := os.Getenv("XDPSEC_VM_PKG")
	if pkg == "" {
		t.Skip("set XDPSEC_VM_PKG to a package directory to run its tests in the VM")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if !filepath.IsAbs(pkg) {
		pkg = filepath.Join("..", "..", pkg)
	}
	bin := filepath.Join(t.TempDir(), "pkg.test")
	if err := BuildTest(ctx, pkg, bin); err != nil {
		t.Fatal(err)
	}
	opts := Options{
		Binaries: []Binary{{Name: "pkg", Path: bin, Args: strings.Fields(os.Getenv("XDPSEC_VM_ARGS"))}},
		Timeout:  9 * time.Minute,
	}
	if testing.Verbose() {
		opts.Console = os.Stderr
	}
	res, err := Run(ctx, opts)
	if err != nil {
		t.Fatalf("vm: %v", err)
	}
	t.Logf("kernel %s, boot %v, total %v", res.Kernel, res.Boot.Round(time.Millisecond), res.Elapsed.Round(time.Millisecond))
	if br, _ := res.Binary("pkg"); br.ExitCode != 0 {
		t.Fatalf("%s in the guest: rc=%d\n%s", pkg, br.ExitCode, br.Output)
	}
}
