package ike

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/xdpsec/xdpsec/ike/message"
)

func TestNarrow(t *testing.T) {
	sel := func(s string) message.TrafficSelector { return message.SelectorFromPrefix(pfx(s)) }
	port := func(s string, proto uint8, lo, hi uint16) message.TrafficSelector {
		ts := sel(s)
		ts.IPProtocol, ts.StartPort, ts.EndPort = proto, lo, hi
		return ts
	}
	cases := []struct {
		name string
		peer []message.TrafficSelector
		ours []netip.Prefix
		want []message.TrafficSelector
	}{
		{"equal", []message.TrafficSelector{sel("10.1.0.0/24")}, []netip.Prefix{pfx("10.1.0.0/24")}, []message.TrafficSelector{sel("10.1.0.0/24")}},
		{"peer wider", []message.TrafficSelector{sel("10.0.0.0/8")}, []netip.Prefix{pfx("10.1.0.0/24")}, []message.TrafficSelector{sel("10.1.0.0/24")}},
		{"ours wider", []message.TrafficSelector{sel("10.1.0.0/24")}, []netip.Prefix{pfx("10.0.0.0/8")}, []message.TrafficSelector{sel("10.1.0.0/24")}},
		{"disjoint", []message.TrafficSelector{sel("10.1.0.0/24")}, []netip.Prefix{pfx("10.2.0.0/24")}, nil},
		{"family", []message.TrafficSelector{sel("10.1.0.0/24")}, []netip.Prefix{pfx("fd00::/8")}, nil},
		{"packet selector first", []message.TrafficSelector{sel("10.1.0.5/32"), sel("10.1.0.0/16")}, []netip.Prefix{pfx("10.1.0.0/24")},
			[]message.TrafficSelector{sel("10.1.0.0/24")}},
		{"ports kept", []message.TrafficSelector{port("10.1.0.0/24", 6, 443, 443)}, []netip.Prefix{pfx("10.0.0.0/8")},
			[]message.TrafficSelector{port("10.1.0.0/24", 6, 443, 443)}},
		{"two of ours", []message.TrafficSelector{sel("10.0.0.0/8")}, []netip.Prefix{pfx("10.1.0.0/24"), pfx("10.3.0.0/24")},
			[]message.TrafficSelector{sel("10.1.0.0/24"), sel("10.3.0.0/24")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := narrow(tc.peer, tc.ours)
			if !slices.EqualFunc(got, tc.want, func(a, b message.TrafficSelector) bool {
				return a.Type == b.Type && a.IPProtocol == b.IPProtocol && a.StartPort == b.StartPort && a.EndPort == b.EndPort &&
					a.StartAddr == b.StartAddr && a.EndAddr == b.EndAddr
			}) {
				t.Errorf("narrow = %s, want %s", tsString(got), tsString(tc.want))
			}
		})
	}
}

func TestSelectProposal(t *testing.T) {
	cases := []struct {
		name     string
		offer    []string
		ours     []string
		esp      bool
		preferKE uint16
		wantOK   bool
		want     string
		number   uint8
	}{
		{name: "first match", offer: []string{"aes256gcm16-prfsha256-x25519"}, ours: []string{"aes256gcm16-prfsha256-x25519"},
			wantOK: true, want: "AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE_25519", number: 1},
		{name: "peer order wins", offer: []string{"aes128-sha256-modp2048", "aes256gcm16-prfsha256-x25519"},
			ours: []string{"aes256gcm16-prfsha256-x25519", "aes128-sha256-modp2048"}, wantOK: true,
			want: "AES_CBC_128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048", number: 1},
		{name: "second proposal", offer: []string{"aes128-sha256-modp3072", "aes256gcm16-prfsha384-ecp384"},
			ours: []string{"aes256gcm16-prfsha384-ecp384"}, wantOK: true, want: "AES_GCM_16_256/PRF_HMAC_SHA2_384/ECP_384", number: 2},
		{name: "key length matters", offer: []string{"aes128gcm16-prfsha256-x25519"}, ours: []string{"aes256gcm16-prfsha256-x25519"}},
		{name: "ke preferred", offer: []string{"aes256gcm16-prfsha256-x25519-ecp256"}, ours: []string{"aes256gcm16-prfsha256-x25519-ecp256"},
			preferKE: 19, wantOK: true, want: "AES_GCM_16_256/PRF_HMAC_SHA2_256/ECP_256", number: 1},
		{name: "no common group", offer: []string{"aes256gcm16-prfsha256-x25519"}, ours: []string{"aes256gcm16-prfsha256-ecp256"}},
		{name: "esp gcm", esp: true, offer: []string{"aes256gcm16"}, ours: []string{"aes128gcm16", "aes256gcm16"},
			wantOK: true, want: "AES_GCM_16_256", number: 1},
		{name: "esp esn", esp: true, offer: []string{"aes256gcm16-esn-noesn"}, ours: []string{"aes256gcm16-esn"},
			wantOK: true, want: "AES_GCM_16_256/ESN", number: 1},
		{name: "esp no esn", esp: true, offer: []string{"aes256gcm16-esn"}, ours: []string{"aes256gcm16"}},
		{name: "esp pfs group ignored in IKE_AUTH", esp: true, offer: []string{"aes256gcm16"}, ours: []string{"aes256gcm16-x25519"},
			wantOK: true, want: "AES_GCM_16_256", number: 1},
		{name: "esp integrity", esp: true, offer: []string{"aes128-sha256"}, ours: []string{"aes128-sha384"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			proto, parse := message.ProtocolIKE, mustIKE
			if tc.esp {
				proto, parse = message.ProtocolESP, mustESP
			}
			offer := toWire(parse(t, tc.offer...), proto, nil)
			c, ok := selectProposal(offer, parse(t, tc.ours...), proto, tc.preferKE)
			if ok != tc.wantOK {
				t.Fatalf("ok %v, want %v", ok, tc.wantOK)
			}
			if !ok {
				return
			}
			if got := c.String(); got != tc.want || c.number != tc.number {
				t.Errorf("chose #%d %s, want #%d %s", c.number, got, tc.number, tc.want)
			}
			// The initiator accepts the single proposal sent back.
			back := &message.SA{Proposals: []message.Proposal{c.wire(proto)}}
			if _, err := acceptAnswer(back, parse(t, tc.offer...), proto); err != nil {
				t.Errorf("initiator rejects the answer: %v", err)
			}
		})
	}
	// An answer we did not offer is refused.
	bad := &message.SA{Proposals: toWire(mustIKE(t, "aes128-sha256-modp2048"), message.ProtocolIKE, nil)}
	if _, err := acceptAnswer(bad, mustIKE(t, "aes256gcm16-prfsha256-x25519"), message.ProtocolIKE); err == nil {
		t.Error("accepted a proposal we did not offer")
	}
}

func TestNATHash(t *testing.T) {
	a := natHash(1, 2, netip.MustParseAddrPort("192.0.2.1:500"))
	cases := []struct {
		spii, spir uint64
		ap         string
	}{{1, 0, "192.0.2.1:500"}, {1, 2, "192.0.2.1:4500"}, {1, 2, "192.0.2.2:500"}, {2, 1, "192.0.2.1:500"}}
	for _, tc := range cases {
		if b := natHash(tc.spii, tc.spir, netip.MustParseAddrPort(tc.ap)); string(a) == string(b) {
			t.Errorf("hash of %d/%d %s equals that of 1/2 192.0.2.1:500", tc.spii, tc.spir, tc.ap)
		}
	}
	if len(a) != message.NATDetectionHashLen {
		t.Errorf("hash length %d", len(a))
	}
}
