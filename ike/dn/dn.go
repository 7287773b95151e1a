// Package dn converts X.501 distinguished names between the string form
// of the configuration ("C=CH, O=Example, CN=gw") and the DER carried in
// ID_DER_ASN1_DN identities (RFC 7296 3.5), and renders DER for logs.
//
// The string syntax is strongSwan's (atodn in libstrongswan's
// utils/identification.c), because a strongSwan peer configured with the
// same string compares our identity with its own encoding byte for byte:
// RDNs are separated by ',' (or by '/' when the string starts with '/'),
// in the order written, one attribute per RDN; attribute types are
// strongSwan's names, case-insensitive; spaces around types and values
// are dropped; a value is a PrintableString when it fits, else a
// UTF8String, except E/email and unstructuredName, which are IA5Strings.
//
// Where strongSwan's reading of a string differs from the RFC 4514 (or
// RFC 2253) one, the string is refused: a '\' escape, a '+' (multi-valued
// RDN) or ';' (separator) before another TYPE=, quotes, a '#' (BER) or
// '=' at the start of a value. strongSwan takes those characters
// literally (or drops the '='), so accepting either reading would let
// the two ends of a tunnel configured with the same string disagree. The one
// RFC 4514 extension is dotted-OID attribute types ("2.5.4.3=gw"), which
// strongSwan does not take as a DN at all, so no reading conflicts.
package dn

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxRDNs is strongSwan's RDN_MAX: it refuses longer DNs.
const maxRDNs = 20

// maxDER keeps the encoding within an IKE ID payload (a 16-bit payload
// length less the 8-byte header).
const maxDER = 65535 - 8

// attrType is an attribute type strongSwan knows by name.
type attrType struct {
	// names[0] is the name strongSwan prints (its oid.txt), the rest
	// are the other names it accepts (its x501rdns table).
	names []string
	oid   string
	// ia5 types are always IA5Strings; the others are PrintableStrings
	// when the value fits, else UTF8Strings.
	ia5 bool
}

// attrTypes is strongSwan's x501rdns table (identification.c, 6.0).
var attrTypes = []attrType{
	{names: []string{"ND"}, oid: "0.2.262.1.10.7.20"},
	{names: []string{"UID"}, oid: "0.9.2342.19200300.100.1.1"},
	{names: []string{"DC"}, oid: "0.9.2342.19200300.100.1.25"},
	{names: []string{"CN"}, oid: "2.5.4.3"},
	// SN is the surname since strongSwan 5.9.2 (RFC 4519), not the
	// serialNumber it was before.
	{names: []string{"SN"}, oid: "2.5.4.4"},
	{names: []string{"serialNumber"}, oid: "2.5.4.5"},
	{names: []string{"C"}, oid: "2.5.4.6"},
	{names: []string{"L"}, oid: "2.5.4.7"},
	{names: []string{"ST"}, oid: "2.5.4.8"},
	{names: []string{"STREET"}, oid: "2.5.4.9"},
	{names: []string{"O"}, oid: "2.5.4.10"},
	{names: []string{"OU"}, oid: "2.5.4.11"},
	{names: []string{"organizationIdentifier"}, oid: "2.5.4.97"},
	{names: []string{"T"}, oid: "2.5.4.12"},
	{names: []string{"D"}, oid: "2.5.4.13"},
	{names: []string{"postalAddress"}, oid: "2.5.4.16"},
	{names: []string{"postalCode"}, oid: "2.5.4.17"},
	{names: []string{"N"}, oid: "2.5.4.41"},
	{names: []string{"G"}, oid: "2.5.4.42"},
	{names: []string{"I"}, oid: "2.5.4.43"},
	{names: []string{"dnQualifier"}, oid: "2.5.4.46"},
	{names: []string{"dmdName"}, oid: "2.5.4.54"},
	{names: []string{"pseudonym"}, oid: "2.5.4.65"},
	{names: []string{"ID"}, oid: "2.5.4.45"},
	{names: []string{"employeeNumber", "EN"}, oid: "2.16.840.1.113730.3.1.3"},
	{names: []string{"E", "Email", "emailAddress"}, oid: "1.2.840.113549.1.9.1", ia5: true},
	{names: []string{"unstructuredName", "UN"}, oid: "1.2.840.113549.1.9.2", ia5: true},
	{names: []string{"unstructuredAddress", "UA"}, oid: "1.2.840.113549.1.9.8"},
	{names: []string{"TCGID"}, oid: "1.3.6.1.4.1.1201.1.1.2.2.75"},
}

// lookupName finds a type by one of its names, ignoring case as
// strongSwan does.
func lookupName(name string) (attrType, bool) {
	for _, t := range attrTypes {
		for _, n := range t.names {
			if strings.EqualFold(n, name) {
				return t, true
			}
		}
	}
	return attrType{}, false
}

// lookupOID finds a type by its dotted OID.
func lookupOID(oid string) (attrType, bool) {
	for _, t := range attrTypes {
		if t.oid == oid {
			return t, true
		}
	}
	return attrType{}, false
}

// attr is one parsed TYPE=value.
type attr struct {
	typ   attrType
	value string
}

// Encode DER-encodes a DN string as strongSwan does: an RDNSequence in
// the order written, one attribute per RDN. The error says what is wrong
// with the string.
func Encode(s string) ([]byte, error) {
	attrs, err := parse(s)
	if err != nil {
		return nil, fmt.Errorf("invalid DN %q: %w", s, err)
	}
	der := encodeAttrs(attrs)
	if len(der) > maxDER {
		return nil, fmt.Errorf("invalid DN %q: its encoding (%d bytes) does not fit an ID payload", s, len(der))
	}
	return der, nil
}

