package afxdp

import (
	"net/netip"
	"time"

	"github.com/xdpsec/xdpsec/offload/afxdp/xsk"
)

// This file is the workers' neighbour queue. The FIB resolves a next hop
// in the background (fib.Lookup asks the kernel to ARP or solicit and
// returns false meanwhile), so without a queue the first packets towards
// every new neighbour would be lost: the first echo of the first ping, a
// TCP SYN that then waits a second for its retransmission. The kernel
// holds such packets on the neighbour entry (unres_qlen_bytes, per
// entry, until resolution fails) and so does each worker, in a small
// queue of its own: no lock, no allocation after start, and the packets
// are copied out of their UMEM frames, which go back to the ring at once.

const (
	// holdPerDst and holdBytesPerDst bound what waits for one
	// destination: a few packets, as the first of a flow are (a ping's
	// echo, a SYN, a DNS query and its retry). Beyond them the newest
	// are dropped (the kernel drops its oldest; dropping the newest keeps
	// the queue a plain FIFO, and either way the sender's retransmission
	// comes after the resolution). 64 KiB is the kernel's
	// unres_qlen_bytes scale for a handful of packets.
	holdPerDst      = 3
	holdBytesPerDst = 64 << 10
	// holdDsts and holdSlots bound the whole queue of a worker, so a scan
	// towards many unresolvable addresses costs a bounded, preallocated
	// buffer and never the worker's time.
	holdDsts  = 16
	holdSlots = 32
	// holdMaxAge is how long a packet may wait. The kernel's first ARP
	// or neighbour solicitation is answered in well under this on a LAN;
	// a neighbour that does not answer it is unlikely to have a host
	// waiting that would not retransmit anyway.
	holdMaxAge = time.Second
	// holdPoll is how often an idle worker looks at the FIB while it
	// holds packets: the FIB publishes a resolution without waking
	// anyone, and a packet should not wait the idle poll's 100 ms for it.
	holdPoll = time.Millisecond
)

// holdKind says which path a held packet resumes on.
type holdKind uint8

const (
	// holdLAN: decrypted, to be forwarded to the LAN (fromWAN).
	holdLAN holdKind = iota
	// holdSealFwd: plaintext from the LAN, to be sealed and forwarded.
	holdSealFwd
	// holdSealHost: plaintext from the TUN port (the host's own, so its
	// TTL stays), to be sealed.
	holdSealHost
)

// heldPkt is one packet waiting in a slot of the queue's buffer.
type heldPkt struct {
	slot int32
	len  int32
	kind holdKind
	at   time.Time
}

// holdDst is the packets waiting for one destination (the address looked
// up in the FIB: the inner destination towards the LAN, the SA's peer
// towards the WAN), oldest first.
type holdDst struct {
	addr  netip.Addr
	pkts  [holdPerDst]heldPkt
	n     int
	bytes int
}

// holdQueue is a worker's neighbour queue; only its worker touches it.
type holdQueue struct {
	dsts []holdDst // the first n of holdDsts entries are in use
	// buf holds holdSlots packets of slotSize bytes each; free lists
	// the slots not in use.
	buf      []byte
	slotSize int
	free     []int32
	// held counts the packets waiting, so that an empty queue costs its
	// worker one comparison per packet.
	held int
}

// newHoldQueue allocates a queue for packets of up to slotSize bytes.
func newHoldQueue(slotSize int) *holdQueue {
	q := &holdQueue{
		dsts:     make([]holdDst, 0, holdDsts),
		buf:      make([]byte, holdSlots*slotSize),
		slotSize: slotSize,
		free:     make([]int32, holdSlots),
	}
	for i := range q.free {
		q.free[i] = int32(holdSlots - 1 - i)
	}
	return q
}

// find returns the index of dst's entry, or -1.
func (q *holdQueue) find(dst netip.Addr) int {
	for i := range q.dsts {
		if q.dsts[i].addr == dst {
			return i
		}
	}
	return -1
}

// waiting reports whether packets wait for dst: then a packet for dst
// that finds its next hop resolved must still queue behind them, or it
// would overtake them.
func (q *holdQueue) waiting(dst netip.Addr) bool {
	return q != nil && q.held > 0 && q.find(dst) >= 0
}

// add copies pkt into the queue for dst and reports whether it fitted:
// within the bounds per destination and overall, and no larger than a
// slot. A packet that does not fit is the caller's to drop.
func (q *holdQueue) add(dst netip.Addr, pkt []byte, kind holdKind, now time.Time) bool {
	if q == nil || len(pkt) > q.slotSize || len(q.free) == 0 {
		return false
	}
	i := q.find(dst)
	if i < 0 {
		if len(q.dsts) == cap(q.dsts) {
			return false
		}
		q.dsts = append(q.dsts, holdDst{addr: dst})
		i = len(q.dsts) - 1
	}
	d := &q.dsts[i]
	if d.n == holdPerDst || d.bytes+len(pkt) > holdBytesPerDst {
		if d.n == 0 {
			q.drop(i)
		}
		return false
	}
	slot := q.free[len(q.free)-1]
	q.free = q.free[:len(q.free)-1]
	copy(q.slotBuf(slot), pkt)
	d.pkts[d.n] = heldPkt{slot: slot, len: int32(len(pkt)), kind: kind, at: now}
	d.n++
	d.bytes += len(pkt)
	q.held++
	return true
}

