package bpf

import (
	"encoding/binary"
	"testing"
	"time"
)

// formCases: ESP must arrive in the form its SA was negotiated in (raw or
// in UDP 4500), and raw ESP from the SA's peer. ESP-in-UDP may come from a
// new source: a NAT may have rebound the peer, which only an authentic
// packet can show, so the front door lets it through to the engine.
func formCases() []wanCase {
	var (
		afxdp4    = afxdpSA(wanLocal4)
		afxdpUDP4 = afxdpUDPSA(wanLocal4)
		afxdp6    = afxdpSA(wanLocal6)
		afxdpUDP6 = afxdpUDPSA(wanLocal6)
	)
	return []wanCase{
		{name: "form/raw-esp-for-udp-sa", pkt: espIn4(wanPeer4, spiKnown), setup: afxdpUDP4,
			want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_ENCAP}},
		{name: "form/esp-in-udp-for-raw-sa", pkt: espUDP4(wanPeer4, 4500, spiKnown), setup: afxdp4,
			want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_ENCAP}},
		{name: "form/raw-esp-spoofed-source", pkt: espIn4(wanNAT4, spiKnown), setup: afxdp4,
			want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_PEER}},
		{name: "form/raw-esp-spoofed-source-v6",
			pkt:   ether(etherIPv6, ipv6(protoESP, "2001:db8::66", wanLocal6, esp(spiKnown, 7, 64))),
			setup: afxdp6, want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_PEER}},
		{name: "form/raw-esp-for-udp-sa-v6", pkt: espIn6(spiKnown), setup: afxdpUDP6,
			want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_ENCAP}},
		{name: "form/esp-in-udp-new-source", pkt: espUDP4(wanNAT4, 61000, spiKnown), setup: afxdpUDP4,
			want: xdpRedirect, count: []WanWanCounter{WanWanCounterWAN_REDIRECT_XSK}},
		{name: "form/xfrm-raw-sa-spoofed-source", pkt: espIn4(wanNAT4, spiKnown),
			setup: func(t testing.TB, o *WanObjects) { putSA(t, o, spiKnown, wanLocal4, WanSaActionSA_ACTION_XFRM) },
			want:  xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_PEER}},
	}
}

const fragID = 0x4242

// espFrag4 is a first (off 0, more fragments) or later fragment of an ESP
// datagram from src; id names the datagram.
func espFrag4(src string, first bool, id uint16) []byte {
	if first {
		return ether(etherIPv4, ipv4x(protoESP, src, wanLocal4, esp(spiKnown, 7, 64), ip4Opts{frag: 0x2000, id: id}))
	}
	return ether(etherIPv4, ipv4x(protoESP, src, wanLocal4, make([]byte, 64), ip4Opts{frag: 0x000a, id: id}))
}

// udpFirstFrag4 is the first fragment of a UDP datagram whose UDP length
// (the whole datagram's) exceeds what this fragment carries.
func udpFirstFrag4(sport, dport uint16, payload []byte) []byte {
	u := udp(sport, dport, payload)
	binary.BigEndian.PutUint16(u[4:], uint16(len(u)+1000))
	return ether(etherIPv4, ipv4x(protoUDP, wanPeer4, wanLocal4, u, ip4Opts{frag: 0x2000, id: fragID}))
}

func udpLaterFrag4(id uint16) []byte {
	return ether(etherIPv4, ipv4x(protoUDP, wanPeer4, wanLocal4, make([]byte, 200), ip4Opts{frag: 0x0030, id: id}))
}

func xfrmSA(encap WanSaEncap, dst string) func(testing.TB, *WanObjects) {
	return func(t testing.TB, o *WanObjects) {
		putSAEncap(t, o, spiKnown, dst, WanSaActionSA_ACTION_XFRM, encap)
	}
}