func parse(s string) ([]attr, error) {
	i := skipSpaces(s, 0)
	sep := byte(',')
	if i < len(s) && s[i] == '/' {
		sep = '/'
		i++
	}
	var attrs []attr
	for n := 1; ; n++ {
		i = skipSpaces(s, i)
		if i == len(s) {
			break // a trailing separator is fine, as in strongSwan
		}
		a, next, err := parseAttr(s, i, sep)
		if err != nil {
			return nil, fmt.Errorf("RDN %d: %w", n, err)
		}
		attrs = append(attrs, a)
		if len(attrs) > maxRDNs {
			return nil, fmt.Errorf("more than %d RDNs (strongSwan's limit)", maxRDNs)
		}
		i = next
		if i < len(s) {
			i++ // the separator
		}
	}
	if len(attrs) == 0 {
		return nil, fmt.Errorf("no TYPE=value")
	}
	return attrs, nil
}

// parseAttr reads TYPE=value from s[i:] up to sep or the end and
// returns the index of the separator (or len(s)).
func parseAttr(s string, i int, sep byte) (attr, int, error) {
	start := i
	for i < len(s) && s[i] != ' ' && s[i] != '=' && s[i] != sep {
		i++
	}
	name := s[start:i]
	if name == "" {
		if i < len(s) && s[i] == sep {
			return attr{}, 0, fmt.Errorf("empty RDN (two separators in a row)")
		}
		return attr{}, 0, fmt.Errorf("no attribute type before '='")
	}
	typ, err := parseType(name)
	if err != nil {
		return attr{}, 0, err
	}
	i = skipSpaces(s, i)
	if i == len(s) || s[i] != '=' {
		return attr{}, 0, fmt.Errorf("%s: missing '=' after the attribute type (each part is TYPE=value)", name)
	}
	i = skipSpaces(s, i+1)
	end := strings.IndexByte(s[i:], sep)
	if end < 0 {
		end = len(s)
	} else {
		end += i
	}
	value := strings.TrimRight(s[i:end], " ")
	if err := checkValue(value); err != nil {
		return attr{}, 0, fmt.Errorf("value of %s: %w", name, err)
	}
	return attr{typ: typ, value: value}, end, nil
}

func parseType(name string) (attrType, error) {
	if t, ok := lookupName(name); ok {
		return t, nil
	}
	if name[0] >= '0' && name[0] <= '9' {
		if _, err := parseOID(name); err != nil {
			return attrType{}, fmt.Errorf("attribute type %q: %w", name, err)
		}
		if t, ok := lookupOID(name); ok {
			return t, nil
		}
		return attrType{names: []string{name}, oid: name}, nil
	}
	return attrType{}, fmt.Errorf("unknown attribute type %q (strongSwan's names: %s; or a dotted OID such as 2.5.4.3)", name, typeNames())
}

func typeNames() string {
	var names []string
	for _, t := range attrTypes {
		names = append(names, t.names...)
	}
	return strings.Join(names, ", ")
}

// checkValue refuses what strongSwan and RFC 4514 read differently, and
// what no DN should carry.
func checkValue(v string) error {
	if !utf8.ValidString(v) {
		return fmt.Errorf("not valid UTF-8")
	}
	if strings.HasPrefix(v, "=") {
		return fmt.Errorf("starts with '=' (strongSwan would drop it)")
	}
	if strings.HasPrefix(v, "#") {
		return fmt.Errorf("starts with '#': BER-encoded values are not supported (strongSwan would take them as text)")
	}
	for i, r := range v {
		switch {
		case r == '\\':
			return fmt.Errorf("has a '\\': strongSwan has no escapes in DNs and would take it literally, " +
				"so a ',' cannot be part of a value (except in the \"/CN=a,b/O=c\" form)")
		case r == ';' && startsAttr(v[i+1:]):
			return fmt.Errorf("has a ';' before TYPE=: strongSwan does not separate RDNs with ';' and would make it part of the value; separate RDNs with ','")
		case r == '+' && startsAttr(v[i+1:]):
			return fmt.Errorf("has a '+' before TYPE=: multi-valued RDNs are not supported and strongSwan would take '+' literally")
		case r == '"':
			return fmt.Errorf("has a '\"': quoted values are not supported (strongSwan would keep the quotes)")
		case r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0:
			return fmt.Errorf("has the control character %s", strconv.QuoteRune(r))
		}
	}
	return nil
}

// startsAttr reports whether s starts like another TYPE=value: an RFC
// 4514 reader takes a '+' before it as a multi-valued RDN and an RFC 2253
// one a ';' as a separator. Other '+' and ';' ("+41 44", "C++", "a; b")
// mean the same to all readers.
func startsAttr(s string) bool {
	i := skipSpaces(s, 0)
	k := i
	for k < len(s) && (s[k] >= 'a' && s[k] <= 'z' || s[k] >= 'A' && s[k] <= 'Z' || s[k] >= '0' && s[k] <= '9' || s[k] == '.' || s[k] == '-') {
		k++
	}
	if k == i {
		return false
	}
	j := skipSpaces(s, k)
	return j < len(s) && s[j] == '='
}

func skipSpaces(s string, i int) int {
	for i < len(s) && s[i] == ' ' {
		i++
	}
	return i
}
