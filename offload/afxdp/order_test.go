package afxdp

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpsec/xdpsec/internal/netlab"
	"github.com/xdpsec/xdpsec/offload/afxdp/xsk"
	"github.com/xdpsec/xdpsec/offload/esp"
)

// htons converts a 16-bit value to network byte order for sockaddrs.
func htons(v uint16) uint16 { return v<<8 | v>>8 }

// TestOrderedSend has several goroutines seal batches of two outbound SAs,
// with the SAs' runs interleaved inside the batches and the goroutines
// yielding at random points, over a two-queue veth, and reads what leaves
// at the peer: every packet each goroutine sealed must arrive, and each
// SA's sequence numbers must arrive as 1, 2, 3, ..., within a bounded
// time. Runs of one SA are encrypted by several goroutines at once (a
// hook delays some of them at random and counts how many overlap). It
// also checks that sealing allocates nothing.
func TestOrderedSend(t *testing.T) {
	netlab.RequireRoot(t)
	ns := netlab.NewTestNS(t, "", "order")
	if err := netlab.AddVeth(netlab.Veth{A: ns, B: ns, AName: "ordtx", BName: "ordrx"}); err != nil {
		t.Fatal(err)
	}
	for _, ifname := range []string{"ordtx", "ordrx"} {
		if err := setQueues(ns, ifname, 2); err != nil {
			t.Fatal(err)
		}
	}

	var ports []*wanPort
	pfd := -1
	err := ns.Do(func() error {
		tx, err := net.InterfaceByName("ordtx")
		if err != nil {
			return err
		}
		rx, err := net.InterfaceByName("ordrx")
		if err != nil {
			return err
		}
		for q := range 2 {
			s, err := xsk.Open(tx.Index, q, xsk.Config{Mode: xsk.ModeCopy})
			if err != nil {
				return err
			}
			t.Cleanup(func() { s.Close() })
			ports = append(ports, &wanPort{s: s})
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		pfd = fd
		t.Cleanup(func() { unix.Close(fd) })
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20); err != nil {
			return err
		}
		tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: rx.Index})
	})
	if err != nil {
		t.Fatal(err)
	}

	// The SPIs have their homes on queues 0 and 1.
	dp := &Dataplane{wanPorts: ports}
	var sas []*outSA
	for _, spi := range []uint32{0x1000, 0x1001} {
		key := make([]byte, 32+aeadSaltLen)
		key[0] = byte(spi)
		sa, err := esp.NewSA(esp.Config{
			SPI: spi, Cipher: esp.AESGCM16, EncKey: key, Mode: esp.Tunnel,
			Local: netip.MustParseAddr("192.0.2.1"), Remote: netip.MustParseAddr("192.0.2.2"),
		})
		if err != nil {
			t.Fatal(err)
		}
		sas = append(sas, &outSA{sa: sa, spi: spi, remote: netip.MustParseAddr("192.0.2.2")})
	}
	// The hook delays some runs' encryption at random, so that runs
	// finish out of ticket order and park, and records how many runs of
	// each SA are being encrypted at once: more than one shows that one
	// SA's crypto runs on several goroutines in parallel.
	var sealing, maxSealing [2]atomic.Int32
	dp.sealHook = func(o *outSA, start bool) {
		i := int(o.spi - 0x1000)
		if !start {
			sealing[i].Add(-1)
			return
		}
		c := sealing[i].Add(1)
		for m := maxSealing[i].Load(); c > m && !maxSealing[i].CompareAndSwap(m, c); m = maxSealing[i].Load() {
		}
		if rand.IntN(4) == 0 {
			time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
		}
	}
	pkt := ipv4Packet(64, 100, false)
	dst, src := [6]byte{2, 0, 0, 0, 0, 2}, [6]byte{2, 0, 0, 0, 0, 1}

	// The reader counts what arrives per SA and checks the order.
	const goroutines, batches = 4, 60
	type seen struct {
		n       int
		next    uint32
		badSeq  uint32
		badWant uint32
	}
	got := map[uint32]*seen{0x1000: {next: 1}, 0x1001: {next: 1}}
	stopRead := make(chan struct{})
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 2048)
		for {
			select {
			case <-stopRead:
				return
			default:
			}
			n, from, err := unix.Recvfrom(pfd, buf, 0)
			if err != nil {
				continue // the timeout: look at stopRead again
			}
			f := buf[:n]
			if n < ethLen+ipv4MinLen+8 || etherType(f) != ethTypeIPv4 || f[ethLen+9] != 50 {
				continue
			}
			ll, ok := from.(*unix.SockaddrLinklayer)
			if !ok || ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			esph := f[ethLen+ipv4MinLen:]
			s := got[binary.BigEndian.Uint32(esph[0:4])]
			if s == nil {
				continue
			}
			seq := binary.BigEndian.Uint32(esph[4:8])
			if seq != s.next && s.badSeq == 0 {
				s.badSeq, s.badWant = seq, s.next
			}
			s.next = seq + 1
			s.n++
		}
	}()

	// Each goroutine counts what it sealed per SA: a push that left a
	// frame in the run.
	sealed := make([][2]int, goroutines)
	workers := make([]*worker, goroutines)
	var wg sync.WaitGroup
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	for g := range goroutines {
		w := &worker{dp: dp, eng: esp.NewWorker()}
		workers[g] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(g)))
			for range batches {
				n := 1 + rng.IntN(batchSize)
				which := rng.IntN(2)
				for i := range n {
					if rng.IntN(16) == 0 {
						which ^= 1 // a new run of the other SA
					}
					o := sas[which]
					before, same := w.runN, w.runSA == o
					w.push(o, pkt, n-i, dst, src)
					if w.runSA == o && ((same && w.runN == before+1) || (!same && w.runN == 1)) {
						sealed[g][which]++
					}
					if rng.IntN(8) == 0 {
						runtime.Gosched()
					}
				}
				w.endRun()
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("sealing goroutines did not finish in 60 s: deadlock")
	}

	want := [2]int{}
	for g, w := range workers {
		want[0] += sealed[g][0]
		want[1] += sealed[g][1]
		if n := w.drops[rTxFull].Load(); n != 0 {
			t.Errorf("goroutine %d: %d tx_full drops", g, n)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && ports[0].s.Frames().TX+ports[1].s.Frames().TX > 0 {
		for _, p := range ports {
			p.mu.Lock()
			_ = p.s.Flush()
			p.s.Complete()
			p.mu.Unlock()
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // the reader's last frames
	close(stopRead)
	<-readDone
	for i, spi := range []uint32{0x1000, 0x1001} {
		s := got[spi]
		t.Logf("SA %#x: sealed %d, received %d", spi, want[i], s.n)
		if want[i] == 0 {
			t.Errorf("SA %#x: nothing sealed", spi)
		}
		if s.badSeq != 0 {
			t.Errorf("SA %#x: sequence number %d arrived where %d was next", spi, s.badSeq, s.badWant)
		}
		if s.n != want[i] {
			t.Errorf("SA %#x: received %d packets, sealed %d", spi, s.n, want[i])
		}
	}

	for i, spi := range []uint32{0x1000, 0x1001} {
		t.Logf("SA %#x: at most %d runs encrypted at once", spi, maxSealing[i].Load())
		if maxSealing[i].Load() < 2 {
			t.Errorf("SA %#x: runs were never encrypted in parallel", spi)
		}
		if n := sealing[i].Load(); n != 0 {
			t.Errorf("SA %#x: %d encryptions never ended", spi, n)
		}
	}

	dp.sealHook = nil
	w := workers[0]
	allocs := testing.AllocsPerRun(20, func() {
		for i := range batchSize {
			w.push(sas[i/(batchSize/2)], pkt, batchSize-i, dst, src)
		}
		w.endRun()
	})
	if allocs != 0 {
		t.Errorf("sealing a batch allocates %.1f times", allocs)
	}
}
