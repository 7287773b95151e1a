package afxdp

import (
	"bytes"
	"testing"

	"github.com/xdpsec/xdpsec/offload/esp"
	"github.com/xdpsec/xdpsec/perf/loadgen"
)

// pass sends frames from A's LAN through A's worker, A's WAN wire into
// B's WAN and B's worker, and returns what B sent to its LAN (in out,
// reset first). It fails tb when a stage does not pass on every frame.
func pass(tb testing.TB, a, b *memGateway, frames [][]byte, wan, out *collector) {
	tb.Helper()
	if n := a.lanWire.Deliver(frames); n != len(frames) {
		tb.Fatalf("a's lan took %d of %d frames", n, len(frames))
	}
	a.w.fromLAN(a.lan)
	wan.reset()
	if n := a.wanWire.Drain(wan.add); n != len(frames) {
		tb.Fatalf("a sent %d of %d frames to the wan", n, len(frames))
	}
	if n := b.wanWire.Deliver(wan.frames()); n != len(frames) {
		tb.Fatalf("b's wan took %d of %d frames", n, len(frames))
	}
	b.w.fromWAN(b.dp.wanPorts[0])
	out.reset()
	if n := b.lanWire.Drain(out.add); n != len(frames) {
		tb.Fatalf("b sent %d of %d frames to its lan", n, len(frames))
	}
}

// checkReplayRefused gives b the batch that wan collected last again, as
// an attacker would replay it: none of it may pass, and b's SA counts each
// as a replay (its only replay drops so far).
func checkReplayRefused(t *testing.T, b *memGateway, wan *collector) {
	t.Helper()
	n := len(wan.frames())
	if got := b.wanWire.Deliver(wan.frames()); got != n {
		t.Fatalf("b's wan took %d of %d replayed frames", got, n)
	}
	b.w.fromWAN(b.dp.wanPorts[0])
	if got := b.lanWire.Drain(nil); got != 0 {
		t.Errorf("%d replayed packets reached b's lan", got)
	}
	if got := b.in.Stats().Drops[esp.DropReplay]; got != uint64(n) {
		t.Errorf("%d replays counted, want %d", got, n)
	}
}

// TestMemPipeline runs IMIX batches from site A's LAN host to site B's
// through both gateways' workers on memory sockets and checks that B's
// host receives each packet as sent, but for the two hops' TTL and the
// Ethernet addresses; that every packet was counted by both SAs; that a
// replayed batch is refused by B's replay window; and that the path
// allocates nothing.
func TestMemPipeline(t *testing.T) {
	a, b, _ := newMemPair(t)
	prof := loadgen.IMIX(1400)
	var frames [][]byte
	for i := range 48 {
		frames = append(frames, udpFrame(memSites[0], memSites[1], prof.Frames[i%len(prof.Frames)], i))
	}
	wan, out := newCollector(), newCollector()
	const rounds = 3
	for range rounds {
		pass(t, a, b, frames, wan, out)
		for i, got := range out.frames() {
			want := bytes.Clone(frames[i])
			copy(want[0:6], memSites[1].hostMAC[:])
			copy(want[6:12], memSites[1].lanMAC[:])
			if !decTTL(want[ethLen:], false) || !decTTL(want[ethLen:], false) {
				t.Fatal("test frame's ttl too low")
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("frame %d (%d bytes) arrived as\n% x\nwant\n% x", i, len(frames[i]), got, want)
			}
		}
	}
	n := uint64(rounds * len(frames))
	if got := a.out.sa.Stats().PacketsOut; got != n {
		t.Errorf("a's sa sealed %d packets, want %d", got, n)
	}
	if got := b.in.Stats().PacketsIn; got != n {
		t.Errorf("b's sa opened %d packets, want %d", got, n)
	}
	a.checkClean(t)
	b.checkClean(t)

	checkReplayRefused(t, b, wan)

	allocs := testing.AllocsPerRun(20, func() { pass(t, a, b, frames, wan, out) })
	if allocs != 0 {
		t.Errorf("%v allocations per batch of %d packets through both gateways", allocs, len(frames))
	}
}