// thenFollow checks that after the case's first fragment the later
// fragment of the same datagram passes and one of another datagram is
// dropped as an orphan.
func thenFollow(later, stranger []byte) func(testing.TB, *WanObjects) {
	return func(t testing.TB, o *WanObjects) {
		t.Helper()
		if ret, _ := run(t, o.XdpWan, later); ret != xdpPass {
			t.Errorf("later fragment: got %s, want XDP_PASS", actionName(ret))
		}
		before := counters(t, o.WanCounters)
		if ret, _ := run(t, o.XdpWan, stranger); ret != xdpDrop {
			t.Errorf("fragment of another datagram: got %s, want XDP_DROP", actionName(ret))
		}
		checkDeltas(t, before, counters(t, o.WanCounters), []WanWanCounter{WanWanCounterWAN_DROP_FRAG_ORPHAN},
			func(i int) string { return WanWanCounter(i).String() })
	}
}

// fragCases: a datagram's first fragment is judged as a whole packet would
// be; only when it may go to the stack do its later fragments follow. The
// afxdp engine does not reassemble, so its SAs' fragments are dropped and
// counted.
func fragCases() []wanCase {
	var (
		afxdp4 = afxdpSA(wanLocal4)
		xfrm4  = xfrmSA(WanSaEncapSA_ENCAP_NONE, wanLocal4)
		xfrm6  = xfrmSA(WanSaEncapSA_ENCAP_NONE, wanLocal6)
		xfrmU4 = xfrmSA(WanSaEncapSA_ENCAP_UDP, wanLocal4)
		frag6f = ether(etherIPv6, ipv6(protoFrag, wanPeer6, wanLocal6, frag6(protoESP, 0, true, esp(spiKnown, 7, 64))))
		frag6l = ether(etherIPv6, ipv6(protoFrag, wanPeer6, wanLocal6, frag6(protoESP, 8, false, make([]byte, 64))))
	)
	return []wanCase{
		{name: "frag/esp-first-unknown-spi",
			pkt:  ether(etherIPv4, ipv4x(protoESP, wanPeer4, wanLocal4, esp(spiUnknown, 7, 64), ip4Opts{frag: 0x2000, id: fragID})),
			want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_UNKNOWN_SPI},
			check: func(t testing.TB, o *WanObjects) {
				if ret, _ := run(t, o.XdpWan, espFrag4(wanPeer4, false, fragID)); ret != xdpDrop {
					t.Errorf("later fragment of an unknown SPI: got %s, want XDP_DROP", actionName(ret))
				}
			}},
		{name: "frag/esp-first-afxdp", pkt: espFrag4(wanPeer4, true, fragID), setup: afxdp4,
			want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_FRAG}},
		{name: "frag/esp-first-xfrm", pkt: espFrag4(wanPeer4, true, fragID), setup: xfrm4,
			want: xdpPass, count: []WanWanCounter{WanWanCounterWAN_PASS_FRAG},
			check: thenFollow(espFrag4(wanPeer4, false, fragID), espFrag4(wanPeer4, false, fragID+1))},
		{name: "frag/esp-first-xfrm-spoofed-source", pkt: espFrag4(wanNAT4, true, fragID), setup: xfrm4,
			want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_PEER}},
		{name: "frag/esp-first-xfrm-udp-sa-raw", pkt: espFrag4(wanPeer4, true, fragID), setup: xfrmU4,
			want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_ENCAP}},
		{name: "frag/esp-first-too-short",
			pkt:   ether(etherIPv4, ipv4x(protoESP, wanPeer4, wanLocal4, esp(spiKnown, 7, 0)[:4], ip4Opts{frag: 0x2000, id: fragID})),
			setup: xfrm4, want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_MALFORMED}},
		{name: "frag/esp-later-orphan", pkt: espFrag4(wanPeer4, false, fragID), setup: xfrm4,
			want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_FRAG_ORPHAN}},
		{name: "frag/esp-later-expired", pkt: espFrag4(wanPeer4, false, fragID),
			setup: func(t testing.TB, o *WanObjects) {
				xfrm4(t, o)
				k := WanFragKey{Saddr: addr16(wanPeer4), Daddr: addr16(wanLocal4), Id: fragID, Proto: protoESP}
				v := WanFragValue{FirstNs: monotonicNow(t) - uint64(31*time.Second)}
				if err := o.WanFrags.Put(&k, &v); err != nil {
					t.Fatalf("put frag: %v", err)
				}
			},
			want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_FRAG_ORPHAN}},
		{name: "frag/v6-esp-first-xfrm", pkt: frag6f, setup: xfrm6,
			want: xdpPass, count: []WanWanCounter{WanWanCounterWAN_PASS_FRAG},
			check: thenFollow(frag6l,
				ether(etherIPv6, ipv6(protoFrag, "2001:db8::66", wanLocal6, frag6(protoESP, 8, false, make([]byte, 64)))))},
		{name: "frag/v6-esp-first-afxdp", pkt: frag6f, setup: afxdpSA(wanLocal6),
			want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_FRAG}},
		{name: "frag/v6-esp-later-orphan", pkt: frag6l, setup: xfrm6,
			want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_FRAG_ORPHAN}},
		{name: "frag/esp-in-udp-first-xfrm", pkt: udpFirstFrag4(4500, 4500, esp(spiKnown, 7, 64)), setup: xfrmU4,
			want: xdpPass, count: []WanWanCounter{WanWanCounterWAN_PASS_FRAG},
			check: thenFollow(udpLaterFrag4(fragID), udpLaterFrag4(fragID+1))},
		{name: "frag/esp-in-udp-first-unknown-spi", pkt: udpFirstFrag4(4500, 4500, esp(spiUnknown, 7, 64)), setup: xfrmU4,
			want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_UNKNOWN_SPI}},
		{name: "frag/ike-500-first", pkt: udpFirstFrag4(500, 500, ikeMsg(ikeAuth, ikeInitiator)),
			want: xdpPass, count: []WanWanCounter{WanWanCounterWAN_PASS_FRAG},
			check: thenFollow(udpLaterFrag4(fragID), udpLaterFrag4(fragID+1))},
		{name: "frag/ike-4500-first", pkt: udpFirstFrag4(4500, 4500, nonESP(ikeMsg(ikeAuth, ikeInitiator))),
			want: xdpPass, count: []WanWanCounter{WanWanCounterWAN_PASS_FRAG}},
		{name: "frag/ike-first-rate-limited", pkt: udpFirstFrag4(500, 500, ikeMsg(ikeSAInit, ikeInitiator)), prior: 2,
			setup: func(t testing.TB, o *WanObjects) { putWanConfig(t, o, WanWanConfig{IkeInitRate: 2}) },
			want:  xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_IKE_RATELIMIT}},
		{name: "frag/udp-other-first", pkt: udpFirstFrag4(53, 53, make([]byte, 100)),
			want: xdpPass, count: []WanWanCounter{WanWanCounterWAN_PASS_FRAG},
			check: thenFollow(udpLaterFrag4(fragID), udpLaterFrag4(fragID+1))},
		{name: "frag/udp-later-orphan", pkt: udpLaterFrag4(fragID),
			want: xdpDrop, count: []WanWanCounter{WanWanCounterWAN_DROP_FRAG_ORPHAN}},
		{name: "frag/tcp-first",
			pkt:  ether(etherIPv4, ipv4x(protoTCP, wanPeer4, wanLocal4, make([]byte, 40), ip4Opts{frag: 0x2000, id: fragID})),
			want: xdpPass, count: []WanWanCounter{WanWanCounterWAN_PASS_FRAG}},
		{name: "frag/tcp-later",
			pkt:  ether(etherIPv4, ipv4x(protoTCP, wanPeer4, wanLocal4, make([]byte, 40), ip4Opts{frag: 0x0010, id: fragID})),
			want: xdpPass, count: []WanWanCounter{WanWanCounterWAN_PASS_FRAG}},
	}
}
