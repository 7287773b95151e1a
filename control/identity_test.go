package control

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/xdpsec/xdpsec/control/config"
	"github.com/xdpsec/xdpsec/ike/message"
)

// TestDNConfigMatchesWire: every DN the configuration accepts goes on
// the wire (config -> ike identity), as strongSwan encodes the same
// string. The strings and strongSwan's DER are ike/dn's testdata (made
// with strongSwan's pki), which has the cases where the configuration
// and the wire used to disagree ("UID=gw,O=x", "CN=gw;O=Example", ...).
func TestDNConfigMatchesWire(t *testing.T) {
	f, err := os.Open("../ike/dn/testdata/strongswan.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	accepted, refused := 0, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			t.Fatalf("testdata line %q: no DER", line)
		}
		s, err := strconv.Unquote(line[:sp])
		swanHex := line[sp+1:]
		if err != nil {
			t.Fatalf("testdata line %q: %v", line, err)
		}
		id, err := config.ParseIdentity(s)
		if err != nil {
			refused++
			continue
		}
		if id.Type != config.IDDERASN1DN {
			t.Errorf("%q: parsed as %v, not a DN", s, id.Type)
			continue
		}
		accepted++
		wire, err := ikeIdentity(id)
		if err != nil {
			t.Errorf("%q: accepted by the configuration, refused for the wire: %v", s, err)
			continue
		}
		if wire.Type != message.IDDERASN1DN {
			t.Errorf("%q: wire type %v", s, wire.Type)
		}
		// "-": strongSwan takes it for no DN (dotted OIDs, an extension).
		if swanHex != "-" {
			want, _ := hex.DecodeString(swanHex)
			if !bytes.Equal(wire.Data, want) {
				t.Errorf("%q: on the wire %x, strongSwan %x", s, wire.Data, want)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if accepted < 20 || refused < 10 {
		t.Fatalf("only %d DNs accepted, %d refused: is the testdata complete?", accepted, refused)
	}
}
