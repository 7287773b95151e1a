package afxdp

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpsec/xdpsec/offload/afxdp/fib"
	"github.com/xdpsec/xdpsec/offload/afxdp/tun"
	"github.com/xdpsec/xdpsec/offload/afxdp/xsk"
	"github.com/xdpsec/xdpsec/offload/esp"
)

// batchSize is how many packets a worker takes from a ring at once.
const batchSize = 64

// wanPort is a WAN socket with the lock that lets workers other than its
// owner send on it. All of an outbound SA's packets leave through one WAN
// queue, its home port (chosen by SPI), whichever worker encrypted them:
// the peer's RX queue is the queue they were sent on, and the peer
// decrypts each queue on its own worker, so packets of one SA sent on
// two queues arrive as two streams that drift apart by whatever one
// queue's worker lags, far beyond a replay window under load. One queue
// per SA is also what a NIC's RSS does with ESP (it hashes the outer
// addresses or the SPI). mu guards every use of s but Frame, FD and
// Stats, which are safe anywhere: the RX and fill side (its owner), and
// the TX ring, completion ring and free frames (anyone sending).
type wanPort struct {
	mu sync.Mutex
	s  *xsk.Socket
}

// idlePoll bounds a worker's sleep so that frames a failed TX kick left on
// a ring go out without waiting for the next packet.
const idlePoll = 100 * time.Millisecond

// reason is a drop reason the workers count themselves; the esp engine
// counts the others per SA.
type reason int

const (
	rMalformed reason = iota
	rNoRoute
	rMTU
	rTTL
	rNoSA
	rExpired
	rTxFull
	rTUN
	numReasons
)

var reasonNames = [numReasons]string{
	rMalformed: "malformed",
	rNoRoute:   "no_route",
	rMTU:       "mtu",
	rTTL:       "ttl",
	rNoSA:      "no_sa",
	rExpired:   "expired",
	rTxFull:    "tx_full",
	rTUN:       "tun_error",
}

// worker owns the sockets of some queues of both ports and moves their
// packets: WAN RX is decrypted and sent on its LAN socket (or, for the
// gateway's own addresses, written to the TUN port), LAN RX is encrypted
// and sent on the WAN socket of its SA's home queue (see wanPort). One
// worker also reads the TUN port and encrypts what the host routed into
// it the same way, so the host's packets and the LAN's share each SA's
// sequence order.
type worker struct {
	dp  *Dataplane
	cpu int
	wan []*wanPort
	lan []*xsk.Socket
	// lanTx is the socket packets leave the LAN through; any socket
	// bound to a port sends on that port. WAN packets leave through
	// their SA's home port (see wanPort).
	lanTx *xsk.Socket

	eng *esp.Worker
	// runSA is the outbound SA whose run of packets the worker collects,
	// nil outside a run; runPort is the SA's home port, whose frames
	// w.tx[:runK] the run got, and the first runN of them hold the run's
	// plaintext packets (at runEncOff), described by runPkt, until
	// endRun numbers, encrypts and sends them.
	runSA      *outSA
	runPort    *wanPort
	runN, runK int
	runPkt     [batchSize]runPacket
	drops      [numReasons]atomic.Uint64
	txErrs     atomic.Uint64
	// csumDone counts LAN packets whose partial TCP or UDP checksum the
	// worker completed (see encryptOne): an event, not a drop.
	csumDone atomic.Uint64
	// packets counts what the worker received from both ports, one
	// atomic add per batch.
	packets atomic.Uint64
	// wanHop and lanHop remember the last next hop looked up for each
	// direction: a run of packets to one peer or host skips the FIB's map.
	wanHop, lanHop fib.Memo
	// spdHit remembers the last outbound policy match the same way.
	spdHit spdMemo

	// Shared decryption (spread.go): peers are the other workers, which
	// get parts of big WAN batches (shares, offered round robin from
	// nextPeer); inbox holds the parts the peers offer this worker,
	// offered counts them, asleep is set while it waits in ppoll, and
	// helped counts the packets it decrypted for the others.
	peers    []*worker
	nextPeer int
	shares   [maxShares]share
	inbox    chan *share
	offered  atomic.Int32
	asleep   atomic.Bool
	helped   atomic.Uint64

	// Scratch space, allocated once.
	rx      [batchSize]xsk.Desc
	tx      [batchSize]xsk.Desc
	icmp    [batchSize]xsk.Desc
	rel     [batchSize]xsk.Desc
	pkts    [batchSize]esp.Packet
	res     [batchSize]esp.Result
	quote   [ipv6MinMTU]byte
	pfd     []unix.PollFd
	ts      unix.Timespec
	wakeFD  int
	wakeBuf [8]byte

	// tun is set on the worker that reads the TUN port; tunBufs and
	// tunSizes receive its batches (buffers of the TUN's MTU).
	tun      *tun.Device
	tunBufs  [batchSize][]byte
	tunSizes [batchSize]int
	// up collects a WAN batch's decrypted packets for the host, written
	// to the TUN port together.
	up [batchSize][]byte
	// upOne carries one ICMP error for the host to the TUN port.
	upOne [1][]byte
	// gro, with LANOutputTUN, takes the decrypted packets for the LAN to
	// the TUN port, TCP segments merged (nil: the LAN socket).
	gro *tun.Coalescer

	// holdQ holds packets whose next hop the FIB is still resolving (see
	// neigh.go); flushing is set while flushHeld sends them, resumed
	// receives one destination's, one is the frame of a held packet for
	// the LAN.
	holdQ    *holdQueue
	flushing bool
	resumed  [holdPerDst]heldPkt
	one      [1]xsk.Desc
}

