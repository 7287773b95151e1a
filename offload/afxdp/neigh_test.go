package afxdp

import (
	"bytes"
	"net/netip"
	"testing"
	"time"
)

func heldAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 2, 0, byte(i)}) }

// heldContents returns what waits for dst, oldest first.
func heldContents(q *holdQueue, dst netip.Addr) [][]byte {
	i := q.find(dst)
	if i < 0 {
		return nil
	}
	var out [][]byte
	d := &q.dsts[i]
	for _, p := range d.pkts[:d.n] {
		out = append(out, q.bytes(p))
	}
	return out
}

// TestHoldQueueBounds checks the neighbour queue's limits: packets and
// bytes per destination, destinations and packets per worker, the slot
// size; and that what it holds is a copy, kept in arrival order.
func TestHoldQueueBounds(t *testing.T) {
	now := time.Now()
	q := newHoldQueue(2048)
	dst := heldAddr(1)
	pkt := []byte{1, 2, 3}
	for i := range holdPerDst {
		pkt[0] = byte(i)
		if !q.add(dst, pkt, holdLAN, now) {
			t.Fatalf("packet %d of %d refused", i+1, holdPerDst)
		}
	}
	pkt[0] = 0xff // the queue copied; the frame may be reused
	if q.add(dst, pkt, holdLAN, now) {
		t.Errorf("packet %d for one destination accepted, limit %d", holdPerDst+1, holdPerDst)
	}
	got := heldContents(q, dst)
	for i, b := range got {
		if !bytes.Equal(b, []byte{byte(i), 2, 3}) {
			t.Errorf("held packet %d is % x, want it as added, in order", i, b)
		}
	}
	if len(got) != holdPerDst || q.held != holdPerDst {
		t.Errorf("%d held for the destination, %d in all; want %d", len(got), q.held, holdPerDst)
	}

	if q.add(heldAddr(2), make([]byte, 2049), holdLAN, now) {
		t.Error("packet larger than a slot accepted")
	}
	if q.find(heldAddr(2)) >= 0 {
		t.Error("a refused packet left an empty destination behind")
	}

	// Bytes per destination: a queue of 32 KiB slots takes one full-size
	// packet and refuses a second that would pass 64 KiB.
	big := newHoldQueue(40 << 10)
	if !big.add(dst, make([]byte, 40<<10), holdLAN, now) || big.add(dst, make([]byte, 30<<10), holdLAN, now) {
		t.Errorf("bytes per destination not bounded at %d", holdBytesPerDst)
	}

	// Destinations and slots per worker.
	q = newHoldQueue(64)
	added := 0
	for i := range holdDsts + 1 {
		for range holdPerDst {
			if q.add(heldAddr(i), []byte{byte(i)}, holdSealFwd, now) {
				added++
			}
		}
	}
	if want := min(holdSlots, holdDsts*holdPerDst); added != want || q.held != want {
		t.Errorf("held %d packets (count %d) over %d destinations, want the bound %d", added, q.held, holdDsts+1, want)
	}
	if len(q.dsts) > holdDsts {
		t.Errorf("%d destinations, bound %d", len(q.dsts), holdDsts)
	}
}

// TestHoldQueueExpireTake checks that packets older than holdMaxAge go,
// newer ones stay, and that take hands a destination's packets over in
// order and release makes their slots free again.
func TestHoldQueueExpireTake(t *testing.T) {
	t0 := time.Now()
	q := newHoldQueue(64)
	a, b := heldAddr(1), heldAddr(2)
	q.add(a, []byte{1}, holdLAN, t0)
	q.add(a, []byte{2}, holdLAN, t0.Add(600*time.Millisecond))
	q.add(b, []byte{3}, holdSealHost, t0)

	if k := q.expire(q.find(a), t0.Add(holdMaxAge), false); k != 0 {
		t.Errorf("expired %d packets no older than holdMaxAge", k)
	}
	if k := q.expire(q.find(a), t0.Add(holdMaxAge+time.Millisecond), false); k != 1 {
		t.Errorf("expired %d packets, want the older one", k)
	}
	if got := heldContents(q, a); len(got) != 1 || got[0][0] != 2 {
		t.Errorf("after expiry %v wait, want the newer packet", got)
	}
	if k := q.expire(q.find(b), t0, true); k != 1 || q.find(b) >= 0 {
		t.Errorf("expire all: %d dropped, destination left %v", k, q.find(b) >= 0)
	}

	var out [holdPerDst]heldPkt
	n := q.take(q.find(a), &out)
	if n != 1 || q.bytes(out[0])[0] != 2 || out[0].kind != holdLAN {
		t.Fatalf("take: %d packets %+v", n, out[:n])
	}
	if q.held != 0 || len(q.dsts) != 0 || q.waiting(a) {
		t.Errorf("after take: %d held, %d destinations", q.held, len(q.dsts))
	}
	free := len(q.free)
	q.release(out[:n])
	if len(q.free) != free+1 || len(q.free) != holdSlots {
		t.Errorf("%d free slots after release, want all %d", len(q.free), holdSlots)
	}
}

// TestHoldQueueNoAlloc: holding and releasing packets allocates nothing,
// since the workers' per-packet path must not.
func TestHoldQueueNoAlloc(t *testing.T) {
	q := newHoldQueue(2048)
	pkt := make([]byte, 1500)
	now := time.Now()
	var out [holdPerDst]heldPkt
	allocs := testing.AllocsPerRun(1000, func() {
		for i := range 4 {
			q.add(heldAddr(i), pkt, holdSealFwd, now)
			q.add(heldAddr(i), pkt, holdSealFwd, now)
		}
		for len(q.dsts) > 0 {
			n := q.take(0, &out)
			q.release(out[:n])
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per run", allocs)
	}
}
