package loader

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xdpsec/xdpsec/bpf"
)

// SAAction says where xdp_wan steers ESP of a known inbound SA.
type SAAction uint32

const (
	// SAAfXDP redirects to the AF_XDP socket of the rx queue; dropped
	// (and counted) when the queue has none.
	SAAfXDP = SAAction(bpf.WanSaActionSA_ACTION_AFXDP)
	// SAXfrm redirects to a CPU of SetCPUs for the kernel's XFRM; passed
	// to the stack on the receiving CPU when none is set.
	SAXfrm = SAAction(bpf.WanSaActionSA_ACTION_XFRM)
	// SAPass hands the packet to the stack unchanged.
	SAPass = SAAction(bpf.WanSaActionSA_ACTION_PASS)
)

func (a SAAction) valid() bool { return a == SAAfXDP || a == SAXfrm || a == SAPass }

// ErrNotFound is returned by lookups of absent entries.
var ErrNotFound = errors.New("not found")

func saKey(spi uint32, dst netip.Addr) (bpf.WanSaKey, error) {
	// RFC 4303 2.1 reserves 1-255, and 0 is the non-ESP marker on 4500.
	if spi < 256 {
		return bpf.WanSaKey{}, fmt.Errorf("reserved spi %d", spi)
	}
	if !dst.IsValid() {
		return bpf.WanSaKey{}, fmt.Errorf("invalid destination address")
	}
	// The programs key IPv4 as IPv4-mapped IPv6, which As16 produces.
	return bpf.WanSaKey{Spi: spi, Daddr: dst.Unmap().As16()}, nil
}

// InboundSA is what xdp_wan knows of an inbound SA: enough to steer its
// ESP and to refuse ESP in a form the SA was not negotiated in.
type InboundSA struct {
	SPI uint32
	// Dst is the local outer address the peer sends to.
	Dst netip.Addr
	// Peer is the peer's outer address: raw ESP must come from it.
	// ESP-in-UDP may come from anywhere (a NAT may rebind it); the data
	// plane learns the new source from packets whose ICV verified.
	Peer netip.Addr
	// UDP says the SA was negotiated with UDP encapsulation (RFC 3948):
	// its ESP arrives in UDP 4500, never raw.
	UDP    bool
	Action SAAction
}

// PutSA installs or replaces the inbound SA (sa.SPI, sa.Dst).
func (l *Loader) PutSA(sa InboundSA) error {
	if !sa.Action.valid() {
		return fmt.Errorf("loader: put sa: invalid action %d", sa.Action)
	}
	k, err := saKey(sa.SPI, sa.Dst)
	if err != nil {
		return fmt.Errorf("loader: put sa: %w", err)
	}
	if !sa.Peer.IsValid() || sa.Peer.Unmap().Is4() != sa.Dst.Unmap().Is4() {
		return fmt.Errorf("loader: put sa %#08x: peer %v is not an address of the destination's family", sa.SPI, sa.Peer)
	}
	// As16 maps IPv4 into IPv6, which is how the programs see it.
	v := bpf.WanSaValue{Action: uint32(sa.Action), Peer: sa.Peer.Unmap().As16()}
	if sa.UDP {
		v.Encap = uint8(bpf.WanSaEncapSA_ENCAP_UDP)
	}
	if err := l.wan.SaIn.Put(&k, &v); err != nil {
		return fmt.Errorf("loader: put sa %#08x: %w", sa.SPI, err)
	}
	return nil
}

// SA returns the action of the inbound SA (spi, dst), or ErrNotFound.
func (l *Loader) SA(spi uint32, dst netip.Addr) (SAAction, error) {
	k, err := saKey(spi, dst)
	if err != nil {
		return 0, fmt.Errorf("loader: sa: %w", err)
	}
	var v bpf.WanSaValue
	if err := l.wan.SaIn.Lookup(&k, &v); err != nil {
		return 0, fmt.Errorf("loader: sa %#08x: %w", spi, notFound(err))
	}
	return SAAction(v.Action), nil
}

// DeleteSA removes the inbound SA; deleting an absent SA is not an error, so make-before-break rekeys can retry freely.
func (l *Loader) DeleteSA(spi uint32, dst netip.Addr) error {
	k, err := saKey(spi, dst)
	if err != nil {
		return fmt.Errorf("loader: delete sa: %w", err)
	}
	if err := l.wan.SaIn.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("loader: delete sa %#08x: %w", spi, err)
	}
	return nil
}

