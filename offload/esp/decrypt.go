package esp

import (
	"crypto/hmac"
	"encoding/binary"
	"net/netip"
)

// locate finds the ESP header in the outer packet pkt, raw or in UDP. It
// returns the offset of the ESP header, the length of the outer IP header and
// the packet's length without link-layer padding. Fragments, IKE packets
// (non-ESP marker) and NAT keepalives are not ESP.
func locate(pkt []byte) (espOff, ipLen, n int, ok bool) {
	if len(pkt) < 1 {
		return 0, 0, 0, false
	}
	var proto uint8
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < ipv4HeaderLen {
			return 0, 0, 0, false
		}
		ipLen = int(pkt[0]&0x0f) * 4
		n = int(binary.BigEndian.Uint16(pkt[2:4]))
		// The outer header is not covered by the ICV, and AF_XDP hands
		// over packets that no stack has checked: verify its checksum.
		if ipLen < ipv4HeaderLen || n < ipLen || n > len(pkt) ||
			binary.BigEndian.Uint16(pkt[6:8])&0x3fff != 0 ||
			checksumFold(ipv4HeaderSum(pkt[:ipLen])) != 0 {
			return 0, 0, 0, false
		}
		proto = pkt[9]
	case 6:
		if len(pkt) < ipv6HeaderLen {
			return 0, 0, 0, false
		}
		ipLen = ipv6HeaderLen
		n = ipv6HeaderLen + int(binary.BigEndian.Uint16(pkt[4:6]))
		if n > len(pkt) {
			return 0, 0, 0, false
		}
		proto = pkt[6]
	default:
		return 0, 0, 0, false
	}
	switch proto {
	case protoESP:
		espOff = ipLen
	case protoUDP:
		// The UDP checksum is not verified: the ICV covers what it would,
		// and RFC 3948 lets IPv4 senders leave it 0.
		espOff = ipLen + udpHeaderLen
		if n < espOff+espHeaderLen ||
			int(binary.BigEndian.Uint16(pkt[ipLen+4:ipLen+6])) != n-ipLen ||
			binary.BigEndian.Uint32(pkt[espOff:espOff+4]) == 0 {
			return 0, 0, 0, false
		}
	default:
		return 0, 0, 0, false
	}
	if n < espOff+espHeaderLen {
		return 0, 0, 0, false
	}
	return espOff, ipLen, n, true
}

// Decrypt checks and decrypts the outer ESP packet p for sa, in place, and
// moves p to the inner packet (tunnel mode) or the reconstructed packet
// (transport mode). A dropped packet's bytes are left unspecified.
func (w *Worker) Decrypt(sa *SA, p *Packet) Verdict {
	if p.Off < 0 || p.Len < 0 || p.Off+p.Len > len(p.Buf) {
		return sa.drop(DropMalformed)
	}
	espOff, ipLen, n, ok := locate(p.Bytes())
	if !ok {
		return sa.drop(DropMalformed)
	}
	if binary.BigEndian.Uint32(p.Buf[p.Off+espOff:]) != sa.spi {
		return sa.drop(DropUnknownSPI)
	}
	r := Result{SA: sa}
	if r.Verdict = sa.check(p, &r, espOff, ipLen, n); r.Verdict != Accept {
		return r.Verdict
	}
	w.openResult(p, &r)
	return sa.finish(p, &r)
}

// Result is the outcome of one packet of DecryptBatch: the verdict and the
// SA that judged it, nil when none did (malformed or unknown SPI). Between
// the stages of a batch (CheckBatch, OpenBatch, FinishBatch) it carries
// what one stage found for the next, and Verdict Accept means "so far".
type Result struct {
	SA      *SA
	Verdict Verdict

	// Found by check: the full sequence number, the outer source (for
	// an SA that learns NAT rebindings), the offsets of the ESP header
	// and behind the outer IP header, the packet's length and that of
	// its ciphertext.
	seq                     uint64
	src                     netip.AddrPort
	espOff, ipLen, n, ctLen int
	// opened is open's outcome: the ICV verified, the payload decrypted.
	opened bool
}

