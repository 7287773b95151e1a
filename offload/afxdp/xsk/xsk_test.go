package xsk

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestConfigDefaults(t *testing.T) {
	c, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	want := Config{FrameSize: 2048, NumFrames: 4096, RingSize: 2048, FillFrames: 2048}
	if c != want {
		t.Fatalf("defaults %+v, want %+v", c, want)
	}
	for _, bad := range []Config{
		{FrameSize: 1024},
		{RingSize: 1000},
		{RingSize: 64, FillFrames: 128},
		{NumFrames: 16, FillFrames: 32},
		{NumFrames: 1},
		{Mode: ModeZeroCopy + 1},
	} {
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("config %+v accepted", bad)
		}
	}
}

// TestRX sends UDP datagrams from plain sockets in a to b, where the XDP
// program redirects them to the sockets (one per RX queue), and checks
// every payload arrives once, intact. With several queues, the flows
// spread over them, so a missing socket on any queue loses datagrams.
func TestRX(t *testing.T) {
	t.Run("default", func(t *testing.T) { testRX(t, 0) })
	t.Run("queues=2", func(t *testing.T) { testRX(t, 2) })
}

func testRX(t *testing.T, queues int) {
	l := newLab(t, queues)
	socks := l.openB(t, Config{})
	for _, s := range socks {
		if s.Mode() != ModeCopy && s.Mode() != ModeZeroCopy {
			t.Fatalf("queue %d: mode %v", s.Queue(), s.Mode())
		}
		t.Logf("queue %d: %v", s.Queue(), s.Mode())
	}
	// Each socket gets a random flow hash, which picks a's TX queue and
	// so b's RX queue: with 16 of them all queues see traffic.
	var srcs [16]*net.UDPConn
	for i := range srcs {
		srcs[i] = udpIn(t, l.a, l.aIP, 0)
	}
	dst := netip.AddrPortFrom(l.bIP, xskPort)

	const rounds, perRound, size = 8, 64, 300
	seen := make(map[uint32]int)
	perQueue := make([]int, len(socks))
	var buf [size]byte
	for r := range rounds {
		for i := range perRound {
			seq := uint32(r*perRound + i)
			if _, err := srcs[i%len(srcs)].WriteToUDPAddrPort(payload(buf[:], seq, size), dst); err != nil {
				t.Fatalf("send: %v", err)
			}
		}
		got := receiveAll(t, socks, perRound, 3*time.Second, func(s *Socket, d Desc) {
			p, port, err := parseUDP4(s.Frame(d), l.bMAC, false)
			if err != nil {
				t.Errorf("queue %d: %v", s.Queue(), err)
				return
			}
			if port != xskPort {
				t.Errorf("port %d", port)
			}
			seq, err := checkPayload(p, size)
			if err != nil {
				t.Error(err)
				return
			}
			seen[seq]++
			perQueue[s.Queue()]++
		})
		if got != perRound {
			t.Fatalf("round %d: received %d of %d", r, got, perRound)
		}
	}
	for seq := range uint32(rounds * perRound) {
		if seen[seq] != 1 {
			t.Errorf("datagram %d received %d times", seq, seen[seq])
		}
	}
	t.Logf("per queue: %v", perQueue)
	for q, n := range perQueue {
		if n == 0 {
			t.Errorf("queue %d received nothing: flows not spread", q)
		}
	}
	for _, s := range socks {
		st, err := s.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if st.RxDropped != 0 || st.RxRingFull != 0 || st.RxInvalidDescs != 0 {
			t.Errorf("queue %d: stats %+v", s.Queue(), st)
		}
		if f := s.Frames(); f.User != 0 || f.Free+f.Fill+f.TX != f.Total {
			t.Errorf("queue %d: frames %+v", s.Queue(), f)
		}
	}
}