func (w *worker) count(r reason) { w.drops[r].Add(1) }

// startWorkers spreads the sockets over the workers: queue q of each port
// goes to worker q mod n, so every worker has at least one LAN socket to
// send on; all of them may send on every WAN socket (see wanPort).
func (d *Dataplane) startWorkers(want int, sharingSetting Sharing, wanSocks, lanSocks []*xsk.Socket) error {
	if want == 0 {
		want = runtime.NumCPU()
	}
	n := min(want, len(wanSocks), len(lanSocks))
	cpus := allowedCPUs()
	for _, s := range wanSocks {
		d.wanPorts = append(d.wanPorts, &wanPort{s: s})
	}
	for i := range n {
		tunMTU := 0
		if d.tun != nil {
			tunMTU = d.tun.MTU()
		}
		w := newWorker(d, cpus[i%len(cpus)], holdSlotSize(wanSocks[0], tunMTU))
		for q := i; q < len(wanSocks); q += n {
			w.wan = append(w.wan, d.wanPorts[q])
		}
		for q := i; q < len(lanSocks); q += n {
			w.lan = append(w.lan, lanSocks[q])
		}
		w.lanTx = w.lan[0]
		gro, err := d.newCoalescer()
		if err != nil {
			return fmt.Errorf("afxdp: %w", err)
		}
		w.gro = gro
		fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
		if err != nil {
			return fmt.Errorf("afxdp: worker eventfd: %w", err)
		}
		w.wakeFD = fd
		d.workers = append(d.workers, w)
		for _, p := range w.wan {
			w.pfd = append(w.pfd, unix.PollFd{Fd: int32(p.s.FD()), Events: unix.POLLIN})
		}
		for _, s := range w.lan {
			w.pfd = append(w.pfd, unix.PollFd{Fd: int32(s.FD()), Events: unix.POLLIN})
		}
		if i == 0 && d.tun != nil {
			w.tun = d.tun
			for b := range w.tunBufs {
				w.tunBufs[b] = make([]byte, d.tun.MTU())
			}
			w.pfd = append(w.pfd, unix.PollFd{Fd: int32(d.tun.FD()), Events: unix.POLLIN})
		}
		// The wake eventfd comes last: idle looks for it there.
		w.pfd = append(w.pfd, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
	}
	if sharing(sharingSetting, len(d.workers)) {
		for _, w := range d.workers {
			w.inbox = make(chan *share, inboxLen)
			for _, p := range d.workers {
				if p != w {
					w.peers = append(w.peers, p)
				}
			}
		}
	}
	for _, w := range d.workers {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			w.run(&d.stop)
		}()
	}
	return nil
}