// DecryptBatch looks up each packet's SA in db and decrypts it as Decrypt
// does, writing the outcome to the same index of res, which must be at
// least as long as pkts. It is CheckBatch, OpenBatch and FinishBatch in
// turn.
func (w *Worker) DecryptBatch(db *SADB, pkts []Packet, res []Result) {
	w.CheckBatch(db, pkts, res)
	w.OpenBatch(pkts, res)
	w.FinishBatch(pkts, res)
}

// CheckBatch is DecryptBatch's first stage: it finds each packet's SA in
// db and checks what costs little (the packet's form, how it arrived, the
// replay window), counting what it drops.
func (w *Worker) CheckBatch(db *SADB, pkts []Packet, res []Result) {
	res = res[:len(pkts)]
	for i := range pkts {
		p, r := &pkts[i], &res[i]
		*r = Result{}
		if p.Off < 0 || p.Len < 0 || p.Off+p.Len > len(p.Buf) {
			r.Verdict = db.drop(DropMalformed)
			continue
		}
		espOff, ipLen, n, ok := locate(p.Bytes())
		if !ok {
			r.Verdict = db.drop(DropMalformed)
			continue
		}
		sa := db.Lookup(binary.BigEndian.Uint32(p.Buf[p.Off+espOff:]))
		if sa == nil {
			r.Verdict = db.drop(DropUnknownSPI)
			continue
		}
		r.SA = sa
		r.Verdict = sa.check(p, r, espOff, ipLen, n)
	}
}

// OpenBatch is the second stage, where the cost is: it verifies the ICV
// of each packet that CheckBatch passed and decrypts it in place. It
// touches nothing but the packets, their results and w, never an SA's
// counters or replay window, so several workers may open parts of one
// batch at once, each with its own Worker, while one runs the stages
// around it.
func (w *Worker) OpenBatch(pkts []Packet, res []Result) {
	for i := range pkts {
		w.openResult(&pkts[i], &res[i])
	}
}

// FinishBatch is the last stage: for each opened packet it moves the
// replay window, checks the padding, the inner packet and the selectors,
// counts the packet and learns a NAT rebinding, and for each that failed
// to open counts the drop.
func (w *Worker) FinishBatch(pkts []Packet, res []Result) {
	for i := range pkts {
		if r := &res[i]; r.Verdict == Accept && r.SA != nil {
			r.Verdict = r.SA.finish(&pkts[i], r)
		}
	}
}

// check is the first stage for one packet of sa: the ESP header at
// espOff, the outer IP header ipLen long, the packet n bytes.
func (sa *SA) check(p *Packet, r *Result, espOff, ipLen, n int) Verdict {
	if sa.dead.Load() {
		return sa.drop(DropExpired)
	}
	pkt := p.Buf[p.Off : p.Off+n]
	// Before the replay check and the ICV, which cost more.
	if v := sa.checkArrival(pkt, espOff != ipLen); v != Accept {
		return sa.drop(v)
	}
	if sa.learns {
		// Read now: transport mode rebuilds the IP header over the UDP one.
		r.src = outerSource(pkt, ipLen)
	}
	t := sa.t
	ctLen := n - espOff - espHeaderLen - t.ivLen - t.icvLen
	if ctLen < 2 || ctLen%t.align != 0 {
		return sa.drop(DropMalformed)
	}
	seq, ok := sa.replay.check(binary.BigEndian.Uint32(pkt[espOff+4:espOff+8]), sa.esn)
	if !ok {
		return sa.drop(DropReplay)
	}
	r.seq, r.espOff, r.ipLen, r.n, r.ctLen = seq, espOff, ipLen, n, ctLen
	return Accept
}

// openResult is the second stage for one packet.
func (w *Worker) openResult(p *Packet, r *Result) {
	if r.Verdict != Accept || r.SA == nil {
		return
	}
	esp := p.Buf[p.Off+r.espOff : p.Off+r.n]
	ctOff := espHeaderLen + r.SA.t.ivLen
	r.opened = w.open(r.SA, esp, esp[ctOff:ctOff+r.ctLen], r.seq)
}

