package vm

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// kernelPackage is Debian's metapackage; it depends on the versioned image
// package (linux-image-6.1.0-NN-amd64 on bookworm) that holds the kernel.
const kernelPackage = "linux-image-amd64"

// guestModules are loaded by /init before any binary runs: the kernel
// would load most on demand, but loading them up front makes a missing one
// show as a clear modprobe error rather than a later EINVAL or ENOENT from
// netlink. Their dependencies come from the kernel's own modules.dep.
func guestModules() []string {
	return []string{
		// XFRM over netlink, ESP for both families, tunnels, interfaces
		"xfrm_user", "xfrm_algo", "esp4", "esp6", "xfrm4_tunnel", "xfrm6_tunnel",
		"tunnel4", "tunnel6", "xfrm_interface", "udp_tunnel", "ip6_udp_tunnel",
		// the AEADs and ciphers xdpsec proposes, generic and accelerated, and
		// the default RNG seqiv and echainiv draw IVs from (crypto-stdrng)
		"aesni_intel", "gcm", "ghash_generic", "ghash_clmulni_intel", "ctr",
		"authenc", "seqiv", "echainiv", "chacha20poly1305", "chacha_x86_64", "poly1305_generic",
		"poly1305_x86_64", "chacha_generic", "sha256_ssse3", "sha512_generic",
		"sha512_ssse3", "drbg", "cryptd", "crypto_simd",
		// labs inside the guest
		"veth",
	}
}

// kernel is a prepared kernel: its image and a module tree holding only
// guestModules and their dependencies, with a depmod'ed modules.dep.
type kernel struct {
	Version string // uname -r, e.g. 6.1.0-56-amd64
	Image   string // path of vmlinuz
	Modules string // root holding lib/modules/<Version>
	Load    []string
}

// defaultCacheDir is where prepared kernels are kept across runs.
func defaultCacheDir() string {
	if d := os.Getenv("XDPSEC_VM_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "xdpsec-vm")
	}
	if os.Geteuid() == 0 {
		return "/var/cache/xdpsec/vm"
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "xdpsec-vm")
	}
	return filepath.Join(os.TempDir(), "xdpsec-vm")
}

