// Package loader loads xdpsec's XDP programs (package bpf), attaches them
// with bpf_link, pins their maps and links under a per-instance bpffs
// directory, and offers typed access to every map. No other package
// touches *ebpf.Map.
//
// Pinning is what lets a daemon restart without a traffic gap: Close
// leaves the programs attached and the maps (SAs, policies, counters)
// pinned, and the next Open finds them, swaps in its own program with an
// atomic link update and carries on. Detach is the clean shutdown that
// removes everything. The pins must be on a bpffs that outlives the
// process for this to work: see openPinRoot for a daemon started in a
// private mount namespace (`ip netns exec`).
package loader

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"go.uber.org/zap"

	"github.com/xdpsec/xdpsec/bpf"
)

// DefaultPinRoot holds one directory per instance.
const DefaultPinRoot = "/sys/fs/bpf/xdpsec"

// Mode says how the XDP programs attach (config key dataplane.xdp_mode).
type Mode string

const (
	// ModeAuto attaches in native (driver) mode and falls back to generic
	// mode, with a log line, where the driver has no XDP support.
	ModeAuto Mode = "auto"
	// ModeNative attaches in native mode or fails.
	ModeNative Mode = "native"
	// ModeGeneric attaches in generic (skb) mode: slower, works anywhere.
	ModeGeneric Mode = "generic"
)

// Options configure Open.
type Options struct {
	// Instance names the pin directory PinRoot/Instance; one per daemon
	// (the daemon derives it from its config or network namespace).
	Instance string
	// PinRoot is the parent of the instance directories; "" means
	// DefaultPinRoot. It must be on a bpffs.
	PinRoot string
	// WAN and LAN name the interfaces xdp_wan and xdp_lan attach to, in
	// the calling thread's network namespace; "" leaves that side
	// unattached (its maps are still loaded and pinned) and detaches what
	// an earlier run attached there.
	WAN, LAN string
	// Mode is the XDP attach mode; "" means ModeAuto. A link pinned by an
	// earlier run keeps the mode it was attached with.
	Mode Mode
	// Logger receives the attach decisions; nil discards them.
	Logger *zap.Logger
}

// Names of the link pins inside the instance directory; the maps are
// pinned by their own names next to them.
const (
	wanLinkPin = "link_wan"
	lanLinkPin = "link_lan"
)

// Loader owns the loaded programs, their maps and links of one instance.
type Loader struct {
	dir  string
	root *pinRoot
	log  *zap.Logger
	wan  bpf.WanObjects
	lan  bpf.LanObjects

	// Links are nil for a side without an interface.
	wanLink, lanLink link.Link

	// cfgMu serialises read-modify-write of the config maps and the CPU
	// slot table.
	cfgMu sync.Mutex
}

