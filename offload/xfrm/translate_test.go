package xfrm

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"

	"github.com/xdpsec/xdpsec/offload"
)

func key(n int) offload.Key {
	k := make([]byte, n)
	for i := range k {
		k[i] = byte(i + 1)
	}
	return k
}

func baseSA() offload.SA {
	return offload.SA{
		Conn: "site-b", Child: "net", SPI: 0xc0ffee01, Dir: offload.Out,
		Encr: offload.EncrAESGCM16, KeyBits: 128, EncrKey: key(20),
		Mode: offload.Tunnel,
		Src:  netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("198.51.100.2"),
		ReplayWindow: 32,
	}
}

func TestStateForAlgorithms(t *testing.T) {
	for _, tc := range []struct {
		name             string
		encr, integ      uint16
		bits             int
		encrKey, intKey  int
		aead, crypt, aut string
		trunc            int
		wantErr          string
	}{
		{name: "aes128gcm16", encr: offload.EncrAESGCM16, bits: 128, encrKey: 20, aead: algGCM},
		{name: "aes256gcm16", encr: offload.EncrAESGCM16, bits: 256, encrKey: 36, aead: algGCM},
		{name: "chacha20poly1305", encr: offload.EncrChaCha20Poly1305, bits: 256, encrKey: 36, aead: algChaCha},
		{name: "chacha20poly1305 no keybits", encr: offload.EncrChaCha20Poly1305, encrKey: 36, aead: algChaCha},
		{name: "aes128-sha256", encr: offload.EncrAESCBC, integ: offload.IntegHMACSHA256_128, bits: 128, encrKey: 16, intKey: 32, crypt: algCBC, aut: "hmac(sha256)", trunc: 128},
		{name: "aes256-sha256", encr: offload.EncrAESCBC, integ: offload.IntegHMACSHA256_128, bits: 256, encrKey: 32, intKey: 32, crypt: algCBC, aut: "hmac(sha256)", trunc: 128},
		{name: "aes128-sha384", encr: offload.EncrAESCBC, integ: offload.IntegHMACSHA384_192, bits: 128, encrKey: 16, intKey: 48, crypt: algCBC, aut: "hmac(sha384)", trunc: 192},
		{name: "aes256-sha384", encr: offload.EncrAESCBC, integ: offload.IntegHMACSHA384_192, bits: 256, encrKey: 32, intKey: 48, crypt: algCBC, aut: "hmac(sha384)", trunc: 192},
		{name: "aes128-sha512", encr: offload.EncrAESCBC, integ: offload.IntegHMACSHA512_256, bits: 128, encrKey: 16, intKey: 64, crypt: algCBC, aut: "hmac(sha512)", trunc: 256},
		{name: "aes256-sha512", encr: offload.EncrAESCBC, integ: offload.IntegHMACSHA512_256, bits: 256, encrKey: 32, intKey: 64, crypt: algCBC, aut: "hmac(sha512)", trunc: 256},
		{name: "gcm key without salt", encr: offload.EncrAESGCM16, bits: 128, encrKey: 16, wantErr: "key of 16 bytes"},
		{name: "gcm with integrity", encr: offload.EncrAESGCM16, integ: offload.IntegHMACSHA256_128, bits: 128, encrKey: 20, intKey: 32, wantErr: "aead cipher"},
		{name: "cbc without integrity", encr: offload.EncrAESCBC, bits: 128, encrKey: 16, wantErr: "unsupported integrity"},
		{name: "cbc short hmac key", encr: offload.EncrAESCBC, integ: offload.IntegHMACSHA512_256, bits: 128, encrKey: 16, intKey: 32, wantErr: "integrity key of 32 bytes"},
		{name: "3des", encr: 3, bits: 192, encrKey: 24, wantErr: "unsupported encryption"},
		{name: "chacha 128", encr: offload.EncrChaCha20Poly1305, bits: 128, encrKey: 20, wantErr: "chacha20 with 128-bit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sa := baseSA()
			sa.Encr, sa.Integ, sa.KeyBits = tc.encr, tc.integ, tc.bits
			sa.EncrKey = key(tc.encrKey)
			if tc.intKey > 0 {
				sa.IntegKey = key(tc.intKey)
			}
			s, err := stateFor(sa, xlat{reqid: 7})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			st := s.st
			switch {
			case tc.aead != "":
				if st.Aead == nil || st.Aead.Name != tc.aead || st.Aead.ICVLen != 128 || !bytes.Equal(st.Aead.Key, sa.EncrKey) {
					t.Errorf("aead = %+v, want %s with the salted key, icv 128", st.Aead, tc.aead)
				}
				if st.Crypt != nil || st.Auth != nil {
					t.Errorf("aead sa with crypt %v auth %v", st.Crypt, st.Auth)
				}
			default:
				if st.Aead != nil {
					t.Errorf("cbc sa with aead %v", st.Aead)
				}
				if st.Crypt == nil || st.Crypt.Name != tc.crypt || !bytes.Equal(st.Crypt.Key, sa.EncrKey) {
					t.Errorf("crypt = %+v", st.Crypt)
				}
				if st.Auth == nil || st.Auth.Name != tc.aut || st.Auth.TruncateLen != tc.trunc || !bytes.Equal(st.Auth.Key, sa.IntegKey) {
					t.Errorf("auth = %+v, want %s/%d", st.Auth, tc.aut, tc.trunc)
				}
			}
			if st.Proto != netlink.XFRM_PROTO_ESP || st.Spi != int(sa.SPI) || st.Reqid != 7 {
				t.Errorf("proto %v spi %x reqid %d", st.Proto, st.Spi, st.Reqid)
			}
		})
	}
}

