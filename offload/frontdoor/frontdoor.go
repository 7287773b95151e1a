// Package frontdoor puts xdpsec's WAN XDP program in front of a kernel data
// plane (XFRM in software or on the NIC). The kernel does the ESP; the XDP
// program drops ESP for SPIs that are not ours before the stack spends
// anything on it, passes IKE to the daemon's sockets, and spreads the ESP
// of our SAs over the CPUs, which the kernel cannot do by itself: NICs hash
// an ESP tunnel (one pair of addresses, no ports) to one queue, so without
// help one big SA is decrypted on one core.
package frontdoor

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/xdpsec/xdpsec/loader"
	"github.com/xdpsec/xdpsec/offload"
)

// Steering says how ESP of known SAs is spread over the CPUs.
type Steering string

const (
	// PerSA sends each SA to one CPU (hash of the SPI): inner flows stay
	// in order, many SAs use many CPUs.
	PerSA Steering = "sa"
	// PerPacket hashes the sequence number too: one busy SA uses every
	// CPU, its inner flows see some reordering.
	PerPacket Steering = "packet"
	// Off leaves ESP on the CPU that received it.
	Off Steering = "off"
)

// cpuQueue is the cpumap queue length per CPU: enough to absorb a burst of
// a 10 Gbit/s NIC's NAPI poll, small enough to bound latency.
const cpuQueue = 2048

// Options configure New.
type Options struct {
	// WAN is the ciphertext interface the XDP program attaches to.
	WAN string
	// XDPMode is the attach mode (auto, native, generic).
	XDPMode string
	// Instance and PinRoot name the bpffs pins (see loader.Options).
	Instance, PinRoot string
	Steering          Steering
	// CPUs is how many CPUs ESP is spread over, the first of those the
	// daemon may run on; 0 means all of them.
	CPUs   int
	Logger *zap.Logger
}

// Dataplane is a kernel data plane with the XDP front door. Everything but
// the inbound SAs' registration with XDP is the kernel data plane's.
type Dataplane struct {
	offload.Dataplane
	ld  *loader.Loader
	log *zap.Logger

	mu sync.Mutex
	// in maps our inbound SPIs to the local address they arrive at, the
	// other half of the XDP SA key.
	in map[uint32]netip.Addr
}

// New attaches the WAN program in front of kernel, which it then owns: its
// Close closes kernel too.
func New(kernel offload.Dataplane, opts Options) (*Dataplane, error) {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	ld, err := loader.Open(loader.Options{
		Instance: opts.Instance, PinRoot: opts.PinRoot,
		WAN: opts.WAN, Mode: loader.Mode(opts.XDPMode),
		Logger: opts.Logger.Named("loader"),
	})
	if err != nil {
		return nil, fmt.Errorf("frontdoor: %w", err)
	}
	d := &Dataplane{Dataplane: kernel, ld: ld, log: opts.Logger, in: map[uint32]netip.Addr{}}
	if err := d.setup(opts); err != nil {
		return nil, errors.Join(fmt.Errorf("frontdoor: %w", err), ld.Detach())
	}
	return d, nil
}

func (d *Dataplane) setup(opts Options) error {
	// SAs a previous run registered are gone with its kernel states.
	if n, err := d.ld.ClearSAs(); err != nil {
		return err
	} else if n > 0 {
		d.log.Info("removed inbound SAs a previous run left in XDP", zap.Int("sas", n))
	}
	var cpus []uint32
	switch opts.Steering {
	case Off:
	case PerSA, PerPacket, "":
		cpus = usableCPUs(opts.CPUs)
	default:
		return fmt.Errorf("unknown cpu steering %q", opts.Steering)
	}
	if err := d.ld.SetCPUPerSA(opts.Steering != PerPacket); err != nil {
		return err
	}
	if err := d.ld.SetCPUs(cpus, cpuQueue); err != nil {
		return err
	}
	d.log.Info("xdp front door up", zap.String("wan", opts.WAN), zap.String("cpu_steering", string(opts.Steering)), zap.Int("cpus", len(cpus)))
	return nil
}

// usableCPUs lists the IDs of up to n CPUs this process may run on (all
// when n is 0): an operator who pins the daemon away from some CPUs keeps
// ESP off them too, and CPU IDs need not start at 0.
func usableCPUs(n int) []uint32 {
	var set unix.CPUSet
	var cpus []uint32
	if err := unix.SchedGetaffinity(0, &set); err == nil {
		for id := 0; id < len(set)*64; id++ {
			if set.IsSet(id) {
				cpus = append(cpus, uint32(id))
			}
		}
	}
	if len(cpus) == 0 {
		for id := range runtime.NumCPU() {
			cpus = append(cpus, uint32(id))
		}
	}
	if n > 0 && n < len(cpus) {
		cpus = cpus[:n]
	}
	return cpus
}

// AddSA implements offload.Dataplane: the kernel gets the SA first, then
// XDP lets its ESP through, so no packet is passed to a kernel that does
// not know the SPI yet.
func (d *Dataplane) AddSA(ctx context.Context, sa offload.SA) error {
	if err := d.Dataplane.AddSA(ctx, sa); err != nil {
		return err
	}
	if sa.Dir != offload.In {
		return nil
	}
	if err := d.ld.PutSA(loader.InboundSA{
		SPI: sa.SPI, Dst: sa.Dst, Peer: sa.Src, UDP: sa.Encap != nil, Action: loader.SAXfrm,
	}); err != nil {
		return errors.Join(fmt.Errorf("frontdoor: %w", err), d.Dataplane.DelSA(ctx, sa.SPI, sa.Dir))
	}
	d.mu.Lock()
	d.in[sa.SPI] = sa.Dst
	d.mu.Unlock()
	return nil
}

// DelSA implements offload.Dataplane: XDP drops the SPI's ESP before the
// kernel forgets it.
func (d *Dataplane) DelSA(ctx context.Context, spi uint32, dir offload.Direction) error {
	if dir == offload.In {
		d.mu.Lock()
		dst, ok := d.in[spi]
		delete(d.in, spi)
		d.mu.Unlock()
		if ok {
			if err := d.ld.DeleteSA(spi, dst); err != nil {
				return fmt.Errorf("frontdoor: %w", err)
			}
		}
	}
	return d.Dataplane.DelSA(ctx, spi, dir)
}

// Close closes the kernel data plane (which removes its states and
// policies), then detaches the XDP program and removes its pins.
func (d *Dataplane) Close() error {
	err := d.Dataplane.Close()
	return errors.Join(err, d.ld.Detach())
}

// XDPCounters reports the WAN program's verdicts; there is no LAN program
// in front of a kernel data plane.
func (d *Dataplane) XDPCounters() (wan, lan map[string]uint64, err error) {
	wan, err = d.ld.WANCounters()
	return wan, nil, err
}

// SetIKERateLimit rate-limits IKE_SA_INIT per source at the WAN program
// (loader.SetIKERateLimit); 0 lifts the limit.
func (d *Dataplane) SetIKERateLimit(perSecond uint32) error {
	if err := d.ld.SetIKERateLimit(perSecond); err != nil {
		return fmt.Errorf("frontdoor: %w", err)
	}
	return nil
}

// WorkerPackets: the kernel's CPUs are not xdpsec's workers.
func (d *Dataplane) WorkerPackets() []uint64 { return nil }

// SocketCounters: no AF_XDP sockets in front of the kernel.
func (d *Dataplane) SocketCounters() (map[string]uint64, error) { return nil, nil }