// Open loads both programs, reusing the maps pinned by a previous run of
// the same instance, and attaches them to the configured interfaces
// (replacing the program of a link a previous run left pinned, so traffic
// never sees a moment without a program).
func Open(opts Options) (_ *Loader, err error) {
	if err := validInstance(opts.Instance); err != nil {
		return nil, err
	}
	switch opts.Mode {
	case "":
		opts.Mode = ModeAuto
	case ModeAuto, ModeNative, ModeGeneric:
	default:
		return nil, fmt.Errorf("loader: invalid xdp mode %q (want auto, native or generic)", opts.Mode)
	}
	root := opts.PinRoot
	if root == "" {
		root = DefaultPinRoot
	}
	l := &Loader{log: opts.Logger}
	if l.log == nil {
		l.log = zap.NewNop()
	}
	if l.root, err = openPinRoot(root); err != nil {
		return nil, err
	}
	l.dir = filepath.Join(l.root.path, opts.Instance)
	_, statErr := os.Stat(l.dir)
	fresh := errors.Is(statErr, os.ErrNotExist)
	if err := ensurePinDir(l.dir); err != nil {
		l.root.close()
		return nil, err
	}
	defer func() {
		if err == nil {
			return
		}
		// A first start that failed leaves nothing behind; removing the
		// pins also detaches a link attached before the failure. A
		// restart that failed keeps the previous run's state.
		if fresh {
			os.RemoveAll(l.dir)
		}
		l.closeAll()
	}()
	removeStale(l.root.path, opts.Instance, l.log)
	l.log.Info("pin directory", zap.String("pin", l.dir), zap.String("bpffs", l.root.via),
		zap.Bool("outlives_process", l.root.durable))

	if err := loadPinned(bpf.LoadWan, &l.wan, l.dir, l.log); err != nil {
		return nil, fmt.Errorf("loader: load wan: %w", err)
	}
	if err := loadPinned(bpf.LoadLan, &l.lan, l.dir, l.log); err != nil {
		return nil, fmt.Errorf("loader: load lan: %w", err)
	}
	for _, side := range []struct {
		ifname, pin string
		prog        *ebpf.Program
		lk          *link.Link
	}{
		{opts.WAN, wanLinkPin, l.wan.XdpWan, &l.wanLink},
		{opts.LAN, lanLinkPin, l.lan.XdpLan, &l.lanLink},
	} {
		if side.ifname == "" {
			// The side was dropped from the config since the last run:
			// its old program must not linger on the interface.
			if err := l.removeLink(side.pin); err != nil {
				return nil, err
			}
			continue
		}
		if *side.lk, err = l.attach(side.prog, side.ifname, side.pin, opts.Mode); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// removeLink detaches and unpins a link an earlier run pinned, if any.
func (l *Loader) removeLink(pin string) error {
	path := filepath.Join(l.dir, pin)
	lk, err := link.LoadPinnedLink(path, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("loader: load pinned link %s: %w", path, err)
	}
	defer lk.Close()
	l.log.Info("detaching xdp link of an unconfigured side", zap.String("pin", path))
	if err := errors.Join(lk.Detach(), lk.Unpin()); err != nil {
		return fmt.Errorf("loader: remove link %s: %w", path, err)
	}
	return nil
}

func validInstance(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("loader: invalid instance name %q", name)
	}
	return nil
}

// loadPinned loads a collection with every map pinned by name in dir: an
// existing pin is reused (its entries survive), a missing one is created.
func loadPinned(spec func() (*ebpf.CollectionSpec, error), objs any, dir string, log *zap.Logger) error {
	cs, err := spec()
	if err != nil {
		return err
	}
	for name, m := range cs.Maps {
		// Data sections (".rodata" and the like) are per program
		// version, and their names are no valid pin names.
		if !strings.HasPrefix(name, ".") {
			m.Pinning = ebpf.PinByName
		}
	}
	err = cs.LoadAndAssign(objs, &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: dir}})
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		// An older build left them (its daemon did not stop cleanly).
		// Its program keeps its own maps until ours replaces it on the
		// link, so only the pins go; what they held (SAs, counters)
		// belonged to the dead daemon.
		replaced, rerr := unpinIncompatible(cs, dir)
		if rerr != nil {
			return fmt.Errorf("maps pinned in %s are from an incompatible xdpsec version: %w", dir, errors.Join(err, rerr))
		}
		log.Warn("pinned maps of an older xdpsec version replaced; their entries are lost", zap.String("pin", dir),
			zap.Strings("maps", replaced))
		err = cs.LoadAndAssign(objs, &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: dir}})
	}
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		// The last lines say why; the whole log is far too long for an error.
		return fmt.Errorf("verifier: %v", ve)
	}
	return err
}

