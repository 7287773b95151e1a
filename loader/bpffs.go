package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// bpffsMount is where bpffs lives by convention; it is mounted on demand
// when the pin directory is below it (a fresh container or VM may lack it).
const bpffsMount = "/sys/fs/bpf"

// ensurePinDir creates dir on a bpffs, mounting bpffs at /sys/fs/bpf first
// when dir is below it and nothing is mounted there.
func ensurePinDir(dir string) error {
	if dir == bpffsMount || strings.HasPrefix(dir, bpffsMount+"/") {
		on, err := isBPFFS(bpffsMount)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("loader: stat %s: %w", bpffsMount, err)
		}
		if !on {
			if err := os.MkdirAll(bpffsMount, 0o755); err != nil {
				return fmt.Errorf("loader: create %s: %w", bpffsMount, err)
			}
			if err := unix.Mount("bpf", bpffsMount, "bpf", 0, ""); err != nil {
				return fmt.Errorf("loader: mount bpffs on %s: %w", bpffsMount, err)
			}
		}
	}
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
