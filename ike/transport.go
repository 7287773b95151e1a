package ike

import "net/netip"

// transport carries an IKE SA's datagrams. Today that is the engine's UDP
// sockets on ports 500 and 4500 (Engine.transmit); IKE over TCP (RFC 9329)
// is to be another, so that the message layer (messages.go) never needs
// to know which.
type transport interface {
	// transmit sends one framed datagram from local to remote.
	transmit(local, remote netip.AddrPort, b []byte) error
}

// transport returns the SA's transport: its own, or the engine's UDP
// sockets.
func (sa *ikeSA) transport() transport {
	if sa.tr != nil {
		return sa.tr
	}
	return sa.e
}