// ClearSAs removes every inbound SA, for a data plane that starts afresh
// on maps a previous run left pinned (its SAs are gone with it).
func (l *Loader) ClearSAs() (int, error) {
	var keys []bpf.WanSaKey
	var k bpf.WanSaKey
	var v bpf.WanSaValue
	it := l.wan.SaIn.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
	}
	if err := it.Err(); err != nil {
		return 0, fmt.Errorf("loader: list sas: %w", err)
	}
	for i := range keys {
		if err := l.wan.SaIn.Delete(&keys[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return 0, fmt.Errorf("loader: clear sa %#08x: %w", keys[i].Spi, err)
		}
	}
	return len(keys), nil
}

func notFound(err error) error {
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return ErrNotFound
	}
	return err
}

// PolicyAction is what xdp_lan does with traffic a policy covers.
type PolicyAction uint8

const (
	// Protect sends it to the afxdp workers for encryption; dropped when
	// there is no SA yet (with a trap event) or no socket on the queue.
	Protect = PolicyAction(bpf.LanSpdActionSPD_PROTECT)
	// Discard drops it.
	Discard = PolicyAction(bpf.LanSpdActionSPD_DISCARD)
	// Bypass passes it in clear.
	Bypass = PolicyAction(bpf.LanSpdActionSPD_BYPASS)
)

// Policy is an outbound SPD entry. The destination prefix is its key: one
// policy per destination prefix, the longest prefix matching.
type Policy struct {
	// ID is the daemon's handle, echoed in TrapEvents.
	ID uint32
	// Dst and Src are the selector's prefixes, of one family.
	Dst, Src netip.Prefix
	// Proto is the IP protocol; 0 matches any.
	Proto uint8
	// SrcPort and DstPort match TCP and UDP ports; 0 matches any.
	// Non-first fragments match any port selector (RFC 4301 OPAQUE).
	SrcPort, DstPort uint16
	Action           PolicyAction
	// SPI is the outbound SA; 0 means none yet, which makes a Protect
	// policy a trap.
	SPI uint32
	// MSS, when not zero, is the clamp for TCP SYNs of Protect traffic.
	MSS uint16
}

func (p Policy) entry() (bpf.LanSpdEntry, error) {
	if !p.Dst.IsValid() || !p.Src.IsValid() {
		return bpf.LanSpdEntry{}, fmt.Errorf("invalid prefix")
	}
	if p.Dst.Addr().Is4() != p.Src.Addr().Is4() {
		return bpf.LanSpdEntry{}, fmt.Errorf("source %s and destination %s differ in family", p.Src, p.Dst)
	}
	if p.Action != Protect && p.Action != Discard && p.Action != Bypass {
		return bpf.LanSpdEntry{}, fmt.Errorf("invalid action %d", p.Action)
	}
	src := p.Src.Masked()
	plen := src.Bits()
	if src.Addr().Is4() {
		plen += 96 // the program compares the IPv4-mapped form
	}
	return bpf.LanSpdEntry{
		PolicyId: p.ID, Spi: p.SPI, Action: uint8(p.Action), Proto: p.Proto,
		SrcPlen: uint8(plen), Sport: p.SrcPort, Dport: p.DstPort, Mss: p.MSS,
		Src: src.Addr().As16(),
	}, nil
}

// PutPolicy installs or replaces the policy for p.Dst.
func (l *Loader) PutPolicy(p Policy) error {
	e, err := p.entry()
	if err != nil {
		return fmt.Errorf("loader: put policy %d: %w", p.ID, err)
	}
	dst := p.Dst.Masked()
	if dst.Addr().Is4() {
		err = l.lan.Spd4.Put(&bpf.LanSpdKey4{Prefixlen: uint32(dst.Bits()), Addr: dst.Addr().As4()}, &e)
	} else {
		err = l.lan.Spd6.Put(&bpf.LanSpdKey6{Prefixlen: uint32(dst.Bits()), Addr: dst.Addr().As16()}, &e)
	}
	if err != nil {
		return fmt.Errorf("loader: put policy %d: %w", p.ID, err)
	}
	return nil
}

