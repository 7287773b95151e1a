package dn

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ASN.1 universal tags used in DNs.
const (
	tagOID       = 0x06
	tagUTF8      = 0x0c
	tagSequence  = 0x30
	tagSet       = 0x31
	tagNumeric   = 0x12
	tagPrintable = 0x13
	tagT61       = 0x14
	tagIA5       = 0x16
	tagVisible   = 0x1a
)

// printable is the PrintableString character set (X.680 41.4), the one
// strongSwan's asn1_is_printablestring checks.
const printable = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?"

func isPrintable(s string) bool {
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(printable, s[i]) < 0 {
			return false
		}
	}
	return true
}

func encodeAttrs(attrs []attr) []byte {
	var seq []byte
	for _, a := range attrs {
		oid, _ := parseOID(a.typ.oid) // checked by parseType, or from the table
		tag := byte(tagIA5)
		if !a.typ.ia5 {
			tag = tagUTF8
			if isPrintable(a.value) {
				tag = tagPrintable
			}
		}
		atv := append(tlv(tagOID, oid), tlv(tag, []byte(a.value))...)
		seq = append(seq, tlv(tagSet, tlv(tagSequence, atv))...)
	}
	return tlv(tagSequence, seq)
}

// tlv DER-encodes one element (definite length, shortest form).
func tlv(tag byte, content []byte) []byte {
	out := []byte{tag}
	n := len(content)
	switch {
	case n < 0x80:
		out = append(out, byte(n))
	case n <= 0xff:
		out = append(out, 0x81, byte(n))
	case n <= 0xffff:
		out = append(out, 0x82, byte(n>>8), byte(n))
	default:
		out = append(out, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
	return append(out, content...)
}

// parseOID returns the DER content octets of a dotted OID.
func parseOID(s string) ([]byte, error) {
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return nil, errors.New("an OID has at least two arcs")
	}
	arcs := make([]uint64, len(parts))
	for i, p := range parts {
		if p == "" || len(p) > 1 && p[0] == '0' {
			return nil, fmt.Errorf("bad OID arc %q", p)
		}
		v, err := strconv.ParseUint(p, 10, 64)
		if err != nil || v >= 1<<62 {
			return nil, fmt.Errorf("bad OID arc %q (a decimal number below 2^62)", p)
		}
		arcs[i] = v
	}
	if arcs[0] > 2 || arcs[0] < 2 && arcs[1] > 39 {
		return nil, errors.New("an OID starts with 0.0-0.39, 1.0-1.39 or 2.x")
	}
	out := appendBase128(nil, arcs[0]*40+arcs[1])
	for _, a := range arcs[2:] {
		out = appendBase128(out, a)
	}
	return out, nil
}

func appendBase128(b []byte, v uint64) []byte {
	var tmp [10]byte
	i := len(tmp) - 1
	tmp[i] = byte(v & 0x7f)
	for v >>= 7; v > 0; v >>= 7 {
		i--
		tmp[i] = byte(v&0x7f) | 0x80
	}
	return append(b, tmp[i:]...)
}

// formatOID renders DER OID content octets as a dotted string.
func formatOID(b []byte) (string, error) {
	var arcs []uint64
	for len(b) > 0 {
		if b[0] == 0x80 {
			return "", errors.New("OID arc not minimally encoded")
		}
		var v uint64
		i := 0
		for ; ; i++ {
			if i == len(b) {
				return "", errors.New("truncated OID")
			}
			if v > 1<<56 {
				return "", errors.New("OID arc too large")
			}
			v = v<<7 | uint64(b[i]&0x7f)
			if b[i]&0x80 == 0 {
				break
			}
		}
		b = b[i+1:]
		arcs = append(arcs, v)
	}
	if len(arcs) == 0 {
		return "", errors.New("empty OID")
	}
	first, second := uint64(2), arcs[0]-80
	if arcs[0] < 80 {
		first, second = arcs[0]/40, arcs[0]%40
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d.%d", first, second)
	for _, a := range arcs[1:] {
		fmt.Fprintf(&sb, ".%d", a)
	}
	return sb.String(), nil
}

// readTLV splits one DER element off b, refusing indefinite or
// non-minimal lengths.
func readTLV(b []byte) (tag byte, content, rest []byte, err error) {
	if len(b) < 2 {
		return 0, nil, nil, errors.New("truncated element")
	}
	tag, l := b[0], int(b[1])
	if tag&0x1f == 0x1f {
		return 0, nil, nil, errors.New("multi-byte tags are not used in DNs")
	}
	b = b[2:]
	if l >= 0x80 {
		n := l & 0x7f
		if n == 0 || n > 3 || len(b) < n || b[0] == 0 {
			return 0, nil, nil, errors.New("bad length")
		}
		l = 0
		for _, c := range b[:n] {
			l = l<<8 | int(c)
		}
		if l < 0x80 || n > 1 && l < 1<<(8*(n-1)) {
			return 0, nil, nil, errors.New("length not minimally encoded")
		}
		b = b[n:]
	}
	if len(b) < l {
		return 0, nil, nil, errors.New("truncated element")
	}
	return tag, b[:l], b[l:], nil
}
