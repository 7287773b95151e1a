package afxdp

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sort"
	"time"

	"go.uber.org/zap"

	"github.com/xdpsec/xdpsec/loader"
	"github.com/xdpsec/xdpsec/offload"
	"github.com/xdpsec/xdpsec/offload/esp"
)

// The AEAD key's salt (RFC 4106 4) and ChaCha20's key length.
const (
	aeadSaltLen     = 4
	chachaKeyLength = 32
)

type saKey struct {
	spi uint32
	dir offload.Direction
}

// saEntry is an installed SA.
type saEntry struct {
	cfg    offload.SA // keys cleared: the engine holds its own copy
	sa     *esp.SA
	out    *outSA // Out SAs only
	timers []*time.Timer
}

func (e *saEntry) stopTimers() {
	for _, t := range e.timers {
		t.Stop()
	}
	e.timers = nil
}

// policyEntry is an installed policy; Out protect ones are also in the
// Go SPD and, like Out discard and bypass, in xdp_lan's SPD.
type policyEntry struct {
	p offload.Policy
}

// AllocSPI implements offload.Dataplane. SPIs are random so that they do
// not reveal how many SAs a gateway has set up.
func (d *Dataplane) AllocSPI(context.Context) (uint32, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0, offload.ErrClosed
	}
	var b [4]byte
	for range 64 {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, fmt.Errorf("random spi: %w", err)
		}
		spi := binary.BigEndian.Uint32(b[:])
		if spi < 256 || d.spiInUse(spi) {
			continue
		}
		d.reserved[spi] = struct{}{}
		return spi, nil
	}
	return 0, fmt.Errorf("no free spi after 64 tries")
}

func (d *Dataplane) spiInUse(spi uint32) bool {
	if _, ok := d.reserved[spi]; ok {
		return true
	}
	_, ok := d.sas[saKey{spi, offload.In}]
	return ok
}

// ReleaseSPI implements offload.Dataplane.
func (d *Dataplane) ReleaseSPI(_ context.Context, spi uint32) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.reserved[spi]; !ok {
		return fmt.Errorf("release spi %08x: %w", spi, offload.ErrNotFound)
	}
	delete(d.reserved, spi)
	return nil
}

