package afxdp

import (
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/xdpsec/xdpsec/offload/esp"
)

// One inbound SA's packets arrive on one WAN queue (a NIC's RSS hashes
// the outer addresses or the SPI, and the peer sends each SA on one
// queue: see wanPort), so without help one big site-to-site SA would
// decrypt on one core. A worker therefore shares the decryption of a
// big WAN batch: it cuts the batch into parts, offers all parts but its
// own to the other workers, decrypts its own, and then takes back every
// part that nobody has started, so it never waits for a worker that is
// asleep or busy with its own queues, only for one that is already
// decrypting. The batch is forwarded by its own worker, in arrival
// order, once every part is done: sharing changes who spends the AES
// cycles, not the order of the packets on the LAN.
//
// What moves is only the costly stage, esp's OpenBatch (ICV and
// decryption), which touches nothing but the packets: the batch's own
// worker checks the packets before (SA, form, replay window) and
// finishes them after (window update, padding, selectors, counters), so
// an SA's shared state stays on one core. Sharing whole decryptions made
// the SA's lock and counters bounce between the cores on every packet,
// which cost more than the second core gained (0.84x of one worker).

// Sharing is a setting of Options.DecryptSharing.
type Sharing string

const (
	// SharingAuto shares with 4 workers or more (sharingMinWorkers).
	SharingAuto Sharing = "auto"
	SharingOn   Sharing = "on"
	SharingOff  Sharing = "off"
)

// sharingMinWorkers is the fewest workers with which SharingAuto
// shares. Below it the CPUs that the workers would share with also carry
// the kernel's per-packet work (softirq, the sockets' copies): in the
// two-CPU lab, two workers that shared carried 0.91x the TCP of two that
// did not; in memory, with nothing else on the CPUs, sharing was
// 1.02x-1.07x faster (BenchmarkSharedDecrypt), the plaintext's trip back
// across the cores eating most of the second core's AES. Not measured
// with more cores (docs/benchmarks.md).
const sharingMinWorkers = 4

// sharing reports whether workers share decryption under setting s.
func sharing(s Sharing, workers int) bool {
	switch s {
	case SharingOn:
		return workers > 1
	case SharingOff:
		return false
	}
	return workers >= sharingMinWorkers
}

// sharePart is the smallest part of a batch offered to another worker:
// below it the hand-off costs about what the decryption does.
const sharePart = 8

// maxShares bounds the parts of one batch offered to others.
const maxShares = batchSize/sharePart - 1

// inboxLen is how many offered parts wait for a worker; a full inbox
// means it is busy, and its owner keeps the part.
const inboxLen = 2 * maxShares

// spinBeforeYield is how often a worker looks at a part another worker
// decrypts before it yields its CPU between looks.
const spinBeforeYield = 1024

// States of a share.
const (
	shareOpen  int32 = iota // offered, nobody has started it
	shareTaken              // a worker decrypts it
	shareDone               // decrypted: its results are valid
)

// share is a part of a worker's WAN batch that any worker may open
// (esp.Worker.OpenBatch) with its own esp.Worker. Whoever moves state from shareOpen to
// shareTaken decrypts it and sets shareDone; the batch's owner reuses the
// share only once it is done, so a pointer to it left over in an inbox
// finds it taken or done (or offered again, which is as good) and skips
// it.
type share struct {
	pkts  []esp.Packet
	res   []esp.Result
	state atomic.Int32
}

// decryptBatch decrypts pkts into res as esp.Worker.DecryptBatch does,
// with the other workers' help when the batch is big enough (see the top
// of this file). It returns once every packet is decrypted.
func (w *worker) decryptBatch(pkts []esp.Packet, res []esp.Result) {
	parts := min(len(w.peers)+1, len(pkts)/sharePart, maxShares+1)
	if parts < 2 {
		w.eng.DecryptBatch(w.dp.sadb, pkts, res)
		return
	}
	w.eng.CheckBatch(w.dp.sadb, pkts, res)
	w.openShared(pkts, res, parts)
	w.eng.FinishBatch(pkts, res)
}

// openShared opens pkts in parts pieces, all but the first offered to
// the peers, and returns once all are open.
func (w *worker) openShared(pkts []esp.Packet, res []esp.Result, parts int) {
	size := (len(pkts) + parts - 1) / parts
	offered := 0
	for lo := size; lo < len(pkts); lo += size {
		hi := min(lo+size, len(pkts))
		s := &w.shares[offered]
		s.pkts, s.res = pkts[lo:hi], res[lo:hi]
		s.state.Store(shareOpen)
		w.nextPeer = (w.nextPeer + 1) % len(w.peers)
		w.peers[w.nextPeer].offer(s)
		offered++
	}
	w.eng.OpenBatch(pkts[:size], res[:size])
	for i := range offered {
		s := &w.shares[i]
		if s.state.CompareAndSwap(shareOpen, shareTaken) {
			w.eng.OpenBatch(s.pkts, s.res)
			s.state.Store(shareDone)
			continue
		}
		// Another worker is decrypting it: as long as one part takes,
		// unless that worker's CPU was taken from it; then let the
		// kernel run whatever waits on ours.
		for spins := 0; s.state.Load() != shareDone; spins++ {
			if spins >= spinBeforeYield {
				_, _, _ = unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
			}
		}
	}
}

// offer puts s in w's inbox, unless that is full (then s stays open and
// its owner decrypts it), and wakes w if it sleeps.
func (w *worker) offer(s *share) {
	select {
	case w.inbox <- s:
	default:
		return
	}
	w.offered.Add(1)
	// Dekker with idle: it sets asleep before it looks at offered, we
	// count the offer before we look at asleep, so one of us sees the
	// other (both are sequentially consistent atomics).
	if w.asleep.Load() {
		one := [8]byte{1}
		_, _ = unix.Write(w.wakeFD, one[:])
	}
}

// help opens the parts offered to w that nobody has started, and
// reports whether there were any.
func (w *worker) help() bool {
	did := false
	for {
		select {
		case s := <-w.inbox:
			w.offered.Add(-1)
			if !s.state.CompareAndSwap(shareOpen, shareTaken) {
				continue // its owner took it back
			}
			w.eng.OpenBatch(s.pkts, s.res)
			w.helped.Add(uint64(len(s.pkts)))
			s.state.Store(shareDone)
			did = true
		default:
			return did
		}
	}
}
