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
var vmTests = []string{"TestXfrmTunnel", "TestXfrmOffloadFallback", "TestXfrmTrap"}

// TestKernelDataplanesInVM runs the kernel data plane tests (vmTests) in
// the VM rig: Debian's kernel, with ESP, under qemu. It builds this
// package's test binary and the two commands statically, boots the guest
// and requires every one of those tests to pass there, not to skip.
func TestKernelDataplanesInVM(t *testing.T) {
	netlab.RequireRoot(t)
	if xfrm.Probe() == nil {
		t.Skip("this kernel has ESP: the kernel data plane tests run here directly (this is the VM, or a host with ESP)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
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
	const guestBin = "/opt/xdpsec"
	vm.RunGuestTests(t, vm.GuestTests{
		Run:      "^(" + strings.Join(vmTests, "|") + ")$",
		MustPass: vmTests,
		Env:      []string{testbin.DirEnv + "=" + guestBin},
		Files: map[string]string{
			filepath.Join(dir, "xdpsecd"):   guestBin + "/xdpsecd",
			filepath.Join(dir, "xdpsecctl"): guestBin + "/xdpsecctl",
		},
		Timeout: 6 * time.Minute,
	})
}
