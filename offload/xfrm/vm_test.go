package xfrm

import (
	"testing"

	"github.com/xdpsec/xdpsec/internal/vm"
)

// kernelTests need ESP and run in the VM rig (make test-vm).
var kernelTests = []string{"TestKernelSAs", "TestKernelLeftovers", "TestKernelExpire", "TestKernelOffloadFallback",
	"TestKernelPolicies", "TestKernelRoutes", "TestKernelAcquire"}

// TestKernelInVM runs this package's kernel tests in the VM, where the
// kernel has ESP, and requires each to pass there rather than skip.
func TestKernelInVM(t *testing.T) {
	needRoot(t)
	if espSupport() == nil {
		t.Skip("this kernel has ESP: the kernel tests run here directly")
	}
	vm.RunGuestTests(t, vm.GuestTests{Run: "^TestKernel", MustPass: kernelTests})
}
