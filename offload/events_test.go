package offload

import "testing"

func TestEventQueue(t *testing.T) {
	q := NewEventQueue(2)
	for i, want := range []bool{true, true, false} {
		if got := q.Emit(Event{SPI: uint32(i)}); got != want {
			t.Errorf("Emit %d = %v, want %v", i, got, want)
		}
	}
	if q.Lost() != 1 {
		t.Errorf("Lost = %d, want 1", q.Lost())
	}
	q.Close()
	q.Close()
	if q.Emit(Event{}) {
		t.Error("Emit after Close queued")
	}
	var spis []uint32
	for ev := range q.C() {
		spis = append(spis, ev.SPI)
	}
	if len(spis) != 2 || spis[0] != 0 || spis[1] != 1 {
		t.Errorf("events %v, want the first two in order", spis)
	}
}
