package xfrm

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/xdpsec/xdpsec/offload"
)

func spiField(spi uint32) zap.Field { return zap.String("spi", fmt.Sprintf("%08x", spi)) }

// AddSA implements offload.Dataplane. In xfrm-offload mode the state is
// first offered to the NIC; where the driver refuses it, the SA falls
// back to software with a warning, or fails when offload is required.
func (d *Dataplane) AddSA(_ context.Context, sa offload.SA) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return offload.ErrClosed
	}
	k := saKey{sa.SPI, sa.Dir}
	if _, ok := d.sas[k]; ok {
		return fmt.Errorf("add sa %08x/%s: %w", sa.SPI, sa.Dir, offload.ErrExists)
	}
	r, err := d.reqIDs(sa.Conn, sa.Child)
	if err != nil {
		return fmt.Errorf("add sa %08x: %w", sa.SPI, err)
	}
	x := d.xlat()
	x.reqid = r.sa
	spec, err := stateFor(sa, x)
	if err != nil {
		return err
	}
	log := d.log.With(zap.String("conn", sa.Conn), zap.String("child", sa.Child), spiField(sa.SPI),
		zap.Stringer("dir", sa.Dir))
	inForce, err := d.addState(spec, sa.Dir, log)
	if err != nil {
		return fmt.Errorf("add sa %08x/%s: %w", sa.SPI, sa.Dir, err)
	}
	stored := sa
	stored.EncrKey, stored.IntegKey = nil, nil
	d.sas[k] = &saEntry{cfg: stored, id: spec.st, offload: inForce}
	d.sas[k].id.Aead, d.sas[k].id.Crypt, d.sas[k].id.Auth = nil, nil, nil
	if sa.Dir == offload.In {
		delete(d.reserved, sa.SPI)
	}
	return nil
}

// addState adds the state, with the offload attribute in xfrm-offload
// mode, and returns the offload the kernel reports in force. Called with
// d.mu held.
func (d *Dataplane) addState(spec stateSpec, dir offload.Direction, log *zap.Logger) (string, error) {
	o := d.opts.Offload
	if o == nil {
		return "", d.k.addState(spec)
	}
	spec.offload = &offloadAttr{ifindex: d.ifindex, in: dir == offload.In, packet: o.Type == OffloadPacket}
	err := d.k.addState(spec)
	if err != nil {
		if !refusedOffload(err) {
			return "", err
		}
		if o.Required {
			return "", fmt.Errorf("%s offload on %s refused: %w", o.Type, o.Dev, err)
		}
		log.Warn("nic refused ipsec offload; sa runs in software",
			zap.String("dev", o.Dev), zap.String("type", o.Type), zap.Error(err))
		spec.offload = nil
		return "", d.k.addState(spec)
	}
	inForce, err := d.k.offloadOf(&spec.st)
	if err != nil {
		log.Warn("read back offload", zap.Error(err))
		return "", nil
	}
	if inForce != o.Type {
		if o.Required {
			if derr := d.k.delState(&spec.st); derr != nil && !isGone(derr) {
				err = derr
			}
			return "", errors.Join(fmt.Errorf("%s offload on %s not in force (kernel reports %q)", o.Type, o.Dev, inForce), err)
		}
		log.Warn("ipsec offload not in force", zap.String("dev", o.Dev), zap.String("want", o.Type),
			zap.String("got", inForce))
	}
	return inForce, nil
}

// refusedOffload: the errors with which the kernel or the driver refuse
// to offload a state they would take in software.
func refusedOffload(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENODEV)
}

// DelSA implements offload.Dataplane. The SA's counters stay in its
// child's totals, so a rekey does not make them go back.
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
	if !e.gone {
		// Read the final counters first: once deleted, they are gone.
		if sts, err := d.k.listStates(); err == nil {
			if st := findState(sts, &e.id); st != nil {
				e.bytes, e.packets = st.Statistics.Bytes, st.Statistics.Packets
			}
		}
		if err := d.k.delState(&e.id); err != nil && !isGone(err) {
			return fmt.Errorf("del sa %08x/%s: %w", spi, dir, err)
		}
	}
	delete(d.sas, k)
	d.lineage.Add(e.cfg.Conn, e.cfg.Child, dir, e.bytes, e.packets)
	return nil
}

// findState picks the state with id's SPI, destination and protocol.
func findState(sts []netlink.XfrmState, id *netlink.XfrmState) *netlink.XfrmState {
	for i := range sts {
		st := &sts[i]
		if st.Spi == id.Spi && st.Proto == id.Proto && st.Dst.Equal(id.Dst) {
			return st
		}
	}
	return nil
}

