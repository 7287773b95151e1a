package afxdp

import (
	"runtime"
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
// and sent on its WAN socket. One worker also reads the TUN port and
// encrypts what the host routed into it: that worker owns WAN sockets to
// send on, which a goroutine of the TUN's own would have to share.
type worker struct {
	dp       *Dataplane
	cpu      int
	wan, lan []*xsk.Socket
	// wanTx and lanTx are the sockets packets leave through; any socket
	// bound to a port sends on that port.
	wanTx, lanTx *xsk.Socket

	eng    *esp.Worker
	drops  [numReasons]atomic.Uint64
	txErrs atomic.Uint64
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
	for _, socks := range [2][]*xsk.Socket{w.wan, w.lan} {
		for _, s := range socks {
			if err := s.Flush(); err != nil {
				w.txErrs.Add(1)
			}
			s.Complete()
		}
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

// fromWAN decrypts a batch from the WAN socket s and forwards the inner
// packets to the LAN.
func (w *worker) fromWAN(s *xsk.Socket) int {
	n := s.Receive(w.rx[:])
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
	s.Release(w.rx[:n])
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
	k := w.wanTx.Alloc(w.tx[:n])
	j, nIcmp, nRel := 0, 0, 0
	for i := range n {
		d := w.rx[i]
		f := s.Frame(d)
		keep := false
		switch {
		case len(f) < ethLen || (etherType(f) != ethTypeIPv4 && etherType(f) != ethTypeIPv6):
			w.count(rMalformed)
		default:
			keep = w.encryptOne(s, spd, d, f, &j, k, &nIcmp)
		}
		if !keep {
			w.rel[nRel] = d
			nRel++
		}
	}
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
	w.send(w.wanTx, j, k)
	return n
}

// encryptOne handles one LAN frame f (descriptor d of socket s): it either
// encrypts it into w.tx[*j], turns it into an ICMP error queued in
// w.icmp (and reports true: the frame is then not released), or drops it.
func (w *worker) encryptOne(s *xsk.Socket, spd *spdTable, d xsk.Desc, f []byte, j *int, k int, nIcmp *int) bool {
	ip, ok := parseIP(f[ethLen:])
	if !ok || ip.v6 != (etherType(f) == ethTypeIPv6) {
		w.count(rMalformed)
		return false
	}
	// Fragmentation is out of scope: without DF a packet too big for the
	// tunnel is dropped as well, but only DF senders learn from an ICMP
	// error.
	if mtu := w.seal(spd, f[ethLen:ethLen+ip.totalLen], ip, true, j, k); mtu > 0 && ip.df {
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
	k := w.wanTx.Alloc(w.tx[:n])
	j := 0
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
		if mtu := w.seal(spd, pkt[:ip.totalLen], ip, false, &j, k); mtu > 0 && ip.df {
			w.hostTooBig(i, ip, mtu)
		}
	}
	w.send(w.wanTx, j, k)
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
// SA into the WAN frame w.tx[*j], or drops it, counted. forward says the
// packet is being routed (from the LAN), so its TTL is decremented; the
// host's own packets are not. When pkt is too big for the tunnel it
// returns the largest packet that fits, else 0.
func (w *worker) seal(spd *spdTable, pkt []byte, ip ipInfo, forward bool, j *int, k int) int {
	const encOff = ethLen + esp.MaxHeadroom
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
	if *j >= k {
		w.count(rTxFull)
		return 0
	}
	out := w.wanTx.Frame(w.tx[*j])
	if encOff+len(pkt)+esp.MaxTailroom > len(out) {
		w.count(rMTU)
		return 0
	}
	copy(out[encOff:], pkt)
	p := esp.Packet{Buf: out, Off: encOff, Len: len(pkt)}
	if w.eng.Encrypt(e.out.sa, &p) != esp.Accept {
		return 0 // counted by esp
	}
	putEth(out[p.Off-ethLen:], nh.DstMAC, nh.SrcMAC, e.out.remote.Is6())
	w.tx[*j].Addr += uint64(p.Off - ethLen)
	w.tx[*j].Len = uint32(p.Len + ethLen)
	*j++
	return 0
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
