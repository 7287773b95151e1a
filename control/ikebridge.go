package control

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sync"

	"go.uber.org/zap"

	"github.com/xdpsec/xdpsec/control/api"
	"github.com/xdpsec/xdpsec/control/config"
	"github.com/xdpsec/xdpsec/ike"
	"github.com/xdpsec/xdpsec/offload"
)

// ikeConns translates the configuration into what the IKE layer runs. The
// config package has already validated everything, so an error here means
// the two packages disagree, which is a bug worth refusing to start on.
func ikeConns(cfg *config.Config) ([]ike.Conn, error) {
	conns := make([]ike.Conn, 0, len(cfg.Connections))
	for i := range cfg.Connections {
		c := &cfg.Connections[i]
		ic := ike.Conn{
			Name:         c.Name,
			PSK:          []byte(c.PSK),
			IKEProposals: c.IKEProposals,
			ForceEncap:   c.Encap == "always",
			IKELifetime:  c.IKELifetime,
			// The config speaks percent, the engine a fraction.
			RekeyJitter: c.RekeyJitter / 100,
			DPDDelay:    c.DPDDelay,
		}
		var err error
		if ic.DPDAction, err = ikeDPDAction(c.DPDAction); err != nil {
			return nil, fmt.Errorf("connections[%d].dpd_action: %w", i, err)
		}
		if ic.StartAction, err = ikeStartAction(c.StartAction); err != nil {
			return nil, fmt.Errorf("connections[%d].start_action: %w", i, err)
		}
		if a, any := c.LocalAddress(); !any {
			ic.LocalAddr = a
		}
		if a, any := c.RemoteAddress(); !any {
			ic.RemoteAddr = a
		}
		if ic.LocalID, err = ikeIdentity(c.LocalID); err != nil {
			return nil, fmt.Errorf("connections[%d].local_id: %w", i, err)
		}
		if ic.RemoteID, err = ikeIdentity(c.RemoteID); err != nil {
			return nil, fmt.Errorf("connections[%d].remote_id: %w", i, err)
		}
		for _, ch := range c.Children {
			mode := ike.ModeTunnel
			if ch.Mode == "transport" {
				mode = ike.ModeTransport
			}
			ic.Children = append(ic.Children, ike.Child{
				Name:         ch.Name,
				LocalTS:      ch.LocalTS,
				RemoteTS:     ch.RemoteTS,
				Mode:         mode,
				ESPProposals: c.ESPProposals,
				Lifetime:     ch.Lifetime,
				ReplayWindow: ch.ReplayWindow,
			})
		}
		conns = append(conns, ic)
	}
	return conns, nil
}

func ikeDPDAction(s string) (ike.DPDAction, error) {
	switch s {
	case "clear":
		return ike.DPDClear, nil
	case "hold":
		return ike.DPDHold, nil
	case "restart":
		return ike.DPDRestart, nil
	}
	return 0, fmt.Errorf("unknown dpd action %q", s)
}

func ikeStartAction(s string) (ike.StartAction, error) {
	switch s {
	case "none":
		return ike.StartNone, nil
	case "start":
		return ike.StartStart, nil
	case "trap":
		return ike.StartTrap, nil
	}
	return 0, fmt.Errorf("unknown start action %q", s)
}

func ikeIdentity(id config.Identity) (ike.Identity, error) {
	if id.IsZero() {
		return ike.Identity{}, nil
	}
	return ike.NewIdentity(id.Type.String(), id.Value)
}

// installer hands negotiated CHILD SAs to the data plane in the safe order:
// inbound SA first (the peer may send as soon as it has the response),
// then outbound SA, then the policies that steer traffic into it. Removal
// runs the other way round, so no packet ever finds a policy without SA.
//
// Trap policies need the connection's addresses, which the engine does
// not pass to Trap: the installer keeps them per connection, set from the
// configuration (setConns) before the engine sees it. They only label the
// trap (its tunnel endpoints, unknown for a %any local address): a trap
// carries no traffic, it drops what it matches and asks for the child.
type installer struct {
	dp  offload.Dataplane
	log *zap.Logger

	mu    sync.Mutex
	addrs map[string]connAddrs
	// sending is the CHILD SA each conn/child's policies name, so that a
	// rekey whose policies fail half-way can give them back to it.
	sending map[string]ike.ChildSA
}

// connAddrs are a connection's configured outer addresses; zero when
// %any.
type connAddrs struct {
	local, remote netip.Addr
}

func newInstaller(dp offload.Dataplane, log *zap.Logger) *installer {
	return &installer{dp: dp, log: log, addrs: map[string]connAddrs{}, sending: map[string]ike.ChildSA{}}
}