func TestStateForShape(t *testing.T) {
	v6 := func(sa *offload.SA) {
		sa.Src, sa.Dst = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8:1::2")
	}
	for _, tc := range []struct {
		name    string
		mod     func(*offload.SA)
		x       xlat
		check   func(t *testing.T, s stateSpec)
		wantErr string
	}{
		{name: "tunnel v4", check: func(t *testing.T, s stateSpec) {
			if s.st.Mode != netlink.XFRM_MODE_TUNNEL || !s.st.Src.Equal(net.ParseIP("192.0.2.1")) || !s.st.Dst.Equal(net.ParseIP("198.51.100.2")) {
				t.Errorf("state %v", s.st)
			}
			if len(s.st.Dst) != net.IPv4len {
				t.Errorf("v4 dst as %d bytes: netlink would take it for IPv6", len(s.st.Dst))
			}
		}},
		{name: "transport v6", mod: func(sa *offload.SA) { v6(sa); sa.Mode = offload.Transport }, check: func(t *testing.T, s stateSpec) {
			if s.st.Mode != netlink.XFRM_MODE_TRANSPORT || s.st.Dst.String() != "2001:db8:1::2" {
				t.Errorf("state %v", s.st)
			}
		}},
		{name: "v4-mapped outer", mod: func(sa *offload.SA) {
			sa.Src, sa.Dst = netip.MustParseAddr("::ffff:192.0.2.1"), netip.MustParseAddr("::ffff:198.51.100.2")
		}, check: func(t *testing.T, s stateSpec) {
			if nl.GetIPFamily(s.st.Dst) != nl.FAMILY_V4 {
				t.Errorf("mapped dst %v not v4", s.st.Dst)
			}
		}},
		{name: "mixed families", mod: func(sa *offload.SA) { sa.Dst = netip.MustParseAddr("2001:db8::2") }, wantErr: "bad outer addresses"},
		{name: "encap v4", mod: func(sa *offload.SA) { sa.Encap = &offload.Encap{SrcPort: 4500, DstPort: 31000} }, check: func(t *testing.T, s stateSpec) {
			e := s.st.Encap
			if e == nil || e.Type != netlink.XFRM_ENCAP_ESPINUDP || e.SrcPort != 4500 || e.DstPort != 31000 {
				t.Errorf("encap %v", e)
			}
		}},
		{name: "encap v6", mod: func(sa *offload.SA) { v6(sa); sa.Encap = &offload.Encap{SrcPort: 4500, DstPort: 4500} }, check: func(t *testing.T, s stateSpec) {
			if s.st.Encap == nil || !s.st.Encap.OriginalAddress.Equal(net.IPv6zero) {
				t.Errorf("encap %v", s.st.Encap)
			}
		}},
		{name: "encap without port", mod: func(sa *offload.SA) { sa.Encap = &offload.Encap{SrcPort: 4500} }, wantErr: "both ports"},
		{name: "esn on", mod: func(sa *offload.SA) { sa.ESN = true; sa.ReplayWindow = 1024 }, check: func(t *testing.T, s stateSpec) {
			if !s.st.ESN || s.replayESN != 1024 || s.st.ReplayWindow != 0 {
				t.Errorf("esn %v replay_esn %d legacy %d", s.st.ESN, s.replayESN, s.st.ReplayWindow)
			}
		}},
		{name: "esn without window", mod: func(sa *offload.SA) { sa.ESN = true; sa.ReplayWindow = 0 }, check: func(t *testing.T, s stateSpec) {
			if s.replayESN != esnDefaultWindow {
				t.Errorf("replay_esn %d", s.replayESN)
			}
		}},
		{name: "esn off small window", mod: func(sa *offload.SA) { sa.ReplayWindow = 32 }, check: func(t *testing.T, s stateSpec) {
			if s.st.ESN || s.replayESN != 0 || s.st.ReplayWindow != 32 {
				t.Errorf("esn %v replay_esn %d legacy %d", s.st.ESN, s.replayESN, s.st.ReplayWindow)
			}
		}},
		{name: "esn off large window", mod: func(sa *offload.SA) { sa.ReplayWindow = 4096 }, check: func(t *testing.T, s stateSpec) {
			if s.st.ESN || s.replayESN != 4096 || s.st.ReplayWindow != 0 {
				t.Errorf("esn %v replay_esn %d legacy %d", s.st.ESN, s.replayESN, s.st.ReplayWindow)
			}
		}},
		{name: "lifetimes", mod: func(sa *offload.SA) {
			sa.Lifetime = offload.Lifetime{SoftBytes: 1, HardBytes: 2, SoftPackets: 3, HardPackets: 4,
				SoftTime: 1500 * time.Millisecond, HardTime: time.Hour}
		}, check: func(t *testing.T, s stateSpec) {
			want := netlink.XfrmStateLimits{ByteSoft: 1, ByteHard: 2, PacketSoft: 3, PacketHard: 4, TimeSoft: 2, TimeHard: 3600}
			if s.st.Limits != want {
				t.Errorf("limits %+v, want %+v", s.st.Limits, want)
			}
		}},
		{name: "no lifetimes", check: func(t *testing.T, s stateSpec) {
			if s.st.Limits != (netlink.XfrmStateLimits{}) {
				t.Errorf("limits %+v", s.st.Limits)
			}
		}},
		{name: "mark and ifid", x: xlat{mark: &netlink.XfrmMark{Value: 0x42, Mask: 0xff}, ifid: 9}, check: func(t *testing.T, s stateSpec) {
			if s.st.Mark == nil || s.st.Mark.Value != 0x42 || s.st.Ifid != 9 {
				t.Errorf("mark %v ifid %d", s.st.Mark, s.st.Ifid)
			}
		}},
		{name: "reserved spi", mod: func(sa *offload.SA) { sa.SPI = 255 }, wantErr: "reserved"},
		{name: "bad mode", mod: func(sa *offload.SA) { sa.Mode = 0 }, wantErr: "bad mode"},
		{name: "bad dir", mod: func(sa *offload.SA) { sa.Dir = 0 }, wantErr: "bad direction"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sa := baseSA()
			if tc.mod != nil {
				tc.mod(&sa)
			}
			s, err := stateFor(sa, tc.x)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, s)
		})
	}
}

