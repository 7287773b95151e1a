package esp

import (
	"encoding/binary"
	"math"
	"slices"
	"sync"
	"testing"
)

// TestReserveSeqDisjoint has goroutines reserve ranges of one SA at once:
// together the ranges must tile 1..total with no number given twice.
func TestReserveSeqDisjoint(t *testing.T) {
	out, _ := gcmSetup.pair(t)
	const goroutines, per = 8, 2000
	ranges := make([][][2]uint64, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				n := 1 + (i*7+g)%64
				first, ok := out.ReserveSeq(n)
				if !ok {
					t.Errorf("reservation of %d refused", n)
					return
				}
				ranges[g] = append(ranges[g], [2]uint64{first, uint64(n)})
			}
		}()
	}
	wg.Wait()
	var all [][2]uint64
	for _, r := range ranges {
		all = append(all, r...)
	}
	slices.SortFunc(all, func(a, b [2]uint64) int {
		switch {
		case a[0] < b[0]:
			return -1
		case a[0] > b[0]:
			return 1
		}
		return 0
	})
	next := uint64(1)
	for _, r := range all {
		if r[0] != next {
			t.Fatalf("range [%d, +%d) where %d was next: overlap or gap", r[0], r[1], next)
		}
		next += r[1]
	}
	if len(all) != goroutines*per {
		t.Fatalf("%d ranges, want %d", len(all), goroutines*per)
	}
	if _, ok := out.ReserveSeq(0); ok {
		t.Error("an empty reservation succeeded")
	}
}

// TestReserveSeqOverflow checks that without ESN a reservation that would
// pass 2^32-1 is refused, stops the SA, raises EventSeqOverflow once and
// counts its packets as expired, as Encrypt does; with ESN it goes on.
func TestReserveSeqOverflow(t *testing.T) {
	for _, esn := range []bool{false, true} {
		var events []Event
		s := gcmSetup
		s.esn = esn
		out, _ := s.pair(t)
		out.notify = func(e Event) { events = append(events, e) }
		out.seqOut.Store(math.MaxUint32 - 3)
		first, ok := out.ReserveSeq(2)
		if !ok || first != math.MaxUint32-2 {
			t.Fatalf("esn=%v: last numbers: %d %v", esn, first, ok)
		}
		first, ok = out.ReserveSeq(2)
		if esn {
			if !ok || first != math.MaxUint32 || len(events) != 0 || out.Expired() {
				t.Fatalf("esn: %d %v %v", first, ok, events)
			}
			continue
		}
		if ok || !out.Expired() || len(events) != 1 || events[0] != (Event{SPI: out.spi, Kind: EventSeqOverflow}) {
			t.Fatalf("overflow: %v %v", ok, events)
		}
		if _, ok := out.ReserveSeq(1); ok || len(events) != 1 {
			t.Fatalf("after overflow: %v %v", ok, events)
		}
		if st := out.Stats(); st.Drops[DropExpired] != 3 {
			t.Fatalf("expired drops %d, want 3", st.Drops[DropExpired])
		}
		w := NewWorker()
		if r := w.EncryptSeq(out, newPacket(s.innerPkt(60, 0)), math.MaxUint32-2); r != DropExpired {
			t.Fatalf("encrypt on an overflowed SA: %v", r)
		}
	}
}

// TestEncryptSeq checks that a packet carries the number it was given,
// decrypts, that the hard packet limit stops the rest of a reserved range
// as it stops Encrypt, and that it allocates nothing.
func TestEncryptSeq(t *testing.T) {
	out, in := gcmSetup.pair(t)
	w := NewWorker()
	first, ok := out.ReserveSeq(4)
	if !ok || first != 1 {
		t.Fatalf("reserve: %d %v", first, ok)
	}
	// Out of order within the range: the peer's window takes it.
	for _, i := range []uint64{1, 0, 3, 2} {
		p := newPacket(gcmSetup.innerPkt(100, 0))
		if r := w.EncryptSeq(out, p, first+i); r != Accept {
			t.Fatalf("encrypt %d: %v", first+i, r)
		}
		if seq := binary.BigEndian.Uint32(p.Bytes()[ipv4HeaderLen+4:]); uint64(seq) != first+i {
			t.Fatalf("packet carries %d, want %d", seq, first+i)
		}
		if r := w.Decrypt(in, p); r != Accept {
			t.Fatalf("decrypt %d: %v", first+i, r)
		}
	}
	if r := w.EncryptSeq(out, newPacket(gcmSetup.innerPkt(100, 0)), 0); r != DropMalformed {
		t.Fatalf("sequence number 0: %v", r)
	}

	buf := newPacket(gcmSetup.innerPkt(100, 0))
	plain := append([]byte(nil), buf.Buf...)
	off, n := buf.Off, buf.Len
	seq := uint64(100)
	allocs := testing.AllocsPerRun(50, func() {
		copy(buf.Buf, plain)
		buf.Off, buf.Len = off, n
		seq++
		if r := w.EncryptSeq(out, buf, seq); r != Accept {
			t.Fatalf("encrypt: %v", r)
		}
	})
	if allocs != 0 {
		t.Errorf("EncryptSeq allocates %.1f times", allocs)
	}

	hard, _ := gcmSetup.pair(t)
	hard.life = Lifetime{HardPackets: 2}
	var events []EventKind
	hard.notify = func(e Event) { events = append(events, e.Kind) }
	first, ok = hard.ReserveSeq(4)
	if !ok {
		t.Fatal("reserve refused")
	}
	for i := range uint64(4) {
		r := w.EncryptSeq(hard, newPacket(gcmSetup.innerPkt(100, 0)), first+i)
		if want := Accept; i >= 2 && r != DropExpired || i < 2 && r != want {
			t.Fatalf("packet %d past a hard limit of 2: %v", i+1, r)
		}
	}
	if !slices.Equal(events, []EventKind{EventHard}) {
		t.Fatalf("events %v", events)
	}
	if _, ok := hard.ReserveSeq(1); ok {
		t.Fatal("an expired SA gave numbers")
	}
}
