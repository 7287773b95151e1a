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

// FuzzDecrypt feeds arbitrary bytes to Decrypt with a valid SA. Besides not
// panicking, the verdict must agree with an independent ICV check done with
// the bare AEAD: only authentic packets may be accepted, and authentic
// packets are never refused as forgeries.
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
				f.Add(append([]byte(nil), p.Bytes()...))
			}
		}
	}
	f.Add([]byte{0x45})
	f.Add(make([]byte, 60))
	f.Fuzz(func(t *testing.T, data []byte) {
		in := mustSA(t, fuzzConfig(false))
		p := newPacket(data)
		r := w.Decrypt(in, p)
		if p.Off < 0 || p.Len < 0 || p.Off+p.Len > len(p.Buf) {
			t.Fatalf("packet out of its buffer: off %d len %d", p.Off, p.Len)
		}
		espOff, _, n, ok := locate(data)
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
		authentic := oracleOpen(in, data[espOff:n])
		switch {
		case r == Accept && !authentic:
			t.Fatal("forgery accepted")
		case r == Accept:
			if _, ok := innerPacket(p.Bytes(), map[uint8]uint8{4: protoIPv4, 6: protoIPv6}[p.Bytes()[0]>>4]); !ok {
				t.Fatalf("accepted packet is not IP: %x", p.Bytes())
			}
		case authentic && (r == DropAuth || r == DropUnknownSPI):
			t.Fatalf("authentic packet refused: %v", r)
		case !authentic && r != DropAuth && r != DropMalformed && r != DropReplay:
			t.Fatalf("forgery refused for the wrong reason: %v", r)
		}
	})
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
