package afxdp

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"go.uber.org/zap"

	"github.com/xdpsec/xdpsec/offload"
	"github.com/xdpsec/xdpsec/offload/afxdp/fib"
	"github.com/xdpsec/xdpsec/offload/afxdp/icmp"
	"github.com/xdpsec/xdpsec/offload/afxdp/ipcsum"
	"github.com/xdpsec/xdpsec/offload/afxdp/xsk"
	"github.com/xdpsec/xdpsec/offload/esp"
)

// A pair of gateways whose workers run on memory sockets (xsk.NewMemory):
// the whole data path of a worker, from parsing a frame to handing the
// result to a TX ring, with no kernel, root or NIC. Site A protects
// 10.1.0.0/24 behind 192.0.2.1, site B 10.2.0.0/24 behind 192.0.2.2; the
// SA from A to B is AES-256-GCM, as in the lab.

// memSite is one side of the pair.
type memSite struct {
	wan, lanAddr, host netip.Addr
	net                netip.Prefix
	wanMAC, lanMAC     [6]byte // the gateway's ports
	hostMAC            [6]byte // the LAN host's
}

var memSites = [2]memSite{{
	wan: netip.MustParseAddr("192.0.2.1"), lanAddr: netip.MustParseAddr("10.1.0.1"),
	host: netip.MustParseAddr("10.1.0.10"), net: netip.MustParsePrefix("10.1.0.0/24"),
	wanMAC: [6]byte{2, 0, 0, 0xa, 0, 1}, lanMAC: [6]byte{2, 0, 0, 0xa, 0, 2}, hostMAC: [6]byte{2, 0, 0, 0xa, 0, 3},
}, {
	wan: netip.MustParseAddr("192.0.2.2"), lanAddr: netip.MustParseAddr("10.2.0.1"),
	host: netip.MustParseAddr("10.2.0.10"), net: netip.MustParsePrefix("10.2.0.0/24"),
	wanMAC: [6]byte{2, 0, 0, 0xb, 0, 1}, lanMAC: [6]byte{2, 0, 0, 0xb, 0, 2}, hostMAC: [6]byte{2, 0, 0, 0xb, 0, 3},
}}

// Interface indices of the memory gateways' ports, for their next hops.
const (
	memWANIf = 1
	memLANIf = 2
	memMTU   = 1500
)

// memGateway is one gateway: a data plane with one worker, one LAN and
// one WAN memory socket and their wires.
type memGateway struct {
	dp               *Dataplane
	w                *worker
	lan, wan         *xsk.Socket
	lanWire, wanWire *xsk.Wire
	out              *outSA  // towards the peer
	in               *esp.SA // from the peer
}

// newMemPair builds gateways A and B with the SAs of both directions
// installed and an outbound protect policy for the peer's network on
// each, AES-256-GCM with random keys. It returns the keys of A's outbound
// SA too.
func newMemPair(tb testing.TB) (a, b *memGateway, keyAB keys) {
	tb.Helper()
	keyAB, keyBA := newKeys(tb, aes256gcm16), newKeys(tb, aes256gcm16)
	sa, sb := memSites[0], memSites[1]
	abOut, abIn := saPair(spiAB, keyAB, sa.wan, sb.wan, sa.net, sb.net, nil)
	baOut, baIn := saPair(spiBA, keyBA, sb.wan, sa.wan, sb.net, sa.net, nil)
	// saPair gives the inbound SAs a soft packet limit, for the lab's
	// expiry events; production SAs of IKE have time limits, which the
	// engine does not see.
	abIn.Lifetime, baIn.Lifetime = offload.Lifetime{}, offload.Lifetime{}
	a = newMemGateway(tb, sa, sb, abOut, baIn)
	b = newMemGateway(tb, sb, sa, baOut, abIn)
	return a, b, keyAB
}

// newMemGateway builds the gateway of site local, whose peer is site
// peer, with outbound SA out and inbound SA in installed as AddSA and
// AddPolicy would (the engine, the SADB, the Go SPD: everything but the
// XDP maps), and next hops for the peer's WAN address and the LAN host.
func newMemGateway(tb testing.TB, local, peer memSite, out, in offload.SA) *memGateway {
	tb.Helper()
	g := &memGateway{}
	var err error
	if g.lan, g.lanWire, err = xsk.NewMemory(xsk.Config{}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { g.lan.Close() })
	if g.wan, g.wanWire, err = xsk.NewMemory(xsk.Config{}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { g.wan.Close() })

	d := &Dataplane{
		log:     zap.NewNop(),
		sadb:    esp.NewSADB(),
		icmpLim: icmp.NewLimiter(icmp.LimiterConfig{}),
		wanIf:   memWANIf, lanIf: memLANIf, wanMTU: memMTU,
		fib: fib.NewStatic(map[netip.Addr]fib.NextHop{
			peer.wan:   {IfIndex: memWANIf, Src: local.wan, SrcMAC: local.wanMAC, DstMAC: peer.wanMAC, MTU: memMTU},
			local.host: {IfIndex: memLANIf, Src: local.lanAddr, SrcMAC: local.lanMAC, DstMAC: local.hostMAC, MTU: memMTU},
		}),
		wanPorts: []*wanPort{{s: g.wan}},
	}
	d.locals.Store(&localAddrs{})
	g.dp = d
	g.out = newOutSA(newEngine(tb, out), out)
	g.in = newEngine(tb, in)
	if err := d.sadb.Add(g.in); err != nil {
		tb.Fatal(err)
	}
	pol := offload.Policy{Dir: offload.Out, Src: local.net, Dst: peer.net, Action: offload.Protect, SPI: out.SPI, Mode: offload.Tunnel}
	d.spd.Store(buildSPD([]*spdEntry{newSPDEntry(pol, g.out)}))

	g.w = newWorker(d, 0, holdSlotSize(g.wan, 0))
	g.w.wan = d.wanPorts
	g.w.lan = []*xsk.Socket{g.lan}
	g.w.lanTx = g.lan
	return g
}