// espConfig translates an offload.SA into the engine's terms.
func espConfig(sa offload.SA) (esp.Config, error) {
	c := esp.Config{
		SPI:          sa.SPI,
		EncKey:       sa.EncrKey,
		AuthKey:      sa.IntegKey,
		ESN:          sa.ESN,
		ReplayWindow: sa.ReplayWindow,
		Lifetime: esp.Lifetime{
			SoftBytes: sa.Lifetime.SoftBytes, HardBytes: sa.Lifetime.HardBytes,
			SoftPackets: sa.Lifetime.SoftPackets, HardPackets: sa.Lifetime.HardPackets,
		},
	}
	switch {
	case sa.SPI < 256:
		return c, fmt.Errorf("sa spi %d: reserved range (RFC 4303 2.1)", sa.SPI)
	case sa.Dir != offload.In && sa.Dir != offload.Out:
		return c, fmt.Errorf("sa %08x: bad direction %d", sa.SPI, sa.Dir)
	case !sa.Src.IsValid() || !sa.Dst.IsValid() || sa.Src.Is4() != sa.Dst.Is4():
		return c, fmt.Errorf("sa %08x: bad outer addresses %s -> %s", sa.SPI, sa.Src, sa.Dst)
	}
	switch sa.Mode {
	case offload.Tunnel:
		c.Mode = esp.Tunnel
	case offload.Transport:
		// Transport mode would need the engine to build ESP around the
		// host's own transport headers; the TUN port carries the host's
		// traffic in tunnel mode only.
		return c, fmt.Errorf("sa %08x: transport mode is not supported by afxdp", sa.SPI)
	default:
		return c, fmt.Errorf("sa %08x: bad mode %d", sa.SPI, sa.Mode)
	}
	keyLen := sa.KeyBits / 8
	switch sa.Encr {
	case offload.EncrAESGCM16, offload.EncrChaCha20Poly1305:
		c.Cipher = esp.AESGCM16
		if sa.Encr == offload.EncrChaCha20Poly1305 {
			c.Cipher = esp.ChaCha20Poly1305
			if keyLen == 0 {
				keyLen = chachaKeyLength
			}
		}
		if sa.Integ != offload.IntegNone {
			return c, fmt.Errorf("sa %08x: aead cipher %d with integrity %d", sa.SPI, sa.Encr, sa.Integ)
		}
		if len(sa.EncrKey) != keyLen+aeadSaltLen {
			return c, fmt.Errorf("sa %08x: key of %d bytes for %d-bit aead", sa.SPI, len(sa.EncrKey), sa.KeyBits)
		}
	case offload.EncrAESCBC:
		c.Cipher = esp.AESCBC
		if len(sa.EncrKey) != keyLen {
			return c, fmt.Errorf("sa %08x: key of %d bytes for %d-bit aes-cbc", sa.SPI, len(sa.EncrKey), sa.KeyBits)
		}
		switch sa.Integ {
		case offload.IntegHMACSHA256_128:
			c.Integrity = esp.HMACSHA256128
		case offload.IntegHMACSHA384_192:
			c.Integrity = esp.HMACSHA384192
		case offload.IntegHMACSHA512_256:
			c.Integrity = esp.HMACSHA512256
		default:
			return c, fmt.Errorf("sa %08x: unsupported integrity transform %d", sa.SPI, sa.Integ)
		}
	default:
		return c, fmt.Errorf("sa %08x: unsupported encryption transform %d", sa.SPI, sa.Encr)
	}
	// The engine's Local/Remote are the outer source and destination of
	// what it sends; for an In SA that is the reverse of its packets.
	c.Local, c.Remote = sa.Src, sa.Dst
	if sa.Dir == offload.In {
		c.Local, c.Remote = sa.Dst, sa.Src
		if len(sa.LocalTS) == 0 || len(sa.RemoteTS) == 0 {
			// An empty list selects nothing: refuse rather than install
			// an SA that drops everything.
			return c, fmt.Errorf("sa %08x: inbound sa without traffic selectors", sa.SPI)
		}
	}
	if sa.Encap != nil {
		if sa.Encap.SrcPort == 0 || sa.Encap.DstPort == 0 {
			return c, fmt.Errorf("sa %08x: udp encapsulation needs both ports", sa.SPI)
		}
		c.EncapSrcPort, c.EncapDstPort = sa.Encap.SrcPort, sa.Encap.DstPort
		if sa.Dir == offload.In {
			c.EncapSrcPort, c.EncapDstPort = sa.Encap.DstPort, sa.Encap.SrcPort
		}
	}
	for _, p := range sa.LocalTS {
		c.LocalTS = append(c.LocalTS, esp.PrefixSelector(p))
	}
	for _, p := range sa.RemoteTS {
		c.RemoteTS = append(c.RemoteTS, esp.PrefixSelector(p))
	}
	return c, nil
}

// AddSA implements offload.Dataplane. An inbound SA enters the engine
// before xdp_wan steers its packets, so no packet finds a socket but no SA.
func (d *Dataplane) AddSA(_ context.Context, sa offload.SA) error {
	c, err := espConfig(sa)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return offload.ErrClosed
	}
	k := saKey{sa.SPI, sa.Dir}
	if _, ok := d.sas[k]; ok {
		return fmt.Errorf("add sa %08x/%s: %w", sa.SPI, sa.Dir, offload.ErrExists)
	}
	ident := offload.Event{Conn: sa.Conn, Child: sa.Child, SPI: sa.SPI, Dir: sa.Dir}
	c.Notify = func(ev esp.Event) {
		e := ident
		switch ev.Kind {
		case esp.EventSoft:
			e.Kind = offload.SoftExpire
		case esp.EventHard, esp.EventSeqOverflow:
			e.Kind = offload.HardExpire
		case esp.EventPeerMoved:
			e.Kind, e.Peer = offload.PeerMoved, ev.Peer
		default:
			// A kind added to the engine but not here is not guessed at.
			return
		}
		d.emit(e)
	}
	engine, err := esp.NewSA(c)
	if err != nil {
		return fmt.Errorf("add sa: %w", err)
	}
	stored := sa
	stored.EncrKey, stored.IntegKey = nil, nil
	e := &saEntry{cfg: stored, sa: engine}
	if sa.Dir == offload.In {
		if err := d.sadb.Add(engine); err != nil {
			return fmt.Errorf("add sa %08x: %w", sa.SPI, err)
		}
		if err := d.ld.PutSA(loader.InboundSA{
			SPI: sa.SPI, Dst: sa.Dst, Peer: sa.Src, UDP: sa.Encap != nil, Action: loader.SAAfXDP,
		}); err != nil {
			d.sadb.Remove(sa.SPI)
			return fmt.Errorf("add sa %08x: %w", sa.SPI, err)
		}
		delete(d.reserved, sa.SPI)
	} else {
		e.out = newOutSA(engine, sa)
	}
	d.sas[k] = e
	d.armTimers(k, e, ident)
	if sa.Dir == offload.Out {
		// Resolve the peer's next hop now rather than on the first packet,
		// which would otherwise wait in a worker's neighbour queue while
		// the FIB asks the kernel (a miss only queues the resolution).
		d.fib.Lookup(sa.Dst)
		// Policies that named this SPI before it existed (or while it
		// was gone) start protecting now.
		if err := d.syncPolicies(); err != nil {
			return err
		}
		// Their host routes may now take the SA's local endpoint as
		// source.
		d.syncHostRoutes()
	}
	return nil
}

