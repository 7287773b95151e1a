package ike

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
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

func TestCookieFlood(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	v4 := lab.V4
	const threshold, limit, flood = 5, 30, 40
	ca, cb := siteConns(t, v4, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	cb.RemoteAddr = netip.Addr{} // %any, so the flood matches a connection
	opts := fastOpts()
	opts.CookieThreshold, opts.HalfOpenLimit, opts.HalfOpenTimeout = threshold, limit, 3*time.Second
	a := startEngine(t, lab.GwA, "gwA", fastOpts(), 0x1000)
	b := startEngine(t, lab.GwB, "gwB", opts, 0x2000)
	a.e.SetConns([]Conn{ca})
	b.e.SetConns([]Conn{cb})

	offer := toWire(ca.IKEProposals, message.ProtocolIKE, nil)
	var fl []*flooder
	for i := range flood {
		addr := netip.MustParseAddr(fmt.Sprintf("192.0.2.%d", 100+i))
		if err := lab.GwA.AddAddr(netlab.WANIf, netip.PrefixFrom(addr, 32)); err != nil {
			t.Fatal(err)
		}
		fl = append(fl, newFlooder(t, lab.GwA, addr, offer))
	}
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

	// The legitimate initiator must answer a cookie and gets through.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.e.Initiate(ctx, "s2s"); err != nil {
		t.Fatalf("legitimate Initiate during the flood: %v", err)
	}
	if st := b.e.Stats(); st.CookiesSent != flood-threshold+1 {
		t.Errorf("legitimate initiator was not asked for a cookie (%d cookies)", st.CookiesSent)
	}

	// Attackers that answer cookies fill up to the hard cap, no further.
	got = map[string]int{}
	for _, f := range fl[threshold:] {
		got[f.send(t, to)]++
	}
	st := b.e.Stats()
	if st.HalfOpen != limit || got["sa"] != limit-threshold || got["none"] != flood-limit {
		t.Errorf("second wave answers %v, half-open %d; want %d SAs and %d dropped at the cap %d", got, st.HalfOpen, limit-threshold, flood-limit, limit)
	}
	if st.Dropped[DropHalfOpenLimit] != flood-limit {
		t.Errorf("drops at the cap %d, want %d", st.Dropped[DropHalfOpenLimit], flood-limit)
	}
	// Half-open SAs expire; the established one stays.
	waitFor(t, 5*time.Second, "half-open SAs to expire", func() bool { return b.e.Stats().HalfOpen == 0 })
	if sas := b.e.SAs(); len(sas) != 1 || sas[0].State != "ESTABLISHED" {
		t.Errorf("responder SAs after expiry: %d", len(sas))
	}
}
