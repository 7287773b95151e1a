package dn

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

// swanSays is what strongSwan does with a case's string.
type swanSays uint8

const (
	// swanSame: strongSwan encodes the string to the case's DER.
	swanSame swanSays = iota
	// swanRejects: strongSwan takes the string for no DN (it makes it a
	// key ID); we accept it as an extension, so no reading conflicts.
	swanRejects
	// swanNewer: only strongSwan 6.0.5 and later know the name.
	swanNewer
	// swanAny: we reject the string; strongSwan's verdict is in the
	// testdata (it accepts some of these with a reading RFC 4514 or
	// RFC 2253 readers do not share, which is why we refuse them).
	swanAny
)

type dnCase struct {
	in   string
	der  string // hex; "" when Encode must fail
	err  string // part of the error when it must fail
	swan swanSays
}

// cases are the strings the tests run; the DER of the swanSame ones is
// strongSwan 5.9.8's (pki --self --dn, see testdata/strongswan.txt).
func cases() []dnCase {
	long := strings.Repeat("a", 200)
	return []dnCase{
		{in: "C=CH, O=xdpsec, CN=gw-a", der: "302d310b3009060355040613024348310f300d060355040a1306786470736563310d300b0603550403130467772d61"},
		{in: "CN=gw,O=Example", der: "301f310b30090603550403130267773110300e060355040a13074578616d706c65"},
		{in: "CN=gw", der: "300d310b3009060355040313026777"},
		// Config used to accept these, the wire encoder refused them.
		{in: "UID=gw,O=x", der: "302031123010060a0992268993f22c64010113026777310a3008060355040a130178"},
		{in: "2.5.4.3=gw", der: "300d310b3009060355040313026777", swan: swanRejects},
		// strongSwan makes one CN "gw;O=Example" of this; config used to
		// read two RDNs.
		{in: "CN=gw;O=Example", err: "';' before TYPE=", swan: swanAny},
		{in: "O=Example; Inc", der: "301731153013060355040a0c0c4578616d706c653b20496e63"},
		// strongSwan has no escapes: `a\` and `b` for the second one.
		{in: `CN=gw, O=Example\, Inc., C=CH`, err: `has a '\'`, swan: swanAny},
		{in: `CN=a\,O=b`, err: `has a '\'`, swan: swanAny},
		{in: "/C=CH/O=Example, Inc./CN=gw", der: "3032310b300906035504061302434831163014060355040a130d4578616d706c652c20496e632e310b3009060355040313026777"},
		{in: " /CN=a/ O=b", der: "3018310a30080603550403130161310a3008060355040a130162"},
		{in: "CN=", der: "300b3109300706035504031300"},
		{in: "CN=,O=x", der: "30173109300706035504031300310a3008060355040a130178"},
		{in: "CN=gw,", der: "300d310b3009060355040313026777"},
		{in: "CN=gw, ", der: "300d310b3009060355040313026777"},
		{in: "/CN=gw/", der: "300d310b3009060355040313026777"},
		{in: "  CN=gw", der: "300d310b3009060355040313026777"},
		{in: "cn = gw , o = x ", der: "3019310b3009060355040313026777310a3008060355040a130178"},
		{in: "CN=gw,,O=x", err: "empty RDN", swan: swanAny},
		{in: ",CN=gw", err: "empty RDN", swan: swanAny},
		{in: "=x", err: "no attribute type", swan: swanAny},
		{in: "XX=a,O=x", err: `unknown attribute type "XX"`, swan: swanAny},
		{in: "GN=Alice", err: `unknown attribute type "GN"`, swan: swanAny},
		{in: "CN gw", err: "missing '='", swan: swanAny},
		{in: "C N=x", err: "missing '='", swan: swanAny},
		{in: "CN==x", err: "starts with '='", swan: swanAny},
		{in: "CN=a+O=b", err: "'+' before TYPE=", swan: swanAny},
		{in: `CN="gw"`, err: `has a '"'`, swan: swanAny},
		{in: "CN=#130161", err: "starts with '#'", swan: swanAny},
		{in: "CN=a\tb", err: "control character", swan: swanAny},
		{in: "CN=a=b", der: "300e310c300a06035504031303613d62"},
		{in: "G=Alice, SN=Smith, serialNumber=1234, SERIALNUMBER=5", der: "303b310e300c060355042a1305416c696365310e300c06035504041305536d697468310d300b0603550405130431323334310a30080603550405130135"},
		{in: "E=vpn@example.com, email=a@b, emailAddress=c@d", der: "3048311e301c06092a864886f70d010901160f76706e406578616d706c652e636f6d3112301006092a864886f70d01090116036140623112301006092a864886f70d0109011603634064"},
		// IA5String even when it is not ASCII, as strongSwan does.
		{in: "E=ü@example.com", der: "301f311d301b06092a864886f70d010901160ec3bc406578616d706c652e636f6d"},
		{in: "CN=Zürich", der: "30123110300e06035504030c075ac3bc72696368"},
		{in: "CN=日本", der: "3011310f300d06035504030c06e697a5e69cac"},
		{in: "CN=a_b", der: "300e310c300a06035504030c03615f62"},
		{in: "CN=a*b", der: "300e310c300a06035504030c03612a62"},
		{in: "CN=O'Brien (ops) +41-44/1:2?", der: "302431223020060355040313194f27427269656e20286f707329202b34312d34342f313a323f"},
		{in: "DC=example,DC=com", der: "302e31173015060a0992268993f22c64011913076578616d706c6531133011060a0992268993f22c6401191303636f6d"},
		{in: "T=Dr, I=AB, N=x, D=desc, ID=1, dnQualifier=q, dmdName=d, pseudonym=p, postalCode=8000, postalAddress=Street 1",
			der: "308187310b3009060355040c13024472310b3009060355042b13024142310a30080603550429130178310d300b060355040d130464657363310a3008060355042d130131310a3008060355042e130171310a30080603550436130164310a30080603550441130170310d300b06035504111304383030303111300f060355041013085374726565742031"},
		{in: "STREET=Main St 1, L=Zurich, ST=ZH, OU=IT, ND=n, EN=1, employeeNumber=2, UN=host, unstructuredName=h, UA=addr, unstructuredAddress=a, TCGID=t",
			der: "3081d831123010060355040913094d61696e2053742031310f300d060355040713065a7572696368310b3009060355040813025a48310b3009060355040b13024954310e300c0607028206010a071413016e3111300f060a6086480186f8420301031301313111300f060a6086480186f8420301031301323113301106092a864886f70d0109021604686f73743110300e06092a864886f70d0109021601683113301106092a864886f70d0109081304616464723110300e06092a864886f70d01090813016131133011060c2b060104018931010102024b130174"},
		{in: "organizationIdentifier=VATCH-123", der: "3014311230100603550461130956415443482d313233", swan: swanNewer},
		{in: "1.2.3.4=x", der: "300c310a300806032a0304130178", swan: swanRejects},
		{in: "1.2.840.113549.1.9.1=a@b", der: "30143112301006092a864886f70d0109011603614062", swan: swanRejects},
		{in: "2.5.4.3.=x", err: "bad OID arc", swan: swanAny},
		{in: "2.5.4.03=x", err: "bad OID arc", swan: swanAny},
		{in: "3.1=x", err: "an OID starts with", swan: swanAny},
		{in: "1.40=x", err: "an OID starts with", swan: swanAny},
		{in: "CN=" + long, der: "3081d63181d33081d006035504031381c8" + strings.Repeat("61", 200)},
		{in: strings.Repeat("CN=a,", 20), der: "3081f0" + strings.Repeat("310a30080603550403130161", 20)},
		{in: strings.Repeat("CN=a,", 21), err: "more than 20 RDNs", swan: swanAny},
	}
}

