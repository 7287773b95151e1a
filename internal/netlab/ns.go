// Package netlab builds network-namespace labs for integration tests and
// the demo tool: named namespaces, veth pairs, addresses, routes, sysctls
// and processes started inside a namespace.
//
// Everything goes through netlink (vishvananda/netlink) and setns
// (vishvananda/netns); nothing shells out to ip(8), so the lab works the
// same in CI containers that lack iproute2. The core API takes a context and
// returns errors so the CLI can use it; the test wrappers in testing.go take
// a testing.TB and register cleanups.
package netlab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where netns.NewNamed bind-mounts named namespaces; ip(8)
// looks there too, so `ip netns exec NAME` works for debugging.
const netnsDir = "/var/run/netns"

// NS is a named network namespace. It owns the processes started in it and
// the namespace itself; Close releases both.
type NS struct {
	// Name is the name under /var/run/netns.
	Name string

	handle netns.NsHandle
	nl     *netlink.Handle

	mu     sync.Mutex
	procs  []*Process
	closed bool
}

// NewNS creates the named network namespace name and brings its loopback
// up. The calling goroutine's thread is left in its original namespace.
func NewNS(name string) (*NS, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") {
		return nil, fmt.Errorf("netlab: invalid namespace name %q", name)
	}
	var h netns.NsHandle
	// netns.NewNamed unshares the calling thread into the new namespace, so
	// it runs on a locked thread that is switched back afterwards.
	err := onLockedThread(func() error {
		var err error
		h, err = netns.NewNamed(name)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netlab: create namespace %s: %w", name, err)
	}
	n := &NS{Name: name, handle: h}
	// Routing only: a handle for every family also opens XFRM and
	// netfilter sockets, which kernels without those modules refuse.
	n.nl, err = netlink.NewHandleAt(h, unix.NETLINK_ROUTE)
	if err != nil {
		n.deleteNS()
		return nil, fmt.Errorf("netlab: netlink handle in %s: %w", name, err)
	}
	// No IPv6 duplicate address detection on links created later: it
	// keeps link-local addresses tentative for 1-2 s, during which
	// routers drop forwarded traffic for want of neighbour discovery.
	// A lab has no duplicates, and tests should not sleep.
	for _, k := range []string{"net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"} {
		if err := n.SetSysctl(k, "0"); err != nil {
			n.deleteNS()
			return nil, err
		}
	}
	if err := n.LinkUp("lo"); err != nil {
		n.deleteNS()
		return nil, err
	}
	return n, nil
}