// finish is the last stage for one packet that passed check.
func (sa *SA) finish(p *Packet, r *Result) Verdict {
	if !r.opened {
		return sa.drop(DropAuth)
	}
	// The window moves only for authentic packets (RFC 4303 3.4.3).
	if !sa.replay.update(r.seq) {
		return sa.drop(DropReplay)
	}
	// Only the newest packet may move the peer, so that one delayed from
	// before a rebinding does not move it back.
	newest := sa.learns && sa.replay.top.Load() == r.seq

	pkt := p.Buf[p.Off : p.Off+r.n]
	ctOff := espHeaderLen + sa.t.ivLen
	ctLen := r.ctLen
	pt := pkt[r.espOff+ctOff : r.espOff+ctOff+ctLen]
	padLen := int(pt[ctLen-2])
	nh := pt[ctLen-1]
	if padLen+2 > ctLen {
		return sa.drop(DropPad)
	}
	for i, b := range pt[ctLen-2-padLen : ctLen-2] {
		if b != byte(i+1) {
			return sa.drop(DropPad)
		}
	}
	data := pt[:ctLen-2-padLen]
	if nh == protoNoNext {
		return sa.drop(DropDummy)
	}
	dataOff := p.Off + r.espOff + ctOff // of data in p.Buf
	var out []byte
	if sa.mode == Tunnel {
		var v Verdict
		if out, v = tunnelInner(pkt, data, nh); v != Accept {
			return sa.drop(v)
		}
		p.Off, p.Len = dataOff, len(out)
	} else {
		out = transportPacket(p, pkt[:r.ipLen], dataOff, len(data), nh)
	}
	if !sa.selected(out) {
		return sa.drop(DropSelector)
	}
	sa.account(&sa.packetsIn, &sa.bytesIn, len(out))
	// A NAT rebinding is learnt from accepted packets only: the outer
	// header is not covered by the ICV, anyone can send a forged one.
	if newest && *sa.peer.Load() != r.src {
		sa.learnPeer(r.src)
	}
	return Accept
}

// open verifies the ICV of the ESP packet esp with the full sequence number
// seq and decrypts its ciphertext pt in place.
func (w *Worker) open(sa *SA, esp, pt []byte, seq uint64) bool {
	t := sa.t
	ctOff := espHeaderLen + t.ivLen
	if t.aead != nil {
		copy(w.nonce[:saltLen], t.salt[:])
		copy(w.nonce[saltLen:], esp[8:16])
		ct := esp[ctOff:]
		_, err := t.aead.Open(ct[:0], w.nonce[:], ct, w.aadFor(sa, esp, seq))
		return err == nil
	}
	s := sa.cbcPool.Get().(*cbcState)
	s.mac.Reset()
	s.mac.Write(esp[:len(esp)-t.icvLen])
	if sa.esn {
		binary.BigEndian.PutUint32(s.hi[:], uint32(seq>>32))
		s.mac.Write(s.hi[:])
	}
	ok := hmac.Equal(s.mac.Sum(s.sum[:0])[:t.icvLen], esp[len(esp)-t.icvLen:])
	if ok {
		s.dvSet.SetIV(esp[8:ctOff])
		s.dec.CryptBlocks(pt, pt)
	}
	sa.cbcPool.Put(s)
	return ok
}

// tunnelInner returns the inner packet of a tunnel-mode payload data with
// the ECN field the outer packet pkt gives it (RFC 6040).
func tunnelInner(pkt, data []byte, nh uint8) ([]byte, Verdict) {
	data, ok := innerPacket(data, nh)
	if !ok {
		return nil, DropMalformed
	}
	// A not-ECT outer header, the common case, never changes the inner.
	if outer := trafficClass(pkt) & 3; outer != ecnNotECT {
		inner := trafficClass(data) & 3
		ecn, ok := decapECN(inner, outer)
		if !ok {
			return nil, DropECN
		}
		if ecn != inner && nh == protoIPv4 {
			setECNv4(data, ecn)
		} else if ecn != inner {
			setTrafficClassV6(data, trafficClass(data)&^3|ecn)
		}
	}
	return data, Accept
}