// newWorker returns a worker of d for cpu, without sockets yet, whose
// neighbour queue holds packets of up to holdSlot bytes.
func newWorker(d *Dataplane, cpu, holdSlot int) *worker {
	return &worker{dp: d, cpu: cpu, eng: esp.NewWorker(), wakeFD: -1, holdQ: newHoldQueue(holdSlot)}
}

// run is the worker's loop. It ends when stop is set (and wakeFD written).
func (w *worker) run(stop *atomic.Bool) {
	// A locked thread pinned to its CPU keeps a queue's packets on one
	// core, with the rings' cache lines; the thread ends with the
	// goroutine, so the affinity does not leak into the runtime's pool.
	runtime.LockOSThread()
	var set unix.CPUSet
	set.Set(w.cpu)
	_ = unix.SchedSetaffinity(0, &set) // best effort: a cpuset may forbid it

	for !stop.Load() {
		if w.holdQ != nil && w.holdQ.held > 0 {
			w.flushHeld()
		}
		busy := w.help()
		for _, s := range w.wan {
			if w.fromWAN(s) > 0 {
				busy = true
			}
		}
		for _, s := range w.lan {
			if w.fromLAN(s) > 0 {
				busy = true
			}
		}
		if w.tun != nil && w.fromTUN() > 0 {
			busy = true
		}
		if !busy {
			w.idle()
		}
	}
}

// idle pushes out frames left on the TX rings and sleeps until a socket
// has packets, the worker is woken, or idlePoll passes.
func (w *worker) idle() {
	for _, p := range w.wan {
		p.mu.Lock()
		err := p.s.Flush()
		p.s.Complete()
		p.mu.Unlock()
		if err != nil {
			w.txErrs.Add(1)
		}
	}
	for _, s := range w.lan {
		if err := s.Flush(); err != nil {
			w.txErrs.Add(1)
		}
		s.Complete()
	}
	for i := range w.pfd {
		w.pfd[i].Revents = 0
	}
	poll := idlePoll
	if w.holdQ != nil && w.holdQ.held > 0 {
		poll = holdPoll
	}
	w.ts = unix.NsecToTimespec(int64(poll))
	// Parts offered meanwhile are work (see offer for the order).
	w.asleep.Store(true)
	if w.offered.Load() > 0 {
		w.asleep.Store(false)
		return
	}
	_, err := unix.Ppoll(w.pfd, &w.ts, nil)
	w.asleep.Store(false)
	if err != nil {
		return
	}
	if w.pfd[len(w.pfd)-1].Revents&unix.POLLIN != 0 {
		_, _ = unix.Read(w.wakeFD, w.wakeBuf[:])
	}
}

// fromWAN decrypts a batch from the WAN port and forwards the inner
// packets to the LAN.
func (w *worker) fromWAN(port *wanPort) int {
	s := port.s
	port.mu.Lock()
	n := s.Receive(w.rx[:])
	port.mu.Unlock()
	if n == 0 {
		return 0
	}
	w.packets.Add(uint64(n))
	m := 0
	for i := range n {
		f := s.Frame(w.rx[i])
		if len(f) < ethLen || (etherType(f) != ethTypeIPv4 && etherType(f) != ethTypeIPv6) {
			w.count(rMalformed)
			continue
		}
		w.pkts[m] = esp.Packet{Buf: f, Off: ethLen, Len: len(f) - ethLen}
		m++
	}
	w.decryptBatch(w.pkts[:m], w.res[:m])

	var out wanBatch
	out.k = w.lanTx.Alloc(w.tx[:m])
	if w.dp.tun != nil {
		out.locals = w.dp.locals.Load()
	}
	for i := range m {
		if w.res[i].Verdict == esp.Accept { // the others are counted by esp
			w.deliver(&w.pkts[i], &out)
		}
	}
	// Before the release: the packets are still in the RX frames.
	w.flushTUN(&out)
	port.mu.Lock()
	s.Release(w.rx[:n])
	port.mu.Unlock()
	w.send(w.lanTx, out.j, out.k)
	return n
}