// newOutSA is the workers' view of the outbound SA sa, whose engine is
// engine.
func newOutSA(engine *esp.SA, sa offload.SA) *outSA {
	return &outSA{
		sa: engine, spi: sa.SPI, remote: sa.Dst,
		overhead: engine.Headroom() + engine.Tailroom(),
	}
}

// armTimers enforces the time limits, which the engine does not track.
func (d *Dataplane) armTimers(k saKey, e *saEntry, ident offload.Event) {
	lt := e.cfg.Lifetime
	if lt.SoftTime > 0 {
		ev := ident
		ev.Kind = offload.SoftExpire
		e.timers = append(e.timers, time.AfterFunc(lt.SoftTime, func() { d.emit(ev) }))
	}
	if lt.HardTime > 0 {
		e.timers = append(e.timers, time.AfterFunc(lt.HardTime, func() { d.hardExpire(k, e, ident) }))
	}
}

// hardExpire stops an SA whose hard time limit passed: an inbound SA is
// unsteered and leaves the engine (its packets then count as unknown
// SPIs), an outbound one drops what its policies send it.
func (d *Dataplane) hardExpire(k saKey, e *saEntry, ident offload.Event) {
	d.mu.Lock()
	if d.closed || d.sas[k] != e {
		d.mu.Unlock()
		return
	}
	if k.dir == offload.In {
		if err := d.ld.DeleteSA(k.spi, e.cfg.Dst); err != nil {
			d.log.Warn("expire sa", zap.Uint32("spi", k.spi), zap.Error(err))
		}
		d.sadb.Remove(k.spi)
	} else {
		e.out.expired.Store(true)
	}
	d.mu.Unlock()
	ev := ident
	ev.Kind = offload.HardExpire
	d.emit(ev)
}

// DelSA implements offload.Dataplane: steering goes first, then the engine.
func (d *Dataplane) DelSA(_ context.Context, spi uint32, dir offload.Direction) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := saKey{spi, dir}
	e, ok := d.sas[k]
	if !ok {
		return fmt.Errorf("del sa %08x/%s: %w", spi, dir, offload.ErrNotFound)
	}
	if d.closed {
		return offload.ErrClosed
	}
	if dir == offload.In {
		if err := d.ld.DeleteSA(spi, e.cfg.Dst); err != nil {
			return fmt.Errorf("del sa %08x: %w", spi, err)
		}
		d.sadb.Remove(spi)
	}
	e.stopTimers()
	delete(d.sas, k)
	st := e.sa.Stats()
	for i := range st.Drops {
		d.retired[i] += st.Drops[i]
	}
	// The SA's traffic stays in its child's totals: a rekey must not
	// make them go back.
	bytes, packets := saTraffic(dir, st)
	d.lineage.Add(e.cfg.Conn, e.cfg.Child, dir, bytes, packets)
	if dir == offload.Out {
		// Policies still naming the SPI now find no SA in the Go SPD:
		// the workers drop their traffic (fail closed) until a new SA
		// or policy arrives.
		return d.syncPolicies()
	}
	return nil
}