// Policy returns the policy installed for exactly dst, or ErrNotFound.
func (l *Loader) Policy(dst netip.Prefix) (Policy, error) {
	if !dst.IsValid() {
		return Policy{}, fmt.Errorf("loader: policy: invalid prefix")
	}
	dst = dst.Masked()
	var e bpf.LanSpdEntry
	var err error
	if dst.Addr().Is4() {
		err = l.lan.Spd4.Lookup(&bpf.LanSpdKey4{Prefixlen: uint32(dst.Bits()), Addr: dst.Addr().As4()}, &e)
	} else {
		err = l.lan.Spd6.Lookup(&bpf.LanSpdKey6{Prefixlen: uint32(dst.Bits()), Addr: dst.Addr().As16()}, &e)
	}
	if err != nil {
		return Policy{}, fmt.Errorf("loader: policy %s: %w", dst, notFound(err))
	}
	plen := int(e.SrcPlen)
	src := netip.AddrFrom16(e.Src)
	if dst.Addr().Is4() {
		src, plen = src.Unmap(), plen-96
	}
	return Policy{
		ID: e.PolicyId, Dst: dst, Src: netip.PrefixFrom(src, plen), Proto: e.Proto,
		SrcPort: e.Sport, DstPort: e.Dport, Action: PolicyAction(e.Action), SPI: e.Spi, MSS: e.Mss,
	}, nil
}

// DeletePolicy removes the policy for dst; an absent one is not an error.
func (l *Loader) DeletePolicy(dst netip.Prefix) error {
	if !dst.IsValid() {
		return fmt.Errorf("loader: delete policy: invalid prefix")
	}
	dst = dst.Masked()
	var err error
	if dst.Addr().Is4() {
		err = l.lan.Spd4.Delete(&bpf.LanSpdKey4{Prefixlen: uint32(dst.Bits()), Addr: dst.Addr().As4()})
	} else {
		err = l.lan.Spd6.Delete(&bpf.LanSpdKey6{Prefixlen: uint32(dst.Bits()), Addr: dst.Addr().As16()})
	}
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("loader: delete policy %s: %w", dst, err)
	}
	return nil
}

// Side names one of the two programs.
type Side int

const (
	// WAN is xdp_wan's side, the ciphertext interface.
	WAN Side = iota
	// LAN is xdp_lan's side, the plaintext interface.
	LAN
)

func (s Side) String() string {
	if s == WAN {
		return "wan"
	}
	return "lan"
}

func (l *Loader) xsks(s Side) (*ebpf.Map, error) {
	switch s {
	case WAN:
		return l.wan.WanXsks, nil
	case LAN:
		return l.lan.LanXsks, nil
	}
	return nil, fmt.Errorf("invalid side %d", s)
}

// RegisterXSK makes the AF_XDP socket fd the target of redirects from rx
// queue of side's interface. The kernel drops the entry by itself when the
// socket closes.
func (l *Loader) RegisterXSK(s Side, queue uint32, fd int) error {
	m, err := l.xsks(s)
	if err != nil {
		return fmt.Errorf("loader: register xsk: %w", err)
	}
	if fd < 0 {
		return fmt.Errorf("loader: register xsk: invalid fd %d", fd)
	}
	if err := m.Put(queue, uint32(fd)); err != nil {
		return fmt.Errorf("loader: register %s xsk on queue %d: %w", s, queue, err)
	}
	return nil
}

// UnregisterXSK empties the slot of queue; an empty slot is not an error.
func (l *Loader) UnregisterXSK(s Side, queue uint32) error {
	m, err := l.xsks(s)
	if err != nil {
		return fmt.Errorf("loader: unregister xsk: %w", err)
	}
	if err := m.Delete(queue); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("loader: unregister %s xsk on queue %d: %w", s, queue, err)
	}
	return nil
}

