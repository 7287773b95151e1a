package bpf

import (
	"bytes"
	"net/netip"
	"testing"
)

const (
	wanLocal4 = "192.0.2.1"
	wanPeer4  = "198.51.100.2"
	wanNAT4   = "203.0.113.9"
	wanLocal6 = "2001:db8::1"
	wanPeer6  = "2001:db8::2"

	spiKnown   = 0xc0ffee01
	spiUnknown = 0xdead0001
)

type wanCase struct {
	name  string
	pkt   []byte
	setup func(t testing.TB, o *WanObjects)
	// prior runs of the same packet before the one that is checked (rate
	// limits); their verdicts are not checked, their counters are.
	prior int
	want  uint32
	count []WanWanCounter // each grows by one; every other stays put
	check func(t testing.TB, o *WanObjects)
}

func addr16(s string) [16]uint8 {
	return netip.MustParseAddr(s).As16()
}

// putSA installs a raw-ESP SA whose peer is wanPeer4 or wanPeer6, as
// dst's family says.
func putSA(t testing.TB, o *WanObjects, spi uint32, dst string, action WanSaAction) {
	t.Helper()
	putSAEncap(t, o, spi, dst, action, WanSaEncapSA_ENCAP_NONE)
}

func putSAEncap(t testing.TB, o *WanObjects, spi uint32, dst string, action WanSaAction, encap WanSaEncap) {
	t.Helper()
	peer := wanPeer4
	if netip.MustParseAddr(dst).Is6() {
		peer = wanPeer6
	}
	k := WanSaKey{Spi: spi, Daddr: addr16(dst)}
	v := WanSaValue{Action: uint32(action), Encap: uint8(encap), Peer: addr16(peer)}
	if err := o.SaIn.Put(&k, &v); err != nil {
		t.Fatalf("put SA: %v", err)
	}
}

func putWanConfig(t testing.TB, o *WanObjects, c WanWanConfig) {
	t.Helper()
	if err := o.WanCfg.Put(uint32(0), &c); err != nil {
		t.Fatalf("put config: %v", err)
	}
}

// afxdpSA installs a known raw-ESP SA steered to AF_XDP with a socket on
// queue 0; afxdpUDPSA the same for an SA negotiated with NAT-T.
func afxdpSA(dst string) func(testing.TB, *WanObjects) {
	return afxdpSAEncap(dst, WanSaEncapSA_ENCAP_NONE)
}

func afxdpUDPSA(dst string) func(testing.TB, *WanObjects) {
	return afxdpSAEncap(dst, WanSaEncapSA_ENCAP_UDP)
}

func afxdpSAEncap(dst string, encap WanSaEncap) func(testing.TB, *WanObjects) {
	return func(t testing.TB, o *WanObjects) {
		putSAEncap(t, o, spiKnown, dst, WanSaActionSA_ACTION_AFXDP, encap)
		if err := o.WanXsks.Put(uint32(0), uint32(xskSocket(t))); err != nil {
			t.Fatalf("put xsk: %v", err)
		}
	}
}

func ike500(src string, exchange, flags byte) []byte {
	return ether(etherIPv4, ipv4(protoUDP, src, wanLocal4, udp(500, 500, ikeMsg(exchange, flags))))
}

func espIn4(src string, spi uint32) []byte {
	return ether(etherIPv4, ipv4(protoESP, src, wanLocal4, esp(spi, 7, 64)))
}

func espUDP4(src string, sport uint16, spi uint32) []byte {
	return ether(etherIPv4, ipv4(protoUDP, src, wanLocal4, udp(sport, 4500, esp(spi, 7, 64))))
}

func espIn6(spi uint32) []byte {
	return ether(etherIPv6, ipv6(protoESP, wanPeer6, wanLocal6, esp(spi, 7, 64)))
}

