package esp

import (
	"encoding/binary"
)

// Packet is an IP packet at Buf[Off:Off+Len]; the bytes of Buf around it are
// headroom and tailroom that Encrypt and Decrypt may use.
type Packet struct {
	Buf []byte
	Off int
	Len int
}

// Bytes returns the packet.
func (p *Packet) Bytes() []byte { return p.Buf[p.Off : p.Off+p.Len] }

// Worker holds the scratch space of one data-plane goroutine. The AEAD
// interfaces make their nonce and AAD arguments escape, so they live here,
// allocated once, instead of on the stack of every call. A Worker is not
// safe for concurrent use.
type Worker struct {
	nonce [12]byte
	aad   [12]byte
}

// NewWorker returns a Worker.
func NewWorker() *Worker { return new(Worker) }

// Encrypt turns the plaintext IP packet p into the outer ESP packet of sa,
// in place, and counts it. p needs sa.Headroom() bytes in front and
// sa.Tailroom() behind it.
func (w *Worker) Encrypt(sa *SA, p *Packet) Verdict {
	if sa.dead.Load() {
		return sa.drop(DropExpired)
	}
	seq, ok := sa.nextSeq(1)
	if !ok {
		return sa.drop(DropExpired)
	}
	return w.encrypt(sa, p, seq, nil)
}

// EncryptSeq is Encrypt with a sequence number seq that the caller got
// from sa.ReserveSeq, so that numbering (ordered, cheap) and encryption
// (parallel, costly) can happen in different places. Each number must be
// used once. Like Encrypt it refuses packets once sa has expired, so a hard
// lifetime reached within a reserved range stops the rest of the range.
func (w *Worker) EncryptSeq(sa *SA, p *Packet, seq uint64) Verdict {
	if sa.dead.Load() {
		return sa.drop(DropExpired)
	}
	if seq == 0 || seq > sa.maxSeq {
		// Not a number ReserveSeq gives: sending it would reuse a nonce
		// or a number the peer's window has passed.
		return sa.drop(DropMalformed)
	}
	return w.encrypt(sa, p, seq, nil)
}

// EncryptBatch encrypts pkts with sa, allocating their sequence numbers in
// one step so that a batch keeps its order, and writes each packet's verdict
// to the same index of verdicts, which must be at least as long as pkts.
func (w *Worker) EncryptBatch(sa *SA, pkts []Packet, verdicts []Verdict) {
	verdicts = verdicts[:len(pkts)]
	if len(pkts) == 0 {
		return
	}
	seq, ok := uint64(0), !sa.dead.Load()
	if ok {
		seq, ok = sa.nextSeq(uint64(len(pkts)))
	}
	for i := range pkts {
		if !ok {
			verdicts[i] = sa.drop(DropExpired)
			continue
		}
		verdicts[i] = w.encrypt(sa, &pkts[i], seq+uint64(i), nil)
	}
}

