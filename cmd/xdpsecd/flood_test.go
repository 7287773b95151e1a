package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xdpsec/xdpsec/control/api"
	"github.com/xdpsec/xdpsec/ike/message"
	"github.com/xdpsec/xdpsec/internal/netlab"
)

// initFlooder sends IKE_SA_INIT requests with fresh SPIs from one address
// and, when answering is set, repeats each request with the COOKIE it is
// asked for, as an attacker that receives at its address does.
type initFlooder struct {
	conn      *net.UDPConn
	to        netip.AddrPort
	answering bool
	sent      *atomic.Int64
}

func newInitFlooder(t *testing.T, ns *netlab.NS, from, to netip.AddrPort, answering bool, sent *atomic.Int64) *initFlooder {
	t.Helper()
	var c *net.UDPConn
	if err := ns.Do(func() (err error) {
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(from))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &initFlooder{conn: c, to: to, answering: answering, sent: sent}
}

// initRequest encodes an IKE_SA_INIT request offering AES-GCM-256,
// HMAC-SHA2-256 and Curve25519, with a random key share and nonce.
func initRequest(spi uint64, cookie []byte) ([]byte, error) {
	share, nonce := make([]byte, 32), make([]byte, 32)
	_, _ = rand.Read(share)
	_, _ = rand.Read(nonce)
	var ps []message.Payload
	if cookie != nil {
		ps = append(ps, &message.Notify{NotifyType: message.NotifyCookie, Data: cookie})
	}
	prop := message.Proposal{Number: 1, Protocol: message.ProtocolIKE, Transforms: []message.Transform{
		{Type: message.TransformENCR, ID: 20, KeyLength: 256}, // ENCR_AES_GCM_16
		{Type: message.TransformPRF, ID: 5},                   // PRF_HMAC_SHA2_256
		{Type: message.TransformKE, ID: uint16(message.GroupCurve25519)},
	}}
	ps = append(ps, &message.SA{Proposals: []message.Proposal{prop}},
		&message.KE{Group: message.GroupCurve25519, Data: share}, &message.Nonce{Data: nonce})
	m := &message.Message{Header: message.Header{SPIi: spi, Exchange: message.ExchangeIKESAInit, Flags: message.FlagInitiator}, Payloads: ps}
	return m.Encode()
}

// run floods, one request every gap, until ctx is done or the shared
// count reaches total.
func (f *initFlooder) run(ctx context.Context, total int64, gap time.Duration) error {
	var spi [8]byte
	buf := make([]byte, 2048)
	tick := time.NewTicker(gap)
	defer tick.Stop()
	for ctx.Err() == nil && f.sent.Load() < total {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		_, _ = rand.Read(spi[:])
		id := binary.BigEndian.Uint64(spi[:]) | 1
		req, err := initRequest(id, nil)
		if err != nil {
			return err
		}
		if _, err := f.conn.WriteToUDPAddrPort(req, f.to); err != nil {
			return fmt.Errorf("flood: %w", err)
		}
		f.sent.Add(1)
		if !f.answering {
			continue
		}
		_ = f.conn.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
		n, _, err := f.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			continue // dropped at the front door, or no answer yet
		}
		m, err := message.Decode(buf[:n])
		if err != nil {
			return fmt.Errorf("flood: undecodable answer: %w", err)
		}
		for _, p := range m.Payloads {
			if c, ok := p.(*message.Notify); ok && c.NotifyType == message.NotifyCookie && m.Header.SPIi == id {
				if req, err = initRequest(id, c.Data); err != nil {
					return err
				}
				if _, err := f.conn.WriteToUDPAddrPort(req, f.to); err == nil {
					f.sent.Add(1)
				}
			}
		}
	}
	return nil
}

