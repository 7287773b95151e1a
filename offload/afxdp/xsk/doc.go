// Package xsk implements AF_XDP sockets on golang.org/x/sys/unix, without
// cgo or libxdp, for the afxdp data plane.
//
// A Socket owns one UMEM (a private anonymous mapping cut into equal
// frames), the four rings the kernel shares with it (fill, completion, RX,
// TX) and a preallocated stack of free frame addresses. It is bound to one
// (interface, RX queue) pair; an XDP program steers packets to it through an
// XSKMAP entry holding FD() at the queue's index. Since an XDP redirect to a
// queue without a socket fails, the data plane opens one socket per RX queue
// (see RXQueues and OpenAll).
//
// The data path works on batches of Desc values and allocates nothing:
//
//	n := s.Receive(descs)          // frames the kernel filled
//	pkt := s.Frame(descs[i])       // packet bytes inside the UMEM, no copy
//	s.Release(descs[:n])           // give them back to the fill ring
//
//	n = s.Alloc(descs)             // free frames for sending
//	n = copy(s.Frame(descs[i]), p) // write a packet, then set descs[i].Len
//	sent, err := s.Transmit(descs) // submit, kick the kernel if it asks
//
// Frames returned by Receive or Alloc belong to the caller until they are
// passed to Release or Transmit; Transmit also accepts received frames, so a
// packet can be rewritten in place and sent out again. Sent frames come back
// to the free stack when the kernel reports them on the completion ring
// (Complete, also run by Alloc and Transmit).
//
// NewMemory makes the same Socket with no kernel behind it: UMEM and rings
// in this process's memory, and a Wire that does the kernel's copy-mode
// work (Deliver puts frames on the RX ring from the fill ring, Drain takes
// the TX ring and completes it). Code written against a Socket, the data
// plane's workers included, then runs in unit tests and benchmarks without
// root, a NIC or a syscall on the data path.
//
// A Socket is not safe for concurrent use: one worker goroutine owns it, as
// it owns the producer and consumer sides of the rings. FD, Stats, Mode and
// Wake may be called from any goroutine while the worker runs.
package xsk