// wanBatch is where a WAN batch's decrypted packets go: LAN frames
// w.tx[:k] of which the first j are filled, w.up[:nUp] for the gateway
// itself (locals its addresses, nil without a TUN port), and nGro packets
// queued in w.gro.
type wanBatch struct {
	j, k, nUp, nGro int
	locals          *localAddrs
}

// deliver sends the decrypted packet pk on its way: to the gateway's
// stack, to the TUN port for forwarding (LANOutputTUN), or into a LAN
// frame for its next hop.
func (w *worker) deliver(pk *esp.Packet, out *wanBatch) {
	p := pk.Bytes()
	ip, ok := parseIP(p)
	if !ok {
		w.count(rMalformed)
		return
	}
	p = p[:ip.totalLen]
	if out.locals != nil && out.locals.has(ip.dst) {
		// For the gateway itself: its stack receives the packet as if
		// it had arrived on the TUN port. Not forwarded, so the TTL
		// stays. The TUN port's virtio header goes in the headroom in
		// front of the packet, where ESP's headers were.
		if pk.Off < tun.VnetHdrLen {
			w.count(rTUN)
			return
		}
		w.up[out.nUp] = pk.Buf[pk.Off-tun.VnetHdrLen : pk.Off+ip.totalLen]
		out.nUp++
		return
	}
	if w.gro != nil && (!ip.v6 || w.dp.tunV6) && w.gro.AddTCP(p) {
		// The stack forwards it: next hop, TTL and MTU are its.
		out.nGro++
		return
	}
	nh, ok := w.dp.fib.LookupMemo(&w.lanHop, ip.dst)
	if !ok || w.holdQ.waiting(ip.dst) {
		w.hold(ip.dst, p, holdLAN)
		return
	}
	if out.j >= out.k {
		w.count(rTxFull)
		return
	}
	if n := w.toLAN(w.lanTx.Frame(w.tx[out.j]), p, ip, nh); n > 0 {
		w.tx[out.j].Len = uint32(n)
		out.j++
	}
}

// flushTUN writes a WAN batch's packets for the TUN port: the gateway's
// own and, with LANOutputTUN, the merged ones for the LAN.
func (w *worker) flushTUN(out *wanBatch) {
	if out.nUp > 0 {
		if wrote, _ := w.dp.tun.Write(w.up[:out.nUp], tun.VnetHdrLen); wrote < out.nUp {
			w.drops[rTUN].Add(uint64(out.nUp - wrote))
		}
		clear(w.up[:out.nUp])
	}
	if out.nGro > 0 {
		if wrote, _ := w.gro.Flush(); wrote < out.nGro {
			w.drops[rTUN].Add(uint64(out.nGro - wrote))
		}
	}
}

// toLAN writes the decrypted IP packet p (parsed as ip) into the LAN
// frame out, addressed to next hop nh, and returns the frame's length; or
// drops it, counted, and returns 0. It decrements the TTL in p.
func (w *worker) toLAN(out, p []byte, ip ipInfo, nh fib.NextHop) int {
	if nh.IfIndex != w.dp.lanIf {
		w.count(rNoRoute)
		return 0
	}
	if ip.totalLen > nh.MTU {
		w.count(rMTU)
		return 0
	}
	if !decTTL(p, ip.v6) {
		w.count(rTTL)
		return 0
	}
	if len(out) < ethLen+len(p) {
		w.count(rMTU)
		return 0
	}
	putEth(out, nh.DstMAC, nh.SrcMAC, ip.v6)
	copy(out[ethLen:], p)
	return ethLen + len(p)
}

// send transmits w.tx[:j] on s and gives back what it did not take, along
// with the unused frames w.tx[j:k] of the batch's Alloc.
func (w *worker) send(s *xsk.Socket, j, k int) {
	sent, err := s.Transmit(w.tx[:j])
	if err != nil {
		w.txErrs.Add(1)
	}
	if sent < j {
		w.drops[rTxFull].Add(uint64(j - sent))
	}
	if sent < k {
		s.Release(w.tx[sent:k])
	}
}

func etherType(f []byte) uint16 { return uint16(f[12])<<8 | uint16(f[13]) }
