package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
)

const (
	lanHost4   = "10.1.0.10"
	lanRemote4 = "10.2.0.10"
	lanOther4  = "10.9.0.10"
	lanHost6   = "fd00:1::10"
	lanRemote6 = "fd00:2::10"

	policyID = 42
	spiOut   = 0xbeef0001
)

type lanCase struct {
	name  string
	pkt   []byte
	setup func(t testing.TB, o *LanObjects)
	prior int
	want  uint32
	count []LanLanCounter
	// out is the packet the program must leave; nil means unchanged.
	out   []byte
	check func(t testing.TB, o *LanObjects, out []byte)
}

// policy describes one SPD entry for the fixtures.
type policy struct {
	dst, src     string // prefixes
	action       LanSpdAction
	proto        byte
	sport, dport uint16
	mss          uint16
	spi          uint32
}

func putPolicy(t testing.TB, o *LanObjects, p policy) {
	t.Helper()
	dst, src := netip.MustParsePrefix(p.dst), netip.MustParsePrefix(p.src)
	e := LanSpdEntry{
		PolicyId: policyID, Spi: p.spi, Action: uint8(p.action), Proto: p.proto,
		Sport: p.sport, Dport: p.dport, Mss: p.mss, Src: src.Addr().As16(),
	}
	e.SrcPlen = uint8(src.Bits())
	if src.Addr().Is4() {
		e.SrcPlen += 96 // over the IPv4-mapped form
	}
	var err error
	if dst.Addr().Is4() {
		err = o.Spd4.Put(&LanSpdKey4{Prefixlen: uint32(dst.Bits()), Addr: dst.Addr().As4()}, &e)
	} else {
		err = o.Spd6.Put(&LanSpdKey6{Prefixlen: uint32(dst.Bits()), Addr: dst.Addr().As16()}, &e)
	}
	if err != nil {
		t.Fatalf("put policy: %v", err)
	}
}

func withPolicies(ps ...policy) func(testing.TB, *LanObjects) {
	return func(t testing.TB, o *LanObjects) {
		for _, p := range ps {
			putPolicy(t, o, p)
		}
		if err := o.LanXsks.Put(uint32(0), uint32(xskSocket(t))); err != nil {
			t.Fatalf("put xsk: %v", err)
		}
	}
}

// protect4 and protect6 are the base protect policies the fixtures vary.
func protect4() policy {
	return policy{dst: "10.2.0.0/16", src: "10.1.0.0/16", action: LanSpdActionSPD_PROTECT, spi: spiOut}
}

func protect6() policy {
	return policy{dst: "fd00:2::/48", src: "fd00:1::/48", action: LanSpdActionSPD_PROTECT, spi: spiOut}
}

func tcp4(src, dst string, sport, dport uint16, flags byte, opts []byte) []byte {
	return ether(etherIPv4, ipv4(protoTCP, src, dst, tcp(src, dst, sport, dport, flags, opts, nil)))
}

func udp4(src, dst string, sport, dport uint16) []byte {
	return ether(etherIPv4, ipv4(protoUDP, src, dst, udp(sport, dport, make([]byte, 32))))
}

func udp6(src, dst string, sport, dport uint16) []byte {
	return ether(etherIPv6, ipv6(protoUDP, src, dst, udp(sport, dport, make([]byte, 32))))
}

func tcp6(src, dst string, sport, dport uint16, flags byte, opts []byte) []byte {
	return ether(etherIPv6, ipv6(protoTCP, src, dst, tcp(src, dst, sport, dport, flags, opts, nil)))
}