// TestIKEFloodKeepsTunnel: a flood of 20,000 IKE_SA_INIT requests from
// forty addresses, half of them answering COOKIEs, against a responder
// that accepts any peer address. The established tunnel keeps passing
// traffic without loss, the responder demands COOKIEs, the XDP front door
// rate-limits the flooding sources (drop_ike_ratelimit), the half-open
// table stays within its limits, and the legitimate gateway, taking its
// tunnel down and up again in the middle of the flood, gets its new IKE
// SA on its first try.
func TestIKEFloodKeepsTunnel(t *testing.T) {
	netlab.RequireRoot(t)
	bins := buildBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	lab := netlab.NewTestLab(t, netlab.LabOptions{Prefix: netlab.RandomPrefix("xf"), NoGatewayRoutes: true})
	const ike, esp = "aes256gcm16-prfsha256-x25519", "aes256gcm16"
	const limits = "cookie_threshold: 10, half_open_limit: 60, half_open_per_source: 3, init_rate_limit: 5"
	dA, dB, _, _ := startPair(t, bins, lab,
		xdpsecConn{ike: ike, esp: esp, startAction: "start", dataplane: "afxdp"},
		xdpsecConn{ike: ike, esp: esp, startAction: "none", dataplane: "afxdp", remote: "%any", ikeExtra: limits})
	traffic := startTrafficAt(t, ctx, lab, 200, 100_000)

	const sources, total = 40, 20_000
	var sent atomic.Int64
	to := netip.AddrPortFrom(lab.V4.GwBWAN, 500)
	var flooders []*initFlooder
	for i := range sources {
		addr := netip.MustParseAddr(fmt.Sprintf("192.0.2.%d", 100+i))
		if err := lab.GwA.AddAddr(netlab.WANIf, netip.PrefixFrom(addr, 32)); err != nil {
			t.Fatal(err)
		}
		flooders = append(flooders, newInitFlooder(t, lab.GwA, netip.AddrPortFrom(addr, 0), to, i%2 == 0, &sent))
	}
	floodCtx, stopFlood := context.WithCancel(ctx)
	defer stopFlood()
	var wg sync.WaitGroup
	errs := make(chan error, sources)
	for _, f := range flooders {
		wg.Go(func() {
			// 40 sources at 100 requests a second: about five seconds.
			if err := f.run(floodCtx, total, 10*time.Millisecond); err != nil {
				errs <- err
			}
		})
	}
	// Let the flood build up, then look at the tunnel and the limits.
	waitFor := func(what string, ok func(st api.Stats) bool) api.Stats {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			var st api.Stats
			ctlJSON(t, bins, dB.socket, &st, "stats")
			if ok(st) {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: ike %+v, xdp wan %v", what, st.IKE, st.XDP["wan"])
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	st := waitFor("no COOKIEs and front door drops under the flood", func(st api.Stats) bool {
		return st.IKE.CookiesSent > 0 && st.XDP["wan"]["drop_ike_ratelimit"] > 0
	})
	if st.IKE.HalfOpen > 60 {
		t.Errorf("%d half-open IKE SAs, over half_open_limit 60", st.IKE.HalfOpen)
	}
	time.Sleep(2 * time.Second) // the tunnel's streams under the flood
	traffic.checkNoLoss(t, "IKE_SA_INIT flood")
	if sent.Load() >= total {
		t.Fatalf("the flood was over before the legitimate gateway's turn")
	}

	// The legitimate gateway again, into the flood: on its first try.
	var before api.Stats
	ctlJSON(t, bins, dA.socket, &before, "stats")
	if out, code := ctl(t, bins, dA.socket, "down", "s2s"); code != 0 {
		t.Fatalf("xdpsecctl down: exit %d: %s", code, out)
	}
	start := time.Now()
	if out, code := ctl(t, bins, dA.socket, "up", "s2s"); code != 0 {
		t.Fatalf("xdpsecctl up during the flood: exit %d: %s", code, out)
	}
	waitEstablished(t, bins, dA, "s2s")
	took := time.Since(start)
	var after api.Stats
	ctlJSON(t, bins, dA.socket, &after, "stats")
	if n := after.IKE.Retransmits - before.IKE.Retransmits; n != 0 {
		t.Errorf("the legitimate gateway retransmitted %d times during the flood (up took %v)", n, took)
	}
	t.Logf("legitimate IKE SA during the flood in %v", took)

	wg.Wait() // the flood runs to its end
	stopFlood()
	close(errs)
	if n := sent.Load(); n < total {
		t.Errorf("flood sent %d requests, want %d", n, total)
	}
	for err := range errs {
		t.Error(err)
	}
	ctlJSON(t, bins, dB.socket, &st, "stats")
	t.Logf("flood: %d requests sent; responder: %d COOKIEs, %d half-open, %d evicted, dropped %v; front door: drop_ike_ratelimit %d",
		sent.Load(), st.IKE.CookiesSent, st.IKE.HalfOpen, st.IKE.HalfOpenEvicted, st.IKE.Dropped, st.XDP["wan"]["drop_ike_ratelimit"])
}
