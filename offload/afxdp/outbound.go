package afxdp

import (
	"runtime"
	"time"

	"github.com/xdpsec/xdpsec/offload/afxdp/icmp"
	"github.com/xdpsec/xdpsec/offload/afxdp/ipcsum"
	"github.com/xdpsec/xdpsec/offload/afxdp/tun"
	"github.com/xdpsec/xdpsec/offload/afxdp/xsk"
	"github.com/xdpsec/xdpsec/offload/esp"
)

// The encrypting side of a worker: LAN and TUN packets sealed for their
// SA and sent on its home WAN queue in sequence order.

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
	pkt := f[ethLen : ethLen+ip.totalLen]
	// A LAN host with TX checksum offload (a veth's default: containers
	// on the gateway host) leaves its TCP and UDP checksums for the
	// device to finish; the kernel's own forwarding would finish them,
	// AF_XDP hands them over as they are, and the far host would drop
	// every segment. Done before sealing: nobody can after.
	if ipcsum.CompletePartial(pkt) {
		w.csumCompleted()
	}
	// Fragmentation is out of scope: without DF a packet too big for the
	// tunnel is dropped as well, but only DF senders learn from an ICMP
	// error.
	if mtu := w.seal(spd, pkt, ip, true, left); mtu > 0 && ip.df {
		return w.tooBig(s, d, f, ip, mtu, nIcmp)
	}
	return false
}