// encrypt does the work of Encrypt with a given sequence number; iv, if not
// nil, replaces the IV the SA would choose (for known-answer tests).
func (w *Worker) encrypt(sa *SA, p *Packet, seq uint64, iv []byte) Verdict {
	t := sa.t
	if p.Off < 0 || p.Len < 1 || p.Off+p.Len > len(p.Buf) {
		return sa.drop(DropMalformed)
	}
	pkt := p.Buf[p.Off : p.Off+p.Len]
	var nh uint8
	inner := 0 // length of the IP header that stays in front, transport mode
	switch {
	case sa.mode == Tunnel && pkt[0]>>4 == 4 && len(pkt) >= ipv4HeaderLen:
		nh = protoIPv4
	case sa.mode == Tunnel && pkt[0]>>4 == 6 && len(pkt) >= ipv6HeaderLen:
		nh = protoIPv6
	case sa.mode == Transport && pkt[0]>>4 == 4 && len(pkt) >= ipv4HeaderLen:
		inner = int(pkt[0]&0x0f) * 4
		// Transport mode protects whole datagrams (RFC 4303 3.3).
		if inner < ipv4HeaderLen || len(pkt) < inner || binary.BigEndian.Uint16(pkt[6:8])&0x3fff != 0 {
			return sa.drop(DropMalformed)
		}
		nh = pkt[9]
	case sa.mode == Transport && pkt[0]>>4 == 6 && len(pkt) >= ipv6HeaderLen:
		inner = ipv6HeaderLen
		nh = pkt[6]
		// These must stay in front of ESP (RFC 4303 3.1.1); moving them is
		// not supported, so such packets are refused.
		if nh == protoHopByHop || nh == protoRouting || nh == protoFragment {
			return sa.drop(DropMalformed)
		}
	default:
		return sa.drop(DropMalformed)
	}

	payloadOff := p.Off + inner
	payloadLen := p.Len - inner
	padLen := (t.align - (payloadLen+2)%t.align) % t.align
	ctEnd := p.Off + p.Len + padLen + 2
	espOff := payloadOff - espHeaderLen - t.ivLen
	outerLen := inner
	if sa.mode == Tunnel {
		outerLen = ipv4HeaderLen
		if sa.v6 {
			outerLen = ipv6HeaderLen
		}
	}
	udpOff := espOff
	if sa.encap {
		udpOff -= udpHeaderLen
	}
	ipOff := udpOff - outerLen
	if ipOff < 0 || ctEnd+t.icvLen > len(p.Buf) {
		return sa.drop(DropMalformed)
	}
	if ctEnd+t.icvLen-ipOff > 0xffff {
		return sa.drop(DropMalformed)
	}
	buf := p.Buf
	// The tunnel header copies fields of the inner one, read before it is
	// encrypted.
	tos := trafficClass(pkt)
	df := pkt[0]>>4 == 4 && pkt[6]&0x40 != 0
	if sa.mode == Transport {
		// Move the header to the front first: the ESP header and IV take
		// its place.
		copy(buf[ipOff:ipOff+inner], pkt[:inner])
	}

	// Trailer: monotonic pad bytes 1, 2, 3... (RFC 4303 2.4).
	tr := buf[ctEnd-padLen-2 : ctEnd]
	for i := range padLen {
		tr[i] = byte(i + 1)
	}
	tr[padLen] = byte(padLen)
	tr[padLen+1] = nh

	esp := buf[espOff : ctEnd+t.icvLen]
	binary.BigEndian.PutUint32(esp[0:4], sa.spi)
	binary.BigEndian.PutUint32(esp[4:8], uint32(seq))
	ct := buf[payloadOff:ctEnd]
	if t.aead != nil {
		if iv == nil {
			// RFC 4106 8.1 and RFC 7634 2: a counter is a unique IV.
			binary.BigEndian.PutUint64(esp[8:16], seq)
		} else {
			copy(esp[8:16], iv)
		}
		copy(w.nonce[:saltLen], t.salt[:])
		copy(w.nonce[saltLen:], esp[8:16])
		t.aead.Seal(ct[:0], w.nonce[:], ct, w.aadFor(sa, esp, seq))
	} else {
		s := sa.cbcPool.Get().(*cbcState)
		if iv == nil {
			iv = s.iv()
		}
		copy(esp[8:8+t.ivLen], iv)
		s.ivSet.SetIV(esp[8 : 8+t.ivLen])
		s.enc.CryptBlocks(ct, ct)
		s.mac.Reset()
		s.mac.Write(esp[:len(esp)-t.icvLen])
		if sa.esn {
			// RFC 4303 2.2.1: the high half is authenticated, not sent.
			binary.BigEndian.PutUint32(s.hi[:], uint32(seq>>32))
			s.mac.Write(s.hi[:])
		}
		copy(esp[len(esp)-t.icvLen:], s.mac.Sum(s.sum[:0]))
		sa.cbcPool.Put(s)
	}

	total := ctEnd + t.icvLen - ipOff
	proto := uint8(protoESP)
	if sa.encap {
		proto = protoUDP
	}
	out := buf[ipOff : ctEnd+t.icvLen]
	switch {
	case sa.mode == Transport:
		if out[0]>>4 == 6 {
			out[6] = proto
			binary.BigEndian.PutUint16(out[4:6], uint16(total-ipv6HeaderLen))
		} else {
			out[9] = proto
			binary.BigEndian.PutUint16(out[2:4], uint16(total))
			setIPv4Checksum(out[:inner])
		}
	case !sa.v6:
		sa.writeOuterV4(out, total, proto, seq, tos, df)
	default:
		sa.writeOuterV6(out, total, proto, tos)
	}
	if sa.encap {
		u := buf[udpOff:espOff]
		binary.BigEndian.PutUint16(u[0:2], sa.encapSrc)
		binary.BigEndian.PutUint16(u[2:4], sa.encapDst)
		binary.BigEndian.PutUint16(u[4:6], uint16(total-outerLen))
		u[6], u[7] = 0, 0
		if out[0]>>4 == 6 {
			// RFC 8200 8.1: IPv6 UDP needs a real checksum; on IPv4 RFC
			// 3948 2.1 lets ESP-in-UDP send 0.
			setUDPChecksumV6(out[:ipv6HeaderLen], buf[udpOff:ctEnd+t.icvLen])
		}
	}
	sa.account(&sa.packetsOut, &sa.bytesOut, p.Len)
	p.Off, p.Len = ipOff, total
	return Accept
}