func lanCases() []lanCase {
	with := func(p policy, f func(*policy)) policy { f(&p); return p }
	httpsOnly4 := with(protect4(), func(p *policy) { p.proto = protoTCP; p.dport = 443 })
	dnsOnly6 := with(protect6(), func(p *policy) { p.proto = protoUDP; p.dport = 53 })
	clamp4 := with(protect4(), func(p *policy) { p.mss = 1360 })
	clamp6 := with(protect6(), func(p *policy) { p.mss = 1340 })

	return []lanCase{
		// IPv4 SPD.
		{name: "protect-v4", pkt: udp4(lanHost4, lanRemote4, 5000, 5001), setup: withPolicies(protect4()),
			want: xdpRedirect, count: []LanLanCounter{LanLanCounterLAN_REDIRECT_XSK}},
		{name: "protect-v4-no-socket", pkt: udp4(lanHost4, lanRemote4, 5000, 5001),
			setup: func(t testing.TB, o *LanObjects) { putPolicy(t, o, protect4()) },
			want:  xdpDrop, count: []LanLanCounter{LanLanCounterLAN_DROP_XSK_MISS}},
		{name: "protect-v4-port-selector", pkt: tcp4(lanHost4, lanRemote4, 40000, 443, tcpACK, nil),
			setup: withPolicies(httpsOnly4), want: xdpRedirect, count: []LanLanCounter{LanLanCounterLAN_REDIRECT_XSK}},
		{name: "protect-v4-port-mismatch", pkt: tcp4(lanHost4, lanRemote4, 40000, 80, tcpACK, nil),
			setup: withPolicies(httpsOnly4), want: xdpPass, count: []LanLanCounter{LanLanCounterLAN_PASS_NOMATCH}},
		{name: "protect-v4-proto-mismatch", pkt: udp4(lanHost4, lanRemote4, 40000, 443),
			setup: withPolicies(httpsOnly4), want: xdpPass, count: []LanLanCounter{LanLanCounterLAN_PASS_NOMATCH}},
		{name: "protect-v4-src-mismatch", pkt: udp4(lanOther4, lanRemote4, 5000, 5001),
			setup: withPolicies(protect4()), want: xdpPass, count: []LanLanCounter{LanLanCounterLAN_PASS_NOMATCH}},
		{name: "protect-v4-sport-selector",
			pkt:   udp4(lanHost4, lanRemote4, 500, 9),
			setup: withPolicies(with(protect4(), func(p *policy) { p.sport = 500 })),
			want:  xdpRedirect, count: []LanLanCounter{LanLanCounterLAN_REDIRECT_XSK}},
		{name: "protect-v4-later-fragment-opaque-ports",
			// No ports to check: fail closed and treat them as matching.
			pkt:   ether(etherIPv4, ipv4x(protoTCP, lanHost4, lanRemote4, make([]byte, 64), ip4Opts{frag: 0x0010})),
			setup: withPolicies(httpsOnly4), want: xdpRedirect, count: []LanLanCounter{LanLanCounterLAN_REDIRECT_XSK}},
		{name: "protect-v4-vlan", pkt: ether(etherIPv4, ipv4(protoUDP, lanHost4, lanRemote4, udp(1, 2, nil)), 7),
			setup: withPolicies(protect4()), want: xdpRedirect, count: []LanLanCounter{LanLanCounterLAN_REDIRECT_XSK}},
		{name: "discard-v4", pkt: udp4(lanHost4, lanRemote4, 5000, 5001),
			setup: withPolicies(with(protect4(), func(p *policy) { p.action = LanSpdActionSPD_DISCARD })),
			want:  xdpDrop, count: []LanLanCounter{LanLanCounterLAN_DROP_DISCARD}},
		{name: "discard-v4-port-selector", pkt: tcp4(lanHost4, lanRemote4, 40000, 23, tcpSYN, nil),
			setup: withPolicies(with(protect4(), func(p *policy) { p.action = LanSpdActionSPD_DISCARD; p.proto = protoTCP; p.dport = 23 })),
			want:  xdpDrop, count: []LanLanCounter{LanLanCounterLAN_DROP_DISCARD}},
		{name: "bypass-v4", pkt: udp4(lanHost4, "10.2.0.1", 5000, 5001),
			// The longer prefix wins: the gateway itself is bypassed.
			setup: withPolicies(protect4(), policy{dst: "10.2.0.1/32", src: "0.0.0.0/0", action: LanSpdActionSPD_BYPASS}),
			want:  xdpPass, count: []LanLanCounter{LanLanCounterLAN_PASS_BYPASS}},
		{name: "bypass-v4-port-selector", pkt: udp4(lanHost4, lanRemote4, 5000, 53),
			setup: withPolicies(with(protect4(), func(p *policy) { p.action = LanSpdActionSPD_BYPASS; p.proto = protoUDP; p.dport = 53 })),
			want:  xdpPass, count: []LanLanCounter{LanLanCounterLAN_PASS_BYPASS}},
		{name: "no-match-v4", pkt: udp4(lanHost4, "192.0.2.7", 5000, 5001), setup: withPolicies(protect4()),
			want: xdpPass, count: []LanLanCounter{LanLanCounterLAN_PASS_NOMATCH}},
		{name: "bad-action", pkt: udp4(lanHost4, lanRemote4, 5000, 5001),
			setup: withPolicies(with(protect4(), func(p *policy) { p.action = 7 })),
			want:  xdpDrop, count: []LanLanCounter{LanLanCounterLAN_DROP_BAD_ACTION}},

		// IPv6 SPD.
		{name: "protect-v6", pkt: udp6(lanHost6, lanRemote6, 5000, 5001), setup: withPolicies(protect6()),
			want: xdpRedirect, count: []LanLanCounter{LanLanCounterLAN_REDIRECT_XSK}},
		{name: "protect-v6-port-selector", pkt: udp6(lanHost6, lanRemote6, 5000, 53), setup: withPolicies(dnsOnly6),
			want: xdpRedirect, count: []LanLanCounter{LanLanCounterLAN_REDIRECT_XSK}},
		{name: "protect-v6-port-mismatch", pkt: udp6(lanHost6, lanRemote6, 5000, 54), setup: withPolicies(dnsOnly6),
			want: xdpPass, count: []LanLanCounter{LanLanCounterLAN_PASS_NOMATCH}},
		{name: "protect-v6-src-mismatch", pkt: udp6("fd00:9::10", lanRemote6, 5000, 5001), setup: withPolicies(protect6()),
			want: xdpPass, count: []LanLanCounter{LanLanCounterLAN_PASS_NOMATCH}},
		{name: "protect-v6-ext-headers",
			pkt: ether(etherIPv6, ipv6(protoHop, lanHost6, lanRemote6,
				ext6(protoUDP, udp(5000, 53, make([]byte, 8))))),
			setup: withPolicies(dnsOnly6), want: xdpRedirect, count: []LanLanCounter{LanLanCounterLAN_REDIRECT_XSK}},
		{name: "discard-v6", pkt: udp6(lanHost6, lanRemote6, 5000, 5001),
			setup: withPolicies(with(protect6(), func(p *policy) { p.action = LanSpdActionSPD_DISCARD })),
			want:  xdpDrop, count: []LanLanCounter{LanLanCounterLAN_DROP_DISCARD}},
		{name: "bypass-v6-port-selector", pkt: udp6(lanHost6, lanRemote6, 5000, 53),
			setup: withPolicies(with(dnsOnly6, func(p *policy) { p.action = LanSpdActionSPD_BYPASS })),
			want:  xdpPass, count: []LanLanCounter{LanLanCounterLAN_PASS_BYPASS}},
		{name: "no-match-v6", pkt: udp6(lanHost6, "2001:db8::9", 5000, 5001), setup: withPolicies(protect6()),
			want: xdpPass, count: []LanLanCounter{LanLanCounterLAN_PASS_NOMATCH}},
		{name: "ipv6-ext-headers-over-limit",
			pkt:   ether(etherIPv6, ipv6(protoDstOpts, lanHost6, lanRemote6, extChain(7))),
			setup: withPolicies(protect6()), want: xdpDrop, count: []LanLanCounter{LanLanCounterLAN_DROP_EXT_LIMIT}},
		{name: "not-ip", pkt: pad(ether(etherARP, make([]byte, 28))),
			want: xdpPass, count: []LanLanCounter{LanLanCounterLAN_PASS_OTHER}},

		// TCP MSS clamping on protected flows.
		{name: "mss-clamp-v4-syn", pkt: tcp4(lanHost4, lanRemote4, 40000, 443, tcpSYN, mssOpt(1460)),
			setup: withPolicies(clamp4), want: xdpRedirect,
			count: []LanLanCounter{LanLanCounterLAN_REDIRECT_XSK, LanLanCounterLAN_MSS_CLAMPED},
			out:   tcp4(lanHost4, lanRemote4, 40000, 443, tcpSYN, mssOpt(1360)),
			check: checkTCPSum(lanHost4, lanRemote4, 14+20)},
		{name: "mss-clamp-v4-syn-ack-odd-offset",
			// NOP, MSS: the value sits at an odd offset from the TCP header.
			pkt:   tcp4(lanHost4, lanRemote4, 443, 40000, tcpSYN|tcpACK, append([]byte{1}, append(mssOpt(1460), 1, 1, 0)...)),
			setup: withPolicies(clamp4), want: xdpRedirect,
			count: []LanLanCounter{LanLanCounterLAN_REDIRECT_XSK, LanLanCounterLAN_MSS_CLAMPED},
			out:   tcp4(lanHost4, lanRemote4, 443, 40000, tcpSYN|tcpACK, append([]byte{1}, append(mssOpt(1360), 1, 1, 0)...)),
			check: checkTCPSum(lanHost4, lanRemote4, 14+20)},
		{name: "mss-clamp-v4-after-other-options",
			// SACK-permitted, timestamps, window scale, then MSS.
			pkt: tcp4(lanHost4, lanRemote4, 40000, 443, tcpSYN,
				append([]byte{4, 2, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8, 3, 3, 7}, append(mssOpt(9000), 0)...)),
			setup: withPolicies(clamp4), want: xdpRedirect,
			count: []LanLanCounter{LanLanCounterLAN_REDIRECT_XSK, LanLanCounterLAN_MSS_CLAMPED},
			out: tcp4(lanHost4, lanRemote4, 40000, 443, tcpSYN,
				append([]byte{4, 2, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8, 3, 3, 7}, append(mssOpt(1360), 0)...)),
			check: checkTCPSum(lanHost4, lanRemote4, 14+20)},
		{name: "mss-clamp-v6-syn", pkt: tcp6(lanHost6, lanRemote6, 40000, 443, tcpSYN, mssOpt(1440)),
			setup: withPolicies(clamp6), want: xdpRedirect,
			count: []LanLanCounter{LanLanCounterLAN_REDIRECT_XSK, LanLanCounterLAN_MSS_CLAMPED},
			out:   tcp6(lanHost6, lanRemote6, 40000, 443, tcpSYN, mssOpt(1340)),
			check: checkTCPSum(lanHost6, lanRemote6, 14+40)},
		// A sender with TX checksum offload leaves the pseudo-header
		// sum in the field; the clamp must leave it for the completion.
		{name: "mss-clamp-v4-partial-checksum",
			pkt:   partialTCP(tcp4(lanHost4, lanRemote4, 40000, 443, tcpSYN, mssOpt(1460)), lanHost4, lanRemote4, 14+20),
			setup: withPolicies(clamp4), want: xdpRedirect,
			count: []LanLanCounter{LanLanCounterLAN_REDIRECT_XSK, LanLanCounterLAN_MSS_CLAMPED},
			out:   partialTCP(tcp4(lanHost4, lanRemote4, 40000, 443, tcpSYN, mssOpt(1360)), lanHost4, lanRemote4, 14+20),
			check: checkPartialTCPSum(lanHost4, lanRemote4, 14+20)},
		{name: "mss-clamp-v6-partial-checksum-odd-offset",
			pkt: partialTCP(tcp6(lanHost6, lanRemote6, 40000, 443, tcpSYN, append([]byte{1}, append(mssOpt(1440), 1, 1, 0)...)),
				lanHost6, lanRemote6, 14+40),
			setup: withPolicies(clamp6), want: xdpRedirect,
			count: []LanLanCounter{LanLanCounterLAN_REDIRECT_XSK, LanLanCounterLAN_MSS_CLAMPED},
			out: partialTCP(tcp6(lanHost6, lanRemote6, 40000, 443, tcpSYN, append([]byte{1}, append(mssOpt(1340), 1, 1, 0)...)),
				lanHost6, lanRemote6, 14+40),
			check: checkPartialTCPSum(lanHost6, lanRemote6, 14+40)},
		{name: "mss-clamp-v4-after-36-nops",
			// The walk's last iteration: the header's 40 option bytes
			// end with the MSS.
			pkt:   tcp4(lanHost4, lanRemote4, 40000, 443, tcpSYN, append(bytes.Repeat([]byte{1}, 36), mssOpt(1460)...)),
			setup: withPolicies(clamp4), want: xdpRedirect,
			count: []LanLanCounter{LanLanCounterLAN_REDIRECT_XSK, LanLanCounterLAN_MSS_CLAMPED},
			out:   tcp4(lanHost4, lanRemote4, 40000, 443, tcpSYN, append(bytes.Repeat([]byte{1}, 36), mssOpt(1360)...)),
			check: checkTCPSum(lanHost4, lanRemote4, 14+20)},
		{name: "mss-absent-trailing-nop-untouched",
			// Window scale, then a NOP as the frame's last byte: the NOP
			// has no length byte to read.
			pkt:   tcp6(lanHost6, lanRemote6, 40000, 443, tcpSYN, []byte{3, 3, 7, 1}),
			setup: withPolicies(clamp6), want: xdpRedirect, count: []LanLanCounter{LanLanCounterLAN_REDIRECT_XSK}},
		{name: "mss-one-byte-option", pkt: tcp4(lanHost4, lanRemote4, 40000, 443, tcpSYN, []byte{4, 1, 1, 1}),
			setup: withPolicies(clamp4), want: xdpDrop, count: []LanLanCounter{LanLanCounterLAN_DROP_MALFORMED}},
		{name: "mss-below-clamp-untouched", pkt: tcp4(lanHost4, lanRemote4, 40000, 443, tcpSYN, mssOpt(1200)),
			setup: withPolicies(clamp4), want: xdpRedirect, count: []LanLanCounter{LanLanCounterLAN_REDIRECT_XSK}},
		{name: "mss-not-syn-untouched", pkt: tcp4(lanHost4, lanRemote4, 40000, 443, tcpACK, mssOpt(1460)),
			setup: withPolicies(clamp4), want: xdpRedirect, count: []LanLanCounter{LanLanCounterLAN_REDIRECT_XSK}},
		{name: "mss-bypass-untouched", pkt: tcp4(lanHost4, lanRemote4, 40000, 443, tcpSYN, mssOpt(1460)),
			setup: withPolicies(with(clamp4, func(p *policy) { p.action = LanSpdActionSPD_BYPASS })),
			want:  xdpPass, count: []LanLanCounter{LanLanCounterLAN_PASS_BYPASS}},
		{name: "mss-bad-option-length", pkt: tcp4(lanHost4, lanRemote4, 40000, 443, tcpSYN, []byte{2, 3, 5, 0xb4}),
			setup: withPolicies(clamp4), want: xdpDrop, count: []LanLanCounter{LanLanCounterLAN_DROP_MALFORMED}},
		{name: "mss-option-overruns-header", pkt: tcp4(lanHost4, lanRemote4, 40000, 443, tcpSYN, []byte{1, 1, 8, 10}),
			setup: withPolicies(clamp4), want: xdpDrop, count: []LanLanCounter{LanLanCounterLAN_DROP_MALFORMED}},

		// Trap: protect policy without an SA yet.
		{name: "trap-event", pkt: tcp4(lanHost4, lanRemote4, 40000, 443, tcpSYN, nil),
			setup: withPolicies(with(protect4(), func(p *policy) { p.spi = 0 })),
			want:  xdpDrop, count: []LanLanCounter{LanLanCounterLAN_DROP_TRAP, LanLanCounterLAN_EVENT_TRAP},
			check: func(t testing.TB, o *LanObjects, _ []byte) {
				var ev LanTrapEvent
				readEvent(t, o.LanEvents, &ev)
				want := LanTrapEvent{PolicyId: policyID, Proto: protoTCP, Sport: 40000, Dport: 443,
					Saddr: addr16(lanHost4), Daddr: addr16(lanRemote4)}
				if ev != want {
					t.Errorf("event %+v, want %+v", ev, want)
				}
			}},
		{name: "trap-event-v6", pkt: udp6(lanHost6, lanRemote6, 5000, 53),
			setup: withPolicies(with(dnsOnly6, func(p *policy) { p.spi = 0 })),
			want:  xdpDrop, count: []LanLanCounter{LanLanCounterLAN_DROP_TRAP, LanLanCounterLAN_EVENT_TRAP},
			check: func(t testing.TB, o *LanObjects, _ []byte) {
				var ev LanTrapEvent
				readEvent(t, o.LanEvents, &ev)
				want := LanTrapEvent{PolicyId: policyID, Proto: protoUDP, Sport: 5000, Dport: 53,
					Saddr: addr16(lanHost6), Daddr: addr16(lanRemote6)}
				if ev != want {
					t.Errorf("event %+v, want %+v", ev, want)
				}
			}},
		{name: "trap-event-rate-limited", pkt: tcp4(lanHost4, lanRemote4, 40000, 443, tcpSYN, nil), prior: 1,
			setup: withPolicies(with(protect4(), func(p *policy) { p.spi = 0 })),
			want:  xdpDrop, count: []LanLanCounter{LanLanCounterLAN_DROP_TRAP, LanLanCounterLAN_EVENT_TRAP_SUPPRESSED},
			check: func(t testing.TB, o *LanObjects, _ []byte) {
				var ev LanTrapEvent
				readEvent(t, o.LanEvents, &ev) // the prior run's
				noEvent(t, o.LanEvents)
			}},

		{name: "trap-event-ring-buffer-full", pkt: tcp4(lanHost4, lanRemote4, 40000, 443, tcpSYN, nil),
			setup: func(t testing.TB, o *LanObjects) {
				withPolicies(with(protect4(), func(p *policy) { p.spi = 0 }))(t, o)
				// Trap until the daemon-less ring buffer overflows,
				// clearing the rate limit each time, and once more for the
				// checked run.
				pkt := tcp4(lanHost4, lanRemote4, 40000, 443, tcpSYN, nil)
				for i := 0; counters(t, o.LanCounters)[LanLanCounterLAN_EVENT_LOST] == 0; i++ {
					if i > 10000 {
						t.Fatal("ring buffer never filled")
					}
					clearTrapLimit(t, o)
					run(t, o.XdpLan, pkt)
				}
				clearTrapLimit(t, o)
			},
			want: xdpDrop, count: []LanLanCounter{LanLanCounterLAN_DROP_TRAP, LanLanCounterLAN_EVENT_LOST}},

		// Truncation.
		{name: "truncated/ipv4-header", pkt: ether(etherIPv4, ipv4(protoUDP, lanHost4, lanRemote4, nil)[:12]),
			setup: withPolicies(protect4()), want: xdpDrop, count: []LanLanCounter{LanLanCounterLAN_DROP_MALFORMED}},
		{name: "truncated/ipv6-header", pkt: ether(etherIPv6, ipv6(protoUDP, lanHost6, lanRemote6, nil)[:30]),
			setup: withPolicies(protect6()), want: xdpDrop, count: []LanLanCounter{LanLanCounterLAN_DROP_MALFORMED}},
		{name: "truncated/ports", pkt: ether(etherIPv4, ipv4(protoUDP, lanHost4, lanRemote4, []byte{0x13, 0x88})),
			setup: withPolicies(protect4()), want: xdpDrop, count: []LanLanCounter{LanLanCounterLAN_DROP_MALFORMED}},
		{name: "truncated/tcp-header-on-clamp",
			pkt:   ether(etherIPv4, ipv4(protoTCP, lanHost4, lanRemote4, tcp(lanHost4, lanRemote4, 40000, 443, tcpSYN, nil, nil)[:16])),
			setup: withPolicies(clamp4), want: xdpDrop, count: []LanLanCounter{LanLanCounterLAN_DROP_MALFORMED}},
		{name: "truncated/tcp-options",
			pkt: func() []byte {
				seg := tcp(lanHost4, lanRemote4, 40000, 443, tcpSYN, mssOpt(1460), nil)
				return ether(etherIPv4, ipv4(protoTCP, lanHost4, lanRemote4, seg[:22]))
			}(),
			setup: withPolicies(clamp4), want: xdpDrop, count: []LanLanCounter{LanLanCounterLAN_DROP_MALFORMED}},
	}
}