// prepareKernel returns the cached kernel for the current candidate of
// linux-image-amd64, downloading and extracting it only when missing. A
// cache entry is complete once its directory exists under its final name:
// entries are built in a temporary directory and renamed into place, so
// concurrent or interrupted runs never see half an entry.
func prepareKernel(ctx context.Context, cacheDir string) (*kernel, error) {
	mods := guestModules()
	sum := sha256.Sum256([]byte(strings.Join(mods, ",")))
	suffix := hex.EncodeToString(sum[:4])

	pkg, version, err := imagePackage(ctx)
	if err != nil {
		// Without apt (or its lists) a kernel already prepared still serves.
		if k, cerr := newestCached(cacheDir, suffix, mods); cerr == nil {
			return k, nil
		}
		return nil, err
	}
	entry := filepath.Join(cacheDir, pkg+"_"+version+"_"+suffix)
	if k, err := loadEntry(entry, mods); err == nil {
		return k, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("cache dir: %w", err)
	}
	tmp, err := os.MkdirTemp(cacheDir, ".prepare-")
	if err != nil {
		return nil, fmt.Errorf("cache dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := buildEntry(ctx, tmp, pkg, mods); err != nil {
		return nil, err
	}
	if err := os.Rename(filepath.Join(tmp, "entry"), entry); err != nil {
		// Another run may have finished the same entry first.
		if k, lerr := loadEntry(entry, mods); lerr == nil {
			return k, nil
		}
		return nil, fmt.Errorf("cache entry: %w", err)
	}
	pruneCache(cacheDir, filepath.Base(entry))
	return loadEntry(entry, mods)
}

// pruneCache removes the entries of older kernels or module sets once a
// new one is in place, so the cache holds one kernel (about 10 MB) rather
// than one per kernel update. Entries change only with the kernel package
// or the module list, so a concurrent run still reading an old one is rare.
func pruneCache(cacheDir, keep string) {
	ents, err := os.ReadDir(cacheDir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if e.IsDir() && e.Name() != keep && strings.HasPrefix(e.Name(), "linux-image-") {
			_ = os.RemoveAll(filepath.Join(cacheDir, e.Name()))
		}
	}
}

// imagePackage asks apt for the real image package behind the metapackage.
func imagePackage(ctx context.Context) (pkg, version string, err error) {
	if _, err := exec.LookPath("apt-cache"); err != nil {
		return "", "", fmt.Errorf("apt-cache not found: the vm rig needs Debian's apt: %w", err)
	}
	out, err := exec.CommandContext(ctx, "apt-cache", "show", "--no-all-versions", kernelPackage).Output()
	if err != nil {
		return "", "", fmt.Errorf("apt-cache show %s (run apt-get update?): %w", kernelPackage, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if deps, ok := strings.CutPrefix(sc.Text(), "Depends:"); ok {
			for _, d := range strings.Split(deps, ",") {
				f := strings.Fields(d)
				if len(f) > 0 && strings.HasPrefix(f[0], "linux-image-") {
					pkg = f[0]
				}
			}
		}
		if v, ok := strings.CutPrefix(sc.Text(), "Version:"); ok {
			version = strings.TrimSpace(v)
		}
	}
	if pkg == "" || version == "" {
		return "", "", fmt.Errorf("apt-cache show %s: no image package in its depends", kernelPackage)
	}
	return pkg, version, nil
}

// buildEntry downloads pkg into dir, extracts it and writes dir/entry with
// the kernel image and the closure of mods.
func buildEntry(ctx context.Context, dir, pkg string, mods []string) error {
	for _, tool := range []string{"apt-get", "dpkg-deb", "depmod"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (scripts/deps.sh installs it): %w", tool, err)
		}
	}
	// apt drops privileges to _apt for downloads; the temp dir must be
	// writable by it or apt warns and downloads as root anyway.
	_ = os.Chmod(dir, 0o777)
	cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", pkg)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get download %s: %w: %s", pkg, err, bytes.TrimSpace(out))
	}
	debs, _ := filepath.Glob(filepath.Join(dir, "*.deb"))
	if len(debs) != 1 {
		return fmt.Errorf("apt-get download %s: expected one .deb, got %d", pkg, len(debs))
	}
	full := filepath.Join(dir, "full")
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], full).CombinedOutput(); err != nil {
		return fmt.Errorf("dpkg-deb -x: %w: %s", err, bytes.TrimSpace(out))
	}
	versions, _ := os.ReadDir(filepath.Join(full, "lib/modules"))
	if len(versions) != 1 {
		return fmt.Errorf("%s: expected one module tree, got %d", pkg, len(versions))
	}
	kver := versions[0].Name()
	if err := depmod(ctx, full, kver); err != nil {
		return err
	}
	dep, err := readModulesDep(filepath.Join(full, "lib/modules", kver, "modules.dep"))
	if err != nil {
		return err
	}
	files, err := moduleClosure(dep, mods)
	if err != nil {
		return err
	}

	entry := filepath.Join(dir, "entry")
	modDir := filepath.Join(entry, "root/lib/modules", kver)
	if err := os.MkdirAll(modDir, 0o755); err != nil {
		return fmt.Errorf("cache entry: %w", err)
	}
	if err := os.Rename(filepath.Join(full, "boot", "vmlinuz-"+kver), filepath.Join(entry, "vmlinuz")); err != nil {
		return fmt.Errorf("kernel image: %w", err)
	}
	for _, f := range files {
		dst := filepath.Join(modDir, strings.TrimSuffix(strings.TrimSuffix(f, ".xz"), ".zst"))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("cache entry: %w", err)
		}
		if err := copyModule(ctx, filepath.Join(full, "lib/modules", kver, f), dst); err != nil {
			return err
		}
	}
	for _, f := range []string{"modules.builtin", "modules.builtin.modinfo", "modules.order"} {
		// depmod reads these to know what is built in; absent ones are fine.
		_ = os.Rename(filepath.Join(full, "lib/modules", kver, f), filepath.Join(modDir, f))
	}
	// modules.dep is made again for the subset: module paths lost their
	// compression suffix, and busybox's modprobe reads only this tree.
	if err := depmod(ctx, filepath.Join(entry, "root"), kver); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(entry, "version"), []byte(kver+"\n"), 0o644)
}