// TestTX sends hand-built Ethernet frames from a socket on b to a UDP
// socket in a.
func TestTX(t *testing.T) {
	l := newLab(t, 0)
	socks := l.openB(t, Config{})
	s := socks[0]
	dst := udpIn(t, l.a, l.aIP, 7000)

	const count, size = 100, 200
	start := s.Frames()
	var pbuf [size]byte
	descs := make([]Desc, 32)
	sent := 0
	for sent < count {
		n := s.Alloc(descs[:min(len(descs), count-sent)])
		if n == 0 {
			t.Fatalf("no free frames after %d: %+v", sent, s.Frames())
		}
		for i := range descs[:n] {
			f := s.Frame(descs[i])
			descs[i].Len = uint32(buildUDP4(f, l.bMAC, l.aMAC, l.bIP, l.aIP, 6000, 7000,
				payload(pbuf[:], uint32(sent+i), size)))
		}
		k, err := s.Transmit(descs[:n])
		if err != nil {
			t.Fatalf("transmit: %v", err)
		}
		if k != n {
			// The ring holds 2048 entries; 32 always fit.
			t.Fatalf("transmit took %d of %d", k, n)
		}
		sent += n
	}
	seen := make(map[uint32]bool)
	buf := make([]byte, 2048)
	dst.SetReadDeadline(time.Now().Add(3 * time.Second))
	for range count {
		n, from, err := dst.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("received %d of %d: %v", len(seen), count, err)
		}
		if from != netip.AddrPortFrom(l.bIP, 6000) {
			t.Errorf("from %v", from)
		}
		seq, err := checkPayload(buf[:n], size)
		if err != nil {
			t.Fatal(err)
		}
		if seen[seq] {
			t.Errorf("datagram %d twice", seq)
		}
		seen[seq] = true
	}
	waitCompletions(t, s)
	if f := s.Frames(); f != start {
		t.Errorf("frames %+v after TX, %+v before", f, start)
	}
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.TxInvalidDescs != 0 {
		t.Errorf("stats %+v", st)
	}
}

// waitCompletions drains the completion ring until every sent frame is
// back.
func waitCompletions(t testing.TB, s *Socket) {
	t.Helper()
	end := time.Now().Add(3 * time.Second)
	for s.Frames().TX > 0 {
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
		s.Complete()
		if time.Now().After(end) {
			t.Fatalf("frames not completed: %+v", s.Frames())
		}
		time.Sleep(time.Millisecond)
	}
}

// TestFrameRecycling moves many more packets through small UMEMs than they
// have frames, in both directions, and checks every frame comes back.
func TestFrameRecycling(t *testing.T) {
	l := newLab(t, 0)
	cfg := Config{NumFrames: 64, RingSize: 64, FillFrames: 32}
	socks := l.openB(t, cfg)
	starts := make([]FrameCounts, len(socks))
	for i, s := range socks {
		starts[i] = s.Frames()
		if starts[i] != (FrameCounts{Total: 64, Free: 32, Fill: 32}) {
			t.Fatalf("queue %d: start %+v", i, starts[i])
		}
	}
	src := udpIn(t, l.a, l.aIP, 0)
	sink := udpIn(t, l.a, l.aIP, 7001)
	const rounds, rxPer, txPer = 12, 24, 40
	var pbuf [64]byte
	total := 0
	for r := range rounds {
		for i := range rxPer {
			p := payload(pbuf[:], uint32(i), 64)
			if _, err := src.WriteToUDPAddrPort(p, netip.AddrPortFrom(l.bIP, xskPort)); err != nil {
				t.Fatal(err)
			}
		}
		got := receiveAll(t, socks, rxPer, 3*time.Second, func(s *Socket, d Desc) {
			if _, _, err := parseUDP4(s.Frame(d), l.bMAC, false); err != nil {
				t.Error(err)
			}
		})
		if got != rxPer {
			t.Fatalf("round %d: received %d of %d", r, got, rxPer)
		}
		total += got

		s := socks[r%len(socks)]
		descs := make([]Desc, txPer)
		n := s.Alloc(descs)
		if n != 32 {
			// 32 frames are free; the rest stay on the fill ring.
			t.Fatalf("round %d: alloc %d, frames %+v", r, n, s.Frames())
		}
		for i := range descs[:n] {
			descs[i].Len = uint32(buildUDP4(s.Frame(descs[i]), l.bMAC, l.aMAC, l.bIP, l.aIP, 6001, 7001,
				payload(pbuf[:], uint32(i), 64)))
		}
		if k, err := s.Transmit(descs[:n]); err != nil || k != n {
			t.Fatalf("transmit %d of %d: %v", k, n, err)
		}
		sink.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 256)
		for range n {
			if _, _, err := sink.ReadFromUDPAddrPort(buf); err != nil {
				t.Fatalf("round %d: %v", r, err)
			}
		}
		waitCompletions(t, s)
		total += n
	}
	if total <= 2*64*len(socks) {
		t.Fatalf("only %d packets moved", total)
	}
	for i, s := range socks {
		if f := s.Frames(); f != starts[i] {
			t.Errorf("queue %d: frames %+v at end, %+v at start", i, f, starts[i])
		}
	}
}

