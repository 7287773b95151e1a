package loader

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"go.uber.org/zap"
)

// Instance directories named "ns<inode>-<anything>" belong to the network
// namespace with that inode (the daemon names them so, see
// control.instanceName). A daemon killed in a namespace that was then
// deleted leaves its directory behind for good: nobody will ever start in
// that namespace again. removeStale deletes those at the next start of any
// instance under the same root.

// instanceNetns returns the network namespace inode an instance name
// carries.
func instanceNetns(name string) (uint64, bool) {
	rest, ok := strings.CutPrefix(name, "ns")
	if !ok {
		return 0, false
	}
	digits, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	ino, err := strconv.ParseUint(digits, 10, 64)
	return ino, err == nil && ino != 0
}

// removeStale removes the instance directories under root (other than
// own) whose network namespace no longer exists. A namespace exists as
// long as something refers to it, and what user space can refer to it
// with is scanned: the threads of every process (a thread may sit in
// another namespace than its process), open namespace files, and
// bind mounts (/run/netns and elsewhere, in every mount namespace). A
// live daemon is a process in its namespace, so its directory is never
// taken. Namespace inodes are reused once freed: a directory whose
// inode now belongs to a new namespace is kept, which costs only space.
// When the scan cannot see this process's own namespace it is
// incomplete (a restricted /proc) and nothing is removed.
func removeStale(root, own string, log *zap.Logger) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	cands := map[string]uint64{}
	for _, e := range entries {
		if ino, ok := instanceNetns(e.Name()); ok && e.IsDir() && e.Name() != own {
			cands[e.Name()] = ino
		}
	}
	if len(cands) == 0 {
		return
	}
	live := liveNetns()
	if self := nsInode("/proc/self/ns/net"); self == 0 || !live[self] {
		log.Warn("cannot tell which network namespaces exist; stale instances kept", zap.String("root", root))
		return
	}
	for name, ino := range cands {
		if live[ino] {
			continue
		}
		dir := filepath.Join(root, name)
		if err := removeInstance(dir); err != nil {
			log.Warn("removing the instance of a deleted network namespace", zap.String("pin", dir), zap.Error(err))
			continue
		}
		log.Info("removed the instance of a deleted network namespace", zap.String("pin", dir), zap.Uint64("netns", ino))
	}
}

// liveNetns returns the inodes of the network namespaces user space refers
// to (see removeStale).
func liveNetns() map[uint64]bool {
	live := map[uint64]bool{}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return live
	}
	mntSeen := map[uint64]bool{}
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		base := filepath.Join("/proc", p.Name())
		tasks, _ := os.ReadDir(filepath.Join(base, "task"))
		for _, t := range tasks {
			if ino := nsInode(filepath.Join(base, "task", t.Name(), "ns", "net")); ino != 0 {
				live[ino] = true
			}
		}
		fds, _ := os.ReadDir(filepath.Join(base, "fd"))
		for _, fd := range fds {
			if ino, ok := netnsLink(filepath.Join(base, "fd", fd.Name())); ok {
				live[ino] = true
			}
		}
		mnt := nsInode(filepath.Join(base, "ns", "mnt"))
		if mnt == 0 || !mntSeen[mnt] {
			mntSeen[mnt] = true
			nsfsMounts(filepath.Join(base, "mountinfo"), live)
		}
	}
	return live
}

// netnsLink reads an fd link of the form net:[INODE].
func netnsLink(path string) (uint64, bool) {
	target, err := os.Readlink(path)
	if err != nil {
		return 0, false
	}
	return parseNetnsRef(target)
}

func parseNetnsRef(s string) (uint64, bool) {
	rest, ok := strings.CutPrefix(s, "net:[")
	if !ok {
		return 0, false
	}
	ino, err := strconv.ParseUint(strings.TrimSuffix(rest, "]"), 10, 64)
	return ino, err == nil
}

// nsfsMounts adds the network namespaces bind-mounted in a mount
// namespace: mountinfo lines of type nsfs whose root is net:[INODE].
func nsfsMounts(mountinfo string, live map[uint64]bool) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// 36 35 0:4 net:[4026532] /run/netns/x rw shared:1 - nsfs nsfs rw
		if len(fields) < 4 {
			continue
		}
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(fields) || fields[sep+1] != "nsfs" {
			continue
		}
		if ino, ok := parseNetnsRef(fields[3]); ok {
			live[ino] = true
		}
	}
}