func TestEncode(t *testing.T) {
	for _, tc := range cases() {
		der, err := Encode(tc.in)
		if tc.der == "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Encode(%q) = %x, %v; want an error with %q", tc.in, der, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Encode(%q): %v", tc.in, err)
			continue
		}
		if got := hex.EncodeToString(der); got != tc.der {
			t.Errorf("Encode(%q)\n got %s\nwant %s", tc.in, got, tc.der)
		}
	}
}

// TestErrorNamesDN: the error quotes the DN, so config problems show
// what was wrong without the caller repeating it.
func TestErrorNamesDN(t *testing.T) {
	_, err := Encode("CN=gw,XX=1")
	if err == nil || !strings.Contains(err.Error(), `"CN=gw,XX=1"`) || !strings.Contains(err.Error(), "RDN 2") {
		t.Fatalf("error %v does not name the DN and the RDN", err)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range cases() {
		if tc.der == "" {
			continue
		}
		der, err := Encode(tc.in)
		if err != nil {
			t.Fatalf("Encode(%q): %v", tc.in, err)
		}
		s, err := String(der)
		if err != nil {
			t.Fatalf("String(%x): %v", der, err)
		}
		again, err := Encode(s)
		if err != nil || !bytes.Equal(again, der) {
			t.Errorf("%q -> %q -> %x, %v; want %x", tc.in, s, again, err, der)
		}
	}
}

func TestString(t *testing.T) {
	tests := []struct{ der, want string }{
		// strongSwan's order and separators, not pkix.Name's reversal.
		{"302d310b3009060355040613024348310f300d060355040a1306786470736563310d300b0603550403130467772d61", "C=CH, O=xdpsec, CN=gw-a"},
		{"3032310b300906035504061302434831163014060355040a130d4578616d706c652c20496e632e310b3009060355040313026777", "/C=CH/O=Example, Inc./CN=gw"},
		{"300d310b3009060355040313026777", "CN=gw"},
		{"300c310a300806032a0304130178", "1.2.3.4=x"},
		{"3018310a30080603550403130161310a3008060355040a130162", "CN=a, O=b"},
		// From peers, what Encode never makes: a multi-valued RDN, a
		// BMPString, a ',' next to a '/', escapes.
		{"30163114300806035504031301613008060355040a130162", "CN=a+O=b"},
		{"300f310d300b06035504031e0400670077", "CN=#1e0400670077"},
		{"30173115301306035504030c0c67773b4f3d4578616d706c65", `CN=gw\;O=Example`},
		{"30123110300e06035504030c07612c622f63200a", `CN=a\,b/c \0A`},
		{"3010310e300c06035504030c05235c22203d", `CN=\#\\\" =`},
		{"300f310d300b06035504030c0420612020", `CN=\ a\ \ `},
	}
	for _, tc := range tests {
		der, _ := hex.DecodeString(tc.der)
		got, err := String(der)
		if err != nil || got != tc.want {
			t.Errorf("String(%s) = %q, %v; want %q", tc.der, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "30", "3000", "3100", "30023100", "300d310b3009060355040313036777", "300d310b3009060355040313026777ff", "3080310b300906035504031302677700", "30820005310330010"} {
		der, _ := hex.DecodeString(bad)
		if s, err := String(der); err == nil {
			t.Errorf("String(%s) = %q, want an error", bad, s)
		}
	}
}