func wanCases() []wanCase {
	var (
		afxdp4    = afxdpSA(wanLocal4)
		afxdp6    = afxdpSA(wanLocal6)
		afxdpUDP4 = afxdpUDPSA(wanLocal4)
		afxdpUDP6 = afxdpUDPSA(wanLocal6)
	)
	cases := []wanCase{
		// IKE and NAT-T.
		{name: "ike-500", pkt: ike500(wanPeer4, ikeSAInit, ikeInitiator),
			want: xdpPass, count: []WanWanCounter{WanWanCounterWAN_PASS_IKE}},
		{name: "ike-4500-marker",
			pkt:  ether(etherIPv4, ipv4(protoUDP, wanPeer4, wanLocal4, udp(4500, 4500, nonESP(ikeMsg(ikeAuth, ikeInitiator))))),
			want: xdpPass, count: []WanWanCounter{WanWanCounterWAN_PASS_IKE_NATT}},
		{name: "ike-500-v6",
			pkt:  ether(etherIPv6, ipv6(protoUDP, wanPeer6, wanLocal6, udp(500, 500, ikeMsg(ikeSAInit, ikeInitiator)))),
			want: xdpPass, count: []WanWanCounter{WanWanCounterWAN_PASS_IKE}},
		{name: "keepalive",
			// Padded to 60 bytes: only the UDP length says it is one byte.
			pkt:  pad(ether(etherIPv4, ipv4(protoUDP, wanPeer4, wanLocal4, udp(4500, 4500, []byte{0xff})))),
			want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_KEEPALIVE}},
		{name: "natt-one-byte-not-keepalive",
			pkt:  pad(ether(etherIPv4, ipv4(protoUDP, wanPeer4, wanLocal4, udp(4500, 4500, []byte{0x00})))),
			want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_MALFORMED}},

		// Raw ESP.
		{name: "esp-known", pkt: espIn4(wanPeer4, spiKnown), setup: afxdp4,
			want: xdpRedirect, count: []WanWanCounter{WanWanCounterWAN_REDIRECT_XSK}},
		{name: "esp-unknown-spi", pkt: espIn4(wanPeer4, spiUnknown), setup: afxdp4,
			want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_UNKNOWN_SPI}},
		{name: "esp-known-spi-other-dst",
			// The SA is keyed by (SPI, destination): same SPI, other address.
			pkt:   ether(etherIPv4, ipv4(protoESP, wanPeer4, "192.0.2.99", esp(spiKnown, 7, 64))),
			setup: afxdp4, want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_UNKNOWN_SPI}},
		{name: "esp-known-no-socket", pkt: espIn4(wanPeer4, spiKnown),
			setup: func(t testing.TB, o *WanObjects) { putSA(t, o, spiKnown, wanLocal4, WanSaActionSA_ACTION_AFXDP) },
			want:  xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_XSK_MISS}},
		{name: "esp-known-xfrm", pkt: espIn4(wanPeer4, spiKnown),
			setup: func(t testing.TB, o *WanObjects) {
				putSA(t, o, spiKnown, wanLocal4, WanSaActionSA_ACTION_XFRM)
				if err := o.Cpus.Put(uint32(0), &WanBpfCpumapVal{Qsize: 64}); err != nil {
					t.Fatalf("put cpu: %v", err)
				}
				if err := o.CpuSlots.Put(uint32(0), uint32(0)); err != nil {
					t.Fatalf("put slot: %v", err)
				}
				putWanConfig(t, o, WanWanConfig{CpuSlots: 1})
			},
			want: xdpRedirect, count: []WanWanCounter{WanWanCounterWAN_REDIRECT_CPU}},
		{name: "esp-known-xfrm-no-cpus", pkt: espIn4(wanPeer4, spiKnown),
			setup: func(t testing.TB, o *WanObjects) { putSA(t, o, spiKnown, wanLocal4, WanSaActionSA_ACTION_XFRM) },
			want:  xdpPass, count: []WanWanCounter{WanWanCounterWAN_PASS_CPU_MISS}},
		{name: "esp-known-pass", pkt: espIn4(wanPeer4, spiKnown),
			setup: func(t testing.TB, o *WanObjects) { putSA(t, o, spiKnown, wanLocal4, WanSaActionSA_ACTION_PASS) },
			want:  xdpPass, count: []WanWanCounter{WanWanCounterWAN_PASS_SA}},
		{name: "esp-known-bad-action", pkt: espIn4(wanPeer4, spiKnown),
			setup: func(t testing.TB, o *WanObjects) { putSA(t, o, spiKnown, wanLocal4, 9) },
			want:  xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_BAD_ACTION}},

		// ESP in UDP (RFC 3948).
		{name: "esp-in-udp-known", pkt: espUDP4(wanPeer4, 4500, spiKnown), setup: afxdpUDP4,
			want: xdpRedirect, count: []WanWanCounter{WanWanCounterWAN_REDIRECT_XSK}},
		{name: "esp-in-udp-unknown-spi", pkt: espUDP4(wanPeer4, 4500, spiUnknown), setup: afxdp4,
			want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_UNKNOWN_SPI}},

		// IPv6.
		{name: "ipv6-esp-known", pkt: espIn6(spiKnown), setup: afxdp6,
			want: xdpRedirect, count: []WanWanCounter{WanWanCounterWAN_REDIRECT_XSK}},
		{name: "ipv6-esp-unknown-spi", pkt: espIn6(spiUnknown), setup: afxdp6,
			want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_UNKNOWN_SPI}},
		{name: "ipv6-ext-headers-esp-known",
			pkt: ether(etherIPv6, ipv6(protoHop, wanPeer6, wanLocal6,
				ext6(protoRouting, ext6(protoDstOpts, ext6(protoESP, esp(spiKnown, 7, 64)))))),
			setup: afxdp6, want: xdpRedirect, count: []WanWanCounter{WanWanCounterWAN_REDIRECT_XSK}},
		{name: "ipv6-ext-headers-at-limit", pkt: ether(etherIPv6, ipv6(protoDstOpts, wanPeer6, wanLocal6, extChain(6))),
			setup: afxdp6, want: xdpRedirect, count: []WanWanCounter{WanWanCounterWAN_REDIRECT_XSK}},
		{name: "ipv6-ext-headers-over-limit", pkt: ether(etherIPv6, ipv6(protoDstOpts, wanPeer6, wanLocal6, extChain(7))),
			setup: afxdp6, want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_EXT_LIMIT}},
		{name: "ipv6-udp-esp-known",
			pkt:   ether(etherIPv6, ipv6(protoUDP, wanPeer6, wanLocal6, udp(4500, 4500, esp(spiKnown, 7, 64)))),
			setup: afxdpUDP6, want: xdpRedirect, count: []WanWanCounter{WanWanCounterWAN_REDIRECT_XSK}},

		// VLAN tags and IPv4 options.
		{name: "vlan-ike", pkt: ether(etherIPv4, ipv4(protoUDP, wanPeer4, wanLocal4, udp(500, 500, ikeMsg(ikeAuth, ikeInitiator))), 100),
			want: xdpPass, count: []WanWanCounter{WanWanCounterWAN_PASS_IKE}},
		{name: "vlan-esp-known", pkt: ether(etherIPv4, ipv4(protoESP, wanPeer4, wanLocal4, esp(spiKnown, 7, 64)), 100),
			setup: afxdp4, want: xdpRedirect, count: []WanWanCounter{WanWanCounterWAN_REDIRECT_XSK}},
		{name: "qinq-esp-known", pkt: ether(etherIPv4, ipv4(protoESP, wanPeer4, wanLocal4, esp(spiKnown, 7, 64)), 10, 100),
			setup: afxdp4, want: xdpRedirect, count: []WanWanCounter{WanWanCounterWAN_REDIRECT_XSK}},
		{name: "qinq-esp-unknown-spi", pkt: ether(etherIPv6, ipv6(protoESP, wanPeer6, wanLocal6, esp(spiUnknown, 7, 64)), 10, 100),
			setup: afxdp6, want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_UNKNOWN_SPI}},
		{name: "ipv4-options-esp-known",
			pkt: ether(etherIPv4, ipv4x(protoESP, wanPeer4, wanLocal4, esp(spiKnown, 7, 64),
				ip4Opts{options: []byte{0x94, 4, 0, 0, 1, 1, 1, 0}})), // router alert, NOPs, EOL
			setup: afxdp4, want: xdpRedirect, count: []WanWanCounter{WanWanCounterWAN_REDIRECT_XSK}},
		{name: "ipv4-options-ike",
			pkt: ether(etherIPv4, ipv4x(protoUDP, wanPeer4, wanLocal4, udp(500, 500, ikeMsg(ikeAuth, 0)),
				ip4Opts{options: []byte{1, 1, 1, 0}})),
			want: xdpPass, count: []WanWanCounter{WanWanCounterWAN_PASS_IKE}},

		// Other traffic.
		{name: "arp", pkt: pad(ether(etherARP, make([]byte, 28))),
			want: xdpPass, count: []WanWanCounter{WanWanCounterWAN_PASS_OTHER}},
		{name: "udp-other-port", pkt: ether(etherIPv4, ipv4(protoUDP, wanPeer4, wanLocal4, udp(53, 53, make([]byte, 20)))),
			want: xdpPass, count: []WanWanCounter{WanWanCounterWAN_PASS_OTHER}},
		{name: "tcp", pkt: ether(etherIPv4, ipv4(protoTCP, wanPeer4, wanLocal4, tcp(wanPeer4, wanLocal4, 1234, 22, tcpSYN, nil, nil))),
			want: xdpPass, count: []WanWanCounter{WanWanCounterWAN_PASS_OTHER}},
		{name: "icmpv6", pkt: ether(etherIPv6, ipv6(protoICMPv6, wanPeer6, wanLocal6, make([]byte, 8))),
			want: xdpPass, count: []WanWanCounter{WanWanCounterWAN_PASS_OTHER}},

		// Truncation at every header boundary.
		{name: "truncated/vlan-tag", pkt: ether(etherVLAN, nil),
			want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_MALFORMED}},
		{name: "truncated/qinq-inner-tag", pkt: ether(etherQinQ, []byte{0, 10, 0x81, 0x00}),
			want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_MALFORMED}},
		{name: "truncated/ipv4-header", pkt: ether(etherIPv4, ipv4(protoESP, wanPeer4, wanLocal4, nil)[:19]),
			want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_MALFORMED}},
		{name: "truncated/ipv4-options",
			pkt:  ether(etherIPv4, ipv4x(protoESP, wanPeer4, wanLocal4, nil, ip4Opts{options: make([]byte, 8)})[:24]),
			want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_MALFORMED}},
		{name: "truncated/ipv4-ihl-below-5",
			pkt: func() []byte {
				p := ether(etherIPv4, ipv4(protoESP, wanPeer4, wanLocal4, esp(spiKnown, 7, 64)))
				p[14] = 0x44
				return p
			}(),
			setup: afxdp4, want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_MALFORMED}},
		{name: "truncated/ipv4-total-length",
			pkt:   ether(etherIPv4, ipv4x(protoESP, wanPeer4, wanLocal4, esp(spiKnown, 7, 64), ip4Opts{totLen: 200})),
			setup: afxdp4, want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_MALFORMED}},
		{name: "truncated/ipv6-header", pkt: ether(etherIPv6, ipv6(protoESP, wanPeer6, wanLocal6, nil)[:39]),
			want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_MALFORMED}},
		{name: "truncated/ipv6-payload-length",
			pkt:  ether(etherIPv6, ipv6(protoESP, wanPeer6, wanLocal6, esp(spiKnown, 7, 64))[:60]),
			want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_MALFORMED}},
		{name: "truncated/ipv6-ext-header", pkt: ether(etherIPv6, ipv6(protoDstOpts, wanPeer6, wanLocal6, []byte{protoESP})),
			want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_MALFORMED}},
		{name: "truncated/ipv6-ext-header-length",
			// Claims 16 bytes, carries 8.
			pkt:  ether(etherIPv6, ipv6(protoDstOpts, wanPeer6, wanLocal6, []byte{protoESP, 1, 1, 4, 0, 0, 0, 0})),
			want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_MALFORMED}},
		{name: "truncated/ipv6-fragment-header", pkt: ether(etherIPv6, ipv6(protoFrag, wanPeer6, wanLocal6, []byte{protoESP, 0, 0, 1})),
			want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_MALFORMED}},
		{name: "truncated/udp-header", pkt: ether(etherIPv4, ipv4(protoUDP, wanPeer4, wanLocal4, udp(500, 500, nil)[:6])),
			want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_MALFORMED}},
		{name: "truncated/udp-length",
			pkt: func() []byte {
				u := udp(4500, 4500, esp(spiKnown, 7, 64))
				u[4], u[5] = 0x01, 0x00 // 256 > IP payload
				return ether(etherIPv4, ipv4(protoUDP, wanPeer4, wanLocal4, u))
			}(),
			setup: afxdp4, want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_MALFORMED}},
		{name: "truncated/esp-header", pkt: ether(etherIPv4, ipv4(protoESP, wanPeer4, wanLocal4, esp(spiKnown, 7, 0)[:6])),
			setup: afxdp4, want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_MALFORMED}},
		{name: "truncated/esp-in-udp-header", pkt: ether(etherIPv4, ipv4(protoUDP, wanPeer4, wanLocal4, udp(4500, 4500, esp(spiKnown, 7, 0)[:6]))),
			setup: afxdp4, want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_MALFORMED}},
		{name: "truncated/non-esp-marker", pkt: ether(etherIPv4, ipv4(protoUDP, wanPeer4, wanLocal4, udp(4500, 4500, []byte{0, 0}))),
			want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_MALFORMED}},
		{name: "truncated/ike-header-500", pkt: ether(etherIPv4, ipv4(protoUDP, wanPeer4, wanLocal4, udp(500, 500, ikeMsg(ikeSAInit, ikeInitiator)[:27]))),
			want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_MALFORMED}},
		{name: "truncated/ike-header-4500", pkt: ether(etherIPv4, ipv4(protoUDP, wanPeer4, wanLocal4, udp(4500, 4500, nonESP(ikeMsg(ikeSAInit, ikeInitiator))[:31]))),
			want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_MALFORMED}},

		// IKE_SA_INIT rate limit: 2 per second and source.
		{name: "ike-ratelimit-within", pkt: ike500(wanPeer4, ikeSAInit, ikeInitiator), prior: 1,
			setup: func(t testing.TB, o *WanObjects) { putWanConfig(t, o, WanWanConfig{IkeInitRate: 2}) },
			want:  xdpPass, count: []WanWanCounter{WanWanCounterWAN_PASS_IKE}},
		{name: "ike-ratelimit-exceeded", pkt: ike500(wanPeer4, ikeSAInit, ikeInitiator), prior: 2,
			setup: func(t testing.TB, o *WanObjects) { putWanConfig(t, o, WanWanConfig{IkeInitRate: 2}) },
			want:  xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_IKE_RATELIMIT},
			check: func(t testing.TB, o *WanObjects) {
				// Another source has its own budget.
				if ret, _ := run(t, o.XdpWan, ike500(wanNAT4, ikeSAInit, ikeInitiator)); ret != xdpPass {
					t.Errorf("other source: got %s, want XDP_PASS", actionName(ret))
				}
			}},
		{name: "ike-ratelimit-exceeded-natt",
			pkt:   ether(etherIPv4, ipv4(protoUDP, wanPeer4, wanLocal4, udp(4500, 4500, nonESP(ikeMsg(ikeSAInit, ikeInitiator))))),
			prior: 2, setup: func(t testing.TB, o *WanObjects) { putWanConfig(t, o, WanWanConfig{IkeInitRate: 2}) },
			want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_IKE_RATELIMIT}},
		{name: "ike-ratelimit-spares-other-exchanges", pkt: ike500(wanPeer4, ikeAuth, ikeInitiator), prior: 3,
			setup: func(t testing.TB, o *WanObjects) { putWanConfig(t, o, WanWanConfig{IkeInitRate: 2}) },
			want:  xdpPass, count: []WanWanCounter{WanWanCounterWAN_PASS_IKE}},
		{name: "ike-ratelimit-spares-responses", pkt: ike500(wanPeer4, ikeSAInit, ikeResponse), prior: 3,
			setup: func(t testing.TB, o *WanObjects) { putWanConfig(t, o, WanWanConfig{IkeInitRate: 2}) },
			want:  xdpPass, count: []WanWanCounter{WanWanCounterWAN_PASS_IKE}},
		{name: "ike-ratelimit-off", pkt: ike500(wanPeer4, ikeSAInit, ikeInitiator), prior: 5,
			want: xdpPass, count: []WanWanCounter{WanWanCounterWAN_PASS_IKE}},
	}
	cases = append(cases, formCases()...)
	return append(cases, fragCases()...)
}