// setConns records the addresses of the connections the engine is about
// to run; call it before Engine.SetConns, which may install traps.
func (in *installer) setConns(conns []ike.Conn) {
	m := make(map[string]connAddrs, len(conns))
	for _, c := range conns {
		m[c.Name] = connAddrs{local: c.LocalAddr, remote: c.RemoteAddr}
	}
	in.mu.Lock()
	in.addrs = m
	in.mu.Unlock()
}

var _ ike.Installer = (*installer)(nil)

func (in *installer) AllocSPI(ctx context.Context, _, _ string) (uint32, error) {
	return in.dp.AllocSPI(ctx)
}

// InstallInbound adds the inbound SA: from now on it decrypts.
func (in *installer) InstallInbound(ctx context.Context, sa ike.ChildSA) error {
	inSA, _ := offloadSAs(sa)
	if err := in.dp.AddSA(ctx, inSA); err != nil {
		return fmt.Errorf("install inbound sa: %w", err)
	}
	return nil
}

// InstallOutbound adds the outbound SA and then moves the child's
// policies to it (replacing a trap or the previous SA of the child).
func (in *installer) InstallOutbound(ctx context.Context, sa ike.ChildSA) error {
	_, outSA := offloadSAs(sa)
	if err := in.dp.AddSA(ctx, outSA); err != nil {
		return fmt.Errorf("install outbound sa: %w", err)
	}
	key := sa.Conn + "/" + sa.Child
	in.mu.Lock()
	prev, rekey := in.sending[key]
	in.mu.Unlock()
	var added []offload.Policy
	for _, p := range childPolicies(sa) {
		if err := in.dp.AddPolicy(ctx, p); err != nil {
			errs := []error{fmt.Errorf("install policy %s %s -> %s: %w", p.Dir, p.Src, p.Dst, err)}
			if rekey {
				// The policies already moved go back to the SA being
				// rekeyed: removing them would leave the child's
				// traffic without protection.
				for _, p := range childPolicies(prev) {
					if err := in.dp.AddPolicy(ctx, p); err != nil {
						errs = append(errs, err)
					}
				}
			} else {
				for _, a := range added {
					errs = append(errs, in.dp.DelPolicy(ctx, a))
				}
			}
			errs = append(errs, in.dp.DelSA(ctx, outSA.SPI, offload.Out))
			return errors.Join(errs...)
		}
		added = append(added, p)
	}
	in.mu.Lock()
	in.sending[key] = sa
	in.mu.Unlock()
	in.log.Info("child sa installed",
		zap.String("conn", sa.Conn), zap.String("child", sa.Child),
		zap.String("spi_in", fmt.Sprintf("%08x", sa.SPIIn)), zap.String("spi_out", fmt.Sprintf("%08x", sa.SPIOut)),
		zap.Bool("encap", sa.Encap), zap.String("dataplane", in.dp.Name()))
	return nil
}

// Trap installs an outbound protect policy without SA (SPI 0) for each
// selector pair of the child: the data plane drops what matches and
// raises an Acquire, which the daemon hands to the engine. Like an SA's
// policy, a trap replaces whatever policy the selectors had, so the
// engine calls it only while the child has no SA. A trap that cannot be
// installed whole is removed again.
func (in *installer) Trap(ctx context.Context, conn string, child ike.Child) error {
	in.mu.Lock()
	a := in.addrs[conn]
	in.mu.Unlock()
	var added []offload.Policy
	for _, p := range trapPolicies(conn, child, a) {
		if err := in.dp.AddPolicy(ctx, p); err != nil {
			errs := []error{fmt.Errorf("install trap %s -> %s: %w", p.Src, p.Dst, err)}
			for _, t := range added {
				if err := in.dp.DelPolicy(ctx, t); err != nil && !errors.Is(err, offload.ErrNotFound) {
					errs = append(errs, err)
				}
			}
			return errors.Join(errs...)
		}
		added = append(added, p)
	}
	in.log.Debug("trap installed", zap.String("conn", conn), zap.String("child", child.Name),
		zap.Int("policies", len(added)))
	return nil
}

// Untrap removes the child's trap policies, but only those still traps:
// where an SA's policy has replaced a trap, it stays (DelPolicy with SPI 0
// and action protect removes only a trap).
func (in *installer) Untrap(ctx context.Context, conn string, child ike.Child) error {
	var errs []error
	for _, p := range trapPolicies(conn, child, connAddrs{}) {
		if err := in.dp.DelPolicy(ctx, p); err != nil && !errors.Is(err, offload.ErrNotFound) {
			errs = append(errs, fmt.Errorf("remove trap %s -> %s: %w", p.Src, p.Dst, err))
		}
	}
	in.log.Debug("trap removed", zap.String("conn", conn), zap.String("child", child.Name))
	return errors.Join(errs...)
}