// SetCPUs sets the CPUs that ESP of SAXfrm SAs is spread over, each with a
// cpumap queue of queueSize frames; an empty list stops the spreading
// (the receiving CPU then passes ESP to the stack itself).
func (l *Loader) SetCPUs(cpus []uint32, queueSize uint32) error {
	if len(cpus) > int(l.wan.CpuSlots.MaxEntries()) {
		return fmt.Errorf("loader: set cpus: %d cpus, at most %d", len(cpus), l.wan.CpuSlots.MaxEntries())
	}
	if len(cpus) > 0 && queueSize == 0 {
		return fmt.Errorf("loader: set cpus: queue size must not be zero")
	}
	l.cfgMu.Lock()
	defer l.cfgMu.Unlock()
	cfg, err := l.wanConfig()
	if err != nil {
		return err
	}
	// Shrink the slot count first and grow it last, so the program never
	// hashes into a slot whose CPU is not set up yet.
	if int(cfg.CpuSlots) > len(cpus) {
		cfg.CpuSlots = uint32(len(cpus))
		if err := l.putWanConfig(cfg); err != nil {
			return err
		}
	}
	want := make(map[uint32]bool, len(cpus))
	for i, cpu := range cpus {
		if err := l.wan.Cpus.Put(cpu, &bpf.WanBpfCpumapVal{Qsize: queueSize}); err != nil {
			return fmt.Errorf("loader: set cpu %d: %w", cpu, err)
		}
		if err := l.wan.CpuSlots.Put(uint32(i), cpu); err != nil {
			return fmt.Errorf("loader: set cpu slot %d: %w", i, err)
		}
		want[cpu] = true
	}
	cfg.CpuSlots = uint32(len(cpus))
	if err := l.putWanConfig(cfg); err != nil {
		return err
	}
	for cpu := range l.wan.Cpus.MaxEntries() {
		if want[cpu] {
			continue
		}
		if err := l.wan.Cpus.Delete(cpu); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("loader: remove cpu %d: %w", cpu, err)
		}
	}
	return nil
}

// SetCPUPerSA chooses how SAXfrm ESP is spread over the CPUs of SetCPUs:
// perSA sends all of an SA's packets to one CPU (its inner flows stay in
// order; many SAs spread), otherwise the sequence number is hashed too and
// one busy SA uses every CPU (its inner flows see reordering).
func (l *Loader) SetCPUPerSA(perSA bool) error {
	l.cfgMu.Lock()
	defer l.cfgMu.Unlock()
	cfg, err := l.wanConfig()
	if err != nil {
		return err
	}
	cfg.CpuPerSa = 0
	if perSA {
		cfg.CpuPerSa = 1
	}
	return l.putWanConfig(cfg)
}

func (l *Loader) wanConfig() (bpf.WanWanConfig, error) {
	var c bpf.WanWanConfig
	if err := l.wan.WanCfg.Lookup(uint32(0), &c); err != nil {
		return c, fmt.Errorf("loader: read wan config: %w", err)
	}
	return c, nil
}

func (l *Loader) putWanConfig(c bpf.WanWanConfig) error {
	if err := l.wan.WanCfg.Put(uint32(0), &c); err != nil {
		return fmt.Errorf("loader: write wan config: %w", err)
	}
	return nil
}

// SetIKERateLimit makes xdp_wan drop IKE_SA_INIT requests from a source
// beyond perSecond a second (counted as drop_ike_ratelimit); 0 turns the
// limit off. The daemon turns it on when it is under attack.
func (l *Loader) SetIKERateLimit(perSecond uint32) error {
	l.cfgMu.Lock()
	defer l.cfgMu.Unlock()
	c, err := l.wanConfig()
	if err != nil {
		return err
	}
	c.IkeInitRate = perSecond
	return l.putWanConfig(c)
}

// SetTrapInterval sets the minimum gap between two trap events of one
// policy; 0 keeps the program's default of one second.
func (l *Loader) SetTrapInterval(trap time.Duration) error {
	if trap < 0 || trap.Milliseconds() > 1<<31 {
		return fmt.Errorf("loader: trap interval %v out of range", trap)
	}
	lc := bpf.LanLanConfig{TrapIntervalMs: uint32(trap.Milliseconds())}
	if err := l.lan.LanCfg.Put(uint32(0), &lc); err != nil {
		return fmt.Errorf("loader: write lan config: %w", err)
	}
	return nil
}

// WANCounters returns xdp_wan's counters summed over CPUs, by metric label
// ("pass_ike", "drop_unknown_spi", ...).
func (l *Loader) WANCounters() (map[string]uint64, error) {
	return readCounters(l.wan.WanCounters, func(i uint32) string { return bpf.WanWanCounter(i).String() })
}

// LANCounters returns xdp_lan's counters like WANCounters.
func (l *Loader) LANCounters() (map[string]uint64, error) {
	return readCounters(l.lan.LanCounters, func(i uint32) string { return bpf.LanLanCounter(i).String() })
}

func readCounters(m *ebpf.Map, name func(uint32) string) (map[string]uint64, error) {
	out := make(map[string]uint64, m.MaxEntries())
	var per []uint64
	for i := range m.MaxEntries() {
		if err := m.Lookup(i, &per); err != nil {
			return nil, fmt.Errorf("loader: read counter %s: %w", name(i), err)
		}
		var sum uint64
		for _, v := range per {
			sum += v
		}
		out[name(i)] = sum
	}
	return out, nil
}
