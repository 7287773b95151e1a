package xsk

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Stats are the kernel's counters for a socket (XDP_STATISTICS).
type Stats struct {
	// RxDropped counts packets dropped for reasons other than invalid
	// descriptors, e.g. packets too large for a frame.
	RxDropped uint64
	// RxInvalidDescs counts invalid descriptors on the fill ring.
	RxInvalidDescs uint64
	// TxInvalidDescs counts invalid descriptors on the TX ring (frame
	// outside the UMEM, length beyond the frame).
	TxInvalidDescs uint64
	// RxRingFull counts packets dropped because the RX ring was full.
	RxRingFull uint64
	// RxFillRingEmptyDescs counts packets that found the fill ring
	// empty.
	RxFillRingEmptyDescs uint64
	// TxRingEmptyDescs counts kicks that found the TX ring empty.
	TxRingEmptyDescs uint64
}

// FrameCounts says where a socket's frames are. Total is always the sum of
// the other four.
type FrameCounts struct {
	Total int
	Free  int // on the free stack
	Fill  int // given to the kernel for RX, not received yet
	TX    int // submitted for TX, not completed yet
	User  int // returned by Receive or Alloc, not yet released or sent
}

// Frames reports where the socket's frames are.
func (s *Socket) Frames() FrameCounts {
	return FrameCounts{
		Total: int(s.cfg.NumFrames),
		Free:  len(s.free),
		Fill:  int(s.fillOut),
		TX:    int(s.txOut),
		User:  int(s.user),
	}
}

// Stats returns the kernel's counters for the socket; for a memory
// socket, those its Wire keeps.
func (s *Socket) Stats() (Stats, error) {
	if s.wire != nil {
		return s.wire.stats(), nil
	}
	var st unix.XDPStatistics
	// Older kernels return a shorter struct; the fields they lack stay
	// zero.
	if _, err := getsockopt(s.fd, unix.XDP_STATISTICS, unsafe.Pointer(&st), unsafe.Sizeof(st)); err != nil {
		return Stats{}, fmt.Errorf("xsk statistics: %w", err)
	}
	return Stats{
		RxDropped:            st.Rx_dropped,
		RxInvalidDescs:       st.Rx_invalid_descs,
		TxInvalidDescs:       st.Tx_invalid_descs,
		RxRingFull:           st.Rx_ring_full,
		RxFillRingEmptyDescs: st.Rx_fill_ring_empty_descs,
		TxRingEmptyDescs:     st.Tx_ring_empty_descs,
	}, nil
}
