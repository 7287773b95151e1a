package message

import "testing"

func BenchmarkDecodeIKESAInit(b *testing.B) {
	pkt := readHex(b, "strongswan-5.9.8-ike_sa_init-request.hex")
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(pkt); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendToIKESAInit(b *testing.B) {
	m, err := Decode(readHex(b, "strongswan-5.9.8-ike_sa_init-request.hex"))
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 1500)
	b.ReportAllocs()
	for b.Loop() {
		if buf, err = m.AppendTo(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}
