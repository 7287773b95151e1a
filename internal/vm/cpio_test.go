package vm

import (
	"bytes"
	"io"
	"strconv"
	"strings"
	"testing"
)

// cpioEntry is one entry read back from a newc archive.
type cpioEntry struct {
	name string
	mode uint64
	data string
	ino  uint64
}

// readCPIO is a minimal newc reader, independent of the writer's code, to
// check what the kernel would unpack.
func readCPIO(t *testing.T, b []byte) []cpioEntry {
	t.Helper()
	var out []cpioEntry
	off := 0
	field := func(i int) uint64 {
		v, err := strconv.ParseUint(string(b[off+6+8*i:off+6+8*i+8]), 16, 32)
		if err != nil {
			t.Fatalf("field %d at %d: %v", i, off, err)
		}
		return v
	}
	align := func(n int) int { return (n + 3) &^ 3 }
	for {
		if len(b) < off+110 || string(b[off:off+6]) != "070701" {
			t.Fatalf("bad magic at %d", off)
		}
		e := cpioEntry{ino: field(0), mode: field(1)}
		size, nameLen := int(field(6)), int(field(11))
		nameStart := off + 110
		e.name = string(b[nameStart : nameStart+nameLen-1])
		if b[nameStart+nameLen-1] != 0 {
			t.Fatalf("%s: name not NUL-terminated", e.name)
		}
		dataStart := align(nameStart + nameLen)
		e.data = string(b[dataStart : dataStart+size])
		off = align(dataStart + size)
		if e.name == "TRAILER!!!" {
			if off != len(b) {
				t.Fatalf("%d bytes after the trailer", len(b)-off)
			}
			return out
		}
		out = append(out, e)
	}
}

func TestCPIOWriter(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(c *cpioWriter) error
		want  []cpioEntry
	}{
		{"empty", func(c *cpioWriter) error { return nil }, nil},
		{"dir", func(c *cpioWriter) error { return c.Dir("/bin", 0o755) },
			[]cpioEntry{{name: "bin", mode: 0o40755}}},
		// Lengths 0..4 cover every padding case of name and data.
		{"padding", func(c *cpioWriter) error {
			for i := 0; i < 5; i++ {
				if err := c.File(strings.Repeat("f", i+1), 0o644, []byte(strings.Repeat("x", i))); err != nil {
					return err
				}
			}
			return nil
		}, []cpioEntry{
			{name: "f", mode: 0o100644, data: ""},
			{name: "ff", mode: 0o100644, data: "x"},
			{name: "fff", mode: 0o100644, data: "xx"},
			{name: "ffff", mode: 0o100644, data: "xxx"},
			{name: "fffff", mode: 0o100644, data: "xxxx"},
		}},
		{"symlink and exec", func(c *cpioWriter) error {
			if err := c.File("/init", 0o755, []byte("#!/bin/sh\n")); err != nil {
				return err
			}
			return c.Symlink("/bin/sh", "busybox")
		}, []cpioEntry{
			{name: "init", mode: 0o100755, data: "#!/bin/sh\n"},
			{name: "bin/sh", mode: 0o120777, data: "busybox"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			c := newCPIOWriter(&buf)
			if err := tc.write(c); err != nil {
				t.Fatal(err)
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if buf.Len()%4 != 0 {
				t.Fatalf("archive length %d not a multiple of 4", buf.Len())
			}
			got := readCPIO(t, buf.Bytes())
			if len(got) != len(tc.want) {
				t.Fatalf("got %d entries, want %d: %+v", len(got), len(tc.want), got)
			}
			inos := map[uint64]bool{}
			for i, g := range got {
				w := tc.want[i]
				if g.name != w.name || g.mode != w.mode || g.data != w.data {
					t.Errorf("entry %d = %q %o %q, want %q %o %q", i, g.name, g.mode, g.data, w.name, w.mode, w.data)
				}
				if inos[g.ino] || g.ino == 0 {
					t.Errorf("entry %d: inode %d reused or zero", i, g.ino)
				}
				inos[g.ino] = true
			}
		})
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, io.ErrShortWrite
	}
	f.n--
	return len(p), nil
}

func TestCPIOWriterError(t *testing.T) {
	c := newCPIOWriter(&failWriter{n: 1})
	if err := c.File("a", 0o644, []byte("data")); err == nil {
		t.Fatal("write error not reported")
	}
	if err := c.Close(); err == nil {
		t.Fatal("error not sticky")
	}
}
