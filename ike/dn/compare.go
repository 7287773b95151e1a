package dn

import (
	"slices"
	"strconv"
	"strings"
)

// Equal reports whether two DER DNs name the same entity the way RFC 5280
// 7.1 compares names: RDN by RDN in order, attributes by type, string
// values whatever their string type (an IA5String E= from strongSwan
// equals a UTF8String one), ignoring case and insignificant spaces, the
// attributes of a multi-valued RDN in any order. Undecodable DER equals
// only the same bytes.
func Equal(a, b []byte) bool {
	ca, errA := Canonical(a)
	cb, errB := Canonical(b)
	if errA != nil || errB != nil {
		return errA != nil && errB != nil && string(a) == string(b)
	}
	return ca == cb
}

// Canonical renders a DER DN in a form that is the same for all DNs Equal
// takes for one: for maps keyed by identity. It is not meant for display.
func Canonical(der []byte) (string, error) {
	rdns, err := decode(der)
	if err != nil {
		return "", err
	}
	// Every part goes with its length, so no value, whatever bytes it
	// holds, can make two different DNs render alike.
	var sb strings.Builder
	for _, rdn := range rdns {
		atvs := make([]string, 0, len(rdn))
		for _, a := range rdn {
			v := a.value
			if !a.raw {
				v = foldValue(v)
			}
			atvs = append(atvs, lengthPrefixed(a.name)+lengthPrefixed(v))
		}
		slices.Sort(atvs)
		sb.WriteString(strconv.Itoa(len(atvs)) + "{")
		for _, atv := range atvs {
			sb.WriteString(atv)
		}
		sb.WriteString("}")
	}
	return sb.String(), nil
}

func lengthPrefixed(s string) string { return strconv.Itoa(len(s)) + ":" + s }

// foldValue is RFC 4518's caseIgnoreMatch preparation, simplified to what
// DNs of gateways carry: leading and trailing spaces dropped, inner runs
// of spaces as one, case folded.
func foldValue(v string) string {
	return strings.ToLower(strings.ToUpper(strings.Join(strings.Fields(v), " ")))
}