// csumCompleted counts a completed partial checksum and says once per
// data plane what it means, since the work is the operator's to avoid.
func (w *worker) csumCompleted() {
	w.csumDone.Add(1)
	if w.dp.csumNoted.CompareAndSwap(false, true) {
		w.dp.log.Info("LAN hosts send partial TCP/UDP checksums (TX checksum offload, as on a veth); " +
			"the workers complete them, counted as csum_completed. " +
			"`ethtool -K IFACE tx off` on the hosts' interfaces saves that pass over every packet")
	}
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
	e := spd.lookupMemo(&w.spdHit, ip.src, ip.dst, ip.proto)
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
	nh, ok := w.dp.fib.LookupMemo(&w.wanHop, e.out.remote)
	if !ok || w.holdQ.waiting(e.out.remote) {
		// Held as plaintext, before the TTL changes and before any
		// sequence number is taken: resume seals it anew, in order.
		kind := holdSealHost
		if forward {
			kind = holdSealFwd
		}
		w.hold(e.out.remote, pkt, kind)
		return 0
	}
	if nh.IfIndex != w.dp.wanIf {
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

// runEncOff is where a run's plaintext packet goes in its frame: room for
// the Ethernet header and the most ESP puts in front.
const runEncOff = ethLen + esp.MaxHeadroom

// runPacket is what endRun needs to know of a packet of the run besides
// its frame: its length and the addresses of its Ethernet header.
type runPacket struct {
	len            int
	dstMAC, srcMAC [6]byte
}

// push puts pkt into the next frame of o's run, which it starts (ending
// another SA's) if o has none, to be encrypted and addressed from srcMAC
// to dstMAC by endRun; or drops pkt, counted. left is as for seal.
func (w *worker) push(o *outSA, pkt []byte, left int, dstMAC, srcMAC [6]byte) {
	if w.runSA != o {
		w.endRun()
		w.beginRun(o, left)
	}
	if w.runN >= w.runK {
		w.count(rTxFull)
		return
	}
	out := w.runPort.s.Frame(w.tx[w.runN])
	if runEncOff+len(pkt)+esp.MaxTailroom > len(out) {
		w.count(rMTU)
		return
	}
	copy(out[runEncOff:], pkt)
	w.runPkt[w.runN] = runPacket{len: len(pkt), dstMAC: dstMAC, srcMAC: srcMAC}
	w.runN++
}

// beginRun starts a run of o's packets with up to n free frames of o's
// home port, taken under the port's lock: frames of one port are sent only
// on it.
func (w *worker) beginRun(o *outSA, n int) {
	ports := w.dp.wanPorts
	p := ports[o.spi%uint32(len(ports))]
	p.mu.Lock()
	k := p.s.Alloc(w.tx[:n])
	p.mu.Unlock()
	w.runSA, w.runPort, w.runN, w.runK = o, p, 0, k
}

// endRun seals the current run and sends it. Under o.txMu, briefly, it
// reserves the run's sequence numbers and takes its ticket; it encrypts
// without any lock, so that other workers can number and encrypt runs of
// the same SA meanwhile; and submit puts the run on the home port's TX
// ring after every run with an earlier ticket. Frames of one SA thus
// enter one TX ring in sequence-number order, and the kernel sends a
// ring in order. Frames the run did not fill, and those of packets the
// engine refused, go back to the port.
func (w *worker) endRun() {
	o, p := w.runSA, w.runPort
	if o == nil {
		return
	}
	n, k := w.runN, w.runK
	w.runSA, w.runPort, w.runN, w.runK = nil, nil, 0, 0
	var (
		first, t uint64
		ok       bool
	)
	if n > 0 {
		o.txMu.Lock()
		// A refused reservation (expired SA, sequence space exhausted)
		// takes no ticket, so there is nothing for successors to wait
		// for; esp counts its packets as dropped.
		if first, ok = o.sa.ReserveSeq(n); ok {
			t = o.ticket
			o.ticket++
		}
		o.txMu.Unlock()
	}
	m := 0 // the sealed frames, w.tx[:m], in sequence-number order
	if ok {
		if h := w.dp.sealHook; h != nil {
			h(o, true)
		}
		v6 := o.remote.Is6()
		for i := range n {
			d := w.tx[i]
			out := p.s.Frame(d)
			r := &w.runPkt[i]
			pk := esp.Packet{Buf: out, Off: runEncOff, Len: r.len}
			if w.eng.EncryptSeq(o.sa, &pk, first+uint64(i)) != esp.Accept {
				continue // counted by esp; its frame goes back below
			}
			putEth(out[pk.Off-ethLen:], r.dstMAC, r.srcMAC, v6)
			d.Addr += uint64(pk.Off - ethLen)
			d.Len = uint32(pk.Len + ethLen)
			w.tx[i], w.tx[m] = w.tx[m], d
			m++
		}
		if h := w.dp.sealHook; h != nil {
			h(o, false)
		}
	}
	if m < k {
		p.mu.Lock()
		p.s.Release(w.tx[m:k])
		p.mu.Unlock()
	}
	if ok {
		// Even with no frame left (every packet refused) the ticket is
		// submitted: successors wait for it.
		w.submit(o, p, t, w.tx[:m])
	}
}

// submit sends descs, the sealed run of o with ticket t, on o's home port
// p once every run with an earlier ticket is on p's TX ring: at once, with
// any parked successors it thereby unblocks, if t is next; else it parks
// the run in o.ord's slot t%orderSlots for the sender of its predecessor.
// Only a run at least orderSlots ahead of the next one finds no slot; its
// worker then waits, yielding its CPU, until the next ticket comes close.
//
// Why this cannot deadlock: a worker holds at most one unsent ticket, the
// run it is sealing (push ends one run before it begins the next, and
// endRun submits before it returns), and while it holds it, it holds no
// lock but for the short sections below and in endRun, which never wait
// for anything but each other in one order: txMu alone; ord.mu, then a
// port's mu; a port's mu alone. Nothing takes txMu or ord.mu while it
// holds a port's mu, and port sections call only non-blocking socket
// operations (the kick is a non-blocking sendto). Every taken ticket is
// submitted, with zero frames if need be, and the holder of the ticket
// ord.next never waits in submit: it is sending. So the holder of
// ord.next is always running towards sending it (encrypting at most one
// batch, or queued on a short lock section), after which it drains
// every parked run that follows, and a waiter's wait lasts at most the
// crypto of the runs of the orderSlots tickets before its own (plus the
// preemption of their workers). A waiting worker holds its frames, but
// of its own ticket only; no predecessor needs them. For the same reason
// nothing stays parked once the workers are quiet: a parked run has an
// unsent predecessor, whose worker sends it on its way out of endRun.
func (w *worker) submit(o *outSA, p *wanPort, t uint64, descs []xsk.Desc) {
	q := &o.ord
	for spin := 0; ; spin++ {
		q.mu.Lock()
		if t == q.next {
			w.transmit(p, descs)
			q.next++
			for {
				s := &q.slots[q.next%orderSlots]
				if !s.used || s.ticket != q.next {
					break
				}
				w.transmit(p, s.descs[:s.n])
				s.used = false
				q.next++
			}
			q.mu.Unlock()
			return
		}
		if t-q.next < orderSlots {
			// The slot is free: every parked ticket lies in
			// [next, next+orderSlots) and t is the only one of them
			// that maps to it.
			s := &q.slots[t%orderSlots]
			s.used, s.ticket, s.n = true, t, copy(s.descs[:], descs)
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
		// The predecessors are being encrypted: at most a few batches.
		if spin < 64 {
			runtime.Gosched()
		} else {
			time.Sleep(10 * time.Microsecond)
		}
	}
}

// transmit puts the sealed frames descs of an SA on its home port p's TX
// ring and gives back any the full ring did not take, counted as tx_full.
func (w *worker) transmit(p *wanPort, descs []xsk.Desc) {
	if len(descs) == 0 {
		return
	}
	p.mu.Lock()
	sent, err := p.s.Transmit(descs)
	if sent < len(descs) {
		p.s.Release(descs[sent:])
	}
	p.mu.Unlock()
	if err != nil {
		w.txErrs.Add(1)
	}
	if sent < len(descs) {
		w.drops[rTxFull].Add(uint64(len(descs) - sent))
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
