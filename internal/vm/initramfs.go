package vm

import (
	"bufio"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// busyboxPath is where busybox-static installs its binary.
const busyboxPath = "/bin/busybox"

// guestBinDir holds the binaries to run inside the guest.
const guestBinDir = "/vm/bin"

// checkStatic fails when the file needs a dynamic loader, which the guest
// does not have: a busybox from the dynamic "busybox" package, or a Go test
// binary built with cgo.
func checkStatic(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked: the guest has no libc (build with CGO_ENABLED=0; install busybox-static)", p)
		}
	}
	return nil
}

// initScript is the guest's /init: it sets up the mounts the tests expect
// of a normal system, loads the modules, runs each binary between markers
// and powers off, so qemu exits as soon as the last result is out.
func initScript(k *kernel, bins []Binary) string {
	var b strings.Builder
	b.WriteString(`#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin HOME=/root
mkdir -p /proc /sys /dev /tmp /run /root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /sys/fs/bpf /dev/pts
mount -t bpf bpf /sys/fs/bpf
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
# The kernel loads crypto templates such as rfc4106(gcm(aes)) on demand.
echo /bin/modprobe > /proc/sys/kernel/modprobe
`)
	for _, m := range k.Load {
		fmt.Fprintf(&b, "modprobe %s || echo '=== VM-MODPROBE-FAILED %s'\n", m, m)
	}
	b.WriteString("ip link set lo up\necho '" + markerBooted + "'\ncd /tmp\n")
	for _, bin := range bins {
		args := make([]string, 0, len(bin.Env)+len(bin.Args)+2)
		if len(bin.Env) > 0 {
			args = append(args, "env")
			for _, kv := range bin.Env {
				args = append(args, shellQuote(kv))
			}
		}
		args = append(args, shellQuote(path.Join(guestBinDir, bin.Name)))
		for _, a := range bin.Args {
			args = append(args, shellQuote(a))
		}
		fmt.Fprintf(&b, "echo '%s%s'\n%s </dev/null 2>&1\nrc=$?\necho '%s%s rc='$rc\n",
			markerRun, bin.Name, strings.Join(args, " "), markerExit, bin.Name)
	}
	b.WriteString("sync\npoweroff -f\n")
	return b.String()
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// writeInitramfs writes the guest's root file system as a newc cpio to out.
func writeInitramfs(out string, k *kernel, opts Options) (err error) {
	if err := checkStatic(busyboxPath); err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("initramfs: %w", cerr)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	c := newCPIOWriter(bw)
	dirs := map[string]bool{}
	mkdirs := func(p string) error {
		var parts []string
		for d := path.Dir(p); d != "/" && d != "." && !dirs[d]; d = path.Dir(d) {
			parts = append(parts, d)
		}
		for i := len(parts) - 1; i >= 0; i-- {
			dirs[parts[i]] = true
			if err := c.Dir(parts[i], 0o755); err != nil {
				return err
			}
		}
		return nil
	}
	add := func(guest string, write func() error) error {
		if err := mkdirs(guest); err != nil {
			return err
		}
		return write()
	}

	for _, d := range []string{"/bin/x", "/sbin/x", "/proc/x", "/sys/x", "/dev/x", "/tmp/x", "/run/x", "/root/x", "/etc/x"} {
		if err := mkdirs(d); err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
	}
	if err := c.HostFile("/bin/busybox", busyboxPath); err != nil {
		return err
	}
	if err := c.File("/init", 0o755, []byte(initScript(k, opts.Binaries))); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	// The module tree, as the cache holds it.
	var mods []string
	err = filepath.WalkDir(k.Modules, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			mods = append(mods, p)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("initramfs modules: %w", err)
	}
	sort.Strings(mods)
	for _, p := range mods {
		rel, _ := filepath.Rel(k.Modules, p)
		if err := add("/"+filepath.ToSlash(rel), func() error { return c.HostFile("/"+filepath.ToSlash(rel), p) }); err != nil {
			return err
		}
	}
	seen := map[string]bool{}
	for _, bin := range opts.Binaries {
		if bin.Name == "" || strings.ContainsAny(bin.Name, "/ '\n") || seen[bin.Name] {
			return fmt.Errorf("binary name %q: empty, duplicate or not a plain word", bin.Name)
		}
		seen[bin.Name] = true
		if err := checkStatic(bin.Path); err != nil {
			return err
		}
		g := path.Join(guestBinDir, bin.Name)
		if err := add(g, func() error { return c.HostFile(g, bin.Path) }); err != nil {
			return err
		}
	}
	guests := make([]string, 0, len(opts.Files))
	for _, g := range opts.Files {
		guests = append(guests, g)
	}
	sort.Strings(guests)
	byGuest := map[string]string{}
	for h, g := range opts.Files {
		byGuest[g] = h
	}
	for _, g := range guests {
		if !path.IsAbs(g) {
			return fmt.Errorf("guest path %q: not absolute", g)
		}
		h := byGuest[g]
		if err := add(g, func() error { return c.HostFile(g, h) }); err != nil {
			return err
		}
	}
	if err := c.Close(); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return nil
}
