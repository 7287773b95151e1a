// Package esp implements the ESP packet transforms of RFC 4303 for the
// userspace data plane: AES-GCM-16 (RFC 4106), ChaCha20-Poly1305 (RFC 7634)
// and AES-CBC with HMAC-SHA-2 (RFC 3602, RFC 4868), tunnel and transport
// mode over IPv4 and IPv6, raw or UDP-encapsulated (RFC 3948), with 64-bit
// extended sequence numbers, an RFC 6479 anti-replay window, RFC 6040 ECN
// handling and per-SA drop counters and lifetimes.
//
// Packets are processed in place. Encrypt takes the plaintext IP packet in a
// Packet whose buffer has at least MaxHeadroom bytes free in front of it and
// MaxTailroom bytes free behind it (SA.Headroom and SA.Tailroom give the exact
// need of one SA): the outer IP header, the UDP header, the ESP header and the
// IV are written in front, the padding, the ESP trailer and the ICV behind,
// and the Packet is moved to cover the outer IP packet. Decrypt takes the
// outer IP packet and moves the Packet to cover the inner packet (tunnel
// mode) or the reconstructed transport-mode packet. Neither allocates.
//
// Decrypt takes an SA's packets only in the form it was negotiated in, raw
// or in UDP, and only to its local address and, raw, from its peer's: the
// ICV does not cover the outer headers. The peer of a UDP-encapsulated SA
// follows NAT rebinding, learnt from accepted packets only (EventPeerMoved).
//
// In tunnel mode the outer header gets the SA's TTL (64 by default) and
// copies DSCP, ECN (RFC 6040 normal mode) and, from IPv4, DF from the inner
// header; decapsulation leaves the inner TTL and DSCP alone (forwarding
// decrements the TTL) and combines the ECN fields by RFC 6040 section 4.2.
//
// Not supported: IPv6 extension headers in the outer packet on decrypt and
// hop-by-hop, routing or fragment headers in transport mode on encrypt
// (such packets are dropped as malformed), fragmented outer packets
// (reassembly happens before), and the inner TCP/UDP checksum fix-up that
// RFC 3948 3.1.2 asks of transport mode behind a NAT.
//
// A Worker holds the per-goroutine scratch space (nonce, AAD) that the AEAD
// interfaces need on the heap; one Worker per data-plane goroutine. An SA may
// be used by several Workers at once: outbound sequence numbers are allocated
// atomically and the replay window is checked lock-free and updated under a
// short per-SA lock.
package esp
