package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// bpffsMount is where bpffs lives by convention; it is mounted on demand
// when the pin directory is below it (a fresh container or VM may lack it).
const bpffsMount = "/sys/fs/bpf"

// pinRoot is where an instance's pins go, resolved by openPinRoot.
type pinRoot struct {
	// path is the pin root as this process reaches it: the configured one,
	// or /proc/self/fd/N/... through root when the bpffs is another mount
	// namespace's.
	path string
	// root holds the other mount namespace's bpffs (an O_PATH directory),
	// so that path stays valid after the process it was found through has
	// gone; nil when the pins are on this namespace's own mount.
	root *os.File
	// durable says that the bpffs outlives this process: it is mounted in
	// a mount namespace that other processes (init's) share. A private
	// bpffs (mounted by this process in a mount namespace of its own, as
	// under `ip netns exec`) dies with it, and with it every pin and XDP
	// link: a restart is then not hitless.
	durable bool
	// via says where the bpffs was found, for the log.
	via string
}

func (r *pinRoot) close() {
	if r.root != nil {
		r.root.Close()
		r.root = nil
	}
}

// openPinRoot finds the bpffs for root. `ip netns exec` (like other
// tools) runs its command in a private mount namespace with /sys
// remounted, where /sys/fs/bpf is empty: a bpffs mounted there would be
// private and take the pins with it when the daemon dies, detaching the
// XDP programs that keep protected traffic from leaving in clear. So
// when nothing is mounted at /sys/fs/bpf, the /sys/fs/bpf of init's (or
// else an ancestor's) mount namespace is used through /proc/PID/root, and
// only when that is out of reach is a bpffs mounted here.
func openPinRoot(root string) (*pinRoot, error) {
	if root != bpffsMount && !strings.HasPrefix(root, bpffsMount+"/") {
		return &pinRoot{path: root, durable: sharedMount(root), via: root}, nil
	}
	on, err := isBPFFS(bpffsMount)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("loader: stat %s: %w", bpffsMount, err)
	}
	if on {
		return &pinRoot{path: root, durable: sharedMount(bpffsMount), via: bpffsMount}, nil
	}
	rel := strings.TrimPrefix(root, bpffsMount)
	for _, pid := range outerProcesses() {
		outer := filepath.Join("/proc", strconv.Itoa(pid), "root") + bpffsMount
		if on, _ := isBPFFS(outer); !on {
			continue
		}
		f, err := os.OpenFile(outer, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		// The process may have exited between the statfs and the open,
		// and its PID been reused: check again through the open fd.
		path := fmt.Sprintf("/proc/self/fd/%d", f.Fd())
		if on, _ := isBPFFS(path); !on {
			f.Close()
			continue
		}
		return &pinRoot{path: path + rel, root: f, durable: true, via: outer}, nil
	}
	if err := os.MkdirAll(bpffsMount, 0o755); err != nil {
		return nil, fmt.Errorf("loader: create %s: %w", bpffsMount, err)
	}
	if err := unix.Mount("bpf", bpffsMount, "bpf", 0, ""); err != nil {
		return nil, fmt.Errorf("loader: mount bpffs on %s: %w", bpffsMount, err)
	}
	return &pinRoot{path: root, durable: sharedMount(bpffsMount), via: bpffsMount + " (mounted here)"}, nil
}

// outerProcesses lists init and this process's ancestors whose mount
// namespace is not this process's own, init first: where a bpffs that
// outlives this process may be found.
func outerProcesses() []int {
	self := nsInode("/proc/self/ns/mnt")
	var out []int
	seen := map[int]bool{}
	add := func(pid int) {
		if pid <= 0 || seen[pid] || pid == os.Getpid() {
			return
		}
		seen[pid] = true
		if ino := nsInode(fmt.Sprintf("/proc/%d/ns/mnt", pid)); ino == 0 || ino != self {
			out = append(out, pid)
		}
	}
	add(1)
	for pid, n := os.Getppid(), 0; pid > 1 && n < 64; n++ {
		add(pid)
		pid = parentOf(pid)
	}
	return out
}

// parentOf reads a process's parent from /proc/PID/stat (0 if unknown).
func parentOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name may contain spaces and parentheses: the fields
	// after it start at the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// sharedMount reports whether the mount at path is also visible to init
// or an ancestor in another mount namespace (the same filesystem there),
// or this process shares its mount namespace with init: then it outlives
// this process.
func sharedMount(path string) bool {
	self := nsInode("/proc/self/ns/mnt")
	if self != 0 && self == nsInode("/proc/1/ns/mnt") {
		return true
	}
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return false
	}
	for _, pid := range outerProcesses() {
		var o unix.Stat_t
		if unix.Stat(filepath.Join("/proc", strconv.Itoa(pid), "root")+path, &o) == nil && o.Dev == st.Dev {
			return true
		}
	}
	// A parent in the same mount namespace (no `ip netns exec` between
	// them) keeps the mount alive as well.
	if ppid := os.Getppid(); ppid > 1 && nsInode(fmt.Sprintf("/proc/%d/ns/mnt", ppid)) == self {
		return true
	}
	return false
}

// nsInode is the inode of a namespace file (0 when it cannot be read).
func nsInode(path string) uint64 {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return 0
	}
	return st.Ino
}

// ensurePinDir creates dir, which must be on a bpffs.
func ensurePinDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("loader: create pin dir: %w", err)
	}
	on, err := isBPFFS(dir)
	if err != nil {
		return fmt.Errorf("loader: stat pin dir: %w", err)
	}
	if !on {
		return fmt.Errorf("loader: pin dir %s is not on a bpffs", filepath.Clean(dir))
	}
	return nil
}

func isBPFFS(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, &os.PathError{Op: "statfs", Path: path, Err: err}
	}
	return uint32(st.Type) == unix.BPF_FS_MAGIC, nil
}
