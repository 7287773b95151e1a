package afxdp

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpsec/xdpsec/offload/afxdp/icmp"
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
	// runSA is the outbound SA whose txMu the worker holds while it
	// seals a run of the SA's packets, nil outside a run; runPort is the
	// SA's home port, whose frames w.tx[:runK] the run got, and the first
	// runN of them hold sealed packets.
	runSA      *outSA
	runPort    *wanPort
	runN, runK int
	drops      [numReasons]atomic.Uint64
	txErrs     atomic.Uint64
	// packets counts what the worker received from both ports, one
	// atomic add per batch.
	packets atomic.Uint64

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
}

func (w *worker) count(r reason) { w.drops[r].Add(1) }

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
		busy := false
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
	w.ts = unix.NsecToTimespec(int64(idlePoll))
	if _, err := unix.Ppoll(w.pfd, &w.ts, nil); err != nil {
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
	w.eng.DecryptBatch(w.dp.sadb, w.pkts[:m], w.res[:m])

	k := w.lanTx.Alloc(w.tx[:m])
	j, nUp := 0, 0
	lanIf := w.dp.lanIf
	host := w.dp.tun != nil
	var locals *localAddrs
	if host {
		locals = w.dp.locals.Load()
	}
	for i := range m {
		if w.res[i].Verdict != esp.Accept {
			continue // counted by esp
		}
		p := w.pkts[i].Bytes()
		ip, ok := parseIP(p)
		if !ok {
			w.count(rMalformed)
			continue
		}
		p = p[:ip.totalLen]
		if host && locals.has(ip.dst) {
			// For the gateway itself: its stack receives the packet as
			// if it had arrived on the TUN port. Not forwarded, so the
			// TTL stays. The TUN port's virtio header goes in the
			// headroom in front of the packet, where ESP's headers were.
			off := w.pkts[i].Off
			if off < tun.VnetHdrLen {
				w.count(rTUN)
				continue
			}
			w.up[nUp] = w.pkts[i].Buf[off-tun.VnetHdrLen : off+ip.totalLen]
			nUp++
			continue
		}
		nh, ok := w.dp.fib.Lookup(ip.dst)
		if !ok || nh.IfIndex != lanIf {
			w.count(rNoRoute)
			continue
		}
		if ip.totalLen > nh.MTU {
			w.count(rMTU)
			continue
		}
		if !decTTL(p, ip.v6) {
			w.count(rTTL)
			continue
		}
		if j >= k {
			w.count(rTxFull)
			continue
		}
		out := w.lanTx.Frame(w.tx[j])
		if len(out) < ethLen+len(p) {
			w.count(rMTU)
			continue
		}
		putEth(out, nh.DstMAC, nh.SrcMAC, ip.v6)
		copy(out[ethLen:], p)
		w.tx[j].Len = uint32(ethLen + len(p))
		j++
	}
	if nUp > 0 {
		// Before the release: the packets are still in the RX frames.
		if wrote, _ := w.dp.tun.Write(w.up[:nUp], tun.VnetHdrLen); wrote < nUp {
			w.drops[rTUN].Add(uint64(nUp - wrote))
		}
		clear(w.up[:nUp])
	}
	port.mu.Lock()
	s.Release(w.rx[:n])
	port.mu.Unlock()
	w.send(w.lanTx, j, k)
	return n
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

// fromLAN encrypts a batch from the LAN socket s and sends it to the WAN.
// Packets too big for the tunnel are answered with an ICMP error in the
// frame they arrived in, sent back on s.
func (w *worker) fromLAN(s *xsk.Socket) int {
	n := s.Receive(w.rx[:])
	if n == 0 {
		return 0
	}
	w.packets.Add(uint64(n))
	spd := w.dp.spd.Load()
	nIcmp, nRel := 0, 0
	for i := range n {
		d := w.rx[i]
		f := s.Frame(d)
		keep := false
		switch {
		case len(f) < ethLen || (etherType(f) != ethTypeIPv4 && etherType(f) != ethTypeIPv6):
			w.count(rMalformed)
		default:
			keep = w.encryptOne(s, spd, d, f, n-i, &nIcmp)
		}
		if !keep {
			w.rel[nRel] = d
			nRel++
		}
	}
	w.endRun()
	if nRel > 0 {
		s.Release(w.rel[:nRel])
	}
	if nIcmp > 0 {
		sent, err := s.Transmit(w.icmp[:nIcmp])
		if err != nil {
			w.txErrs.Add(1)
		}
		if sent < nIcmp {
			s.Release(w.icmp[sent:nIcmp])
		}
	}
	return n
}

// encryptOne handles one LAN frame f (descriptor d of socket s), with left
// frames of the batch to go, itself included: it either seals it (see
// seal), turns it into an ICMP error queued in w.icmp (and reports true:
// the frame is then not released), or drops it.
func (w *worker) encryptOne(s *xsk.Socket, spd *spdTable, d xsk.Desc, f []byte, left int, nIcmp *int) bool {
	ip, ok := parseIP(f[ethLen:])
	if !ok || ip.v6 != (etherType(f) == ethTypeIPv6) {
		w.count(rMalformed)
		return false
	}
	// Fragmentation is out of scope: without DF a packet too big for the
	// tunnel is dropped as well, but only DF senders learn from an ICMP
	// error.
	if mtu := w.seal(spd, f[ethLen:ethLen+ip.totalLen], ip, true, left); mtu > 0 && ip.df {
		return w.tooBig(s, d, f, ip, mtu, nIcmp)
	}
	return false
}

// fromTUN encrypts a batch of the host's own packets, which its routes
// sent into the TUN port, and sends them to the WAN.
func (w *worker) fromTUN() int {
	n, err := w.tun.TryRead(w.tunBufs[:], w.tunSizes[:], 0)
	if err != nil {
		w.count(rTUN)
		return 0
	}
	if n == 0 {
		return 0
	}
	w.packets.Add(uint64(n))
	spd := w.dp.spd.Load()
	for i := range n {
		pkt := w.tunBufs[i][:w.tunSizes[i]]
		ip, ok := parseIP(pkt)
		if !ok {
			w.count(rMalformed)
			continue
		}
		if ip.dst.IsMulticast() && spd.lookup(ip.src, ip.dst, ip.proto) == nil {
			// The kernel's own MLD and IGMP reports on the port: no
			// policy wants them, and counting them as no_sa would
			// hide real misses.
			continue
		}
		// The TUN's MTU keeps the host's packets within the tunnel; one
		// too big for a smaller path MTU is dropped (counted as mtu) and
		// a DF sender learns the MTU, as a LAN host would.
		if mtu := w.seal(spd, pkt[:ip.totalLen], ip, false, n-i); mtu > 0 && ip.df {
			w.hostTooBig(i, ip, mtu)
		}
	}
	w.endRun()
	return n
}

// hostTooBig turns TUN packet i into an ICMP "fragmentation needed" or
// "packet too big" and writes it back into the TUN port, rate-limited.
// The error claims to come from the packet's destination: the host's
// stack takes the MTU from any source that is not its own (its own would
// be a martian on this port), and the destination is routed through the
// port, so reverse-path filtering accepts it.
func (w *worker) hostTooBig(i int, ip ipInfo, mtu int) {
	if !w.dp.icmpLim.Allow(ip.src, time.Now()) {
		return
	}
	buf := w.tunBufs[i]
	quote := copy(w.quote[:], buf[:ip.totalLen])
	build := icmp.FragNeeded
	if ip.v6 {
		build = icmp.PacketTooBig
	}
	msg, err := build(buf[tun.VnetHdrLen:tun.VnetHdrLen:cap(buf)], w.quote[:quote], ip.dst, mtu)
	if err != nil || len(msg) == 0 || &msg[0] != &buf[tun.VnetHdrLen] {
		// Suppressed (an error about an error, a fragment) or too big
		// for a TUN buffer smaller than the quote.
		return
	}
	w.upOne[0] = buf[:tun.VnetHdrLen+len(msg)]
	if wrote, _ := w.tun.Write(w.upOne[:], tun.VnetHdrLen); wrote < 1 {
		w.count(rTUN)
	}
	w.upOne[0] = nil
}

// seal is the outbound path shared by the LAN and TUN ports: it looks the
// IP packet pkt (parsed as ip) up in spd and encrypts it with its policy's
// SA into the next frame of the SA's run (see beginRun), or drops it,
// counted. left is how many packets of the batch are still to come, pkt
// included. forward says the packet is being routed (from the LAN), so
// its TTL is decremented; the host's own packets are not. When pkt is too
// big for the tunnel it returns the largest packet that fits, else 0.
func (w *worker) seal(spd *spdTable, pkt []byte, ip ipInfo, forward bool, left int) int {
	e := spd.lookup(ip.src, ip.dst, ip.proto)
	if e == nil {
		// xdp_lan steered it (or the host routed it into the TUN), so a
		// policy existed; it or its SA went away since, or it never
		// selected this source. Fail closed.
		w.count(rNoSA)
		return 0
	}
	if e.out.expired.Load() {
		w.count(rExpired)
		return 0
	}
	nh, ok := w.dp.fib.Lookup(e.out.remote)
	if !ok || nh.IfIndex != w.dp.wanIf {
		w.count(rNoRoute)
		return 0
	}
	if mtu := nh.MTU - e.out.overhead; ip.totalLen > mtu {
		w.count(rMTU)
		return mtu
	}
	if forward && !decTTL(pkt, ip.v6) {
		w.count(rTTL)
		return 0
	}
	w.push(e.out, pkt, left, nh.DstMAC, nh.SrcMAC)
	return 0
}

// push encrypts pkt with o into the next frame of o's run, which it
// starts (ending another SA's) if o has none, and addresses the frame
// from srcMAC to dstMAC; or drops pkt, counted. left is as for seal.
func (w *worker) push(o *outSA, pkt []byte, left int, dstMAC, srcMAC [6]byte) {
	const encOff = ethLen + esp.MaxHeadroom
	if w.runSA != o {
		w.endRun()
		w.beginRun(o, left)
	}
	if w.runN >= w.runK {
		w.count(rTxFull)
		return
	}
	d := &w.tx[w.runN]
	out := w.runPort.s.Frame(*d)
	if encOff+len(pkt)+esp.MaxTailroom > len(out) {
		w.count(rMTU)
		return
	}
	copy(out[encOff:], pkt)
	p := esp.Packet{Buf: out, Off: encOff, Len: len(pkt)}
	if w.eng.Encrypt(o.sa, &p) != esp.Accept {
		return // counted by esp
	}
	putEth(out[p.Off-ethLen:], dstMAC, srcMAC, o.remote.Is6())
	d.Addr += uint64(p.Off - ethLen)
	d.Len = uint32(p.Len + ethLen)
	w.runN++
}

// beginRun starts a run of o's packets: it takes o.txMu, so that the
// sequence numbers the run's Encrypts take are consecutive and leave
// before any later ones, and up to n free frames of o's home port.
//
// Why this cannot deadlock: the lock order is txMu, then a port's mu, and
// nothing takes a txMu while it holds a port's mu. A worker holds at most
// one txMu: push ends one run before it begins the next, and every path
// that seals ends its run with endRun before it returns to the loop, so
// no txMu is held while a worker polls or serves another socket. A port's
// mu is held only around socket calls that never wait (the kick is a
// non-blocking sendto); a txMu only around those and at most one batch's
// crypto. Every waiter thus waits for a holder that is running towards
// its release, never for one that waits in turn, and a wait lasts at most
// one batch's crypto (plus the holder's preemption).
func (w *worker) beginRun(o *outSA, n int) {
	o.txMu.Lock()
	ports := w.dp.wanPorts
	p := ports[o.spi%uint32(len(ports))]
	p.mu.Lock()
	k := p.s.Alloc(w.tx[:n])
	p.mu.Unlock()
	w.runSA, w.runPort, w.runN, w.runK = o, p, 0, k
}

// endRun puts the current run's sealed frames on its port's TX ring,
// gives back the frames it did not use and lets other workers number and
// send the SA's packets again. Frames of one SA thus enter one TX ring in
// sequence-number order, and the kernel sends a ring in order.
func (w *worker) endRun() {
	o, p := w.runSA, w.runPort
	if o == nil {
		return
	}
	n, k := w.runN, w.runK
	w.runSA, w.runPort, w.runN, w.runK = nil, nil, 0, 0
	p.mu.Lock()
	sent, err := p.s.Transmit(w.tx[:n])
	if sent < k {
		p.s.Release(w.tx[sent:k])
	}
	p.mu.Unlock()
	o.txMu.Unlock()
	if err != nil {
		w.txErrs.Add(1)
	}
	if sent < n {
		w.drops[rTxFull].Add(uint64(n - sent))
	}
}

// tooBig rewrites frame f into an ICMP "fragmentation needed" or "packet
// too big" for its sender and queues it for s, rate-limited. It reports
// whether the frame was queued (and so must not be released).
func (w *worker) tooBig(s *xsk.Socket, d xsk.Desc, f []byte, ip ipInfo, mtu int, nIcmp *int) bool {
	// The error comes from the gateway's address towards the sender.
	back, ok := w.dp.fib.Lookup(ip.src)
	if !ok || back.IfIndex != w.dp.lanIf || !back.Src.IsValid() || back.Src.Is6() != ip.v6 {
		return false
	}
	if !w.dp.icmpLim.Allow(ip.src, time.Now()) {
		return false
	}
	// The message is built in the frame the original arrived in, so the
	// part it quotes is copied out first.
	quote := copy(w.quote[:], f[ethLen:ethLen+ip.totalLen])
	ourMAC, hostMAC := [6]byte(f[0:6]), [6]byte(f[6:12])
	build := icmp.FragNeeded
	if ip.v6 {
		build = icmp.PacketTooBig
	}
	msg, err := build(f[ethLen:ethLen:cap(f)], w.quote[:quote], back.Src, mtu)
	if err != nil || len(msg) == 0 || &msg[0] != &f[ethLen] {
		// Suppressed (an error about an error, a fragment, a
		// non-unicast source) or, impossibly, too big for the frame.
		return false
	}
	putEth(f, hostMAC, ourMAC, ip.v6)
	w.icmp[*nIcmp] = xsk.Desc{Addr: d.Addr, Len: uint32(ethLen + len(msg))}
	*nIcmp++
	return true
}
