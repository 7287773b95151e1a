package esp

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
)

// TestGCMVectors reproduces the ESP packets of draft-mcgrew-gcm-test-01 in
// both directions. The vectors' payloads are not all IP packets and their
// next headers are not tunnel protocols, so they run through transport mode:
// an IPv4 header carrying protocol "next header" goes in, the header with
// protocol ESP and the vector's ESP packet come out, and back.
func TestGCMVectors(t *testing.T) {
	for _, v := range readVectors(t, "testdata/gcm-esp.txt") {
		t.Run("case"+v["case"], func(t *testing.T) {
			runTransportVector(t, v, AESGCM16)
		})
	}
}

func runTransportVector(t *testing.T, v vector, c Cipher) {
	keymat, pt, esp := v.bytes(t, "keymat"), v.bytes(t, "plaintext"), v.bytes(t, "esp")
	spi := binary.BigEndian.Uint32(esp[0:4])
	seq := uint64(binary.BigEndian.Uint32(esp[4:8]))
	_, esn := v["seqhi"]
	if esn {
		seq |= uint64(binary.BigEndian.Uint32(v.bytes(t, "seqhi"))) << 32
	}
	padLen := int(pt[len(pt)-2])
	nh := pt[len(pt)-1]
	payload := pt[:len(pt)-2-padLen]
	cfg := Config{
		SPI: max(spi, 256), Cipher: c, EncKey: keymat, Mode: Transport, ESN: esn,
		LocalTS: AllTraffic(), RemoteTS: AllTraffic(),
	}
	plain := ipv4("192.0.2.1", "192.0.2.2", nh, 0, payload)
	w := NewWorker()

	out := mustSA(t, cfg)
	// Case 4 uses SPI 0, which NewSA refuses on purpose (RFC 4303 2.1).
	out.spi = spi
	p := newPacket(plain)
	if r := w.encrypt(out, p, seq, esp[8:16]); r != Accept {
		t.Fatalf("encrypt: %v", r)
	}
	got := p.Bytes()
	if !bytes.Equal(got[ipv4HeaderLen:], esp) {
		t.Fatalf("encrypt:\n got %x\nwant %x", got[ipv4HeaderLen:], esp)
	}
	if got[9] != protoESP || int(binary.BigEndian.Uint16(got[2:4])) != len(got) || checksumFold(checksumAdd(0, got[:20])) != 0 {
		t.Fatalf("encrypt: bad outer header %x", got[:20])
	}

	in := mustSA(t, cfg)
	in.spi = spi
	// Put the window just below the packet so that ESN inference must
	// find the vector's high half.
	in.replay.top.Store(seq - 1)
	wire := ipv4("192.0.2.1", "192.0.2.2", protoESP, 0, esp)
	p = newPacket(wire)
	if r := w.Decrypt(in, p); r != Accept {
		t.Fatalf("decrypt: %v", r)
	}
	if !bytes.Equal(p.Bytes(), plain) {
		t.Fatalf("decrypt:\n got %x\nwant %x", p.Bytes(), plain)
	}
	if r := w.Decrypt(in, newPacket(wire)); r != DropReplay {
		t.Fatalf("second decrypt: %v, want replay", r)
	}
}

// TestRFC7634Vector reproduces RFC 7634 Appendix A: an ICMP packet in an
// IPv4 tunnel, ChaCha20-Poly1305, SPI 0x01020304, sequence number 5.
func TestRFC7634Vector(t *testing.T) {
	v := readVectors(t, "testdata/rfc7634-esp.txt")[0]
	keymat, pt, esp := v.bytes(t, "keymat"), v.bytes(t, "plaintext"), v.bytes(t, "esp")
	inner := pt[:len(pt)-2-int(pt[len(pt)-2])]
	cfg := Config{
		SPI: 0x01020304, Cipher: ChaCha20Poly1305, EncKey: keymat, Mode: Tunnel,
		Local: netip.MustParseAddr("203.0.113.153"), Remote: netip.MustParseAddr("203.0.113.5"),
		LocalTS:  []Selector{PrefixSelector(netip.MustParsePrefix("192.0.2.0/24"))},
		RemoteTS: []Selector{PrefixSelector(netip.MustParsePrefix("198.51.100.0/24"))},
	}
	w := NewWorker()
	out := mustSA(t, cfg)
	p := newPacket(inner)
	if r := w.encrypt(out, p, 5, esp[8:16]); r != Accept {
		t.Fatalf("encrypt: %v", r)
	}
	got := p.Bytes()
	if !bytes.Equal(got[ipv4HeaderLen:], esp) {
		t.Fatalf("encrypt:\n got %x\nwant %x", got[ipv4HeaderLen:], esp)
	}

	in := mustSA(t, cfg)
	wire := ipv4("203.0.113.5", "203.0.113.153", protoESP, 0, esp)
	p = newPacket(wire)
	if r := w.Decrypt(in, p); r != Accept {
		t.Fatalf("decrypt: %v", r)
	}
	if !bytes.Equal(p.Bytes(), inner) {
		t.Fatalf("decrypt:\n got %x\nwant %x", p.Bytes(), inner)
	}
}

