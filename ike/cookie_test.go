package ike

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/xdpsec/xdpsec/ike/crypto"
	"github.com/xdpsec/xdpsec/ike/message"
	"github.com/xdpsec/xdpsec/internal/netlab"
)

func TestCookieJar(t *testing.T) {
	now := time.Unix(1000, 0)
	j := newCookieJar(func() time.Time { return now })
	ni := []byte("nonce-nonce-nonce-nonce")
	ip := netip.MustParseAddr("192.0.2.7")
	c := j.make(ni, ip, 42)
	cases := []struct {
		name   string
		cookie []byte
		ni     []byte
		ip     netip.Addr
		spi    uint64
		want   bool
	}{
		{"valid", c, ni, ip, 42, true},
		{"other spi", c, ni, ip, 43, false},
		{"other address", c, ni, netip.MustParseAddr("192.0.2.8"), 42, false},
		{"other nonce", c, []byte("nonce-nonce-nonce-nonce!"), ip, 42, false},
		{"truncated", c[:10], ni, ip, 42, false},
		{"empty", nil, ni, ip, 42, false},
	}
	for _, tc := range cases {
		if got := j.valid(tc.cookie, tc.ni, tc.ip, tc.spi); got != tc.want {
			t.Errorf("%s: valid %v, want %v", tc.name, got, tc.want)
		}
	}
	// After one rotation the old cookie is still good, after two not.
	now = now.Add(cookieSecretLifetime)
	if !j.valid(c, ni, ip, 42) {
		t.Error("cookie from the previous secret rejected")
	}
	if c2 := j.make(ni, ip, 42); c2[0] == c[0] {
		t.Error("secret version did not change on rotation")
	}
	now = now.Add(cookieSecretLifetime)
	if j.valid(c, ni, ip, 42) {
		t.Error("cookie from two secrets ago accepted")
	}
}

// flooder sends IKE_SA_INIT requests from one address, as a spoofing
// attacker would (or, replaying cookies, one with real addresses).
type flooder struct {
	conn   *net.UDPConn
	spi    uint64
	req    func(cookie []byte) []byte
	cookie []byte
}