// slotBuf is the whole of slot's buffer.
func (q *holdQueue) slotBuf(slot int32) []byte {
	off := int(slot) * q.slotSize
	return q.buf[off : off+q.slotSize : off+q.slotSize]
}

// bytes is held packet p's content.
func (q *holdQueue) bytes(p heldPkt) []byte { return q.slotBuf(p.slot)[:p.len] }

// take moves the packets of entry i into out, oldest first, and removes
// the entry; their slots stay taken until release, so that the packets
// can be sent from where they are.
func (q *holdQueue) take(i int, out *[holdPerDst]heldPkt) int {
	d := &q.dsts[i]
	n := copy(out[:], d.pkts[:d.n])
	q.held -= n
	q.drop(i)
	return n
}

// release gives the slots of pkts back.
func (q *holdQueue) release(pkts []heldPkt) {
	for _, p := range pkts {
		q.free = append(q.free, p.slot)
	}
}

// expire drops the packets of entry i older than holdMaxAge at now, or
// all of them when all is set, removes the entry if that empties it, and
// returns how many it dropped. The oldest are first, so the expired ones
// are a prefix.
func (q *holdQueue) expire(i int, now time.Time, all bool) int {
	d := &q.dsts[i]
	k := 0
	for k < d.n && (all || now.Sub(d.pkts[k].at) > holdMaxAge) {
		q.free = append(q.free, d.pkts[k].slot)
		d.bytes -= int(d.pkts[k].len)
		k++
	}
	if k == 0 {
		return 0
	}
	copy(d.pkts[:], d.pkts[k:d.n])
	d.n -= k
	q.held -= k
	if d.n == 0 {
		q.drop(i)
	}
	return k
}

// drop removes entry i, whose packets are gone already; the last entry
// takes its place, since the order of destinations does not matter.
func (q *holdQueue) drop(i int) {
	last := len(q.dsts) - 1
	q.dsts[i] = q.dsts[last]
	q.dsts[last] = holdDst{}
	q.dsts = q.dsts[:last]
}

// hold queues pkt for dst, whose next hop the FIB is resolving, to resume
// on kind's path; or drops it as no_route: when dst has no route, when
// the queue is full, or while the worker is sending held packets (one
// whose next hop went away again meanwhile is not queued twice).
func (w *worker) hold(dst netip.Addr, pkt []byte, kind holdKind) {
	if w.flushing || w.dp.fib.Unreachable(dst) || !w.holdQ.add(dst, pkt, kind, time.Now()) {
		w.count(rNoRoute)
	}
}

// flushHeld sends the held packets whose next hop is resolved now, in
// the order they arrived, and drops as no_route those that waited longer
// than holdMaxAge or whose destination turned out to have no route. The
// worker calls it between batches, so held packets leave before any
// later packet of theirs: a packet that finds its next hop resolved
// while others for it still wait queues behind them (see seal).
func (w *worker) flushHeld() {
	q := w.holdQ
	now := time.Now()
	w.flushing = true
	for i := 0; i < len(q.dsts); {
		addr := q.dsts[i].addr
		if _, ok := w.dp.fib.Lookup(addr); ok {
			n := q.take(i, &w.resumed)
			w.resume(w.resumed[:n])
			q.release(w.resumed[:n])
			continue // take moved another destination to i
		}
		before := len(q.dsts)
		if k := q.expire(i, now, w.dp.fib.Unreachable(addr)); k > 0 {
			w.drops[rNoRoute].Add(uint64(k))
		}
		if len(q.dsts) == before {
			i++
		}
	}
	w.flushing = false
}

// resume sends held packets on the paths they were held on, looking
// everything up again: the policies, the SA and the next hop may have
// changed while they waited. Sealed ones take their sequence numbers
// now, in the order they arrived, so the SA's numbers stay in send order.
func (w *worker) resume(pkts []heldPkt) {
	spd := w.dp.spd.Load()
	for i, p := range pkts {
		b := w.holdQ.bytes(p)
		ip, ok := parseIP(b)
		if !ok {
			w.count(rMalformed) // parsed before it was held: cannot happen
			continue
		}
		if p.kind == holdLAN {
			w.endRun()
			w.resumeLAN(b, ip)
			continue
		}
		// Too big after all (the path MTU fell meanwhile): seal counts
		// it; its frame is gone, so no ICMP error is built from it, and
		// the sender's next packet gets one.
		w.seal(spd, b, ip, p.kind == holdSealFwd, len(pkts)-i)
	}
	w.endRun()
}

// resumeLAN forwards the held decrypted packet p (parsed as ip) to the
// LAN in a frame of its own.
func (w *worker) resumeLAN(p []byte, ip ipInfo) {
	nh, ok := w.dp.fib.Lookup(ip.dst)
	if !ok {
		w.count(rNoRoute)
		return
	}
	s := w.lanTx
	if s.Alloc(w.one[:]) == 0 {
		w.count(rTxFull)
		return
	}
	n := w.toLAN(s.Frame(w.one[0]), p, ip, nh)
	if n == 0 {
		s.Release(w.one[:])
		return
	}
	w.one[0].Len = uint32(n)
	sent, err := s.Transmit(w.one[:])
	if err != nil {
		w.txErrs.Add(1)
	}
	if sent == 0 {
		w.count(rTxFull)
		s.Release(w.one[:])
	}
}

// holdSlotSize is the slot size of a worker's queue: the largest packet
// it can hold, one from a UMEM frame or from the TUN port.
func holdSlotSize(s *xsk.Socket, tunMTU int) int { return max(s.FrameSize(), tunMTU) }
