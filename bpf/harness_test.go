package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// XDP actions as BPF_PROG_TEST_RUN returns them.
const (
	xdpAborted  = 0
	xdpDrop     = 1
	xdpPass     = 2
	xdpTX       = 3
	xdpRedirect = 4
)

func actionName(a uint32) string {
	switch a {
	case xdpAborted:
		return "XDP_ABORTED"
	case xdpDrop:
		return "XDP_DROP"
	case xdpPass:
		return "XDP_PASS"
	case xdpTX:
		return "XDP_TX"
	case xdpRedirect:
		return "XDP_REDIRECT"
	}
	return fmt.Sprintf("action %d", a)
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loading BPF programs needs root (CAP_BPF, CAP_NET_ADMIN); make test runs as root")
	}
}

// load loads a collection for one fixture, so fixtures never see each
// other's map contents, and prints the verifier log when it refuses.
func load(t testing.TB, fn func(any, *ebpf.CollectionOptions) error, objs interface{ Close() error }) {
	t.Helper()
	requireRoot(t)
	if err := fn(objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			t.Fatalf("verifier: %+v", ve)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { objs.Close() })
}

// run runs prog once on pkt (rx queue 0 of the loopback device, which
// BPF_PROG_TEST_RUN uses without a context) and returns the verdict and
// the packet as the program left it.
func run(t testing.TB, prog *ebpf.Program, pkt []byte) (uint32, []byte) {
	t.Helper()
	out := make([]byte, len(pkt)+256)
	opts := ebpf.RunOptions{Data: pkt, DataOut: out}
	ret, err := prog.Run(&opts)
	if err != nil {
		t.Fatalf("test run: %v", err)
	}
	return ret, opts.DataOut
}

// counters reads a per-CPU counter array summed over CPUs.
func counters(t testing.TB, m *ebpf.Map) []uint64 {
	t.Helper()
	sums := make([]uint64, m.MaxEntries())
	for i := range sums {
		var per []uint64
		if err := m.Lookup(uint32(i), &per); err != nil {
			t.Fatalf("counter %d: %v", i, err)
		}
		for _, v := range per {
			sums[i] += v
		}
	}
	return sums
}

// checkDeltas wants every counter in want to have grown by exactly one and
// all others to be unchanged.
func checkDeltas[C ~uint32](t testing.TB, before, after []uint64, want []C, name func(int) string) {
	t.Helper()
	exp := make([]uint64, len(before))
	for _, c := range want {
		exp[c]++
	}
	for i := range before {
		if d := after[i] - before[i]; d != exp[i] {
			t.Errorf("counter %s changed by %d, want %d", name(i), d, exp[i])
		}
	}
}

// xskSocket returns an AF_XDP socket to fill an XSKMAP slot with. It need
// not be bound: a test run only resolves the redirect target, it never
// delivers a frame to it.
func xskSocket(t testing.TB) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW, 0)
	if err != nil {
		t.Fatalf("AF_XDP socket: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// readEvent reads one ring-buffer record into v, failing after a second.
func readEvent(t testing.TB, m *ebpf.Map, v any) {
	t.Helper()
	rd, err := ringbuf.NewReader(m)
	if err != nil {
		t.Fatalf("ring buffer: %v", err)
	}
	defer rd.Close()
	rd.SetDeadline(time.Now().Add(time.Second))
	rec, err := rd.Read()
	if err != nil {
		t.Fatalf("read event: %v", err)
	}
	if err := binary.Read(bytes.NewReader(rec.RawSample), binary.NativeEndian, v); err != nil {
		t.Fatalf("decode event: %v", err)
	}
}

// noEvent checks that the ring buffer is empty.
func noEvent(t testing.TB, m *ebpf.Map) {
	t.Helper()
	rd, err := ringbuf.NewReader(m)
	if err != nil {
		t.Fatalf("ring buffer: %v", err)
	}
	defer rd.Close()
	rd.SetDeadline(time.Now().Add(50 * time.Millisecond))
	if rec, err := rd.Read(); err == nil {
		t.Errorf("unexpected event of %d bytes", len(rec.RawSample))
	} else if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read event: %v", err)
	}
}

// monotonicNow is bpf_ktime_get_ns's clock.
func monotonicNow(t testing.TB) uint64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Nano())
}