// extChain is n destination options headers followed by ESP of the known
// SA; the IPv6 header's next header must be protoDstOpts.
func extChain(n int) []byte {
	b := esp(spiKnown, 7, 64)
	next := byte(protoESP)
	for range n {
		b = ext6(next, b)
		next = protoDstOpts
	}
	return b
}

func TestXDPWAN(t *testing.T) {
	requireRoot(t)
	for _, c := range wanCases() {
		t.Run(c.name, func(t *testing.T) {
			var o WanObjects
			load(t, LoadWanObjects, &o)
			if c.setup != nil {
				c.setup(t, &o)
			}
			for range c.prior {
				run(t, o.XdpWan, c.pkt)
			}
			before := counters(t, o.WanCounters)
			ret, out := run(t, o.XdpWan, c.pkt)
			after := counters(t, o.WanCounters)
			if ret != c.want {
				t.Errorf("verdict %s, want %s", actionName(ret), actionName(c.want))
			}
			checkDeltas(t, before, after, c.count, func(i int) string { return WanWanCounter(i).String() })
			if !bytes.Equal(out, c.pkt) {
				t.Errorf("packet rewritten:\n got % x\nwant % x", out, c.pkt)
			}
			if c.check != nil {
				c.check(t, &o)
			}
		})
	}
}