func clearTrapLimit(t testing.TB, o *LanObjects) {
	t.Helper()
	if err := o.TrapRl.Delete(uint32(policyID)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Fatalf("clear trap rate limit: %v", err)
	}
}

// checkTCPSum verifies the whole TCP checksum of the packet the program
// left, so an incremental update that is merely consistent with the
// fixture's expectation but wrong on the wire cannot pass.
func checkTCPSum(src, dst string, l4off int) func(testing.TB, *LanObjects, []byte) {
	return func(t testing.TB, _ *LanObjects, out []byte) {
		t.Helper()
		if sum := tcpSum(src, dst, out[l4off:]); sum != 0xffff {
			t.Errorf("TCP checksum does not verify: sum %#04x (checksum field %#04x)",
				sum, binary.BigEndian.Uint16(out[l4off+16:]))
		}
	}
}

// partialTCP puts into the TCP segment at l4off of frame what a sender
// with TX checksum offload leaves in its checksum field (CHECKSUM_PARTIAL):
// the folded pseudo-header sum, not complemented.
func partialTCP(frame []byte, src, dst string, l4off int) []byte {
	seg := frame[l4off:]
	binary.BigEndian.PutUint16(seg[16:], tcpSum(src, dst, make([]byte, len(seg))))
	return frame
}

