package ike

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/xdpsec/xdpsec/ike/message"
	"github.com/xdpsec/xdpsec/internal/netlab"
)

func TestResponseCacheTokens(t *testing.T) {
	var c responseCache
	c.store(1, packet{}, [][]byte{{0, 0, 0, 0, 9}, {0, 0, 0, 0, 8}}, true, time.Now())
	if len(c.msg) != 2 || !bytes.Equal(c.msg[0], []byte{9}) || !bytes.Equal(c.msg[1], []byte{8}) {
		t.Fatalf("cached %x, want the message without its non-ESP marker", c.msg)
	}
	now := c.refilled
	for i := range resendBurst {
		if !c.take(now) {
			t.Fatalf("resend %d of the burst refused", i+1)
		}
	}
	if c.take(now.Add(resendEvery - time.Millisecond)) {
		t.Error("a resend beyond the burst allowed before a token came back")
	}
	if !c.take(now.Add(resendEvery)) || c.take(now.Add(resendEvery)) {
		t.Error("after one interval, want exactly one more resend")
	}
	// A long pause refills to the burst, not beyond.
	later := now.Add(time.Hour)
	n := 0
	for c.take(later) {
		n++
	}
	if n != resendBurst {
		t.Errorf("after an hour %d resends allowed, want %d", n, resendBurst)
	}
}

// TestCachedResponseRefusals replays the responder's last answered request
// from another address than the initiator's: a bare header with the SPIs
// and message ID gets nothing and is counted; an authentic copy is
// answered, framed for the port it arrived on; copies beyond the resend
// rate are counted and not answered.
func TestCachedResponseRefusals(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	ca, cb := siteConns(t, lab.V4, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	var (
		mu      sync.Mutex
		authReq []byte
	)
	a := startEngine(t, lab.GwA, "gwA", fastOpts(), 0x1000)
	// gwB's resend budget sees a clock that stands still: the test
	// counts tokens, however slowly the machine runs it.
	frozen := time.Now()
	b := startEngine(t, lab.GwB, "gwB", fastOpts(), 0x2000, func(e *Engine) {
		e.resendClock = func() time.Time { return frozen }
		e.rxHook = func(b []byte, _, _ netip.AddrPort, natt bool) {
			if natt {
				return
			}
			if h, err := message.DecodeHeader(b); err == nil && h.Exchange == message.ExchangeIKEAuth && !h.IsResponse() {
				mu.Lock()
				authReq = append([]byte(nil), b...)
				mu.Unlock()
			}
		}
	})
	a.e.SetConns([]Conn{ca})
	b.e.SetConns([]Conn{cb})
	initiate(t, a)
	checkPair(t, a, b)
	mu.Lock()
	req := authReq
	mu.Unlock()
	if req == nil {
		t.Fatal("no IKE_AUTH request seen on gwB's port 500")
	}
	h, _ := message.DecodeHeader(req)

	conn := thirdParty(t, lab.GwA, netip.AddrPortFrom(lab.V4.GwAWAN, 40000))
	gwB := func(port uint16) *net.UDPAddr { return &net.UDPAddr{IP: lab.V4.GwBWAN.AsSlice(), Port: int(port)} }
	// reply returns what gwB answered within wait, or nil.
	reply := func(wait time.Duration) []byte {
		buf := make([]byte, 4096)
		_ = conn.SetReadDeadline(time.Now().Add(wait))
		n, err := conn.Read(buf)
		if err != nil {
			return nil
		}
		return buf[:n]
	}
	send := func(port uint16, b []byte) {
		t.Helper()
		if _, err := conn.WriteToUDP(b, gwB(port)); err != nil {
			t.Fatal(err)
		}
	}
	dropped := func(r DropReason) uint64 { return b.e.Stats().Dropped[r] }
	spii := req[:8]

	// The 28-byte header an onlooker can build from what it saw.
	bare := make([]byte, message.HeaderLen)
	copy(bare, req[:message.HeaderLen])
	bare[16] = 0 // no payloads
	binary.BigEndian.PutUint32(bare[24:], message.HeaderLen)
	send(500, bare)
	if r := reply(300 * time.Millisecond); r != nil {
		t.Errorf("a bare header from elsewhere drew %d bytes", len(r))
	}
	if n := dropped(DropResendRefused); n != 1 {
		t.Errorf("%s = %d, want 1", DropResendRefused, n)
	}

	cached := b.e.Stats().CachedResponses
	// An authentic copy on the NAT-T port: answered there, with the marker.
	send(4500, append([]byte{0, 0, 0, 0}, req...))
	if r := reply(time.Second); len(r) < 12 || !bytes.Equal(r[:4], []byte{0, 0, 0, 0}) || !bytes.Equal(r[4:12], spii) {
		t.Errorf("authentic copy on 4500: reply %x, want the response behind a non-ESP marker", r)
	}
	// And on the IKE port: answered without it.
	send(500, req)
	if r := reply(time.Second); len(r) < 8 || !bytes.Equal(r[:8], spii) {
		t.Errorf("authentic copy on 500: reply %x, want the bare response", r)
	}
	if n := b.e.Stats().CachedResponses - cached; n != 2 {
		t.Errorf("%d responses resent, want 2", n)
	}

	// Beyond the burst: counted, not answered.
	for range 4 {
		send(500, req)
	}
	answered := 0
	for reply(300*time.Millisecond) != nil {
		answered++
	}
	limited := dropped(DropResendRateLimited)
	if answered != 1 || limited != 3 {
		t.Errorf("4 copies after two resends: %d answered, %d rate-limited; want the burst's last one answered and 3 counted", answered, limited)
	}
	if h.MessageID != 1 {
		t.Errorf("captured request has message ID %d, want IKE_AUTH's 1", h.MessageID)
	}
}