// aadFor returns the AEAD additional data of an ESP packet: SPI and the
// 32-bit sequence number as they are on the wire, or SPI, high and low half
// with ESN (RFC 4106 5, RFC 7634 2.1).
func (w *Worker) aadFor(sa *SA, esp []byte, seq uint64) []byte {
	if !sa.esn {
		return esp[:8]
	}
	binary.BigEndian.PutUint32(w.aad[0:4], sa.spi)
	binary.BigEndian.PutUint64(w.aad[4:12], seq)
	return w.aad[:]
}

// writeOuterV4 writes the outer IPv4 header of a tunnel: DSCP copied from
// the inner packet (RFC 4301 5.1.2.1) and the ECN field too (RFC 6040 normal
// mode), DF copied from an IPv4 inner packet.
func (sa *SA) writeOuterV4(h []byte, total int, proto uint8, seq uint64, tos uint8, df bool) {
	_ = h[ipv4HeaderLen-1]
	// The ID only matters if the packet is fragmented; the low bits of the
	// sequence number do not repeat within any reassembly timeout.
	w0 := 0x45<<24 | uint32(tos)<<16 | uint32(uint16(total))
	w1 := uint32(uint16(seq)) << 16
	if df {
		w1 |= 0x4000
	}
	w2 := uint32(sa.ttl)<<24 | uint32(proto)<<16
	binary.BigEndian.PutUint32(h[0:4], w0)
	binary.BigEndian.PutUint32(h[4:8], w1)
	copy(h[12:16], sa.local[:4])
	copy(h[16:20], sa.remote[:4])
	// The sum comes from the words just written, not from reading the
	// header back, and the addresses' share is the SA's constant.
	sum := uint64(w0) + uint64(w1) + uint64(w2) + sa.addrSumV4
	binary.BigEndian.PutUint32(h[8:12], w2|uint32(checksumFold(sum)))
}

func (sa *SA) writeOuterV6(h []byte, total int, proto uint8, tc uint8) {
	binary.BigEndian.PutUint32(h[0:4], 6<<28|uint32(tc)<<20)
	binary.BigEndian.PutUint16(h[4:6], uint16(total-ipv6HeaderLen))
	h[6] = proto
	h[7] = sa.ttl
	copy(h[8:24], sa.local[:])
	copy(h[24:40], sa.remote[:])
}

// setUDPChecksumV6 fills in the checksum of the UDP datagram u sent in the
// IPv6 packet with header h.
func setUDPChecksumV6(h, u []byte) {
	s := pseudoSumV6(h) + uint64(len(u)) + protoUDP
	c := checksumFold(checksumAdd(s, u))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:8], c)
}