// checkPartialTCPSum checks that the TCP checksum of the packet the program
// left is still partial and that completing it, as the device or the
// worker does (the segment's sum, over the field, complemented), gives a
// checksum that verifies.
func checkPartialTCPSum(src, dst string, l4off int) func(testing.TB, *LanObjects, []byte) {
	return func(t testing.TB, _ *LanObjects, out []byte) {
		t.Helper()
		seg := bytes.Clone(out[l4off:])
		field := binary.BigEndian.Uint16(seg[16:])
		if pseudo := tcpSum(src, dst, make([]byte, len(seg))); field != pseudo {
			t.Errorf("checksum field %#04x, want the pseudo-header sum %#04x left for completion", field, pseudo)
		}
		binary.BigEndian.PutUint16(seg[16:], ^onesSum(0, seg))
		if sum := tcpSum(src, dst, seg); sum != 0xffff {
			t.Errorf("completed TCP checksum does not verify: sum %#04x", sum)
		}
	}
}

func TestXDPLAN(t *testing.T) {
	requireRoot(t)
	for _, c := range lanCases() {
		t.Run(c.name, func(t *testing.T) {
			var o LanObjects
			load(t, LoadLanObjects, &o)
			if c.setup != nil {
				c.setup(t, &o)
			}
			for range c.prior {
				run(t, o.XdpLan, c.pkt)
			}
			before := counters(t, o.LanCounters)
			ret, out := run(t, o.XdpLan, c.pkt)
			after := counters(t, o.LanCounters)
			if ret != c.want {
				t.Errorf("verdict %s, want %s", actionName(ret), actionName(c.want))
			}
			checkDeltas(t, before, after, c.count, func(i int) string { return LanLanCounter(i).String() })
			want := c.out
			if want == nil {
				want = c.pkt
			}
			if !bytes.Equal(out, want) {
				t.Errorf("packet out:\n got % x\nwant % x", out, want)
			}
			if c.check != nil {
				c.check(t, &o, out)
			}
		})
	}
}
