package vm

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// cpioWriter writes the "newc" (SVR4, no CRC) cpio format, the only one the
// kernel unpacks as an initramfs. It is written here rather than taken from
// the cpio tool so the rig needs nothing on the host beyond qemu, apt and
// depmod.
type cpioWriter struct {
	w   io.Writer
	ino uint32
	err error
}

func newCPIOWriter(w io.Writer) *cpioWriter {
	// Inode 0 is avoided: some unpackers treat it as "no inode".
	return &cpioWriter{w: w, ino: 1}
}

// header writes one entry's header and name, padded to four bytes.
func (c *cpioWriter) header(name string, mode uint32, size int) {
	if c.err != nil {
		return
	}
	name = strings.TrimPrefix(name, "/")
	nlink := 1
	if mode&cpioTypeMask == cpioDir {
		nlink = 2
	}
	// The kernel links entries by (dev, ino, nlink): unique inodes keep
	// it from treating two files as hard links of each other.
	ino := c.ino
	c.ino++
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, len(name)+1, 0)
	c.write([]byte(hdr + name + "\x00"))
	c.pad(len(hdr) + len(name) + 1)
}

func (c *cpioWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	_, c.err = c.w.Write(b)
}

func (c *cpioWriter) pad(n int) {
	if r := n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

const (
	cpioTypeMask = 0o170000
	cpioDir      = 0o040000
	cpioFile     = 0o100000
	cpioSymlink  = 0o120000
)

// Dir adds a directory; parents must have been added before.
func (c *cpioWriter) Dir(name string, perm uint32) error {
	c.header(name, cpioDir|perm&0o7777, 0)
	return c.err
}

// File adds a regular file with the given content.
func (c *cpioWriter) File(name string, perm uint32, data []byte) error {
	c.header(name, cpioFile|perm&0o7777, len(data))
	c.write(data)
	c.pad(len(data))
	return c.err
}

// HostFile adds a regular file read from the host, keeping its permissions.
func (c *cpioWriter) HostFile(name, hostPath string) error {
	data, err := os.ReadFile(hostPath)
	if err != nil {
		return fmt.Errorf("read %s: %w", hostPath, err)
	}
	st, err := os.Stat(hostPath)
	if err != nil {
		return fmt.Errorf("stat %s: %w", hostPath, err)
	}
	return c.File(name, uint32(st.Mode().Perm()), data)
}

// Symlink adds a symbolic link whose content is target.
func (c *cpioWriter) Symlink(name, target string) error {
	c.header(name, cpioSymlink|0o777, len(target))
	c.write([]byte(target))
	c.pad(len(target))
	return c.err
}

// Close writes the trailer entry that ends the archive; it does not close
// the underlying writer.
func (c *cpioWriter) Close() error {
	c.header("TRAILER!!!", 0, 0)
	return c.err
}
