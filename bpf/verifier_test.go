package bpf

import (
	"testing"

	"github.com/cilium/ebpf"
)

// verifierBudget bounds the instructions the verifier may walk to load
// each program. The limit that matters is not the kernel's million: Linux
// 6.1's verifier prunes less than this host's, and a program that this
// kernel loaded in 0.2 s (138,000 instructions, an MSS walk that branched
// on NOP) took Debian 12's kernel minutes under qemu, so the daemon never
// came up there. The budget leaves room for features, not for paths that
// multiply.
const verifierBudget = 40_000

func TestVerifierBudget(t *testing.T) {
	var lan LanObjects
	load(t, LoadLanObjects, &lan)
	var wan WanObjects
	load(t, LoadWanObjects, &wan)
	for name, prog := range map[string]*ebpf.Program{"xdp_lan": lan.XdpLan, "xdp_wan": wan.XdpWan} {
		info, err := prog.Info()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		n, ok := info.VerifiedInstructions()
		if !ok {
			t.Skipf("this kernel does not report verified instructions (Linux 5.16+)")
		}
		t.Logf("%s: the verifier walked %d instructions", name, n)
		if n > verifierBudget {
			t.Errorf("%s: the verifier walked %d instructions, over the budget of %d: find the paths that multiply (loops that branch and continue, helpers inlined into loops)",
				name, n, verifierBudget)
		}
	}
}
