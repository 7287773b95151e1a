package loader

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/xdpsec/xdpsec/bpf"
)

// TrapEvent says that traffic matched a Protect policy without an SA: the
// daemon should negotiate one.
type TrapEvent struct {
	PolicyID uint32
	Proto    uint8
	// Src and Dst are the packet's; ports are 0 for protocols without.
	Src, Dst netip.AddrPort
}

// EventReader reads one program's ring buffer. Read blocks until an event,
// the deadline or Close.
type EventReader[T any] struct {
	rd     *ringbuf.Reader
	decode func([]byte) (T, error)
}

func newEventReader[T any](m *ebpf.Map, decode func([]byte) (T, error)) (*EventReader[T], error) {
	rd, err := ringbuf.NewReader(m)
	if err != nil {
		return nil, fmt.Errorf("loader: ring buffer reader: %w", err)
	}
	return &EventReader[T]{rd: rd, decode: decode}, nil
}

// Read returns the next event. After Close it returns an error wrapping
// ringbuf.ErrClosed, after the deadline one wrapping os.ErrDeadlineExceeded.
func (r *EventReader[T]) Read() (T, error) {
	rec, err := r.rd.Read()
	if err != nil {
		var zero T
		return zero, fmt.Errorf("loader: read event: %w", err)
	}
	return r.decode(rec.RawSample)
}

// SetDeadline bounds the Reads that follow; the zero time removes the
// bound.
func (r *EventReader[T]) SetDeadline(t time.Time) { r.rd.SetDeadline(t) }

// Close interrupts a blocked Read and releases the reader.
func (r *EventReader[T]) Close() error { return r.rd.Close() }

// TrapEvents opens a reader of xdp_lan's trap events.
func (l *Loader) TrapEvents() (*EventReader[TrapEvent], error) {
	return newEventReader(l.lan.LanEvents, decodeTrap)
}

// The records are in host byte order, laid out as the bpf2go types.

func decodeTrap(b []byte) (TrapEvent, error) {
	var e bpf.LanTrapEvent
	if _, err := binary.Decode(b, binary.NativeEndian, &e); err != nil {
		return TrapEvent{}, fmt.Errorf("loader: decode trap event: %w", err)
	}
	return TrapEvent{
		PolicyID: e.PolicyId,
		Proto:    e.Proto,
		Src:      netip.AddrPortFrom(netip.AddrFrom16(e.Saddr).Unmap(), e.Sport),
		Dst:      netip.AddrPortFrom(netip.AddrFrom16(e.Daddr).Unmap(), e.Dport),
	}, nil
}
