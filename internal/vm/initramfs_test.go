package vm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteInitramfs(t *testing.T) {
	if err := checkStatic(busyboxPath); err != nil {
		t.Skipf("needs busybox-static: %v", err)
	}
	dir := t.TempDir()
	mods := filepath.Join(dir, "root")
	modDir := filepath.Join(mods, "lib/modules/6.1.0-1-amd64")
	if err := os.MkdirAll(filepath.Join(modDir, "kernel/net/ipv4"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(p, data string, perm os.FileMode) {
		t.Helper()
		if err := os.WriteFile(p, []byte(data), perm); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(modDir, "kernel/net/ipv4/esp4.ko"), "ko", 0o644)
	write(filepath.Join(modDir, "modules.dep"), "kernel/net/ipv4/esp4.ko:\n", 0o644)
	data := filepath.Join(dir, "data")
	write(data, "payload", 0o600)
	k := &kernel{Version: "6.1.0-1-amd64", Modules: mods, Load: []string{"esp4"}}
	out := filepath.Join(dir, "initrd")
	opts := Options{
		// busybox stands in for a static test binary.
		Binaries: []Binary{
			{Name: "probe", Path: busyboxPath, Args: []string{"-test.run", "it's"}},
			{Name: "withenv", Path: busyboxPath, Env: []string{"XDPSEC_TEST_BINDIR=/opt/x y"}},
		},
		Files: map[string]string{data: "/etc/xdpsec/data"},
	}
	if err := writeInitramfs(out, k, opts); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]cpioEntry{}
	seen := map[string]bool{}
	for _, e := range readCPIO(t, b) {
		if seen[e.name] {
			t.Errorf("%s twice", e.name)
		}
		seen[e.name] = true
		got[e.name] = e
		// Every entry's parent must come before it, or the kernel
		// cannot create it.
		if p := filepath.Dir(e.name); p != "." && !seen[p] {
			t.Errorf("%s before its directory %s", e.name, p)
		}
	}
	for name, mode := range map[string]uint64{
		"init":                                  0o100755,
		"bin/busybox":                           0o100755,
		"vm/bin/probe":                          0o100755,
		"etc/xdpsec/data":                       0o100600,
		"lib/modules/6.1.0-1-amd64/modules.dep": 0o100644,
		"lib/modules/6.1.0-1-amd64/kernel/net/ipv4/esp4.ko": 0o100644,
		"tmp": 0o40755,
	} {
		if e, ok := got[name]; !ok || e.mode != mode {
			t.Errorf("%s: mode %o present %v, want %o", name, e.mode, ok, mode)
		}
	}
	init := got["init"].data
	for _, want := range []string{
		"modprobe esp4 ||",
		"echo /bin/modprobe > /proc/sys/kernel/modprobe",
		"mount -t bpf bpf /sys/fs/bpf",
		"echo '=== VM-RUN probe'\n'/vm/bin/probe' '-test.run' 'it'\\''s' </dev/null 2>&1\nrc=$?\necho '=== VM-EXIT probe rc='$rc\n",
		"env 'XDPSEC_TEST_BINDIR=/opt/x y' '/vm/bin/withenv' </dev/null",
		"poweroff -f",
	} {
		if !strings.Contains(init, want) {
			t.Errorf("/init lacks %q:\n%s", want, init)
		}
	}

	for _, bad := range []Options{
		{Binaries: []Binary{{Name: "a b", Path: busyboxPath}}},
		{Binaries: []Binary{{Name: "x", Path: busyboxPath}, {Name: "x", Path: busyboxPath}}},
		{Files: map[string]string{data: "relative"}},
	} {
		if err := writeInitramfs(out, k, bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestCheckStatic(t *testing.T) {
	// Debian's /bin/sh (dash) links against libc.
	if err := checkStatic("/bin/sh"); err == nil {
		t.Error("/bin/sh taken for static")
	}
	if err := checkStatic(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing file accepted")
	}
}

// Missing host tools must say what is missing and where it comes from.
func TestMissingTools(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := Run(t.Context(), Options{CacheDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "qemu-system-x86_64 not found") {
		t.Errorf("without qemu: %v", err)
	}
	_, err = prepareKernel(t.Context(), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "apt-cache not found") {
		t.Errorf("without apt: %v", err)
	}
}