// TestXDPWANCPUHash: with cpu_per_sa every packet of an SA goes to the
// same CPU slot whatever its sequence number; without it the sequence
// number spreads the SA over the slots. Two slots name CPU 0 (in the
// cpumap) and CPU 1 (not in it), so the verdict tells which slot a packet
// hashed to.
func TestXDPWANCPUHash(t *testing.T) {
	requireRoot(t)
	for _, perSA := range []bool{true, false} {
		t.Run(map[bool]string{true: "per-sa", false: "per-packet"}[perSA], func(t *testing.T) {
			var o WanObjects
			load(t, LoadWanObjects, &o)
			putSA(t, &o, spiKnown, wanLocal4, WanSaActionSA_ACTION_XFRM)
			if err := o.Cpus.Put(uint32(0), &WanBpfCpumapVal{Qsize: 64}); err != nil {
				t.Fatalf("put cpu: %v", err)
			}
			for slot, cpu := range []uint32{0, 1} {
				if err := o.CpuSlots.Put(uint32(slot), cpu); err != nil {
					t.Fatalf("put slot: %v", err)
				}
			}
			c := WanWanConfig{CpuSlots: 2}
			if perSA {
				c.CpuPerSa = 1
			}
			putWanConfig(t, &o, c)
			verdicts := map[uint32]int{}
			for seq := uint32(1); seq <= 64; seq++ {
				ret, _ := run(t, o.XdpWan, ether(etherIPv4, ipv4(protoESP, wanPeer4, wanLocal4, esp(spiKnown, seq, 64))))
				verdicts[ret]++
			}
			if perSA && len(verdicts) != 1 {
				t.Errorf("one SA landed on several CPU slots: %v", verdicts)
			}
			if !perSA && len(verdicts) != 2 {
				t.Errorf("64 sequence numbers of one SA all hashed to one slot: %v", verdicts)
			}
		})
	}
}