func newFlooder(t *testing.T, ns *netlab.NS, addr netip.Addr, offer []message.Proposal) *flooder {
	t.Helper()
	var c *net.UDPConn
	if err := ns.Do(func() error {
		var err error
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	kex, err := crypto.NewKeyExchange(crypto.GroupCurve25519)
	if err != nil {
		t.Fatal(err)
	}
	f := &flooder{conn: c, spi: binary.BigEndian.Uint64(randomBytes(8)) | 1}
	nonce := randomBytes(32)
	f.req = func(cookie []byte) []byte {
		var ps []message.Payload
		if cookie != nil {
			ps = append(ps, &message.Notify{NotifyType: message.NotifyCookie, Data: cookie})
		}
		ps = append(ps, &message.SA{Proposals: offer}, &message.KE{Group: message.GroupCurve25519, Data: kex.PublicKey()},
			&message.Nonce{Data: nonce})
		m := &message.Message{Header: message.Header{SPIi: f.spi, Exchange: message.ExchangeIKESAInit, Flags: message.FlagInitiator}, Payloads: ps}
		b, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	return f
}

// send sends the request and returns the responder's answer: "cookie",
// "sa" or "none".
func (f *flooder) send(t *testing.T, to netip.AddrPort) string {
	if _, err := f.conn.WriteToUDPAddrPort(f.req(f.cookie), to); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	_ = f.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	n, _, err := f.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		return "none"
	}
	m, err := message.Decode(buf[:n])
	if err != nil {
		t.Fatalf("flooder: undecodable answer: %v", err)
	}
	for _, p := range m.Payloads {
		if n, ok := p.(*message.Notify); ok && n.NotifyType == message.NotifyCookie {
			f.cookie = append([]byte(nil), n.Data...)
			return "cookie"
		}
		if _, ok := p.(*message.SA); ok {
			return "sa"
		}
	}
	return "other"
}

// TestCookieFlood: below the threshold requests make half-open SAs, above
// it they get COOKIEs, the front door's rate limit goes on at once and off
// after a calm; attackers that answer COOKIEs fill the table, after which
// each request with a valid COOKIE takes the oldest half-open SA's place,
// so a legitimate peer gets through on its first try; one source holds at
// most HalfOpenPerSource half-open SAs.
func TestCookieFlood(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	v4 := lab.V4
	const threshold, limit, perSource, flood = 5, 30, 3, 40
	ca, cb := siteConns(t, v4, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	cb.RemoteAddr = netip.Addr{} // %any, so the flood matches a connection
	var (
		rateMu sync.Mutex
		rates  []uint32
	)
	lastRate := func() (uint32, int) {
		rateMu.Lock()
		defer rateMu.Unlock()
		if len(rates) == 0 {
			return 0, 0
		}
		return rates[len(rates)-1], len(rates)
	}
	opts := fastOpts()
	opts.CookieThreshold, opts.HalfOpenLimit, opts.HalfOpenPerSource = threshold, limit, perSource
	opts.HalfOpenTimeout, opts.InitRateLimit = 3*time.Second, 7
	opts.SetInitRateLimit = func(r uint32) error {
		rateMu.Lock()
		rates = append(rates, r)
		rateMu.Unlock()
		return nil
	}
	a := startEngine(t, lab.GwA, "gwA", fastOpts(), 0x1000)
	b := startEngine(t, lab.GwB, "gwB", opts, 0x2000, func(e *Engine) { e.initRate.calm = 500 * time.Millisecond })
	b.e.SetConns([]Conn{cb})

	offer := toWire(ca.IKEProposals, message.ProtocolIKE, nil)
	var fl []*flooder
	for i := range flood + 1 {
		addr := netip.MustParseAddr(fmt.Sprintf("192.0.2.%d", 100+i))
		if err := lab.GwA.AddAddr(netlab.WANIf, netip.PrefixFrom(addr, 32)); err != nil {
			t.Fatal(err)
		}
		fl = append(fl, newFlooder(t, lab.GwA, addr, offer))
	}
	busy := fl[flood]
	fl = fl[:flood]
	to := netip.AddrPortFrom(v4.GwBWAN, 500)
	got := map[string]int{}
	for _, f := range fl {
		got[f.send(t, to)]++
	}
	if got["sa"] != threshold || got["cookie"] != flood-threshold {
		t.Fatalf("first wave answers %v, want %d SAs and %d cookies", got, threshold, flood-threshold)
	}
	if st := b.e.Stats(); st.HalfOpen != threshold || st.CookiesSent != flood-threshold {
		t.Fatalf("after the first wave: half-open %d, cookies %d", st.HalfOpen, st.CookiesSent)
	}
	waitFor(t, 2*time.Second, "the front door's rate limit to go on", func() bool { r, _ := lastRate(); return r == 7 })

	// Attackers that answer COOKIEs fill the table to the cap, then each
	// one takes the place of the oldest half-open SA.
	got = map[string]int{}
	for _, f := range fl[threshold:] {
		got[f.send(t, to)]++
	}
	st := b.e.Stats()
	if got["sa"] != flood-threshold || st.HalfOpen != limit || st.HalfOpenEvicted != flood-limit {
		t.Errorf("second wave answers %v, half-open %d, evicted %d; want %d SAs, %d half-open, %d evicted",
			got, st.HalfOpen, st.HalfOpenEvicted, flood-threshold, limit, flood-limit)
	}

	// The legitimate initiator, into the full table: a COOKIE round trip
	// and no retransmission.
	a.e.SetConns([]Conn{ca})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.e.Initiate(ctx, "s2s"); err != nil {
		t.Fatalf("legitimate Initiate during the flood: %v", err)
	}
	if st := a.e.Stats(); st.Retransmits != 0 {
		t.Errorf("legitimate initiator retransmitted %d times into the full table", st.Retransmits)
	}
	if st := b.e.Stats(); st.CookiesSent != flood-threshold+1 || st.HalfOpenEvicted != flood-limit+1 {
		t.Errorf("legitimate initiator: %d cookies, %d evictions; want %d and %d", st.CookiesSent, st.HalfOpenEvicted, flood-threshold+1, flood-limit+1)
	}

	// One source, new SPIs, each with its COOKIE: perSource half-open
	// SAs, then drops before the parse.
	got = map[string]int{}
	for range perSource + 2 {
		busy.spi++
		busy.cookie = nil
		r := busy.send(t, to)
		if r == "cookie" {
			r = busy.send(t, to)
		}
		got[r]++
	}
	if st := b.e.Stats(); got["sa"] != perSource || got["none"] != 2 || st.Dropped[DropHalfOpenSourceLimit] != 2 {
		t.Errorf("busy source: answers %v, %d dropped; want %d SAs and 2 drops", got, st.Dropped[DropHalfOpenSourceLimit], perSource)
	}

	// Half-open SAs expire; the established one stays, and the rate
	// limit goes off after the calm.
	waitFor(t, 5*time.Second, "half-open SAs to expire", func() bool { return b.e.Stats().HalfOpen == 0 })
	if sas := b.e.SAs(); len(sas) != 1 || sas[0].State != "ESTABLISHED" {
		t.Errorf("responder SAs after expiry: %d", len(sas))
	}
	waitFor(t, 3*time.Second, "the front door's rate limit to go off", func() bool { r, n := lastRate(); return r == 0 && n == 2 })
}
