package ike

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/xdpsec/xdpsec/ike/proposal"
	"github.com/xdpsec/xdpsec/internal/netlab"
)

const testPSK = "xdpsec-test-psk-0123456789abcdef"

// fakeInstaller records what the engine hands to the data plane.
type fakeInstaller struct {
	mu        sync.Mutex
	next      uint32
	installed []ChildSA
	outbound  []ChildSA
	deleted   []ChildSA
	traps     map[string]int
}

func newFakeInstaller(base uint32) *fakeInstaller {
	return &fakeInstaller{next: base, traps: map[string]int{}}
}

func (f *fakeInstaller) AllocSPI(_ context.Context, _, _ string) (uint32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next++
	return f.next, nil
}

// InstallInbound records the SA; a child counts as installed from its
// inbound half, which is the one the peer's traffic needs first.
func (f *fakeInstaller) InstallInbound(_ context.Context, sa ChildSA) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.installed = append(f.installed, sa)
	return nil
}

func (f *fakeInstaller) InstallOutbound(_ context.Context, sa ChildSA) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.outbound = append(f.outbound, sa)
	return nil
}

func (f *fakeInstaller) Trap(_ context.Context, conn string, child Child) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.traps[conn+"/"+child.Name]++
	return nil
}

func (f *fakeInstaller) Untrap(_ context.Context, conn string, child Child) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.traps[conn+"/"+child.Name]--
	return nil
}

func (f *fakeInstaller) DeleteChild(_ context.Context, sa ChildSA) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deleted = append(f.deleted, sa)
	return nil
}

func (f *fakeInstaller) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.installed, f.outbound, f.deleted = nil, nil, nil
}

func (f *fakeInstaller) deletedList() []ChildSA {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ChildSA(nil), f.deleted...)
}

func (f *fakeInstaller) children() []ChildSA {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ChildSA(nil), f.installed...)
}

// testLogger sends the engine's log to t and to an observer the test can
// search for the operator lines it expects.
func testLogger(t testing.TB, name string) (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.DebugLevel)
	tl := zaptest.NewLogger(t, zaptest.Level(zapcore.InfoLevel)).Named(name)
	return zap.New(zapcore.NewTee(tl.Core(), core)).Named(name), logs
}

// findLog returns the first entry at Warn or above whose message contains
// all of subs.
func findLog(logs *observer.ObservedLogs, subs ...string) (observer.LoggedEntry, bool) {
	for _, e := range logs.AllUntimed() {
		if e.Level < zapcore.WarnLevel {
			continue
		}
		text := e.Message
		for _, f := range e.Context {
			text += " " + f.Key + "=" + fieldString(f)
		}
		ok := true
		for _, s := range subs {
			if !strings.Contains(text, s) {
				ok = false
			}
		}
		if ok {
			return e, true
		}
	}
	return observer.LoggedEntry{}, false
}

func fieldString(f zapcore.Field) string {
	enc := zapcore.NewMapObjectEncoder()
	f.AddTo(enc)
	return fmt.Sprint(enc.Fields[f.Key])
}

func mustIKE(t testing.TB, ss ...string) []proposal.Proposal {
	t.Helper()
	var out []proposal.Proposal
	for _, s := range ss {
		p, err := proposal.ParseIKE(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func mustESP(t testing.TB, ss ...string) []proposal.Proposal {
	t.Helper()
	var out []proposal.Proposal
	for _, s := range ss {
		p, err := proposal.ParseESP(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func mustID(t testing.TB, kind, v string) Identity {
	t.Helper()
	id, err := NewIdentity(kind, v)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// siteConns returns the site-to-site connection as gwA and gwB see it.
func siteConns(t testing.TB, v4 netlab.Addrs, ike, esp string) (a, b Conn) {
	a = Conn{
		Name: "s2s", LocalAddr: v4.GwAWAN, RemoteAddr: v4.GwBWAN,
		LocalID: mustID(t, "fqdn", "gw-a.example.com"), RemoteID: mustID(t, "fqdn", "gw-b.example.com"),
		PSK: []byte(testPSK), IKEProposals: mustIKE(t, ike),
		Children: []Child{{Name: "net", LocalTS: []netip.Prefix{v4.LANA}, RemoteTS: []netip.Prefix{v4.LANB},
			ESPProposals: mustESP(t, esp), ReplayWindow: 1024, Lifetime: time.Hour}},
	}
	b = Conn{
		Name: "s2s", LocalAddr: v4.GwBWAN, RemoteAddr: v4.GwAPublic,
		LocalID: mustID(t, "fqdn", "gw-b.example.com"), RemoteID: mustID(t, "fqdn", "gw-a.example.com"),
		PSK: []byte(testPSK), IKEProposals: mustIKE(t, ike),
		Children: []Child{{Name: "net", LocalTS: []netip.Prefix{v4.LANB}, RemoteTS: []netip.Prefix{v4.LANA},
			ESPProposals: mustESP(t, esp), ReplayWindow: 1024, Lifetime: time.Hour}},
	}
	return a, b
}

// side is one engine under test.
type side struct {
	e    *Engine
	inst *fakeInstaller
	logs *observer.ObservedLogs
	stop func()
}

// fastOpts are engine options with short retransmission timers.
func fastOpts() Options {
	return Options{RetransmitTimeout: 200 * time.Millisecond, RetransmitBase: 1.5, RetransmitTries: 3}
}

// startEngine creates an engine inside ns (nil: the test's namespace) and
// runs it until the test ends.
func startEngine(t testing.TB, ns *netlab.NS, name string, opts Options, spiBase uint32, prep ...func(*Engine)) *side {
	t.Helper()
	log, logs := testLogger(t, name)
	inst := newFakeInstaller(spiBase)
	if opts.Logger == nil {
		opts.Logger = log
	}
	if opts.Installer == nil {
		opts.Installer = inst
	}
	var (
		e   *Engine
		err error
	)
	mk := func() error { e, err = New(opts); return err }
	if ns != nil {
		_ = ns.Do(mk)
	} else {
		_ = mk()
	}
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	for _, p := range prep {
		p(e)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = e.Run(ctx)
	}()
	var once sync.Once
	s := &side{e: e, inst: inst, logs: logs}
	s.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				buf := make([]byte, 1<<20)
				t.Errorf("%s: Run did not return:\n%s", name, buf[:runtime.Stack(buf, true)])
			}
		})
	}
	t.Cleanup(s.stop)
	return s
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// thirdParty opens a UDP socket on addr inside ns, closed when the test
// ends: a third party on the lab's wire.
func thirdParty(t testing.TB, ns *netlab.NS, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	var conn *net.UDPConn
	if err := ns.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}