func newEngine(tb testing.TB, sa offload.SA) *esp.SA {
	tb.Helper()
	c, err := espConfig(sa)
	if err != nil {
		tb.Fatal(err)
	}
	e, err := esp.NewSA(c)
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

// fcsLen is the Ethernet FCS: RFC 2544 frame sizes count it, AF_XDP frames
// do not carry it.
const fcsLen = 4

// udpFrame returns the Ethernet frame (without FCS) of a UDP datagram in
// IPv4 from site s's LAN host to peer's, addressed to s's gateway, whose
// RFC 2544 size, FCS included, is size: a 64-byte frame is a 46-byte IP
// packet with 18 bytes of UDP payload. Its checksums are complete, as
// from a host without TX checksum offload.
func udpFrame(s, peer memSite, size int, seq int) []byte {
	f := make([]byte, size-fcsLen)
	putEth(f, s.lanMAC, s.hostMAC, false)
	ip := f[ethLen:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	binary.BigEndian.PutUint16(ip[4:], uint16(seq))
	ip[6] = 0x40 // DF, as TCP and most UDP senders set it
	ip[8], ip[9] = 64, 17
	src, dst := s.host.As4(), peer.host.As4()
	copy(ip[12:16], src[:])
	copy(ip[16:20], dst[:])
	binary.BigEndian.PutUint16(ip[10:], ^ipcsum.Fold(ipcsum.Sum(ip[:ipv4MinLen], 0)))
	udp := ip[ipv4MinLen:]
	binary.BigEndian.PutUint16(udp[0:], 40000+uint16(seq%16))
	binary.BigEndian.PutUint16(udp[2:], 5201)
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	for i := 8; i < len(udp); i++ {
		udp[i] = byte(seq + i)
	}
	pseudo := ipcsum.Sum(ip[12:20], uint64(17)+uint64(len(udp)))
	c := ^ipcsum.Fold(ipcsum.Sum(udp, pseudo))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(udp[6:], c)
	return f
}

// collector keeps copies of the frames a wire drains into buffers it
// reuses, so that collecting allocates nothing once they have grown.
type collector struct {
	bufs  [][]byte
	n     int
	bytes int
}

func newCollector() *collector {
	c := &collector{bufs: make([][]byte, batchSize)}
	for i := range c.bufs {
		c.bufs[i] = make([]byte, 0, xsk.DefaultFrameSize)
	}
	return c
}

func (c *collector) add(f []byte) {
	c.bufs[c.n] = append(c.bufs[c.n][:0], f...)
	c.n++
	c.bytes += len(f)
}

// frames returns what was collected since the last reset.
func (c *collector) frames() [][]byte { return c.bufs[:c.n] }

func (c *collector) reset() { c.n, c.bytes = 0, 0 }

// checkClean fails tb if anything on g's path dropped a packet or failed
// a kick: the worker's reasons, the engine's verdicts per SA and those
// before an SA was found, and the wires' counters.
func (g *memGateway) checkClean(tb testing.TB) {
	tb.Helper()
	for r := range numReasons {
		if n := g.w.drops[r].Load(); n != 0 {
			tb.Errorf("worker dropped %d packets as %s", n, reasonNames[r])
		}
	}
	if n := g.w.txErrs.Load(); n != 0 {
		tb.Errorf("%d failed tx kicks", n)
	}
	for _, sa := range []*esp.SA{g.out.sa, g.in} {
		if d := sa.Stats().Drops; d != (esp.DropCounts{}) {
			tb.Errorf("sa %08x dropped: %v", sa.SPI(), d)
		}
	}
	if d := g.dp.sadb.Drops(); d != (esp.DropCounts{}) {
		tb.Errorf("sadb dropped: %v", d)
	}
	for _, s := range []*xsk.Socket{g.lan, g.wan} {
		if st, err := s.Stats(); err != nil || st != (xsk.Stats{}) {
			tb.Errorf("wire counters %+v, %v", st, err)
		}
	}
}
