package bpf

import (
	"testing"

	"github.com/cilium/ebpf"
)

// benchXDP runs prog on pkt b.N times inside one BPF_PROG_TEST_RUN and
// reports the kernel's own time per packet ("ns/pkt"), which leaves out
// the syscall that ns/op amortises. The verdict is checked so a broken
// setup cannot benchmark the wrong path.
func benchXDP(b *testing.B, prog *ebpf.Program, pkt []byte, want uint32) {
	b.Helper()
	b.ResetTimer()
	ret, perPkt, err := prog.Benchmark(pkt, b.N, b.ResetTimer)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if ret != want {
		b.Fatalf("verdict %s, want %s", actionName(ret), actionName(want))
	}
	b.ReportMetric(float64(perPkt.Nanoseconds()), "ns/pkt")
}

func BenchmarkXDPWAN(b *testing.B) {
	for _, c := range []struct {
		name  string
		pkt   []byte
		setup func(testing.TB, *WanObjects)
		want  uint32
	}{
		{"unknown-spi", espIn4(wanPeer4, spiUnknown), nil, xdpDrop},
		{"known-spi", espUDP4(wanPeer4, 4500, spiKnown), afxdpSA(wanLocal4), xdpRedirect},
		{"ike", ike500(wanPeer4, ikeSAInit, ikeInitiator), nil, xdpPass},
	} {
		b.Run(c.name, func(b *testing.B) {
			var o WanObjects
			load(b, LoadWanObjects, &o)
			if c.setup != nil {
				c.setup(b, &o)
			}
			benchXDP(b, o.XdpWan, c.pkt, c.want)
		})
	}
}

func BenchmarkXDPLAN(b *testing.B) {
	for _, c := range []struct {
		name string
		pkt  []byte
		want uint32
	}{
		{"protect", tcp4(lanHost4, lanRemote4, 40000, 443, tcpACK, nil), xdpRedirect},
		{"bypass", udp4(lanHost4, "10.2.0.1", 5000, 53), xdpPass},
	} {
		b.Run(c.name, func(b *testing.B) {
			var o LanObjects
			load(b, LoadLanObjects, &o)
			withPolicies(protect4(), policy{dst: "10.2.0.1/32", src: "0.0.0.0/0", action: LanSpdActionSPD_BYPASS})(b, &o)
			benchXDP(b, o.XdpLan, c.pkt, c.want)
		})
	}
}