// TestRFC4868Vectors checks that each integrity transform is the right
// hash, key length and truncation.
func TestRFC4868Vectors(t *testing.T) {
	names := map[string]Integrity{}
	for _, i := range []Integrity{HMACSHA256128, HMACSHA384192, HMACSHA512256} {
		names[i.String()] = i
	}
	data, err := readLines("testdata/rfc4868.txt")
	if err != nil {
		t.Fatal(err)
	}
	for n, line := range data {
		f := strings.Fields(line)
		integ, ok := names[f[0]]
		if !ok {
			t.Fatalf("line %d: unknown integrity %q", n, f[0])
		}
		key, msg, want := unhex(f[1]), unhex(f[2]), unhex(f[3])
		if len(key) != integ.keyLen() || len(want) != integ.icvLen() {
			t.Fatalf("%v: key %d icv %d, want %d %d", integ, len(key), len(want), integ.keyLen(), integ.icvLen())
		}
		tr, err := newTransform(AESCBC, integ, make([]byte, 32), key)
		if err != nil {
			t.Fatal(err)
		}
		s, err := newCBCState(tr)
		if err != nil {
			t.Fatal(err)
		}
		s.mac.Write(msg)
		if got := s.mac.Sum(nil)[:tr.icvLen]; !hmac.Equal(got, want) {
			t.Errorf("%v case %d: got %x want %x", integ, n, got, want)
		}
	}
}

// TestCBCConstruction rebuilds the ICV and the plaintext of packets the
// engine made with AES-CBC and HMAC, using only the standard library: the ICV
// covers SPI, sequence number, IV and ciphertext, then the high half of the
// sequence number when ESN is on (RFC 4303 2.2.1, RFC 4868 2.1), and is
// truncated to half the hash.
func TestCBCConstruction(t *testing.T) {
	w := NewWorker()
	for _, a := range algos[3:] {
		for _, esn := range []bool{false, true} {
			s := setup{algo: a, mode: Tunnel, inner: 4, outer: 4, esn: esn}
			encKey, authKey := a.keys()
			out := mustSA(t, Config{
				SPI: 0x1000, Cipher: a.cipher, Integrity: a.integ, EncKey: encKey, AuthKey: authKey,
				Mode: Tunnel, ESN: esn,
				Local: netip.MustParseAddr("192.0.2.1"), Remote: netip.MustParseAddr("192.0.2.2"),
			})
			out.seqOut.Store(41)
			if esn {
				out.seqOut.Store(7<<32 | 41)
			}
			plain := s.innerPkt(77, 0)
			p := newPacket(plain)
			if r := w.Encrypt(out, p); r != Accept {
				t.Fatal(r)
			}
			esp := p.Bytes()[ipv4HeaderLen:]
			icvLen := a.integ.keyLen() / 2
			body, icv := esp[:len(esp)-icvLen], esp[len(esp)-icvLen:]
			mac := hmac.New(a.integ.newHash(), authKey)
			mac.Write(body)
			if esn {
				mac.Write([]byte{0, 0, 0, 7})
			}
			if want := mac.Sum(nil)[:icvLen]; !bytes.Equal(icv, want) {
				t.Fatalf("%v esn=%v: icv %x, want %x", a.name, esn, icv, want)
			}
			if seq := binary.BigEndian.Uint32(esp[4:8]); seq != 42 {
				t.Fatalf("sequence number %d on the wire", seq)
			}
			block, err := aes.NewCipher(encKey)
			if err != nil {
				t.Fatal(err)
			}
			ct := append([]byte(nil), body[24:]...)
			cipher.NewCBCDecrypter(block, body[8:24]).CryptBlocks(ct, ct)
			if !bytes.Equal(ct[:len(plain)], plain) {
				t.Fatalf("%v: plaintext %x", a.name, ct)
			}
		}
	}
}
