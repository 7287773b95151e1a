package dn

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// String renders a DER RDNSequence for logs, in the order of the DER and
// with strongSwan's names and ", " separators ("C=CH, O=Example, CN=gw"),
// as strongSwan's logs show it. A DN that Encode produced renders to a
// string that Encode turns back into the same DER; one with ',' in a
// value is written in the "/C=CH/O=a,b" form for that. What Encode never
// produces (multi-valued RDNs joined with '+', non-string values as
// #hex, escapes for characters Encode refuses) is written in the RFC 4514
// way, readable but refused by Encode.
func String(der []byte) (string, error) {
	rdns, err := decode(der)
	if err != nil {
		return "", fmt.Errorf("invalid DER DN: %w", err)
	}
	slash := false
	for _, rdn := range rdns {
		for _, a := range rdn {
			if strings.ContainsRune(a.value, ',') {
				slash = true
			}
		}
	}
	if slash {
		// The "/" form holds a ',' only if no value has a '/' or needs
		// escapes; else fall back to escaping the ','.
		for _, rdn := range rdns {
			for _, a := range rdn {
				if strings.ContainsRune(a.value, '/') || a.raw || len(rdn) > 1 || needsEscape(a.value, '/') {
					slash = false
				}
			}
		}
	}
	var sb strings.Builder
	for i, rdn := range rdns {
		switch {
		case slash:
			sb.WriteByte('/')
		case i > 0:
			sb.WriteString(", ")
		}
		for j, a := range rdn {
			if j > 0 {
				sb.WriteByte('+')
			}
			sb.WriteString(a.name)
			sb.WriteByte('=')
			if a.raw {
				sb.WriteString(a.value)
				continue
			}
			sep := byte(',')
			if slash {
				sep = '/'
			}
			writeValue(&sb, a.value, sep)
		}
	}
	return sb.String(), nil
}

// rendered is one attribute as String writes it: raw values are #hex.
type rendered struct {
	name, value string
	raw         bool
}

// decode reads an RDNSequence: SEQUENCE OF SET OF SEQUENCE {OID, value}.
func decode(der []byte) ([][]rendered, error) {
	tag, seq, rest, err := readTLV(der)
	if err != nil {
		return nil, err
	}
	if tag != tagSequence || len(rest) != 0 {
		return nil, errors.New("not a single SEQUENCE")
	}
	var rdns [][]rendered
	for len(seq) > 0 {
		var set []byte
		tag, set, seq, err = readTLV(seq)
		if err != nil {
			return nil, err
		}
		if tag != tagSet || len(set) == 0 {
			return nil, errors.New("RDN is not a non-empty SET")
		}
		var rdn []rendered
		for len(set) > 0 {
			var atv []byte
			tag, atv, set, err = readTLV(set)
			if err != nil {
				return nil, err
			}
			if tag != tagSequence {
				return nil, errors.New("attribute is not a SEQUENCE")
			}
			a, err := decodeAttr(atv)
			if err != nil {
				return nil, err
			}
			rdn = append(rdn, a)
		}
		rdns = append(rdns, rdn)
	}
	if len(rdns) == 0 {
		return nil, errors.New("no RDNs")
	}
	return rdns, nil
}

func decodeAttr(atv []byte) (rendered, error) {
	tag, oid, rest, err := readTLV(atv)
	if err != nil {
		return rendered{}, err
	}
	if tag != tagOID {
		return rendered{}, errors.New("attribute type is not an OID")
	}
	dotted, err := formatOID(oid)
	if err != nil {
		return rendered{}, err
	}
	name := dotted
	if t, ok := lookupOID(dotted); ok {
		name = t.names[0]
	}
	vtag, value, tail, err := readTLV(rest)
	if err != nil {
		return rendered{}, err
	}
	if len(tail) != 0 {
		return rendered{}, errors.New("attribute has more than a type and a value")
	}
	switch vtag {
	case tagUTF8, tagPrintable, tagIA5, tagNumeric, tagT61, tagVisible:
		if utf8.Valid(value) {
			return rendered{name: name, value: string(value)}, nil
		}
	}
	return rendered{name: name, value: "#" + hex.EncodeToString(rest), raw: true}, nil
}

// needsEscape reports whether writeValue would escape anything in v.
func needsEscape(v string, sep byte) bool {
	var sb strings.Builder
	writeValue(&sb, v, sep)
	return sb.String() != v
}

// writeValue writes v, escaping in the RFC 4514 way what Encode would
// not read back as v: separators, the characters it refuses, leading
// '#', '=' and spaces, trailing spaces and control characters.
func writeValue(sb *strings.Builder, v string, sep byte) {
	for i, r := range v {
		switch {
		case r == rune(sep), r == '\\', r == '"', (r == '+' || r == ';') && startsAttr(v[i+1:]),
			i == 0 && (r == '#' || r == '=' || r == ' '),
			r == ' ' && strings.TrimRight(v[i:], " ") == "":
			sb.WriteByte('\\')
			sb.WriteRune(r)
		case r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0:
			var buf [utf8.UTFMax]byte
			for _, c := range buf[:utf8.EncodeRune(buf[:], r)] {
				fmt.Fprintf(sb, "\\%02X", c)
			}
		default:
			sb.WriteRune(r)
		}
	}
}
