package xsk

import (
	"bytes"
	"testing"
	"time"
)

func newMemory(t *testing.T, cfg Config) (*Socket, *Wire) {
	t.Helper()
	s, w, err := NewMemory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, w
}

// frames returns n distinct frames of size bytes.
func frames(n, size int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = make([]byte, size)
		for j := range out[i] {
			out[i][j] = byte(i*31 + j)
		}
	}
	return out
}

func checkFrames(t *testing.T, s *Socket, want FrameCounts) {
	t.Helper()
	got := s.Frames()
	if got != want {
		t.Fatalf("frames %+v, want %+v", got, want)
	}
	if got.Free+got.Fill+got.TX+got.User != got.Total {
		t.Fatalf("frames %+v do not add up", got)
	}
}

// TestMemoryRXTX moves frames through a memory socket both ways: what
// Deliver puts in comes out of Receive intact, behind the kernel's
// headroom; what Transmit sends comes out of Drain in order; and every
// frame is accounted for at each step.
func TestMemoryRXTX(t *testing.T) {
	s, w := newMemory(t, Config{NumFrames: 64, RingSize: 16})
	if s.FD() != -1 || s.Mode() != ModeCopy {
		t.Fatalf("fd %d mode %v, want -1 and copy", s.FD(), s.Mode())
	}
	checkFrames(t, s, FrameCounts{Total: 64, Free: 48, Fill: 16})

	in := frames(10, 100)
	if n := w.Deliver(in); n != 10 {
		t.Fatalf("delivered %d of 10", n)
	}
	var descs [16]Desc
	n := s.Receive(descs[:])
	if n != 10 {
		t.Fatalf("received %d of 10", n)
	}
	for i, d := range descs[:n] {
		if !bytes.Equal(s.Frame(d), in[i]) {
			t.Fatalf("frame %d changed on the way in", i)
		}
		if s.Headroom(d) != RXHeadroom {
			t.Fatalf("frame %d at headroom %d, want %d", i, s.Headroom(d), RXHeadroom)
		}
	}
	checkFrames(t, s, FrameCounts{Total: 64, Free: 48, Fill: 6, User: 10})

	// Send the received frames back out, reversed, plus two allocated
	// ones: Drain must see them in ring order.
	var out [12]Desc
	for i := range n {
		out[i] = descs[n-1-i]
	}
	if got := s.Alloc(out[10:12]); got != 2 {
		t.Fatalf("allocated %d of 2", got)
	}
	for i := 10; i < 12; i++ {
		out[i].Len = uint32(copy(s.Frame(out[i]), []byte{byte(i), 0xee}))
	}
	if sent, err := s.Transmit(out[:]); sent != 12 || err != nil {
		t.Fatalf("transmit: %d, %v", sent, err)
	}
	checkFrames(t, s, FrameCounts{Total: 64, Free: 46, Fill: 6, TX: 12})
	var got [][]byte
	if done := w.Drain(func(f []byte) { got = append(got, bytes.Clone(f)) }); done != 12 {
		t.Fatalf("drained %d of 12", done)
	}
	for i := range 12 {
		want := []byte{byte(i), 0xee}
		if i < 10 {
			want = in[9-i]
		}
		if !bytes.Equal(got[i], want) {
			t.Fatalf("frame %d out of order or changed: % x", i, got[i][:2])
		}
	}
	if c := s.Complete(); c != 12 {
		t.Fatalf("completed %d of 12", c)
	}
	// Receive refills the fill ring from the free frames.
	s.Receive(descs[:])
	checkFrames(t, s, FrameCounts{Total: 64, Free: 48, Fill: 16})
	if st, err := s.Stats(); err != nil || st != (Stats{}) {
		t.Fatalf("stats %+v, %v after a clean run", st, err)
	}
}