func depmod(ctx context.Context, root, kver string) error {
	if out, err := exec.CommandContext(ctx, "depmod", "-b", root, kver).CombinedOutput(); err != nil {
		return fmt.Errorf("depmod %s: %w: %s", kver, err, bytes.TrimSpace(out))
	}
	return nil
}

// copyModule copies a module, decompressing .xz and .zst: busybox's
// modprobe loads only plain .ko files.
func copyModule(ctx context.Context, src, dst string) error {
	var cmd *exec.Cmd
	switch {
	case strings.HasSuffix(src, ".xz"):
		cmd = exec.CommandContext(ctx, "xz", "-dc", src)
	case strings.HasSuffix(src, ".zst"):
		cmd = exec.CommandContext(ctx, "zstd", "-dc", src)
	default:
		return os.Rename(src, dst)
	}
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("decompress %s: %w", filepath.Base(src), err)
	}
	return os.WriteFile(dst, out, 0o644)
}

// readModulesDep maps module names (esp4) to their path and dependencies'
// paths, relative to the module directory.
func readModulesDep(path string) (map[string][]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("modules.dep: %w", err)
	}
	return parseModulesDep(string(data)), nil
}

func parseModulesDep(data string) map[string][]string {
	dep := map[string][]string{}
	for _, line := range strings.Split(data, "\n") {
		file, deps, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		dep[moduleName(file)] = append([]string{file}, strings.Fields(deps)...)
	}
	return dep
}

// moduleName turns kernel/net/ipv4/esp4.ko.xz into esp4; modprobe treats
// - and _ alike, so names are kept with _.
func moduleName(file string) string {
	base := filepath.Base(file)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// moduleClosure returns the files of mods and everything they depend on.
// modules.dep already lists transitive dependencies, but walking them
// again costs nothing and does not rely on it.
func moduleClosure(dep map[string][]string, mods []string) ([]string, error) {
	seen := map[string]bool{}
	var missing []string
	var walk func(name string)
	walk = func(name string) {
		files, ok := dep[name]
		if !ok {
			missing = append(missing, name)
			return
		}
		for i, f := range files {
			if seen[f] {
				continue
			}
			seen[f] = true
			if i > 0 {
				walk(moduleName(f))
			}
		}
	}
	for _, m := range mods {
		walk(strings.ReplaceAll(m, "-", "_"))
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("modules not in modules.dep (built in or renamed?): %s", strings.Join(missing, " "))
	}
	out := make([]string, 0, len(seen))
	for f := range seen {
		out = append(out, f)
	}
	sort.Strings(out)
	return out, nil
}

func loadEntry(entry string, mods []string) (*kernel, error) {
	v, err := os.ReadFile(filepath.Join(entry, "version"))
	if err != nil {
		return nil, err
	}
	k := &kernel{
		Version: strings.TrimSpace(string(v)),
		Image:   filepath.Join(entry, "vmlinuz"),
		Modules: filepath.Join(entry, "root"),
		Load:    mods,
	}
	if _, err := os.Stat(k.Image); err != nil {
		return nil, err
	}
	return k, nil
}

// newestCached returns the most recently prepared entry for this module
// set, for machines where apt cannot answer.
func newestCached(cacheDir, suffix string, mods []string) (*kernel, error) {
	ents, err := os.ReadDir(cacheDir)
	if err != nil {
		return nil, err
	}
	var best string
	var bestTime int64
	for _, e := range ents {
		if !e.IsDir() || !strings.HasSuffix(e.Name(), "_"+suffix) {
			continue
		}
		info, err := e.Info()
		if err == nil && info.ModTime().UnixNano() > bestTime {
			best, bestTime = e.Name(), info.ModTime().UnixNano()
		}
	}
	if best == "" {
		return nil, fs.ErrNotExist
	}
	return loadEntry(filepath.Join(cacheDir, best), mods)
}
