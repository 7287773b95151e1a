package message

import (
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
)

// pl builds one payload with its generic header: next payload, flags octet
// (critical bit) and a correct length.
func pl(next PayloadType, flags byte, body ...byte) []byte {
	b := []byte{byte(next), flags, 0, 0}
	binary.BigEndian.PutUint16(b[2:], uint16(4+len(body)))
	return append(b, body...)
}

// msg builds a datagram: an IKE_SA_INIT request header with a correct
// length, followed by chain.
func msg(first PayloadType, chain ...[]byte) []byte {
	b := []byte{
		1, 2, 3, 4, 5, 6, 7, 8, // SPIi
		0, 0, 0, 0, 0, 0, 0, 0, // SPIr
		byte(first), 0x20, byte(ExchangeIKESAInit), byte(FlagInitiator),
		0, 0, 0, 0, // message ID
		0, 0, 0, 0, // length
	}
	for _, c := range chain {
		b = append(b, c...)
	}
	binary.BigEndian.PutUint32(b[24:], uint32(len(b)))
	return b
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func seq(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i + 1)
	}
	return b
}

func readHex(t testing.TB, name string) []byte {
	t.Helper()
	s, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(strings.TrimSpace(string(s)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// normalized returns a deep copy-free view for comparison: empty slices
// become nil, so a value built by hand (nil) equals a decoded one (an empty
// sub-slice of the input). Only this package's structs are walked.
func normalize(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			normalize(v.Elem())
		}
	case reflect.Struct:
		if v.Type().PkgPath() != reflect.TypeFor[Message]().PkgPath() {
			return
		}
		for i := range v.NumField() {
			normalize(v.Field(i))
		}
	case reflect.Slice:
		if v.Len() == 0 {
			if v.CanSet() && !v.IsNil() {
				v.Set(reflect.Zero(v.Type()))
			}
			return
		}
		for i := range v.Len() {
			normalize(v.Index(i))
		}
	}
}

func sameStructure(a, b any) bool {
	normalize(reflect.ValueOf(a))
	normalize(reflect.ValueOf(b))
	return reflect.DeepEqual(a, b)
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// TestSameStructureSeesDifferences guards the comparator the round-trip
// and fuzz tests rely on: it must not call different messages equal.
func TestSameStructureSeesDifferences(t *testing.T) {
	a := &Message{Payloads: []Payload{&Nonce{Data: seq(16)}}}
	b := &Message{Payloads: []Payload{&Nonce{Data: seq(17)}}}
	if sameStructure(a, b) {
		t.Error("different nonces compared equal")
	}
	c := &Message{Payloads: []Payload{&Notify{NotifyType: NotifyCookie, Data: []byte{}}}}
	d := &Message{Payloads: []Payload{&Notify{NotifyType: NotifyCookie}}}
	if !sameStructure(c, d) {
		t.Error("nil and empty data compared different")
	}
	e := &Message{Payloads: []Payload{&TS{Selectors: []TrafficSelector{SelectorFromPrefix(mustPrefix("10.0.0.0/8"))}}}}
	f := &Message{Payloads: []Payload{&TS{Selectors: []TrafficSelector{SelectorFromPrefix(mustPrefix("10.0.0.0/9"))}}}}
	if sameStructure(e, f) {
		t.Error("different selectors compared equal")
	}
}