// trapPolicies are the outbound trap policies of a configured child: one
// per local and remote selector pair of the same address family, as an
// SA's outbound policies (childPolicies) would have.
func trapPolicies(conn string, child ike.Child, a connAddrs) []offload.Policy {
	var ps []offload.Policy
	for _, l := range child.LocalTS {
		for _, r := range child.RemoteTS {
			if l.Addr().Is4() != r.Addr().Is4() {
				continue
			}
			ps = append(ps, offload.Policy{Conn: conn, Child: child.Name, Dir: offload.Out, Src: l, Dst: r,
				Action: offload.Protect, SPI: 0, Mode: offloadMode(child.Mode),
				TunnelSrc: a.local, TunnelDst: a.remote})
		}
	}
	return ps
}

// DeleteChild removes the policies that still name the SA (a rekey's
// successor keeps those it took over, see offload.Dataplane.DelPolicy),
// then the SAs.
func (in *installer) DeleteChild(ctx context.Context, sa ike.ChildSA) error {
	in.mu.Lock()
	if cur, ok := in.sending[sa.Conn+"/"+sa.Child]; ok && cur.SPIOut == sa.SPIOut {
		delete(in.sending, sa.Conn+"/"+sa.Child)
	}
	in.mu.Unlock()
	var errs []error
	for _, p := range childPolicies(sa) {
		if err := in.dp.DelPolicy(ctx, p); err != nil && !errors.Is(err, offload.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	for _, k := range []struct {
		spi uint32
		dir offload.Direction
	}{{sa.SPIOut, offload.Out}, {sa.SPIIn, offload.In}} {
		if err := in.dp.DelSA(ctx, k.spi, k.dir); err != nil && !errors.Is(err, offload.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	// An inbound SPI that was allocated but never installed (a failed
	// negotiation, the redundant SA of a rekey collision) is still
	// reserved; an installed one no longer is.
	if sa.SPIIn != 0 {
		if err := in.dp.ReleaseSPI(ctx, sa.SPIIn); err != nil && !errors.Is(err, offload.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

var _ ike.PacketCounter = (*installer)(nil)

// Packets sums the packet counters of the inbound SAs spisIn and the
// outbound SAs spisOut, for DPD, the quiet-peer check and a rekey
// responder's switch to the new SA (ike.PacketCounter).
func (in *installer) Packets(ctx context.Context, spisIn, spisOut []uint32) (received, sent uint64, err error) {
	st, err := in.dp.Stats(ctx)
	if err != nil {
		return 0, 0, err
	}
	for _, c := range st.SAs {
		switch {
		case c.Dir == offload.In && slices.Contains(spisIn, c.SPI):
			received += c.Packets
		case c.Dir == offload.Out && slices.Contains(spisOut, c.SPI):
			sent += c.Packets
		}
	}
	return received, sent, nil
}

func offloadMode(m ike.Mode) offload.Mode {
	if m == ike.ModeTransport {
		return offload.Transport
	}
	return offload.Tunnel
}

// seqRekeyMargin is how many outbound sequence numbers are left when a
// CHILD SA without ESN asks to be rekeyed: at a million packets a second
// that is 16 s for the rekey to complete.
const seqRekeyMargin = 1 << 24

func offloadSAs(sa ike.ChildSA) (in, out offload.SA) {
	mode := offloadMode(sa.Mode)
	base := offload.SA{
		Conn: sa.Conn, Child: sa.Child,
		Encr: sa.Encr, KeyBits: sa.KeyBits, Integ: sa.Integ, ESN: sa.ESN,
		Mode: mode, LocalTS: sa.LocalTS, RemoteTS: sa.RemoteTS,
		ReplayWindow: sa.ReplayWindow,
		Lifetime:     offload.Lifetime{HardTime: sa.Lifetime},
	}
	in, out = base, base
	if !sa.ESN {
		// A 32-bit counter must not cycle (RFC 4303 3.3.3): the data
		// plane's soft event asks for the rekey while plenty are left.
		out.Lifetime.SoftPackets = math.MaxUint32 - seqRekeyMargin
	}
	in.Dir, in.SPI = offload.In, sa.SPIIn
	in.EncrKey, in.IntegKey = sa.EncrKeyIn, sa.IntegKeyIn
	in.Src, in.Dst = sa.Remote.Addr(), sa.Local.Addr()
	out.Dir, out.SPI = offload.Out, sa.SPIOut
	out.EncrKey, out.IntegKey = sa.EncrKeyOut, sa.IntegKeyOut
	out.Src, out.Dst = sa.Local.Addr(), sa.Remote.Addr()
	if sa.Encap {
		in.Encap = &offload.Encap{SrcPort: sa.Remote.Port(), DstPort: sa.Local.Port()}
		out.Encap = &offload.Encap{SrcPort: sa.Local.Port(), DstPort: sa.Remote.Port()}
	}
	return in, out
}

// childPolicies are the SPD entries of a child: one outbound protect policy
// and one inbound check per selector pair of the same address family.
func childPolicies(sa ike.ChildSA) []offload.Policy {
	mode := offloadMode(sa.Mode)
	var ps []offload.Policy
	for _, l := range sa.LocalTS {
		for _, r := range sa.RemoteTS {
			if l.Addr().Is4() != r.Addr().Is4() {
				continue
			}
			ps = append(ps,
				offload.Policy{Conn: sa.Conn, Child: sa.Child, Dir: offload.Out, Src: l, Dst: r,
					Action: offload.Protect, SPI: sa.SPIOut, Mode: mode,
					TunnelSrc: sa.Local.Addr(), TunnelDst: sa.Remote.Addr()},
				offload.Policy{Conn: sa.Conn, Child: sa.Child, Dir: offload.In, Src: r, Dst: l,
					Action: offload.Protect, SPI: sa.SPIIn, Mode: mode,
					TunnelSrc: sa.Remote.Addr(), TunnelDst: sa.Local.Addr()})
		}
	}
	return ps
}

// apiSAs renders the engine's SAs with the data plane's counters.
func apiSAs(sas []ike.IKESAInfo, counters map[saCounterKey]offload.SACounters) []api.IKESA {
	out := make([]api.IKESA, 0, len(sas))
	for _, s := range sas {
		a := api.IKESA{
			Conn: s.Conn, State: s.State, Initiator: s.Initiator,
			SPIi: fmt.Sprintf("%016x", s.SPIi), SPIr: fmt.Sprintf("%016x", s.SPIr),
			Local: s.Local.String(), Remote: s.Remote.String(),
			NAT:      api.NAT{Local: s.NATLocal, Remote: s.NATRemote},
			Proposal: s.Proposal, Established: s.Established.UTC(),
			RekeyAt: s.RekeyAt.UTC(), Rekeys: s.Rekeys,
			Children: make([]api.ChildSA, 0, len(s.Children)),
		}
		for _, c := range s.Children {
			in := counters[saCounterKey{c.SPIIn, offload.In}]
			outC := counters[saCounterKey{c.SPIOut, offload.Out}]
			a.Children = append(a.Children, api.ChildSA{
				Name: c.Name, State: c.State,
				SPIIn: fmt.Sprintf("%08x", c.SPIIn), SPIOut: fmt.Sprintf("%08x", c.SPIOut),
				Mode: c.Mode, Encap: c.Encap, Proposal: c.Proposal,
				LocalTS: stringsOf(c.LocalTS), RemoteTS: stringsOf(c.RemoteTS),
				BytesIn: in.Bytes, PacketsIn: in.Packets, BytesOut: outC.Bytes, PacketsOut: outC.Packets,
				Offload:     offloadOf(in, outC),
				Established: c.Established.UTC(), RekeyAt: c.RekeyAt.UTC(), Rekeys: c.Rekeys,
				Reason: c.Reason, DownSince: c.DownSince.UTC(), RetryAt: c.RetryAt.UTC(), Attempts: c.Attempts,
			})
		}
		out = append(out, a)
	}
	return out
}

// offloadOf names the offload in force for an SA pair: the one both
// directions have, or "in:crypto/out:" where they differ (a NIC may take
// one direction and not the other).
func offloadOf(in, out offload.SACounters) string {
	if in.OffloadInEffect == out.OffloadInEffect {
		return in.OffloadInEffect
	}
	return "in:" + in.OffloadInEffect + "/out:" + out.OffloadInEffect
}

type saCounterKey struct {
	spi uint32
	dir offload.Direction
}

func counterIndex(st offload.Stats) map[saCounterKey]offload.SACounters {
	m := make(map[saCounterKey]offload.SACounters, len(st.SAs))
	for _, c := range st.SAs {
		m[saCounterKey{c.SPI, c.Dir}] = c
	}
	return m
}
