package afxdp

import (
	"bytes"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// newPeer returns another worker of g's data plane with an inbox, a peer
// for shared decryption as startWorkers makes them.
func newPeer(g *memGateway, cpu int) *worker {
	p := newWorker(g.dp, cpu, holdSlotSize(g.wan, 0))
	p.inbox = make(chan *share, inboxLen)
	return p
}

// withPeer gives g's worker one peer and returns it.
func withPeer(g *memGateway) *worker {
	p := newPeer(g, 1)
	g.w.peers = []*worker{p}
	return p
}

// runPeers runs each peer's inbox as a worker with nothing else to do
// would, until the test ends.
func runPeers(tb testing.TB, peers ...*worker) {
	var stop atomic.Bool
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Go(func() {
			for !stop.Load() {
				if !p.help() {
					runtime.Gosched()
				}
			}
		})
	}
	tb.Cleanup(func() { stop.Store(true); wg.Wait() })
}

// sharedFrames is a full batch of 1400-byte frames from A's host to B's.
func sharedFrames() [][]byte {
	frames := make([][]byte, batchSize)
	for i := range frames {
		frames[i] = udpFrame(memSites[0], memSites[1], 1400, i)
	}
	return frames
}

// checkArrived fails t unless out holds frames in order, as B's worker
// forwards them (both hops' TTL and B's LAN addresses).
func checkArrived(t *testing.T, frames [][]byte, out *collector) {
	t.Helper()
	if len(out.frames()) != len(frames) {
		t.Fatalf("%d of %d frames arrived", len(out.frames()), len(frames))
	}
	for i, got := range out.frames() {
		want := bytes.Clone(frames[i])
		copy(want[0:6], memSites[1].hostMAC[:])
		copy(want[6:12], memSites[1].lanMAC[:])
		decTTL(want[ethLen:], false)
		decTTL(want[ethLen:], false)
		if !bytes.Equal(got, want) {
			t.Fatalf("frame %d arrived out of order or changed", i)
		}
	}
}

// TestSharedDecryptTakenBack offers parts of every batch to a peer that
// never runs: its owner takes each part back, so every packet is still
// decrypted, in order, once, and the peer's full inbox costs nothing.
func TestSharedDecryptTakenBack(t *testing.T) {
	a, b, _ := newMemPair(t)
	p := withPeer(b)
	frames := sharedFrames()
	wan, out := newCollector(), newCollector()
	for range 2 * inboxLen {
		pass(t, a, b, frames, wan, out)
		checkArrived(t, frames, out)
	}
	if n := p.helped.Load(); n != 0 {
		t.Errorf("a peer that never ran decrypted %d packets", n)
	}
	if got, want := b.in.Stats().PacketsIn, uint64(2*inboxLen*len(frames)); got != want {
		t.Errorf("b's sa opened %d packets, want %d", got, want)
	}
	a.checkClean(t)
	b.checkClean(t)
}

// TestSharedDecrypt runs B's peer as a worker does, polling its inbox,
// while B's worker receives full batches: the peer decrypts parts of
// them, the packets still leave in the order they came, each SA counts
// each packet once, and a replayed batch is refused whoever decrypts
// its parts.
func TestSharedDecrypt(t *testing.T) {
	a, b, _ := newMemPair(t)
	p := withPeer(b)
	runPeers(t, p)

	frames := sharedFrames()
	wan, out := newCollector(), newCollector()
	rounds := 0
	// Which worker gets to a part first is the scheduler's choice; over
	// a few hundred batches the peer gets some.
	for ; rounds < 1000 && (rounds < 20 || p.helped.Load() == 0); rounds++ {
		pass(t, a, b, frames, wan, out)
		checkArrived(t, frames, out)
	}
	t.Logf("peer decrypted %d of %d packets in %d batches", p.helped.Load(), rounds*len(frames), rounds)
	if p.helped.Load() == 0 {
		t.Fatalf("the running peer decrypted nothing in %d batches", rounds)
	}
	if got, want := b.in.Stats().PacketsIn, uint64(rounds*len(frames)); got != want {
		t.Errorf("b's sa opened %d packets, want %d", got, want)
	}
	a.checkClean(t)
	b.checkClean(t)
	checkReplayRefused(t, b, wan)
}

// BenchmarkSharedDecrypt measures one inbound SA's 1400-byte packets
// through B's worker, round by round alone and with workers-1 peers
// sharing its batches (each peer polls its inbox on a goroutine of its
// own, as a worker with nothing else to do would). It reports the shared
// rate and the speed-up over the alone rounds of the same run.
func BenchmarkSharedDecrypt(b *testing.B) {
	for _, workers := range []int{2, 4, 8} {
		if workers > 2 && workers > runtime.NumCPU() {
			continue
		}
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) { benchShared(b, workers) })
	}
}

func benchShared(b *testing.B, workers int) {
	ga, gb, _ := newMemPair(b)
	var peers []*worker
	for i := range workers - 1 {
		peers = append(peers, newPeer(gb, i+1))
	}
	runPeers(b, peers...)
	frames := sharedFrames()
	wan := newCollector()
	var out counter
	var alone, shared time.Duration
	b.ResetTimer()
	for done := 0; done < b.N; done += 2 * len(frames) {
		gb.w.peers = nil
		alone += decryptRound(b, ga, gb, frames, wan, &out, out.add)
		gb.w.peers = peers
		shared += decryptRound(b, ga, gb, frames, wan, &out, out.add)
	}
	b.StopTimer()
	rounds := (b.N + 2*len(frames) - 1) / (2 * len(frames))
	if got := gb.in.Stats().PacketsIn; out.n != out.want || got != uint64(out.want) {
		b.Fatalf("%d packets came out and the sa opened %d, want %d", out.n, got, out.want)
	}
	ga.checkClean(b)
	gb.checkClean(b)
	b.ReportMetric(float64(rounds*len(frames))/shared.Seconds(), "pkts/s")
	b.ReportMetric(float64(alone)/float64(shared), "shared/alone-speedup")
	var helped uint64
	for _, p := range peers {
		helped += p.helped.Load()
	}
	b.ReportMetric(float64(helped)/float64(rounds*len(frames)), "peer-share")
}

// TestSharingSetting: which settings share with how many workers.
func TestSharingSetting(t *testing.T) {
	for _, c := range []struct {
		s       Sharing
		workers int
		want    bool
	}{
		{"", 1, false}, {"", 3, false}, {"", 4, true}, {SharingAuto, 16, true},
		{SharingOn, 1, false}, {SharingOn, 2, true},
		{SharingOff, 2, false}, {SharingOff, 16, false},
	} {
		if got := sharing(c.s, c.workers); got != c.want {
			t.Errorf("sharing(%q, %d) = %v, want %v", c.s, c.workers, got, c.want)
		}
	}
}