// unpinIncompatible removes the pins in dir of maps that no longer match
// the collection's specs and returns their names.
func unpinIncompatible(cs *ebpf.CollectionSpec, dir string) ([]string, error) {
	var names []string
	for name, ms := range cs.Maps {
		if ms.Pinning != ebpf.PinByName {
			continue
		}
		path := filepath.Join(dir, name)
		m, err := ebpf.LoadPinnedMap(path, nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return names, fmt.Errorf("load pinned map %s: %w", name, err)
		}
		incompatible := ms.Compatible(m) != nil
		m.Close()
		if !incompatible {
			continue
		}
		if err := os.Remove(path); err != nil {
			return names, fmt.Errorf("unpin map %s: %w", name, err)
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return names, nil
}

// attach attaches prog to the interface, or moves the link a previous run
// pinned over to prog.
func (l *Loader) attach(prog *ebpf.Program, ifname, pin string, mode Mode) (link.Link, error) {
	iface, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("loader: interface %s: %w", ifname, err)
	}
	path := filepath.Join(l.dir, pin)
	if lk, err := l.reuseLink(path, iface.Index, prog); err != nil || lk != nil {
		return lk, err
	}

	attach := func(m Mode) (link.Link, error) {
		flags := link.XDPDriverMode
		if m == ModeGeneric {
			flags = link.XDPGenericMode
		}
		return link.AttachXDP(link.XDPOptions{Program: prog, Interface: iface.Index, Flags: flags})
	}
	used := mode
	if mode == ModeAuto {
		used = ModeNative
	}
	lk, err := attach(used)
	if err != nil && mode == ModeAuto {
		l.log.Warn("native XDP unavailable, falling back to generic mode",
			zap.String("interface", ifname), zap.Error(err))
		used = ModeGeneric
		lk, err = attach(used)
	}
	if err != nil {
		return nil, fmt.Errorf("loader: attach %s to %s: %w", prog, ifname, err)
	}
	if err := lk.Pin(path); err != nil {
		lk.Close()
		return nil, fmt.Errorf("loader: pin link of %s: %w", ifname, err)
	}
	l.log.Info("xdp attached", zap.String("interface", ifname),
		zap.String("mode", string(used)), zap.String("pin", path))
	return lk, nil
}

// reuseLink returns the link pinned at path updated to prog when it still
// serves ifindex; a stale one (interface gone or changed) is removed and
// nil returned so that the caller attaches afresh.
func (l *Loader) reuseLink(path string, ifindex int, prog *ebpf.Program) (link.Link, error) {
	lk, err := link.LoadPinnedLink(path, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loader: load pinned link %s: %w", path, err)
	}
	info, err := lk.Info()
	if err == nil && info.XDP() != nil && int(info.XDP().Ifindex) == ifindex {
		if err := lk.Update(prog); err != nil {
			lk.Close()
			return nil, fmt.Errorf("loader: update pinned link %s: %w", path, err)
		}
		l.log.Info("xdp re-attached to pinned link", zap.String("pin", path))
		return lk, nil
	}
	l.log.Info("removing stale xdp link", zap.String("pin", path))
	if err := lk.Unpin(); err != nil {
		lk.Close()
		return nil, fmt.Errorf("loader: unpin stale link %s: %w", path, err)
	}
	lk.Close()
	return nil, nil
}

// PinDir is the instance's bpffs directory.
func (l *Loader) PinDir() string { return l.dir }

// Durable reports whether the pins are on a bpffs that outlives this
// process, so that a restarted daemon finds them (and the XDP programs
// stay attached in between); false for a private bpffs that dies with it.
func (l *Loader) Durable() bool { return l.root != nil && l.root.durable }

// Close releases this process's handles but leaves programs attached and
// maps pinned, for a restarted daemon to pick up with Open.
func (l *Loader) Close() error {
	return l.closeAll()
}

func (l *Loader) closeAll() error {
	var errs []error
	for _, lk := range []link.Link{l.wanLink, l.lanLink} {
		if lk != nil {
			errs = append(errs, lk.Close())
		}
	}
	l.wanLink, l.lanLink = nil, nil
	// Nil-safe: a failed Open may have filled only some fields.
	errs = append(errs, l.wan.XdpWan.Close(), l.lan.XdpLan.Close())
	for _, m := range l.maps() {
		errs = append(errs, m.Close())
	}
	l.wan, l.lan = bpf.WanObjects{}, bpf.LanObjects{}
	if l.root != nil {
		l.root.close()
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("loader: close: %w", err)
	}
	return nil
}

// Detach is the clean shutdown: it detaches both programs, removes every
// pin and the instance directory, and releases the handles.
func (l *Loader) Detach() error {
	var errs []error
	for _, lk := range []link.Link{l.wanLink, l.lanLink} {
		if lk != nil {
			errs = append(errs, lk.Detach())
		}
	}
	errs = append(errs, removeInstance(l.dir), l.closeAll())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("loader: detach: %w", err)
	}
	return nil
}

// Remove detaches and deletes whatever an instance left pinned, without
// opening it: for a daemon whose Open fails on maps pinned by an
// incompatible version, or for cleaning up after a crash that should not
// be resumed. Removing an absent instance is not an error.
func Remove(pinRoot, instance string) error {
	if err := validInstance(instance); err != nil {
		return err
	}
	if pinRoot == "" {
		pinRoot = DefaultPinRoot
	}
	root, err := openPinRoot(pinRoot)
	if err != nil {
		return err
	}
	defer root.close()
	if err := removeInstance(filepath.Join(root.path, instance)); err != nil {
		return fmt.Errorf("loader: remove %s: %w", instance, err)
	}
	return nil
}

// removeInstance detaches the pinned links (unpinning alone would leave a
// link attached as long as any process holds it) and deletes the pins.
func removeInstance(dir string) error {
	var errs []error
	for _, pin := range []string{wanLinkPin, lanLinkPin} {
		lk, err := link.LoadPinnedLink(filepath.Join(dir, pin), nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, lk.Detach(), lk.Close())
	}
	errs = append(errs, os.RemoveAll(dir))
	return errors.Join(errs...)
}

func (l *Loader) maps() []*ebpf.Map {
	return []*ebpf.Map{
		l.wan.SaIn, l.wan.WanFrags, l.wan.WanXsks, l.wan.Cpus, l.wan.CpuSlots,
		l.wan.WanCfg, l.wan.IkeRl, l.wan.WanCounters,
		l.lan.Spd4, l.lan.Spd6, l.lan.LanXsks, l.lan.LanCfg, l.lan.TrapRl,
		l.lan.LanCounters, l.lan.LanEvents,
	}
}
