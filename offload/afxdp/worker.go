package afxdp

import (
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpsec/xdpsec/offload/afxdp/icmp"
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
}

// worker owns the sockets of some queues of both ports and moves their
// packets: WAN RX is decrypted and sent on its LAN socket, LAN RX is
// encrypted and sent on its WAN socket.
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
	j := 0
	lanIf := w.dp.lanIf
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
	wanIf := w.dp.wanIf
	const encOff = ethLen + esp.MaxHeadroom
	for i := range n {
		d := w.rx[i]
		f := s.Frame(d)
		keep := false
		switch {
		case len(f) < ethLen || (etherType(f) != ethTypeIPv4 && etherType(f) != ethTypeIPv6):
			w.count(rMalformed)
		default:
			keep = w.encryptOne(s, spd, d, f, &j, k, &nIcmp, encOff, wanIf)
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
func (w *worker) encryptOne(s *xsk.Socket, spd *spdTable, d xsk.Desc, f []byte, j *int, k int, nIcmp *int, encOff, wanIf int) bool {
	ip, ok := parseIP(f[ethLen:])
	if !ok || ip.v6 != (etherType(f) == ethTypeIPv6) {
		w.count(rMalformed)
		return false
	}
	pkt := f[ethLen : ethLen+ip.totalLen]
	e := spd.lookup(ip.src, ip.dst, ip.proto)
	if e == nil {
		// xdp_lan steered it, so a policy existed; it or its SA went
		// away since. Fail closed.
		w.count(rNoSA)
		return false
	}
	if e.out.expired.Load() {
		w.count(rExpired)
		return false
	}
	nh, ok := w.dp.fib.Lookup(e.out.remote)
	if !ok || nh.IfIndex != wanIf {
		w.count(rNoRoute)
		return false
	}
	if mtu := nh.MTU - e.out.overhead; ip.totalLen > mtu {
		w.count(rMTU)
		// Fragmentation is out of scope: without DF the packet is
		// dropped as well, but only DF senders learn from an ICMP error.
		if ip.df {
			return w.tooBig(s, d, f, ip, mtu, nIcmp)
		}
		return false
	}
	if !decTTL(pkt, ip.v6) {
		w.count(rTTL)
		return false
	}
	if *j >= k {
		w.count(rTxFull)
		return false
	}
	out := w.wanTx.Frame(w.tx[*j])
	if encOff+len(pkt)+esp.MaxTailroom > len(out) {
		w.count(rMTU)
		return false
	}
	copy(out[encOff:], pkt)
	p := esp.Packet{Buf: out, Off: encOff, Len: len(pkt)}
	if w.eng.Encrypt(e.out.sa, &p) != esp.Accept {
		return false // counted by esp
	}
	putEth(out[p.Off-ethLen:], nh.DstMAC, nh.SrcMAC, e.out.remote.Is6())
	w.tx[*j].Addr += uint64(p.Off - ethLen)
	w.tx[*j].Len = uint32(p.Len + ethLen)
	*j++
	return false
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
