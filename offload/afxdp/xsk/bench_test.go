package xsk

import (
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Both benchmarks move 60-byte UDP/IPv4 frames one way over the same kind
// of veth pair (one queue, the XDP program attached on b) and report
// delivered packets per second; ns/op is per packet. Sender and receiver
// run in one goroutine with at most benchWindow packets in flight, so the
// veth's 256-entry per-queue ring is never the bottleneck. Packets not
// delivered within benchLost count as lost (reported, not retried).
const (
	benchBatch  = 64
	benchWindow = 256
	benchLost   = 20 * time.Millisecond
	benchUDPLen = 18 // 14+20+8+18 = 60 bytes on the wire
)

// BenchmarkXSKLoopback sends through an AF_XDP socket on a (copy mode TX
// ring) and receives through the AF_XDP sockets on b (XDP redirect, copy
// mode RX ring).
func BenchmarkXSKLoopback(b *testing.B) {
	l := newLab(b, 0)
	rx := l.openB(b, Config{})
	var tx *Socket
	if err := l.a.Do(func() error {
		var err error
		tx, err = Open(l.aIdx, 0, Config{FillFrames: 64})
		return err
	}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tx.Close() })
	frame := make([]byte, 128)
	var pbuf [benchUDPLen]byte
	flen := buildUDP4(frame, l.aMAC, l.bMAC, l.aIP, l.bIP, 5000, xskPort, payload(pbuf[:], 1, benchUDPLen))
	txd := make([]Desc, benchBatch)
	rxd := make([]Desc, benchBatch)
	sent, got, lost := 0, 0, 0
	last := time.Now()
	b.ResetTimer()
	start := time.Now()
	for got+lost < b.N {
		if room := min(benchBatch, b.N-sent, benchWindow-(sent-got-lost)); room > 0 {
			n := tx.Alloc(txd[:room])
			for i := range txd[:n] {
				txd[i].Len = uint32(copy(tx.Frame(txd[i]), frame[:flen]))
			}
			k, err := tx.Transmit(txd[:n])
			if err != nil {
				b.Fatal(err)
			}
			tx.Release(txd[k:n])
			sent += k
		}
		moved := 0
		for _, s := range rx {
			n := s.Receive(rxd)
			s.Release(rxd[:n])
			moved += n
		}
		got += moved
		if moved > 0 {
			last = time.Time{}
		} else if last.IsZero() {
			last = time.Now()
		} else if time.Since(last) > benchLost {
			lost += sent - got - lost
			last = time.Time{}
			if err := tx.Flush(); err != nil {
				b.Fatal(err)
			}
		}
	}
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(got)/el.Seconds(), "pkts/s")
	b.ReportMetric(float64(lost), "lost")
	b.Logf("N=%d: %.0f pkts/s, %.1f ns/pkt, lost %d, rx mode %v, tx mode %v",
		b.N, float64(got)/el.Seconds(), float64(el.Nanoseconds())/float64(got), lost, rx[0].Mode(), tx.Mode())
}

// BenchmarkUDPSocket is the baseline: sendmmsg on a UDP socket in a,
// recvmmsg on a UDP socket in b (a port the XDP program passes).
func BenchmarkUDPSocket(b *testing.B) {
	l := newLab(b, 0)
	const port = 9000
	var sfd, rfd int
	if err := l.b.Do(func() error {
		var err error
		rfd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if err := unix.SetsockoptInt(rfd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20); err != nil {
			return err
		}
		return unix.Bind(rfd, &unix.SockaddrInet4{Port: port, Addr: l.bIP.As4()})
	}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { unix.Close(rfd) })
	if err := l.a.Do(func() error {
		var err error
		sfd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		return unix.Connect(sfd, &unix.SockaddrInet4{Port: port, Addr: l.bIP.As4()})
	}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { unix.Close(sfd) })

	var pbuf [benchUDPLen]byte
	out := payload(pbuf[:], 1, benchUDPLen)
	in := make([]byte, benchBatch*2048)
	smsg := make([]unix.Mmsghdr, benchBatch)
	rmsg := make([]unix.Mmsghdr, benchBatch)
	siov := make([]unix.Iovec, benchBatch)
	riov := make([]unix.Iovec, benchBatch)
	for i := range benchBatch {
		siov[i].Base = &out[0]
		siov[i].SetLen(len(out))
		smsg[i].Hdr.Iov = &siov[i]
		smsg[i].Hdr.SetIovlen(1)
		riov[i].Base = &in[i*2048]
		riov[i].SetLen(2048)
		rmsg[i].Hdr.Iov = &riov[i]
		rmsg[i].Hdr.SetIovlen(1)
	}
	sent, got, lost := 0, 0, 0
	last := time.Now()
	b.ResetTimer()
	start := time.Now()
	for got+lost < b.N {
		if room := min(benchBatch, b.N-sent, benchWindow-(sent-got-lost)); room > 0 {
			n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(sfd), uintptr(unsafe.Pointer(&smsg[0])), uintptr(room), 0, 0, 0)
			if e != 0 && e != unix.EAGAIN && e != unix.ENOBUFS {
				b.Fatalf("sendmmsg: %v", e)
			}
			if e == 0 {
				sent += int(n)
			}
		}
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(rfd), uintptr(unsafe.Pointer(&rmsg[0])), benchBatch, unix.MSG_DONTWAIT, 0, 0)
		moved := 0
		if e == 0 {
			moved = int(n)
		} else if e != unix.EAGAIN {
			b.Fatalf("recvmmsg: %v", e)
		}
		got += moved
		if moved > 0 {
			last = time.Time{}
		} else if last.IsZero() {
			last = time.Now()
		} else if time.Since(last) > benchLost {
			lost += sent - got - lost
			last = time.Time{}
		}
	}
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(got)/el.Seconds(), "pkts/s")
	b.ReportMetric(float64(lost), "lost")
	b.Logf("N=%d: %.0f pkts/s, %.1f ns/pkt, lost %d", b.N, float64(got)/el.Seconds(), float64(el.Nanoseconds())/float64(got), lost)
}
