package dn

import (
	"encoding/hex"
	"testing"
)

// rdnDER builds an RDNSequence of single-attribute RDNs with the value
// string types given, as another implementation might encode them.
func rdnDER(t *testing.T, atvs ...struct {
	oid string
	tag byte
	val string
}) []byte {
	t.Helper()
	var seq []byte
	for _, a := range atvs {
		oid, err := parseOID(a.oid)
		if err != nil {
			t.Fatal(err)
		}
		seq = append(seq, tlv(tagSet, tlv(tagSequence, append(tlv(tagOID, oid), tlv(a.tag, []byte(a.val))...)))...)
	}
	return tlv(tagSequence, seq)
}

type atv = struct {
	oid string
	tag byte
	val string
}

const (
	oidC  = "2.5.4.6"
	oidO  = "2.5.4.10"
	oidCN = "2.5.4.3"
	oidE  = "1.2.840.113549.1.9.1"
)

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEqual(t *testing.T) {
	// strongSwan 5.9.8's `pki --self --dn` subjects (testdata/strongswan.txt).
	swanGW := mustHex(t, "302d310b3009060355040613024348310f300d060355040a1306786470736563310d300b0603550403130467772d61") // "C=CH, O=xdpsec, CN=gw-a"
	swanE := mustHex(t, "3048311e301c06092a864886f70d010901160f76706e406578616d706c652e636f6d3112301006092a864886f70d01090116036140623112301006092a864886f70d0109011603634064")
	enc := func(s string) []byte {
		t.Helper()
		b, err := Encode(s)
		if err != nil {
			t.Fatalf("Encode(%q): %v", s, err)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		a, b []byte
		want bool
	}{
		{"same string as strongSwan", enc("C=CH, O=xdpsec, CN=gw-a"), swanGW, true},
		{"case and spaces", enc("c=ch,  o = XDPSEC ,cn=GW-A"), swanGW, true},
		{"inner spaces collapse", enc("C=CH, O=Example  Inc, CN=gw"), enc("C=CH, O=Example Inc, CN=gw"), true},
		{"RDN order matters", enc("CN=gw-a, O=xdpsec, C=CH"), swanGW, false},
		{"another value", enc("C=CH, O=xdpsec, CN=gw-b"), swanGW, false},
		{"a missing RDN", enc("C=CH, CN=gw-a"), swanGW, false},
		{"E= as IA5 from strongSwan, ours as UTF8", rdnDER(t,
			atv{oidE, tagUTF8, "vpn@example.com"}, atv{oidE, tagUTF8, "a@b"}, atv{oidE, tagUTF8, "c@d"}), swanE, true},
		{"PrintableString against UTF8String", rdnDER(t, atv{oidCN, tagPrintable, "gw"}), rdnDER(t, atv{oidCN, tagUTF8, "GW"}), true},
		{"same value, other type", rdnDER(t, atv{oidCN, tagUTF8, "gw"}), rdnDER(t, atv{oidO, tagUTF8, "gw"}), false},
		{"undecodable equals only itself", []byte{0x30, 0x01}, []byte{0x30, 0x01}, true},
		{"undecodable against a DN", []byte{0x30, 0x01}, swanGW, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Equal(tc.a, tc.b); got != tc.want {
				t.Errorf("Equal = %v, want %v", got, tc.want)
			}
			if got := Equal(tc.b, tc.a); got != tc.want {
				t.Errorf("Equal reversed = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestCanonicalMultiValued: the attributes of one RDN are a set.
func TestCanonicalMultiValued(t *testing.T) {
	oidCNb, _ := parseOID(oidCN)
	oidOb, _ := parseOID(oidO)
	cn := tlv(tagSequence, append(tlv(tagOID, oidCNb), tlv(tagUTF8, []byte("gw"))...))
	o := tlv(tagSequence, append(tlv(tagOID, oidOb), tlv(tagUTF8, []byte("x"))...))
	ab := tlv(tagSequence, tlv(tagSet, append(append([]byte(nil), cn...), o...)))
	ba := tlv(tagSequence, tlv(tagSet, append(append([]byte(nil), o...), cn...)))
	if !Equal(ab, ba) {
		t.Error("a multi-valued RDN in another order is another DN")
	}
	split := tlv(tagSequence, append(tlv(tagSet, cn), tlv(tagSet, o)...))
	if Equal(ab, split) {
		t.Error("one two-valued RDN equals two RDNs")
	}
	// Values that hold the rendering's own punctuation stay apart.
	x := rdnDER(t, atv{oidCN, tagUTF8, "a2:b"}, atv{oidO, tagUTF8, "c"})
	y := rdnDER(t, atv{oidCN, tagUTF8, "a"}, atv{oidO, tagUTF8, "b2:c"})
	if Equal(x, y) {
		t.Error("values with length-like text collide")
	}
}