// AddPolicy implements offload.Dataplane. Adding a policy that exists
// replaces it: that is how an outbound policy moves to a new SA. An
// outbound protect policy needs its SA installed first (SPI 0 makes it a
// trap); inbound policies are recorded, the engine checks each inbound SA's
// own selectors.
func (d *Dataplane) AddPolicy(_ context.Context, p offload.Policy) error {
	if !p.Src.IsValid() || !p.Dst.IsValid() || p.Src.Addr().Is4() != p.Dst.Addr().Is4() {
		return fmt.Errorf("policy %s -> %s: bad selectors", p.Src, p.Dst)
	}
	if p.Dir != offload.In && p.Dir != offload.Out {
		return fmt.Errorf("policy %s -> %s: bad direction %d", p.Src, p.Dst, p.Dir)
	}
	switch p.Action {
	case offload.Protect, offload.Bypass, offload.Discard:
	default:
		return fmt.Errorf("policy %s -> %s: bad action %d", p.Src, p.Dst, p.Action)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return offload.ErrClosed
	}
	k := p.Key()
	if p.Dir == offload.In {
		d.policies[k] = &policyEntry{p: p}
		return nil
	}
	// xdp_lan keys its SPD by destination prefix alone.
	for ok, other := range d.policies {
		if ok.Dir == offload.Out && ok.Dst == k.Dst && ok != k {
			return fmt.Errorf("policy %s -> %s: destination taken by %s -> %s: %w",
				p.Src, p.Dst, other.p.Src, other.p.Dst, offload.ErrExists)
		}
	}
	if p.Action == offload.Protect && p.SPI != 0 {
		if _, ok := d.sas[saKey{p.SPI, offload.Out}]; !ok {
			return fmt.Errorf("policy %s -> %s: sa %08x: %w", p.Src, p.Dst, p.SPI, offload.ErrNotFound)
		}
	}
	prev, had := d.policies[k]
	d.policies[k] = &policyEntry{p: p}
	// The Go SPD learns the SA before xdp_lan steers traffic to it.
	if err := d.syncPolicies(); err != nil {
		return err
	}
	if err := d.ld.PutPolicy(d.loaderPolicy(p)); err != nil {
		if had {
			d.policies[k] = prev
		} else {
			delete(d.policies, k)
		}
		if serr := d.syncPolicies(); serr != nil {
			d.log.Warn("restore policies", zap.Error(serr))
		}
		return fmt.Errorf("add policy %s -> %s: %w", p.Src, p.Dst, err)
	}
	d.syncHostRoutes()
	return nil
}

// loaderPolicy translates an outbound policy for xdp_lan.
func (d *Dataplane) loaderPolicy(p offload.Policy) loader.Policy {
	id, ok := d.polIDs[p.Dst.Masked().String()]
	if !ok {
		d.nextID++
		id = d.nextID
		d.polIDs[p.Dst.Masked().String()] = id
	}
	d.byID[id] = p
	lp := loader.Policy{ID: id, Dst: p.Dst.Masked(), Src: p.Src.Masked(), Proto: p.Proto}
	switch p.Action {
	case offload.Protect:
		lp.Action, lp.SPI = loader.Protect, p.SPI
		if e, ok := d.sas[saKey{p.SPI, offload.Out}]; ok {
			lp.MSS = d.mss(e.out, p.Dst.Addr().Is6())
		}
	case offload.Bypass:
		lp.Action = loader.Bypass
	case offload.Discard:
		lp.Action = loader.Discard
	}
	return lp
}

// mss is the TCP MSS clamp that keeps protected segments within the WAN
// port's MTU once ESP is added, so TCP never depends on ICMP getting
// through; 0 (no clamp) when the result would be absurd.
func (d *Dataplane) mss(out *outSA, v6 bool) uint16 {
	extra := tcpIPv4Extra
	if v6 {
		extra = tcpIPv6Extra
	}
	m := d.wanMTU - out.overhead - extra
	if m < 536 || m > 0xffff {
		return 0
	}
	return uint16(m)
}

