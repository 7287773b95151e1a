package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xdpsec/xdpsec/internal/netlab"
	"github.com/xdpsec/xdpsec/internal/testbin"
	"github.com/xdpsec/xdpsec/internal/vm"
	"github.com/xdpsec/xdpsec/offload/xfrm"
)

// vmTests are the tests of this package that need a kernel with ESP.
var vmTests = []string{"TestXfrmTunnel", "TestXfrmOffloadFallback"}

// TestKernelDataplanesInVM runs the kernel data plane tests (vmTests) in
// the VM rig: Debian's kernel, with ESP, under qemu. It builds this
// package's test binary and the two commands statically, boots the guest
// and requires every one of those tests to pass there, not to skip.
func TestKernelDataplanesInVM(t *testing.T) {
	netlab.RequireRoot(t)
	if xfrm.Probe() == nil {
		t.Skip("this kernel has ESP: the kernel data plane tests run here directly (this is the VM, or a host with ESP)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	dir := t.TempDir()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	build := exec.CommandContext(ctx, goBin, "build", "-o", dir+"/", "github.com/xdpsec/xdpsec/cmd/xdpsecd", "github.com/xdpsec/xdpsec/cmd/xdpsecctl")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("static build: %v\n%s", err, out)
	}
	testBin := filepath.Join(dir, "xdpsecd.test")
	if err := vm.BuildTest(ctx, ".", testBin); err != nil {
		t.Fatal(err)
	}
	const guestBin = "/opt/xdpsec"
	res, err := vm.Run(ctx, vm.Options{
		Binaries: []vm.Binary{{
			Name: "xdpsecd-test", Path: testBin,
			Args: []string{"-test.run", "^(" + strings.Join(vmTests, "|") + ")$", "-test.v", "-test.timeout", "6m"},
			Env:  []string{testbin.DirEnv + "=" + guestBin},
		}},
		Files: map[string]string{
			filepath.Join(dir, "xdpsecd"):   guestBin + "/xdpsecd",
			filepath.Join(dir, "xdpsecctl"): guestBin + "/xdpsecctl",
		},
		Memory: 2048, CPUs: 2, Timeout: 8 * time.Minute,
	})
	if err != nil {
		t.Fatalf("vm: %v\n%s", err, res.Console)
	}
	r, ok := res.Binary("xdpsecd-test")
	t.Logf("guest kernel %s, boot %s, run %s", res.Kernel, res.Boot.Round(time.Millisecond), res.Elapsed.Round(time.Millisecond))
	t.Logf("guest output:\n%s", r.Output)
	if !ok || !r.Finished || r.ExitCode != 0 {
		t.Fatalf("kernel data plane tests in the VM: finished %v, exit %d", r.Finished, r.ExitCode)
	}
	for _, name := range vmTests {
		if !strings.Contains(r.Output, "--- PASS: "+name) {
			t.Errorf("%s did not pass in the VM (skipped or missing)", name)
		}
	}
}
