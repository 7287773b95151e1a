// Package none is the data plane that processes no ESP: SAs and policies are
// validated and recorded so the operator can see what IKE negotiated, and
// nothing touches packets. It serves interop dry runs and IKE tests.
package none

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/xdpsec/xdpsec/offload"
)

type saKey struct {
	spi uint32
	dir offload.Direction
}

type policyKey struct {
	dir         offload.Direction
	src, dst    string
	proto       uint8
	conn, child string
}

// Dataplane records SAs and policies without processing traffic.
type Dataplane struct {
	mu       sync.Mutex
	closed   bool
	reserved offload.SPIReservations
	sas      map[saKey]offload.SA
	policies map[policyKey]offload.Policy
	events   chan offload.Event
}

var _ offload.Dataplane = (*Dataplane)(nil)

// New returns an empty data plane.
func New() *Dataplane {
	return &Dataplane{
		reserved: offload.SPIReservations{},
		sas:      make(map[saKey]offload.SA),
		policies: make(map[policyKey]offload.Policy),
		events:   make(chan offload.Event),
	}
}

// Name implements offload.Dataplane.
func (d *Dataplane) Name() string { return "none" }

// AllocSPI implements offload.Dataplane.
func (d *Dataplane) AllocSPI(context.Context) (uint32, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0, offload.ErrClosed
	}
	return d.reserved.Reserve(func(spi uint32) bool {
		_, ok := d.sas[saKey{spi, offload.In}]
		return ok
	})
}

// ReleaseSPI implements offload.Dataplane.
func (d *Dataplane) ReleaseSPI(_ context.Context, spi uint32) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.reserved.Release(spi)
}

// AddSA implements offload.Dataplane.
func (d *Dataplane) AddSA(_ context.Context, sa offload.SA) error {
	if err := validateSA(sa); err != nil {
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
	if sa.Dir == offload.In {
		delete(d.reserved, sa.SPI)
	}
	d.sas[k] = sa
	return nil
}

// validateSA rejects what no data plane could use; the same checks bind
// every mode, so a dry run in mode none catches what afxdp would refuse.
func validateSA(sa offload.SA) error {
	switch {
	case sa.SPI < 256:
		return fmt.Errorf("sa spi %d: reserved range (RFC 4303 2.1)", sa.SPI)
	case sa.Dir != offload.In && sa.Dir != offload.Out:
		return fmt.Errorf("sa %08x: bad direction %d", sa.SPI, sa.Dir)
	case sa.Mode != offload.Tunnel && sa.Mode != offload.Transport:
		return fmt.Errorf("sa %08x: bad mode %d", sa.SPI, sa.Mode)
	case len(sa.EncrKey) == 0:
		return fmt.Errorf("sa %08x: no encryption key", sa.SPI)
	case !sa.Src.IsValid() || !sa.Dst.IsValid() || sa.Src.Is4() != sa.Dst.Is4():
		return fmt.Errorf("sa %08x: bad outer addresses %s -> %s", sa.SPI, sa.Src, sa.Dst)
	}
	return nil
}

// DelSA implements offload.Dataplane.
func (d *Dataplane) DelSA(_ context.Context, spi uint32, dir offload.Direction) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := saKey{spi, dir}
	if _, ok := d.sas[k]; !ok {
		return fmt.Errorf("del sa %08x/%s: %w", spi, dir, offload.ErrNotFound)
	}
	delete(d.sas, k)
	return nil
}

func keyOf(p offload.Policy) policyKey {
	return policyKey{dir: p.Dir, src: p.Src.String(), dst: p.Dst.String(), proto: p.Proto, conn: p.Conn, child: p.Child}
}

// AddPolicy implements offload.Dataplane. Adding a policy that exists
// replaces it: that is how an outbound policy moves to a new SA.
func (d *Dataplane) AddPolicy(_ context.Context, p offload.Policy) error {
	if !p.Src.IsValid() || !p.Dst.IsValid() {
		return fmt.Errorf("policy %s -> %s: bad selectors", p.Src, p.Dst)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return offload.ErrClosed
	}
	d.policies[keyOf(p)] = p
	return nil
}

// DelPolicy implements offload.Dataplane, with the same rule as every data
// plane: a policy that a newer SA (or an SA, for a trap) took over stays.
func (d *Dataplane) DelPolicy(_ context.Context, p offload.Policy) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := keyOf(p)
	cur, ok := d.policies[k]
	if !ok {
		return fmt.Errorf("del policy %s %s -> %s: %w", p.Dir, p.Src, p.Dst, offload.ErrNotFound)
	}
	if err := offload.CheckSuperseded(p, cur); err != nil {
		return err
	}
	delete(d.policies, k)
	return nil
}

// Stats implements offload.Dataplane. Nothing is processed, so every
// counter is zero and there are no lineage totals; the SA list shows what
// is installed.
func (d *Dataplane) Stats(context.Context) (offload.Stats, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := offload.Stats{Mode: d.Name(), Drops: map[string]uint64{}}
	for k := range d.sas {
		st.SAs = append(st.SAs, offload.SACounters{SPI: k.spi, Dir: k.dir})
	}
	sort.Slice(st.SAs, func(i, j int) bool {
		if st.SAs[i].SPI != st.SAs[j].SPI {
			return st.SAs[i].SPI < st.SAs[j].SPI
		}
		return st.SAs[i].Dir < st.SAs[j].Dir
	})
	return st, nil
}

// SAs returns the installed SAs (for tests and inspection).
func (d *Dataplane) SAs() []offload.SA {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]offload.SA, 0, len(d.sas))
	for _, sa := range d.sas {
		out = append(out, sa)
	}
	return out
}

// Policies returns the installed policies (for tests and inspection).
func (d *Dataplane) Policies() []offload.Policy {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]offload.Policy, 0, len(d.policies))
	for _, p := range d.policies {
		out = append(out, p)
	}
	return out
}

// Events implements offload.Dataplane; mode none never raises any.
func (d *Dataplane) Events() <-chan offload.Event { return d.events }

// Close implements offload.Dataplane: everything recorded is dropped.
func (d *Dataplane) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	clear(d.reserved)
	clear(d.sas)
	clear(d.policies)
	close(d.events)
	return nil
}