// syncPolicies publishes a new Go SPD from the outbound protect policies
// whose SAs exist. Called with d.mu held.
func (d *Dataplane) syncPolicies() error {
	var entries []*spdEntry
	for _, pe := range d.policies {
		p := pe.p
		if p.Dir != offload.Out || p.Action != offload.Protect || p.SPI == 0 {
			continue
		}
		e, ok := d.sas[saKey{p.SPI, offload.Out}]
		if !ok {
			continue
		}
		entries = append(entries, newSPDEntry(p, e.out))
	}
	d.spd.Store(buildSPD(entries))
	return nil
}

// newSPDEntry is the Go SPD's entry for the outbound protect policy p,
// whose SA is out.
func newSPDEntry(p offload.Policy, out *outSA) *spdEntry {
	return &spdEntry{src: p.Src.Masked(), dst: p.Dst.Masked(), proto: p.Proto, out: out}
}

// DelPolicy implements offload.Dataplane: xdp_lan stops steering before
// the Go SPD forgets the entry. A policy given with an SPI is removed only
// while it still names that SPI, a trap only while it is still a trap.
func (d *Dataplane) DelPolicy(_ context.Context, p offload.Policy) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := p.Key()
	cur, ok := d.policies[k]
	if !ok {
		return fmt.Errorf("del policy %s %s -> %s: %w", p.Dir, p.Src, p.Dst, offload.ErrNotFound)
	}
	if err := offload.CheckSuperseded(p, cur.p); err != nil {
		return err
	}
	if d.closed {
		return offload.ErrClosed
	}
	if p.Dir == offload.Out {
		if err := d.ld.DeletePolicy(k.Dst); err != nil {
			return fmt.Errorf("del policy %s -> %s: %w", p.Src, p.Dst, err)
		}
		delete(d.byID, d.polIDs[k.Dst.String()])
		delete(d.polIDs, k.Dst.String())
	}
	delete(d.policies, k)
	err := d.syncPolicies()
	d.syncHostRoutes()
	return err
}

// Policies returns the installed policies (for inspection and tests).
func (d *Dataplane) Policies() []offload.Policy {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]offload.Policy, 0, len(d.policies))
	for _, pe := range d.policies {
		out = append(out, pe.p)
	}
	return out
}

// Stats implements offload.Dataplane. Drops merge the engine's verdicts
// (per SA, of deleted SAs, and before any SA was found) with the workers'
// own reasons; XDP's verdicts are in XDPCounters.
func (d *Dataplane) Stats(context.Context) (offload.Stats, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return offload.Stats{}, offload.ErrClosed
	}
	st := offload.Stats{Mode: d.Name(), Drops: map[string]uint64{}}
	drops := d.retired
	db := d.sadb.Drops()
	for i := range drops {
		drops[i] += db[i]
	}
	children := d.lineage.Clone()
	for k, e := range d.sas {
		s := e.sa.Stats()
		c := offload.SACounters{
			SPI: k.spi, Dir: k.dir,
			ReplayDrops:       s.Drops[esp.DropReplay],
			IntegrityFailures: s.Drops[esp.DropAuth],
		}
		c.Bytes, c.Packets = saTraffic(k.dir, s)
		children.Add(e.cfg.Conn, e.cfg.Child, k.dir, c.Bytes, c.Packets)
		st.SAs = append(st.SAs, c)
		for i := range drops {
			drops[i] += s.Drops[i]
		}
	}
	for _, v := range esp.Verdicts() {
		st.Drops[v.String()] += drops[v]
	}
	for _, w := range d.workers {
		for r := range numReasons {
			st.Drops[reasonNames[r]] += w.drops[r].Load()
		}
		// Failed TX kicks lose nothing by themselves (the frames wait
		// for the next kick) but point at a broken port.
		st.Drops["tx_error"] += w.txErrs.Load()
	}
	sort.Slice(st.SAs, func(i, j int) bool {
		if st.SAs[i].SPI != st.SAs[j].SPI {
			return st.SAs[i].SPI < st.SAs[j].SPI
		}
		return st.SAs[i].Dir < st.SAs[j].Dir
	})
	st.Children = children.List()
	return st, nil
}

// saTraffic picks the counters of an SA's own direction (an esp.SA counts
// both, but only one of them moves).
func saTraffic(dir offload.Direction, s esp.Stats) (bytes, packets uint64) {
	if dir == offload.In {
		return s.BytesIn, s.PacketsIn
	}
	return s.BytesOut, s.PacketsOut
}
