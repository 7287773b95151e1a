package netlab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"time"
)

// ICMP echo types; the v6 ones are from RFC 4443.
const (
	icmp4EchoRequest = 8
	icmp4EchoReply   = 0
	icmp6EchoRequest = 128
	icmp6EchoReply   = 129
)

// Ping sends count ICMP echo requests to dst from inside the namespace,
// waiting up to wait for each reply, like `ping -c COUNT -W WAIT`. It
// returns the number of replies, and an error if there were none.
//
// It is done in Go over a raw socket rather than with ping(8) because
// iputils is not installed everywhere the tests run, and because a socket
// error here is far easier to report than ping's exit codes.
func (n *NS) Ping(ctx context.Context, dst netip.Addr, count int, wait time.Duration) (int, error) {
	network, laddr := "ip4:icmp", "0.0.0.0"
	if dst.Is6() {
		network, laddr = "ip6:ipv6-icmp", "::"
	}
	var conn net.PacketConn
	err := n.Do(func() error {
		var err error
		conn, err = net.ListenPacket(network, laddr)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("netlab: %s: icmp socket: %w", n.Name, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()

	// A raw socket sees every ICMP packet of the namespace; the random id
	// tells our replies apart from concurrent pings.
	id := uint16(rand.N(1 << 16))
	replies := 0
	for seq := 1; seq <= count; seq++ {
		if err := ctx.Err(); err != nil {
			return replies, fmt.Errorf("netlab: ping %s from %s: %w", dst, n.Name, err)
		}
		req := echoRequest(dst.Is6(), id, uint16(seq))
		if _, err := conn.WriteTo(req, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			// "network unreachable" is a valid outcome of a ping (no route);
			// count it as a lost packet, as ping(8) does.
			if sleepCtx(ctx, wait) != nil {
				break
			}
			continue
		}
		if ok, err := awaitReply(conn, dst, id, uint16(seq), time.Now().Add(wait)); err != nil {
			return replies, fmt.Errorf("netlab: ping %s from %s: %w", dst, n.Name, err)
		} else if ok {
			replies++
		}
	}
	if replies == 0 {
		return 0, fmt.Errorf("netlab: ping %s from %s: no reply to %d requests", dst, n.Name, count)
	}
	return replies, nil
}

// awaitReply reads until the matching echo reply or the deadline.
func awaitReply(conn net.PacketConn, dst netip.Addr, id, seq uint16, deadline time.Time) (bool, error) {
	if err := conn.SetReadDeadline(deadline); err != nil {
		return false, err
	}
	buf := make([]byte, 1500)
	for {
		nr, from, err := conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return false, nil
			}
			return false, err
		}
		ipa, ok := from.(*net.IPAddr)
		if !ok {
			continue
		}
		src, _ := netip.AddrFromSlice(ipa.IP)
		if src.Unmap() != dst.Unmap() || nr < 8 {
			continue
		}
		m := buf[:nr]
		want := byte(icmp4EchoReply)
		if dst.Is6() {
			want = icmp6EchoReply
		}
		if m[0] == want && binary.BigEndian.Uint16(m[4:]) == id && binary.BigEndian.Uint16(m[6:]) == seq {
			return true, nil
		}
	}
}

// echoRequest builds an ICMP or ICMPv6 echo request. The ICMPv6 checksum
// is left zero: the kernel fills it in for raw ICMPv6 sockets because it
// covers the IPv6 pseudo-header.
func echoRequest(v6 bool, id, seq uint16) []byte {
	m := make([]byte, 8+16)
	m[0] = icmp4EchoRequest
	if v6 {
		m[0] = icmp6EchoRequest
	}
	binary.BigEndian.PutUint16(m[4:], id)
	binary.BigEndian.PutUint16(m[6:], seq)
	copy(m[8:], "xdpsec-netlab-pg")
	if !v6 {
		binary.BigEndian.PutUint16(m[2:], inetChecksum(m))
	}
	return m
}

func inetChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
