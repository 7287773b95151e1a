package ike

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// udpSocket is one bound IKE socket. Wildcard sockets learn each datagram's
// local address from IP_PKTINFO/IPV6_PKTINFO and set it on what they send,
// so that a reply leaves from the address the request came to.
type udpSocket struct {
	conn     *net.UDPConn
	local    netip.AddrPort // bound address; unspecified for wildcard
	v6       bool
	natt     bool // the NAT-T port: IKE carries the non-ESP marker
	wildcard bool
}

// udpEncapESPInUDP is UDP_ENCAP_ESPINUDP (RFC 3948), the value of the
// UDP_ENCAP socket option that makes the kernel take ESP-in-UDP off the
// socket and hand it to its XFRM stack; datagrams with the non-ESP marker
// (IKE) still reach the socket.
const udpEncapESPInUDP = 2

// setBuffers sizes the socket's receive and send buffers to size bytes:
// the default (about 208 KB) overflows when hundreds of peers answer at
// once, at start and at shutdown. Root may exceed net.core.rmem_max and
// wmem_max (the FORCE options); others get what the sysctls allow.
func setBuffers(fd int, size int) error {
	for _, o := range []struct{ force, plain int }{
		{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF},
	} {
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, o.force, size) == nil {
			continue
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, o.plain, size); err != nil {
			return fmt.Errorf("socket buffer %d bytes: %w", size, err)
		}
	}
	return nil
}

// listenUDP opens an IKE socket; bufSize > 0 sizes its buffers.
func listenUDP(addr netip.Addr, port int, natt, kernelESP bool, bufSize int) (*udpSocket, error) {
	network := "udp4"
	if addr.Is6() && !addr.Is4In6() {
		network = "udp6"
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if network == "udp4" {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
			} else {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
			}
			if serr == nil && bufSize > 0 {
				serr = setBuffers(int(fd), bufSize)
			}
			if serr == nil && natt && kernelESP {
				if err := unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_ENCAP, udpEncapESPInUDP); err != nil {
					serr = fmt.Errorf("udp_encap espinudp: %w", err)
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	ap := netip.AddrPortFrom(addr.Unmap(), uint16(port))
	pc, err := lc.ListenPacket(context.Background(), network, ap.String())
	if err != nil {
		return nil, fmt.Errorf("listen %s/%s: %w", network, ap, err)
	}
	return &udpSocket{
		conn: pc.(*net.UDPConn), local: ap, v6: network == "udp6",
		natt: natt, wildcard: addr.IsUnspecified(),
	}, nil
}

// read receives one datagram and returns its payload length, source and
// local (destination) address.
func (s *udpSocket) read(buf, oob []byte) (int, netip.AddrPort, netip.AddrPort, error) {
	n, oobn, _, from, err := s.conn.ReadMsgUDPAddrPort(buf, oob)
	if err != nil {
		return 0, from, netip.AddrPort{}, err
	}
	local := s.local
	if s.wildcard {
		if a, ok := pktinfoDst(oob[:oobn]); ok {
			local = netip.AddrPortFrom(a, s.local.Port())
		}
	}
	return n, netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), local, nil
}

func pktinfoDst(oob []byte) (netip.Addr, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return netip.Addr{}, false
	}
	for _, m := range msgs {
		switch {
		case m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_PKTINFO && len(m.Data) >= unix.SizeofInet4Pktinfo:
			var a [4]byte
			copy(a[:], m.Data[8:12]) // ipi_addr: the header's destination
			return netip.AddrFrom4(a), true
		case m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_PKTINFO && len(m.Data) >= unix.SizeofInet6Pktinfo:
			var a [16]byte
			copy(a[:], m.Data[:16])
			return netip.AddrFrom16(a), true
		}
	}
	return netip.Addr{}, false
}

// write sends b to 'to', from 'from' when the socket is a wildcard one.
func (s *udpSocket) write(b []byte, from netip.Addr, to netip.AddrPort) error {
	var oob []byte
	if s.wildcard && from.IsValid() && !from.IsUnspecified() {
		if s.v6 {
			oob = unix.PktInfo6(&unix.Inet6Pktinfo{Addr: from.As16()})
		} else {
			oob = unix.PktInfo4(&unix.Inet4Pktinfo{Spec_dst: from.Unmap().As4()})
		}
	}
	if !s.v6 {
		to = netip.AddrPortFrom(to.Addr().Unmap(), to.Port())
	}
	_, _, err := s.conn.WriteMsgUDPAddrPort(b, oob, to)
	return err
}

// routeProbe finds the source address the kernel would use towards a peer,
// by connecting an otherwise unused UDP socket and reading its name. The
// sockets are made in New, so the lookup happens in the engine's network
// namespace whatever thread asks later.
type routeProbe struct {
	mu       sync.Mutex
	fd4, fd6 int
}

func newRouteProbe() *routeProbe {
	p := &routeProbe{fd4: -1, fd6: -1}
	if fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err == nil {
		p.fd4 = fd
	}
	if fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err == nil {
		p.fd6 = fd
	}
	return p
}

var errNoRoute = errors.New("no route to peer")

func (p *routeProbe) source(to netip.Addr) (netip.Addr, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	to = to.Unmap()
	var (
		fd int
		sa unix.Sockaddr
	)
	if to.Is4() {
		fd, sa = p.fd4, &unix.SockaddrInet4{Port: 500, Addr: to.As4()}
	} else {
		fd, sa = p.fd6, &unix.SockaddrInet6{Port: 500, Addr: to.As16()}
	}
	if fd < 0 {
		return netip.Addr{}, errNoRoute
	}
	if err := unix.Connect(fd, sa); err != nil {
		return netip.Addr{}, fmt.Errorf("%w: %s: %w", errNoRoute, to, err)
	}
	name, err := unix.Getsockname(fd)
	// Dissolve the association so the socket can be reused for the next
	// lookup (connect with AF_UNSPEC).
	disconnect(fd)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("getsockname: %w", err)
	}
	switch n := name.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrFrom4(n.Addr), nil
	case *unix.SockaddrInet6:
		return netip.AddrFrom16(n.Addr), nil
	}
	return netip.Addr{}, errNoRoute
}

// disconnect connects fd to AF_UNSPEC, which x/sys/unix has no Sockaddr
// for; it also resets the source address the last connect fixed.
func disconnect(fd int) {
	sa := unix.RawSockaddr{Family: unix.AF_UNSPEC}
	_, _, _ = unix.Syscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
}

func (p *routeProbe) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, fd := range []*int{&p.fd4, &p.fd6} {
		if *fd >= 0 {
			_ = unix.Close(*fd)
			*fd = -1
		}
	}
}