// TestZeroAllocs measures the data path with packets flowing: Receive,
// Frame, Release, Alloc, Transmit, Complete and Poll allocate nothing.
func TestZeroAllocs(t *testing.T) {
	l := newLab(t, 0)
	socks := l.openB(t, Config{})
	src := udpIn(t, l.a, l.aIP, 0)
	sink := udpIn(t, l.a, l.aIP, 7002)
	// Traffic is queued up front: AllocsPerRun counts allocations of all
	// goroutines, so nothing else may run during the measurement.
	const sent = 500
	var pbuf [64]byte
	for i := range sent {
		if _, err := src.WriteToUDPAddrPort(payload(pbuf[:], uint32(i), 64), netip.AddrPortFrom(l.bIP, xskPort)); err != nil {
			t.Fatal(err)
		}
		if i%100 == 99 {
			// veth's per-queue ring holds 256 packets until NAPI
			// moves them to the sockets.
			time.Sleep(20 * time.Millisecond)
		}
	}
	time.Sleep(50 * time.Millisecond)
	rx := make([]Desc, 8)
	tx := make([]Desc, 8)
	frame := make([]byte, 128)
	flen := buildUDP4(frame, l.bMAC, l.aMAC, l.bIP, l.aIP, 6002, 7002, pbuf[:64])
	received, transmitted := 0, 0
	allocs := testing.AllocsPerRun(100, func() {
		for _, s := range socks {
			n := s.Receive(rx)
			for _, d := range rx[:n] {
				if len(s.Frame(d)) == 0 {
					panic("empty frame")
				}
			}
			s.Release(rx[:n])
			received += n
		}
		s := socks[0]
		n := s.Alloc(tx[:2])
		for i := range tx[:n] {
			tx[i].Len = uint32(copy(s.Frame(tx[i]), frame[:flen]))
		}
		k, err := s.Transmit(tx[:n])
		if err != nil || k != n {
			panic("transmit failed")
		}
		transmitted += k
		s.Complete()
		if _, err := s.Poll(0); err != nil {
			panic(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per batch", allocs)
	}
	if received != sent || transmitted == 0 {
		t.Fatalf("received %d of %d, transmitted %d: path not exercised", received, sent, transmitted)
	}
	waitCompletions(t, socks[0])
	_ = sink
}

// fdTable maps each open descriptor number to what it refers to
// ("socket:[inode]", "anon_inode:[eventfd]"). Comparing tables rather than
// counts keeps the check exact while the runtime or netlab open and close
// descriptors of their own.
func fdTable(t *testing.T) map[string]string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]string, len(ents))
	for _, e := range ents {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil {
			m[e.Name()] = target
		}
	}
	return m
}