// attrsOf encodes a spec as encodeNewSA does and returns its attributes.
func attrsOf(t *testing.T, s stateSpec) (*nl.XfrmUsersaInfo, map[uint16][]byte) {
	t.Helper()
	var b []byte
	for _, d := range encodeNewSA(s) {
		b = append(b, d.Serialize()...)
	}
	info := *nl.DeserializeXfrmUsersaInfo(b)
	attrs, err := nl.ParseRouteAttr(b[nl.SizeofXfrmUsersaInfo:])
	if err != nil {
		t.Fatal(err)
	}
	m := map[uint16][]byte{}
	for _, a := range attrs {
		m[a.Attr.Type] = a.Value
	}
	return &info, m
}

func TestEncodeNewSA(t *testing.T) {
	sa := baseSA()
	sa.ESN, sa.ReplayWindow = true, 1024
	sa.Encap = &offload.Encap{SrcPort: 4500, DstPort: 4501}
	sa.Lifetime.HardTime = time.Minute
	s, err := stateFor(sa, xlat{reqid: 0x78640002, mark: &netlink.XfrmMark{Value: 5}, ifid: 3})
	if err != nil {
		t.Fatal(err)
	}
	s.offload = &offloadAttr{ifindex: 7, in: true, packet: true}
	info, attrs := attrsOf(t, s)
	if info.Flags&nl.XFRM_STATE_ESN == 0 || info.ReplayWindow != 0 || info.Reqid != 0x78640002 ||
		nl.Swap32(info.Id.Spi) != sa.SPI || info.Family != nl.FAMILY_V4 || info.Sel.Family != nl.FAMILY_V4 {
		t.Errorf("usersa_info %+v", info)
	}
	if info.Lft.HardAddExpiresSeconds != 60 || info.Lft.SoftByteLimit != nl.XFRM_INF || info.Lft.HardPacketLimit != nl.XFRM_INF {
		t.Errorf("lifetime %+v", info.Lft)
	}
	for _, a := range []int{nl.XFRMA_ALG_AEAD, nl.XFRMA_ENCAP, nl.XFRMA_MARK, nl.XFRMA_REPLAY_ESN_VAL, nl.XFRMA_IF_ID, nl.XFRMA_OFFLOAD_DEV} {
		if _, ok := attrs[uint16(a)]; !ok {
			t.Errorf("attribute %d missing", a)
		}
	}
	aead := nl.DeserializeXfrmAlgoAEAD(attrs[nl.XFRMA_ALG_AEAD])
	if nl.BytesToString(aead.AlgName[:]) != algGCM || aead.AlgKeyLen != 160 || aead.AlgICVLen != 128 {
		t.Errorf("aead %s keylen %d icv %d", nl.BytesToString(aead.AlgName[:]), aead.AlgKeyLen, aead.AlgICVLen)
	}
	r := attrs[nl.XFRMA_REPLAY_ESN_VAL]
	if bmp, win := nl.NativeEndian().Uint32(r[0:]), nl.NativeEndian().Uint32(r[20:]); bmp != 32 || win != 1024 {
		t.Errorf("replay_esn bmp_len %d window %d", bmp, win)
	}
	o := attrs[nl.XFRMA_OFFLOAD_DEV]
	if len(o) != sizeofUserOffload || nl.NativeEndian().Uint32(o) != 7 || o[4] != offloadFlagInbound|offloadFlagPacket {
		t.Errorf("offload attr % x", o)
	}
	if kind, err := offloadFromAttrs(encodeAttrs(nl.NewRtAttr(nl.XFRMA_OFFLOAD_DEV, o))); err != nil || kind != OffloadPacket {
		t.Errorf("offload read back %q %v", kind, err)
	}
	e := nl.DeserializeXfrmEncapTmpl(attrs[nl.XFRMA_ENCAP])
	if nl.Swap16(e.EncapSport) != 4500 || nl.Swap16(e.EncapDport) != 4501 || e.EncapType != uint16(netlink.XFRM_ENCAP_ESPINUDP) {
		t.Errorf("encap %+v", e)
	}

	// CBC + HMAC, no ESN, small window, no offload: the legacy field and
	// no extra attributes.
	sa = baseSA()
	sa.Encr, sa.KeyBits, sa.EncrKey, sa.Integ, sa.IntegKey = offload.EncrAESCBC, 256, key(32), offload.IntegHMACSHA384_192, key(48)
	s, err = stateFor(sa, xlat{})
	if err != nil {
		t.Fatal(err)
	}
	info, attrs = attrsOf(t, s)
	if info.Flags != 0 || info.ReplayWindow != 32 {
		t.Errorf("flags %d window %d", info.Flags, info.ReplayWindow)
	}
	for _, a := range []int{nl.XFRMA_ALG_AEAD, nl.XFRMA_REPLAY_ESN_VAL, nl.XFRMA_OFFLOAD_DEV, nl.XFRMA_MARK, nl.XFRMA_ENCAP} {
		if _, ok := attrs[uint16(a)]; ok {
			t.Errorf("unexpected attribute %d", a)
		}
	}
	auth := nl.DeserializeXfrmAlgoAuth(attrs[nl.XFRMA_ALG_AUTH_TRUNC])
	if nl.BytesToString(auth.AlgName[:]) != "hmac(sha384)" || auth.AlgTruncLen != 192 || auth.AlgKeyLen != 384 {
		t.Errorf("auth %s trunc %d keylen %d", nl.BytesToString(auth.AlgName[:]), auth.AlgTruncLen, auth.AlgKeyLen)
	}
	crypt := nl.DeserializeXfrmAlgo(attrs[nl.XFRMA_ALG_CRYPT])
	if nl.BytesToString(crypt.AlgName[:]) != algCBC || crypt.AlgKeyLen != 256 {
		t.Errorf("crypt %s keylen %d", nl.BytesToString(crypt.AlgName[:]), crypt.AlgKeyLen)
	}
	if kind, err := offloadFromAttrs(nil); err != nil || kind != "" {
		t.Errorf("no offload read back as %q %v", kind, err)
	}
	crypto := []byte{7, 0, 0, 0, offloadFlagInbound, 0, 0, 0}
	if kind, _ := offloadFromAttrs(encodeAttrs(nl.NewRtAttr(nl.XFRMA_OFFLOAD_DEV, crypto))); kind != OffloadCrypto {
		t.Errorf("crypto offload read back as %q", kind)
	}
}