// TestMemoryLimits checks what the wire does at the edges, as the kernel
// does: frames beyond the fill ring or too big for a frame are dropped
// and counted; a full TX ring takes only what fits; a descriptor across a
// frame boundary is counted and never completed.
func TestMemoryLimits(t *testing.T) {
	s, w := newMemory(t, Config{NumFrames: 32, RingSize: 8, FillFrames: 4})
	if n := w.Deliver(frames(6, 60)); n != 4 {
		t.Fatalf("delivered %d with 4 fill frames", n)
	}
	if n := w.Deliver([][]byte{make([]byte, DefaultFrameSize-RXHeadroom+1)}); n != 0 {
		t.Fatal("delivered a frame bigger than the room behind the headroom")
	}
	st, _ := s.Stats()
	if st.RxFillRingEmptyDescs != 2 || st.RxDropped != 3 {
		t.Fatalf("stats %+v, want 2 fill-empty and 3 dropped", st)
	}
	var rx [8]Desc
	if n := s.Receive(rx[:]); n != 4 {
		t.Fatalf("received %d of 4", n)
	}
	s.Release(rx[:4])

	var tx [12]Desc
	if n := s.Alloc(tx[:]); n != 12 {
		t.Fatalf("allocated %d of 12", n)
	}
	sent, _ := s.Transmit(tx[:])
	if sent != 8 {
		t.Fatalf("transmit took %d into a ring of 8", sent)
	}
	checkFrames(t, s, FrameCounts{Total: 32, Free: 16, Fill: 4, TX: 8, User: 4})
	if n := w.Drain(nil); n != 8 {
		t.Fatalf("drained %d of 8", n)
	}
	s.Release(tx[8:11])
	// A descriptor that runs past the end of its frame.
	tx[11].Addr += uint64(DefaultFrameSize - 10)
	tx[11].Len = 20
	if sent, _ := s.Transmit(tx[11:]); sent != 1 {
		t.Fatal("transmit refused a descriptor")
	}
	if n := w.Drain(nil); n != 0 {
		t.Fatalf("an invalid descriptor was completed (%d)", n)
	}
	st, _ = s.Stats()
	if st.TxInvalidDescs != 1 {
		t.Fatalf("stats %+v, want 1 invalid tx descriptor", st)
	}
	s.Complete()
	checkFrames(t, s, FrameCounts{Total: 32, Free: 27, Fill: 4, TX: 1})

	if _, _, err := NewMemory(Config{Mode: ModeZeroCopy}); err == nil {
		t.Error("a zero-copy memory socket was made")
	}
}

// TestMemoryPollWake checks that Poll returns for delivered packets, for
// Wake and on its timeout, without an fd.
func TestMemoryPollWake(t *testing.T) {
	s, w := newMemory(t, Config{NumFrames: 16, RingSize: 8})
	if ok, err := s.Poll(0); ok || err != nil {
		t.Fatalf("poll of an empty socket: %v, %v", ok, err)
	}
	if ok, err := s.Poll(time.Millisecond); ok || err != nil {
		t.Fatalf("poll that timed out: %v, %v", ok, err)
	}
	res := make(chan bool)
	go func() {
		ok, _ := s.Poll(-1)
		res <- ok
	}()
	w.Deliver(frames(1, 64))
	if ok := waitPoll(t, res); !ok {
		t.Fatal("poll woken by a delivery saw no packet")
	}
	var d [1]Desc
	s.Receive(d[:])
	s.Release(d[:])
	go func() {
		ok, _ := s.Poll(time.Hour)
		res <- ok
	}()
	if err := s.Wake(); err != nil {
		t.Fatal(err)
	}
	if ok := waitPoll(t, res); ok {
		t.Fatal("poll woken by Wake reported packets")
	}
}

// waitPoll bounds the wait for a Poll to return: a poll that never does
// fails the test instead of hanging it.
func waitPoll(t *testing.T, res <-chan bool) bool {
	t.Helper()
	select {
	case ok := <-res:
		return ok
	case <-time.After(10 * time.Second):
		t.Fatal("poll did not return")
		return false
	}
}

// TestMemoryClose checks that the wire does nothing once its socket is
// closed, rather than touch unmapped memory.
func TestMemoryClose(t *testing.T) {
	s, w, err := NewMemory(Config{NumFrames: 16, RingSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if w.Deliver(frames(1, 64)) != 0 || w.Drain(nil) != 0 {
		t.Fatal("wire used after close")
	}
}

// TestMemoryZeroAllocs runs the whole cycle, both ways, and expects no
// allocation: the benchmarks built on memory sockets count the data
// path's allocations, not the wire's.
func TestMemoryZeroAllocs(t *testing.T) {
	s, w := newMemory(t, Config{})
	in := frames(64, 200)
	var descs [64]Desc
	drained := 0
	count := func(f []byte) { drained += len(f) }
	allocs := testing.AllocsPerRun(100, func() {
		w.Deliver(in)
		n := s.Receive(descs[:])
		if sent, _ := s.Transmit(descs[:n]); sent < n {
			s.Release(descs[sent:n])
		}
		w.Drain(count)
		s.Complete()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per cycle", allocs)
	}
	if drained == 0 {
		t.Fatal("nothing went through")
	}
}