// newFDs returns the descriptors of after that before did not have.
func newFDs(before, after map[string]string) map[string]string {
	m := make(map[string]string)
	for fd, target := range after {
		if before[fd] != target {
			m[fd] = target
		}
	}
	return m
}

// stillOpen returns the descriptors of opened that are still open.
func stillOpen(t *testing.T, opened map[string]string) []string {
	t.Helper()
	now := fdTable(t)
	var open []string
	for fd, target := range opened {
		if now[fd] == target {
			open = append(open, fd+" -> "+target)
		}
	}
	return open
}

// mapped reports whether an address range of /proc/self/maps starts at
// addr.
func mapped(t *testing.T, addr uintptr) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		start, _, _ := strings.Cut(line, "-")
		if v, err := strconv.ParseUint(start, 16, 64); err == nil && uintptr(v) == addr {
			return true
		}
	}
	return false
}

// TestClose checks that Close releases the descriptors and mappings, and
// that the zero-copy request is answered as the driver allows.
func TestClose(t *testing.T) {
	l := newLab(t, 0)
	before := fdTable(t)
	var socks []*Socket
	if err := l.b.Do(func() error {
		var err error
		socks, err = OpenAll(l.bIdx, Config{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	opened := newFDs(before, fdTable(t))
	for _, s := range socks {
		for _, fd := range []int{s.fd, s.efd} {
			if _, ok := opened[strconv.Itoa(fd)]; !ok {
				t.Fatalf("descriptor %d of queue %d not seen as new", fd, s.Queue())
			}
		}
	}
	var regions []uintptr
	for _, s := range socks {
		regions = append(regions, uintptr(unsafePointer(s.umem)))
		for _, r := range []*ring{&s.fill, &s.comp, &s.rx, &s.tx} {
			regions = append(regions, uintptr(unsafePointer(r.mem)))
		}
	}
	for _, a := range regions {
		if !mapped(t, a) {
			t.Fatalf("region %#x not in /proc/self/maps while open", a)
		}
	}
	if err := CloseAll(socks); err != nil {
		t.Fatal(err)
	}
	if err := CloseAll(socks); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if open := stillOpen(t, opened); len(open) > 0 {
		t.Errorf("open after close: %v", open)
	}
	for _, a := range regions {
		if mapped(t, a) {
			t.Errorf("region %#x still mapped after close", a)
		}
	}

	// veth has no zero-copy support; a forced request must fail and say
	// so, and auto must fall back to copy. A driver that does offer it
	// must report zero-copy in both cases.
	before = fdTable(t)
	var zc *Socket
	zerr := l.b.Do(func() error {
		var err error
		zc, err = Open(l.bIdx, 0, Config{Mode: ModeZeroCopy})
		return err
	})
	var auto *Socket
	if err := l.b.Do(func() error {
		var err error
		auto, err = Open(l.bIdx, 0, Config{Mode: ModeAuto})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer auto.Close()
	if zerr != nil {
		if !errors.Is(zerr, unix.EOPNOTSUPP) {
			t.Errorf("zero-copy: %v", zerr)
		}
		if auto.Mode() != ModeCopy {
			t.Errorf("auto mode %v without zero-copy", auto.Mode())
		}
		t.Logf("veth: zero-copy refused (%v); auto bound %v", zerr, auto.Mode())
		// Only auto's socket and eventfd may have been added.
		opened := newFDs(before, fdTable(t))
		delete(opened, strconv.Itoa(auto.fd))
		delete(opened, strconv.Itoa(auto.efd))
		for fd, target := range opened {
			if strings.HasPrefix(target, "socket:") || strings.Contains(target, "eventfd") {
				t.Errorf("failed open left %s -> %s", fd, target)
			}
		}
	} else {
		defer zc.Close()
		if zc.Mode() != ModeZeroCopy {
			t.Errorf("forced zero-copy reports %v", zc.Mode())
		}
	}
}

// TestPollWake checks that Poll sleeps for its timeout without traffic,
// returns at once when packets wait, and that Wake ends a blocked Poll.
func TestPollWake(t *testing.T) {
	l := newLab(t, 0)
	s := l.openB(t, Config{})[0]
	start := time.Now()
	ready, err := s.Poll(30 * time.Millisecond)
	if err != nil || ready {
		t.Fatalf("idle poll: %v %v", ready, err)
	}
	if d := time.Since(start); d < 25*time.Millisecond {
		t.Errorf("idle poll returned after %v", d)
	}

	done := make(chan error, 1)
	go func() {
		ready, err := s.Poll(-1)
		if err == nil && ready {
			err = errors.New("woken poll reports packets")
		}
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := s.Wake(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("wake did not end poll")
	}

	src := udpIn(t, l.a, l.aIP, 0)
	if _, err := src.WriteToUDPAddrPort([]byte("ping"), netip.AddrPortFrom(l.bIP, xskPort)); err != nil {
		t.Fatal(err)
	}
	ready, err = s.Poll(3 * time.Second)
	if err != nil || !ready {
		t.Fatalf("poll with traffic: %v %v", ready, err)
	}
	descs := make([]Desc, 4)
	if n := s.Receive(descs); n != 1 {
		t.Fatalf("received %d", n)
	} else {
		p, _, err := parseUDP4(s.Frame(descs[0]), l.bMAC, false)
		if err != nil || string(p) != "ping" {
			t.Fatalf("payload %q: %v", p, err)
		}
		s.Release(descs[:n])
	}
}

// TestTXReceivedFrame turns received packets around in their own frames:
// each is rebuilt 16 bytes further into the headroom (as an encapsulating
// data plane would prepend a header) and sent back to a, without Alloc.
func TestTXReceivedFrame(t *testing.T) {
	l := newLab(t, 0)
	s := l.openB(t, Config{})[0]
	src := udpIn(t, l.a, l.aIP, 7003)
	start := s.Frames()
	const count, size = 20, 100
	var pbuf [size]byte
	for i := range count {
		if _, err := src.WriteToUDPAddrPort(payload(pbuf[:], uint32(i), size), netip.AddrPortFrom(l.bIP, xskPort)); err != nil {
			t.Fatal(err)
		}
	}
	descs := make([]Desc, count)
	got := 0
	end := time.Now().Add(3 * time.Second)
	for got < count && time.Now().Before(end) {
		got += s.Receive(descs[got:])
		if _, err := s.Poll(10 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	if got != count {
		t.Fatalf("received %d of %d", got, count)
	}
	for i, d := range descs {
		if h := s.Headroom(d); h < 256 {
			t.Fatalf("headroom %d", h)
		}
		p, _, err := parseUDP4(s.Frame(d), l.bMAC, false)
		if err != nil {
			t.Fatal(err)
		}
		copy(pbuf[:], p)
		out := Desc{Addr: d.Addr - 16}
		out.Len = uint32(buildUDP4(s.Frame(out)[:cap(s.Frame(out))], l.bMAC, l.aMAC, l.bIP, l.aIP, xskPort, 7003, pbuf[:len(p)]))
		descs[i] = out
	}
	if k, err := s.Transmit(descs); err != nil || k != count {
		t.Fatalf("transmit %d of %d: %v", k, count, err)
	}
	src.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 2048)
	seen := make(map[uint32]bool)
	for range count {
		n, err := src.Read(buf)
		if err != nil {
			t.Fatalf("got back %d of %d: %v", len(seen), count, err)
		}
		seq, err := checkPayload(buf[:n], size)
		if err != nil {
			t.Fatal(err)
		}
		seen[seq] = true
	}
	if len(seen) != count {
		t.Errorf("%d distinct datagrams back", len(seen))
	}
	waitCompletions(t, s)
	if f := s.Frames(); f != start {
		t.Errorf("frames %+v, %+v at start", f, start)
	}
}
