package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"

	"github.com/xdpsec/xdpsec/internal/netlab"
)

// netnsIno is the inode of a named namespace, as instance names carry it.
func netnsIno(t *testing.T, ns *netlab.NS) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join("/var/run/netns", ns.Name), &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// openIn opens an instance without interfaces inside ns.
func openIn(t *testing.T, ns *netlab.NS, instance string) *Loader {
	t.Helper()
	var ld *Loader
	if err := ns.Do(func() error {
		var err error
		ld, err = Open(Options{Instance: instance, Logger: zaptest.NewLogger(t)})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return ld
}

// TestStaleInstancesRemoved: the pins of an instance whose network
// namespace was deleted (a daemon killed, then its namespace removed) go
// at the next Open of any instance; those of a namespace that still
// exists, with no process in it, stay, and so do directories whose names
// are not of the ns<inode>- form.
func TestStaleInstancesRemoved(t *testing.T) {
	netlab.RequireRoot(t)
	p := netlab.RandomPrefix("st")
	gone, err := netlab.NewNS(p + "-gone")
	if err != nil {
		t.Fatal(err)
	}
	kept := netlab.NewTestNS(t, p, "kept")
	goneName := fmt.Sprintf("ns%d-%s", netnsIno(t, gone), p)
	keptName := fmt.Sprintf("ns%d-%s", netnsIno(t, kept), p)
	otherName := p + "-other"
	for _, name := range []string{keptName, otherName} {
		t.Cleanup(func() { Remove("", name) })
	}
	t.Cleanup(func() { Remove("", goneName) })

	// Killed daemons leave their pins: Close keeps them.
	for _, c := range []struct {
		ns   *netlab.NS
		name string
	}{{gone, goneName}, {kept, keptName}, {kept, otherName}} {
		if err := openIn(t, c.ns, c.name).Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := gone.Close(); err != nil {
		t.Fatal(err)
	}

	own := openIn(t, kept, fmt.Sprintf("ns%d-%s-own", netnsIno(t, kept), p))
	defer own.Detach()
	if _, err := os.Stat(filepath.Join(DefaultPinRoot, goneName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pins of the deleted namespace's instance %s still there (%v)", goneName, err)
	}
	for _, name := range []string{keptName, otherName} {
		if _, err := os.Stat(filepath.Join(DefaultPinRoot, name)); err != nil {
			t.Errorf("pins of %s removed: %v", name, err)
		}
	}
}

// TestInstanceNetns: only ns<inode>-... names tie an instance to a
// namespace.
func TestInstanceNetns(t *testing.T) {
	for name, want := range map[string]uint64{
		"ns4026532522-abc23aee": 4026532522, "ns1-x": 1,
		"ns-abc": 0, "ns0-abc": 0, "nsx1-abc": 0, "ns12": 0, "lab-ns12-a": 0, "xs1a2b": 0,
	} {
		got, ok := instanceNetns(name)
		if got != want || ok != (want != 0) {
			t.Errorf("instanceNetns(%q) = %d, %v; want %d", name, got, ok, want)
		}
	}
}