func encodeAttrs(as ...*nl.RtAttr) []byte {
	var b []byte
	for _, a := range as {
		b = append(b, a.Serialize()...)
	}
	return b
}

func TestPoliciesFor(t *testing.T) {
	r := policyReqIDs{sa: 100, trap: 101}
	lan := netip.MustParsePrefix("10.1.0.0/24")
	remote := netip.MustParsePrefix("10.2.0.0/24")
	gwA, gwB := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	out := offload.Policy{Conn: "c", Child: "n", Dir: offload.Out, Src: lan, Dst: remote, Action: offload.Protect,
		SPI: 0x1234, Mode: offload.Tunnel, TunnelSrc: gwA, TunnelDst: gwB}
	in := out
	in.Dir, in.Src, in.Dst, in.TunnelSrc, in.TunnelDst, in.SPI = offload.In, remote, lan, gwB, gwA, 0x5678
	for _, tc := range []struct {
		name     string
		p        offload.Policy
		dirs     []netlink.Dir
		action   netlink.PolicyAction
		tmpl     *netlink.XfrmPolicyTmpl
		wantErr  string
		priority int
	}{
		{name: "out protect pins the spi", p: out, dirs: []netlink.Dir{netlink.XFRM_DIR_OUT}, action: netlink.XFRM_POLICY_ALLOW,
			tmpl: &netlink.XfrmPolicyTmpl{Src: net.ParseIP("192.0.2.1"), Dst: net.ParseIP("192.0.2.2"), Proto: netlink.XFRM_PROTO_ESP,
				Mode: netlink.XFRM_MODE_TUNNEL, Reqid: 100, Spi: 0x1234}},
		{name: "in protect: in and fwd, any spi of the child", p: in, dirs: []netlink.Dir{netlink.XFRM_DIR_IN, netlink.XFRM_DIR_FWD},
			action: netlink.XFRM_POLICY_ALLOW,
			tmpl: &netlink.XfrmPolicyTmpl{Src: net.ParseIP("192.0.2.2"), Dst: net.ParseIP("192.0.2.1"), Proto: netlink.XFRM_PROTO_ESP,
				Mode: netlink.XFRM_MODE_TUNNEL, Reqid: 100}},
		{name: "trap: reqid without state", p: func() offload.Policy { p := out; p.SPI = 0; return p }(),
			dirs: []netlink.Dir{netlink.XFRM_DIR_OUT}, action: netlink.XFRM_POLICY_ALLOW,
			tmpl: &netlink.XfrmPolicyTmpl{Src: net.ParseIP("192.0.2.1"), Dst: net.ParseIP("192.0.2.2"), Proto: netlink.XFRM_PROTO_ESP,
				Mode: netlink.XFRM_MODE_TUNNEL, Reqid: 101}},
		{name: "transport v6 without endpoints", p: offload.Policy{Dir: offload.Out, Src: netip.MustParsePrefix("2001:db8::1/128"),
			Dst: netip.MustParsePrefix("2001:db8::2/128"), Proto: 6, Action: offload.Protect, SPI: 0x99, Mode: offload.Transport},
			dirs: []netlink.Dir{netlink.XFRM_DIR_OUT}, action: netlink.XFRM_POLICY_ALLOW,
			tmpl: &netlink.XfrmPolicyTmpl{Src: net.IPv6zero, Dst: net.IPv6zero, Proto: netlink.XFRM_PROTO_ESP,
				Mode: netlink.XFRM_MODE_TRANSPORT, Reqid: 100, Spi: 0x99},
			priority: priorityBase + 2*(256-256)},
		{name: "bypass out", p: offload.Policy{Dir: offload.Out, Src: lan, Dst: netip.MustParsePrefix("10.1.0.0/16"), Action: offload.Bypass},
			dirs: []netlink.Dir{netlink.XFRM_DIR_OUT}, action: netlink.XFRM_POLICY_ALLOW},
		{name: "bypass in", p: offload.Policy{Dir: offload.In, Src: remote, Dst: lan, Action: offload.Bypass},
			dirs: []netlink.Dir{netlink.XFRM_DIR_IN, netlink.XFRM_DIR_FWD}, action: netlink.XFRM_POLICY_ALLOW},
		{name: "discard", p: offload.Policy{Dir: offload.Out, Src: lan, Dst: remote, Action: offload.Discard},
			dirs: []netlink.Dir{netlink.XFRM_DIR_OUT}, action: netlink.XFRM_POLICY_BLOCK},
		{name: "tunnel without endpoints", p: func() offload.Policy { p := out; p.TunnelDst = netip.Addr{}; return p }(), wantErr: "without endpoints"},
		{name: "mixed selectors", p: func() offload.Policy { p := out; p.Dst = netip.MustParsePrefix("2001:db8::/64"); return p }(), wantErr: "bad selectors"},
		{name: "bad action", p: func() offload.Policy { p := out; p.Action = 0; return p }(), wantErr: "bad action"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kps, err := policiesFor(tc.p, r, xlat{})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(kps) != len(tc.dirs) {
				t.Fatalf("%d policies, want %d", len(kps), len(tc.dirs))
			}
			for i, kp := range kps {
				if kp.Dir != tc.dirs[i] || kp.Action != tc.action {
					t.Errorf("policy %d: %s %s, want %s %s", i, kp.Dir, kp.Action, tc.dirs[i], tc.action)
				}
				if kp.Src.String() != tc.p.Src.Masked().String() || kp.Dst.String() != tc.p.Dst.Masked().String() || uint8(kp.Proto) != tc.p.Proto {
					t.Errorf("selector %s -> %s proto %d", kp.Src, kp.Dst, kp.Proto)
				}
				if !inPriorityBand(kp.Priority) {
					t.Errorf("priority %#x outside our band", kp.Priority)
				}
				if tc.priority != 0 && kp.Priority != tc.priority {
					t.Errorf("priority %#x, want %#x", kp.Priority, tc.priority)
				}
				switch {
				case tc.tmpl == nil && len(kp.Tmpls) != 0:
					t.Errorf("templates %v on a policy without SA", kp.Tmpls)
				case tc.tmpl != nil:
					if len(kp.Tmpls) != 1 {
						t.Fatalf("templates %v", kp.Tmpls)
					}
					got, want := kp.Tmpls[0], *tc.tmpl
					if !got.Src.Equal(want.Src) || !got.Dst.Equal(want.Dst) || nl.GetIPFamily(got.Dst) != nl.GetIPFamily(want.Dst) ||
						got.Proto != want.Proto || got.Mode != want.Mode || got.Reqid != want.Reqid || got.Spi != want.Spi {
						t.Errorf("template %v, want %v", got, want)
					}
				}
			}
		})
	}
}

func TestPriorityPrefersSpecific(t *testing.T) {
	wide := priorityOf(netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8"), 0)
	narrow := priorityOf(netip.MustParsePrefix("10.1.0.0/24"), netip.MustParsePrefix("10.2.0.0/24"), 0)
	proto := priorityOf(netip.MustParsePrefix("10.1.0.0/24"), netip.MustParsePrefix("10.2.0.0/24"), 6)
	any := priorityOf(netip.MustParsePrefix("::/0"), netip.MustParsePrefix("::/0"), 0)
	host := priorityOf(netip.MustParsePrefix("2001:db8::1/128"), netip.MustParsePrefix("2001:db8::2/128"), 17)
	if !(host < proto && proto < narrow && narrow < wide && wide < any) {
		t.Errorf("priorities host %d proto %d narrow %d wide %d any %d", host, proto, narrow, wide, any)
	}
	for _, p := range []int{wide, narrow, proto, any, host} {
		if !inPriorityBand(p) {
			t.Errorf("%#x outside band", p)
		}
	}
}