// transportPacket puts the outer IP header hdr back in front of the n
// payload bytes at dataOff in p.Buf, with next header nh, and moves p to
// the result.
func transportPacket(p *Packet, hdr []byte, dataOff, n int, nh uint8) []byte {
	ipLen := len(hdr)
	start := dataOff - ipLen
	out := p.Buf[start : dataOff+n]
	copy(out, hdr)
	if ipLen == ipv6HeaderLen && out[0]>>4 == 6 {
		out[6] = nh
		binary.BigEndian.PutUint16(out[4:6], uint16(len(out)-ipv6HeaderLen))
	} else {
		out[9] = nh
		binary.BigEndian.PutUint16(out[2:4], uint16(len(out)))
		setIPv4Checksum(out[:ipLen])
	}
	p.Off, p.Len = start, len(out)
	return out
}

// checkArrival refuses a packet that came in another form than the SA was
// negotiated in: raw ESP for a UDP-encapsulated SA or ESP-in-UDP for a raw
// one, a destination other than our address, or raw ESP from another
// source than the peer's. The ICV covers none of these, so a valid packet
// copied into another form would otherwise be accepted. A UDP SA takes any
// source: NAT rebinding moves it (learnPeer).
func (sa *SA) checkArrival(pkt []byte, udp bool) Verdict {
	if udp != sa.encap {
		return DropEncap
	}
	if !sa.addrs {
		return Accept
	}
	// Fixed-size compares: a word or two each, no call.
	if sa.v6 {
		if pkt[0]>>4 != 6 || [16]byte(pkt[24:40]) != sa.local ||
			(!udp && [16]byte(pkt[8:24]) != sa.remote) {
			return DropAddress
		}
	} else if pkt[0]>>4 != 4 || [4]byte(pkt[16:20]) != [4]byte(sa.local[:4]) ||
		(!udp && [4]byte(pkt[12:16]) != [4]byte(sa.remote[:4])) {
		return DropAddress
	}
	return Accept
}

// outerSource returns the outer source address and UDP source port of an
// ESP-in-UDP packet pkt whose IP header is ipLen bytes.
func outerSource(pkt []byte, ipLen int) netip.AddrPort {
	port := binary.BigEndian.Uint16(pkt[ipLen : ipLen+2])
	if pkt[0]>>4 == 6 {
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(pkt[8:24])), port)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(pkt[12:16])), port)
}

// learnPeer makes src, where an accepted packet came from, the peer and
// reports the change once, however many workers see it at once. Only a
// change allocates; the caller skips the unchanged case.
func (sa *SA) learnPeer(src netip.AddrPort) {
	for {
		cur := sa.peer.Load()
		if *cur == src {
			return
		}
		next := src
		if sa.peer.CompareAndSwap(cur, &next) {
			if sa.notify != nil {
				sa.notify(Event{SPI: sa.spi, Kind: EventPeerMoved, Peer: src})
			}
			return
		}
	}
}

// innerPacket validates the IP packet that a tunnel carried and cuts off
// TFC padding behind it (RFC 4303 2.7).
func innerPacket(b []byte, nh uint8) ([]byte, bool) {
	switch {
	case nh == protoIPv4 && len(b) >= ipv4HeaderLen && b[0]>>4 == 4:
		hl := int(b[0]&0x0f) * 4
		n := int(binary.BigEndian.Uint16(b[2:4]))
		if hl < ipv4HeaderLen || n < hl || n > len(b) {
			return nil, false
		}
		return b[:n], true
	case nh == protoIPv6 && len(b) >= ipv6HeaderLen && b[0]>>4 == 6:
		n := ipv6HeaderLen + int(binary.BigEndian.Uint16(b[4:6]))
		if n > len(b) {
			return nil, false
		}
		return b[:n], true
	}
	return nil, false
}