// AddPolicy implements offload.Dataplane. Adding a policy that exists
// replaces it (XFRM_MSG_UPDPOLICY): that is how a trap, or a rekeyed
// child's policy, moves to a new SA. An outbound protect policy needs its
// SA installed first; SPI 0 makes it a trap.
func (d *Dataplane) AddPolicy(_ context.Context, p offload.Policy) error {
	if p.Dir != offload.In && p.Dir != offload.Out {
		return fmt.Errorf("policy %s -> %s: bad direction %d", p.Src, p.Dst, p.Dir)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return offload.ErrClosed
	}
	r, err := d.reqIDs(p.Conn, p.Child)
	if err != nil {
		return fmt.Errorf("policy %s -> %s: %w", p.Src, p.Dst, err)
	}
	kps, err := policiesFor(p, r, d.xlat())
	if err != nil {
		return err
	}
	if p.Dir == offload.Out && p.Action == offload.Protect && p.SPI != 0 {
		if _, ok := d.sas[saKey{p.SPI, offload.Out}]; !ok {
			return fmt.Errorf("policy %s -> %s: sa %08x: %w", p.Src, p.Dst, p.SPI, offload.ErrNotFound)
		}
	}
	k := p.Key()
	prev, had := d.policies[k]
	if had && d.inKernel(prev, kps) {
		// A rekey's inbound policy: its template names the child's
		// reqid, not the SPI, so the kernel's policy stays as it is.
		// Replacing it anyway opens a moment in which the kernel may
		// find no policy for what the SA just decrypted and drop it.
		d.policies[k] = p
		return nil
	}
	for i := range kps {
		if err := d.k.updatePolicy(&kps[i]); err != nil {
			err = fmt.Errorf("add policy %s -> %s %s: %w", p.Src, p.Dst, kps[i].Dir, err)
			// Put back what the selectors had before, so a failed
			// replacement leaves neither half a policy nor a hole.
			if rerr := d.restorePolicy(kps[:i], prev, had); rerr != nil {
				err = errors.Join(err, rerr)
			}
			return err
		}
	}
	d.policies[k] = p
	if !had && routed(p) && d.rt != nil {
		// A missing route is worth a warning, not the SA: a default
		// route may carry the traffic to the policy anyway.
		if err := d.rt.add(p.Dst, p.Src, p.TunnelDst); err != nil {
			d.log.Warn("no route for a protected destination", zap.Stringer("dst", p.Dst), zap.Error(err))
		}
	}
	return nil
}

// inKernel says whether kps, the kernel policies of a new policy, are
// those the installed policy prev already put in the kernel (d.mu held).
func (d *Dataplane) inKernel(prev offload.Policy, kps []netlink.XfrmPolicy) bool {
	r, err := d.reqIDs(prev.Conn, prev.Child)
	if err != nil {
		return false
	}
	cur, err := policiesFor(prev, r, d.xlat())
	return err == nil && reflect.DeepEqual(cur, kps)
}

// routed says whether a policy's destination needs a route for the
// kernel to reach its XFRM policy: outbound protection, traps included.
func routed(p offload.Policy) bool {
	return p.Dir == offload.Out && p.Action == offload.Protect
}

// restorePolicy undoes a partial AddPolicy: done are the kernel policies
// already written.
func (d *Dataplane) restorePolicy(done []netlink.XfrmPolicy, prev offload.Policy, had bool) error {
	if had {
		r, err := d.reqIDs(prev.Conn, prev.Child)
		if err != nil {
			return err
		}
		kps, err := policiesFor(prev, r, d.xlat())
		if err != nil {
			return err
		}
		var errs []error
		for i := range kps {
			if err := d.k.updatePolicy(&kps[i]); err != nil {
				errs = append(errs, fmt.Errorf("restore policy %s -> %s: %w", prev.Src, prev.Dst, err))
			}
		}
		return errors.Join(errs...)
	}
	var errs []error
	for i := range done {
		if err := d.k.delPolicy(&done[i]); err != nil && !isGone(err) {
			errs = append(errs, fmt.Errorf("undo policy %s -> %s: %w", done[i].Src, done[i].Dst, err))
		}
	}
	return errors.Join(errs...)
}

// DelPolicy implements offload.Dataplane with every data plane's rule: a
// policy a newer SA (or, for a trap, any SA) took over stays.
func (d *Dataplane) DelPolicy(_ context.Context, p offload.Policy) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := p.Key()
	cur, ok := d.policies[k]
	if !ok {
		return fmt.Errorf("del policy %s %s -> %s: %w", p.Dir, p.Src, p.Dst, offload.ErrNotFound)
	}
	if err := offload.CheckSuperseded(p, cur); err != nil {
		return err
	}
	if d.closed {
		return offload.ErrClosed
	}
	// The kernel finds a policy by direction and selector; templates do
	// not matter, so the installed one's translation serves.
	kps, err := policiesFor(cur, policyReqIDs{}, d.xlat())
	if err != nil {
		return err
	}
	var errs []error
	for i := range kps {
		if err := d.k.delPolicy(&kps[i]); err != nil && !isGone(err) {
			errs = append(errs, fmt.Errorf("del policy %s -> %s %s: %w", p.Src, p.Dst, kps[i].Dir, err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	delete(d.policies, k)
	if routed(cur) && d.rt != nil {
		if err := d.rt.release(cur.Dst); err != nil {
			d.log.Warn("removing the route of a protected destination", zap.Stringer("dst", cur.Dst), zap.Error(err))
		}
	}
	return nil
}

// Policies returns the installed policies (for inspection and tests).
func (d *Dataplane) Policies() []offload.Policy {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]offload.Policy, 0, len(d.policies))
	for _, p := range d.policies {
		out = append(out, p)
	}
	return out
}
