package esp

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// fuzzConfig is a fixed SA, so that fuzzed inputs stay reproducible.
func fuzzConfig(encap bool) Config {
	key := make([]byte, 36)
	for i := range key {
		key[i] = byte(i)
	}
	c := Config{
		SPI: 0x4242, Cipher: AESGCM16, EncKey: key, Mode: Tunnel, ReplayWindow: 64,
		Local: netip.MustParseAddr("192.0.2.1"), Remote: netip.MustParseAddr("198.51.100.2"),
		LocalTS: AllTraffic(), RemoteTS: AllTraffic(),
	}
	if encap {
		c.EncapSrcPort, c.EncapDstPort = 4500, 4500
	}
	return c
}

// FuzzDecrypt feeds arbitrary bytes to Decrypt with a valid inbound SA, raw
// or UDP-encapsulated. Besides not panicking, the verdict must agree with
// independent checks: a packet in the other form, to another address or,
// raw, from another peer is refused as such; otherwise only authentic
// packets may be accepted, authentic packets are never refused as
// forgeries, and an accepted ESP-in-UDP packet makes its source the peer.
func FuzzDecrypt(f *testing.F) {
	w := NewWorker()
	for _, encap := range []bool{false, true} {
		out := mustSA(f, fuzzConfig(encap))
		for _, n := range []int{20, 41, 100} {
			for _, fam := range []int{4, 6} {
				s := setup{inner: fam}
				p := newPacket(s.innerPkt(n, 3))
				if w.Encrypt(out, p) != Accept {
					f.Fatal("seed encrypt failed")
				}
				f.Add(append([]byte(nil), p.Bytes()...), encap)
				f.Add(append([]byte(nil), p.Bytes()...), !encap)
			}
		}
	}
	f.Add([]byte{0x45}, false)
	f.Add(make([]byte, 60), true)
	f.Fuzz(func(t *testing.T, data []byte, encap bool) {
		c := inbound(fuzzConfig(encap))
		var events []Event
		c.Notify = func(e Event) { events = append(events, e) }
		in := mustSA(t, c)
		p := newPacket(data)
		r := w.Decrypt(in, p)
		if p.Off < 0 || p.Len < 0 || p.Off+p.Len > len(p.Buf) {
			t.Fatalf("packet out of its buffer: off %d len %d", p.Off, p.Len)
		}
		espOff, ipLen, n, ok := locate(data)
		switch {
		case !ok:
			if r != DropMalformed {
				t.Fatalf("unparsable packet: %v", r)
			}
			return
		case binary.BigEndian.Uint32(data[espOff:]) != in.spi:
			if r != DropUnknownSPI {
				t.Fatalf("foreign spi: %v", r)
			}
			return
		}
		udp := espOff != ipLen
		src, dst := fuzzOuter(data)
		switch {
		case udp != encap:
			if r != DropEncap {
				t.Fatalf("udp=%v for encap=%v: %v", udp, encap, r)
			}
			return
		case dst != c.Local || (!udp && src != c.Remote):
			if r != DropAddress {
				t.Fatalf("%v -> %v: %v", src, dst, r)
			}
			return
		}
		checkFuzzVerdict(t, r, p, oracleOpen(in, data[espOff:n]))
		if r == Accept && udp {
			from := netip.AddrPortFrom(src, binary.BigEndian.Uint16(data[ipLen:]))
			moved := from != netip.AddrPortFrom(c.Remote, c.EncapDstPort)
			if in.Peer() != from || moved != (len(events) == 1) || len(events) > 1 {
				t.Fatalf("from %v: peer %v, events %+v", from, in.Peer(), events)
			}
		}
	})
}

// fuzzOuter returns the outer addresses of a packet that locate accepted.
func fuzzOuter(b []byte) (src, dst netip.Addr) {
	if b[0]>>4 == 6 {
		return netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40]))
	}
	return netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
}

// checkFuzzVerdict compares the verdict on a packet in the SA's form and
// addresses with what the independent ICV check says of it.
func checkFuzzVerdict(t *testing.T, r Verdict, p *Packet, authentic bool) {
	t.Helper()
	switch {
	case r == Accept && !authentic:
		t.Fatal("forgery accepted")
	case r == Accept:
		if _, ok := innerPacket(p.Bytes(), map[uint8]uint8{4: protoIPv4, 6: protoIPv6}[p.Bytes()[0]>>4]); !ok {
			t.Fatalf("accepted packet is not IP: %x", p.Bytes())
		}
	case authentic && (r == DropAuth || r == DropUnknownSPI || r == DropEncap || r == DropAddress):
		t.Fatalf("authentic packet refused: %v", r)
	case !authentic && r != DropAuth && r != DropMalformed && r != DropReplay:
		t.Fatalf("forgery refused for the wrong reason: %v", r)
	}
}

// oracleOpen checks the ICV of an ESP packet with the SA's AEAD, built
// without the engine's code paths.
func oracleOpen(sa *SA, esp []byte) bool {
	if len(esp) < 16+16 || binary.BigEndian.Uint32(esp[4:8]) == 0 {
		return false
	}
	nonce := append(sa.t.salt[:4:4], esp[8:16]...)
	_, err := sa.t.aead.Open(nil, nonce, esp[16:], esp[:8])
	return err == nil
}