// onLockedThread runs fn on a fresh goroutine locked to its OS thread and
// restores the thread's original network namespace afterwards. If the
// restore fails the goroutine exits still locked, so the Go runtime throws
// the thread away instead of reusing it in the wrong namespace.
func onLockedThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("get current namespace: %w", err)
			return
		}
		defer orig.Close()
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("restore namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Do runs fn with its OS thread in the namespace. fn runs on a separate,
// locked goroutine (so it must not call t.FailNow); sockets it opens stay
// bound to the namespace after Do returns.
func (n *NS) Do(fn func() error) error {
	return onLockedThread(func() error {
		if err := netns.Set(n.handle); err != nil {
			return fmt.Errorf("netlab: enter namespace %s: %w", n.Name, err)
		}
		return fn()
	})
}

// Handle returns the netlink handle bound to the namespace, for link,
// address, route and XFRM work that netlab does not wrap.
func (n *NS) Handle() *netlink.Handle { return n.nl }

// NsHandle returns the namespace file handle (owned by n; do not close).
func (n *NS) NsHandle() netns.NsHandle { return n.handle }

// LinkUp sets the named link up.
func (n *NS) LinkUp(name string) error {
	l, err := n.nl.LinkByName(name)
	if err != nil {
		return fmt.Errorf("netlab: %s: link %s: %w", n.Name, name, err)
	}
	if err := n.nl.LinkSetUp(l); err != nil {
		return fmt.Errorf("netlab: %s: set %s up: %w", n.Name, name, err)
	}
	return nil
}

// AddAddr adds addr (with its prefix length) to the named link. IPv6
// addresses get IFA_F_NODAD: duplicate address detection would hold them
// "tentative" for a second or more, and a lab has no duplicates.
func (n *NS) AddAddr(link string, addr netip.Prefix) error {
	l, err := n.nl.LinkByName(link)
	if err != nil {
		return fmt.Errorf("netlab: %s: link %s: %w", n.Name, link, err)
	}
	a := &netlink.Addr{IPNet: prefixToIPNet(addr)}
	if addr.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	if err := n.nl.AddrAdd(l, a); err != nil {
		return fmt.Errorf("netlab: %s: add %s to %s: %w", n.Name, addr, link, err)
	}
	return nil
}

// AddRoute adds a route to dst via gw. An invalid (zero) dst means the
// default route of gw's family.
func (n *NS) AddRoute(dst netip.Prefix, gw netip.Addr) error {
	if !dst.IsValid() {
		if gw.Is4() {
			dst = netip.MustParsePrefix("0.0.0.0/0")
		} else {
			dst = netip.MustParsePrefix("::/0")
		}
	}
	r := &netlink.Route{Dst: prefixToIPNet(dst), Gw: gw.AsSlice()}
	if err := n.nl.RouteAdd(r); err != nil {
		return fmt.Errorf("netlab: %s: route %s via %s: %w", n.Name, dst, gw, err)
	}
	return nil
}

// SetSysctl writes value to /proc/sys/<key> (key with dots or slashes)
// from a thread inside the namespace: net.* sysctls are per namespace and
// procfs resolves them by the writing thread's namespace.
func (n *NS) SetSysctl(key, value string) error {
	p := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
	err := n.Do(func() error {
		return os.WriteFile(p, []byte(value), 0o644)
	})
	if err != nil {
		return fmt.Errorf("netlab: %s: sysctl %s=%s: %w", n.Name, key, value, err)
	}
	return nil
}

// EnableForwarding turns on IPv4 and IPv6 forwarding, as a gateway needs.
func (n *NS) EnableForwarding() error {
	for _, k := range []string{"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"} {
		if err := n.SetSysctl(k, "1"); err != nil {
			return err
		}
	}
	return nil
}

// Start starts cmd inside the namespace and returns the running process.
// The child inherits the network namespace of the thread that forks it, so
// the fork happens on a locked thread switched into the namespace. The
// process gets its own process group so Stop reaches its children too.
// Unless cmd already has Stdout/Stderr, both go to out (io.Discard if nil).
func (n *NS) Start(cmd *exec.Cmd, out io.Writer) (*Process, error) {
	n.mu.Lock()
	closed := n.closed
	n.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("netlab: start %s in %s: namespace closed", cmd.Path, n.Name)
	}
	if out == nil {
		out = io.Discard
	}
	if cmd.Stdout == nil {
		cmd.Stdout = out
	}
	if cmd.Stderr == nil {
		cmd.Stderr = out
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &unix.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	// Bound the wait for output copying once the process is gone, in case a
	// grandchild keeps the pipe open.
	if cmd.WaitDelay == 0 {
		cmd.WaitDelay = 2 * time.Second
	}
	if err := n.Do(cmd.Start); err != nil {
		return nil, fmt.Errorf("netlab: start %s in %s: %w", strings.Join(cmd.Args, " "), n.Name, err)
	}
	p := newProcess(cmd)
	n.mu.Lock()
	n.procs = append(n.procs, p)
	n.mu.Unlock()
	return p, nil
}

// Run runs name with args inside the namespace to completion, with its
// combined output going to out. The context bounds it.
func (n *NS) Run(ctx context.Context, out io.Writer, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	var buf strings.Builder
	w := io.Writer(&buf)
	if out != nil {
		w = io.MultiWriter(&buf, out)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := n.Do(cmd.Start); err != nil {
		return fmt.Errorf("netlab: start %s in %s: %w", strings.Join(cmd.Args, " "), n.Name, err)
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("netlab: %s in %s: %w: %s", strings.Join(cmd.Args, " "), n.Name, err, strings.TrimSpace(buf.String()))
	}
	return nil
}

// Close stops every process started in the namespace, then deletes the
// namespace. Links inside it go with it; the kernel moves nothing back.
func (n *NS) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	procs := n.procs
	n.procs = nil
	n.mu.Unlock()

	var errs []error
	for _, p := range procs {
		if err := p.Stop(DefaultStopGrace); err != nil {
			errs = append(errs, err)
		}
	}
	if err := n.deleteNS(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// deleteNS releases the netlink handle and namespace fd and removes the
// name. The kernel destroys the namespace once nothing references it.
func (n *NS) deleteNS() error {
	if n.nl != nil {
		n.nl.Close()
		n.nl = nil
	}
	if n.handle.IsOpen() {
		n.handle.Close()
	}
	if err := netns.DeleteNamed(n.Name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("netlab: delete namespace %s: %w", n.Name, err)
	}
	return nil
}

// Exists reports whether a named namespace called name is present.
func Exists(name string) bool {
	_, err := os.Stat(filepath.Join(netnsDir, name))
	return err == nil
}
