package xsk

import (
	"sync/atomic"
	"unsafe"
)

// ring is one of the four single-producer/single-consumer rings that an
// AF_XDP socket shares with the kernel. For the fill and TX rings this
// process is the producer and the kernel the consumer; for the RX and
// completion rings it is the other way round.
//
// Memory ordering follows libxdp (tools/lib/bpf/xsk.h in older trees):
//
//   - Before we read descriptors that the other side produced, we
//     load-acquire its producer index, so the descriptor contents it wrote
//     before its store-release of that index are visible to us.
//   - Before we hand descriptors over (or give slots back), we
//     store-release our own index, so our writes to the descriptors (or our
//     reads of them) are ordered before the other side can see the slots.
//
// Go's sync/atomic loads and stores are sequentially consistent, which is
// strictly stronger than acquire/release: an atomic.Load is at least a
// load-acquire and an atomic.Store at least a store-release. Plain reads
// and writes of the descriptor slots in between are then ordered by those
// atomics, exactly as in the C code.
//
// The cached indices avoid touching the shared cache line of the other
// side's index on every call: we refresh them only when the cached view
// says the ring is empty (consumer) or full (producer).
type ring struct {
	producer *uint32
	consumer *uint32
	flags    *uint32
	descs    unsafe.Pointer // first slot
	mask     uint32
	size     uint32

	// cachedProd and cachedCons are this side's private view. For a
	// producer ring, cachedCons holds the kernel's consumer index plus
	// size, so that cachedCons-cachedProd is the free slot count.
	cachedProd uint32
	cachedCons uint32

	mem []byte // the whole mmap'd ring, for munmap
}

func newRing(mem []byte, producer, consumer, desc, flags uint64, size uint32) ring {
	base := unsafe.Pointer(unsafe.SliceData(mem))
	return ring{
		producer: (*uint32)(unsafe.Add(base, producer)),
		consumer: (*uint32)(unsafe.Add(base, consumer)),
		flags:    (*uint32)(unsafe.Add(base, flags)),
		descs:    unsafe.Add(base, desc),
		mask:     size - 1,
		size:     size,
		mem:      mem,
	}
}

// initProducer sets the cached view of a ring this process produces into.
func (r *ring) initProducer() {
	r.cachedProd = atomic.LoadUint32(r.producer)
	r.cachedCons = atomic.LoadUint32(r.consumer) + r.size
}

// initConsumer sets the cached view of a ring this process consumes from.
func (r *ring) initConsumer() {
	r.cachedProd = atomic.LoadUint32(r.producer)
	r.cachedCons = atomic.LoadUint32(r.consumer)
}

// free returns how many slots (up to want) a producer may fill now.
func (r *ring) free(want uint32) uint32 {
	n := r.cachedCons - r.cachedProd
	if n >= want {
		return want
	}
	// Load-acquire: the kernel has finished reading the slots it
	// released before it stored its consumer index.
	r.cachedCons = atomic.LoadUint32(r.consumer) + r.size
	n = r.cachedCons - r.cachedProd
	return min(n, want)
}

// submit publishes n slots written after cachedProd.
func (r *ring) submit(n uint32) {
	r.cachedProd += n
	// Store-release: the slot contents written above become visible to
	// the kernel no later than the new producer index.
	atomic.StoreUint32(r.producer, r.cachedProd)
}

// avail returns how many slots (up to want) a consumer may read now.
func (r *ring) avail(want uint32) uint32 {
	n := r.cachedProd - r.cachedCons
	if n == 0 {
		// Load-acquire: slot contents the kernel wrote before storing
		// its producer index are visible once we see the index.
		r.cachedProd = atomic.LoadUint32(r.producer)
		n = r.cachedProd - r.cachedCons
	}
	return min(n, want)
}

// release gives n consumed slots back to the kernel.
func (r *ring) release(n uint32) {
	r.cachedCons += n
	// Store-release: our reads of the slots are done before the kernel
	// may overwrite them.
	atomic.StoreUint32(r.consumer, r.cachedCons)
}

// needWakeup reports whether the kernel asked to be kicked (a syscall)
// before it looks at this ring again (XDP_USE_NEED_WAKEUP). The flag is
// read after our store of the producer index; since that store is
// sequentially consistent, the read cannot move before it, which closes
// the window in which the kernel sets the flag after we looked at it but
// before it saw our new entries.
func (r *ring) needWakeup() bool {
	return atomic.LoadUint32(r.flags)&xdpRingNeedWakeup != 0
}

// pending returns how many entries a producer ring holds that the kernel
// has not consumed yet.
func (r *ring) pending() uint32 {
	return r.cachedProd - atomic.LoadUint32(r.consumer)
}

// addr returns slot i of a fill or completion ring (8-byte addresses).
func (r *ring) addr(i uint32) *uint64 {
	return (*uint64)(unsafe.Add(r.descs, uintptr(i&r.mask)*8))
}

// desc returns slot i of an RX or TX ring.
func (r *ring) desc(i uint32) *xdpDesc {
	return (*xdpDesc)(unsafe.Add(r.descs, uintptr(i&r.mask)*unsafe.Sizeof(xdpDesc{})))
}

// xdpDesc is struct xdp_desc.
type xdpDesc struct {
	Addr    uint64
	Len     uint32
	Options uint32
}

const xdpRingNeedWakeup = 1 // XDP_RING_NEED_WAKEUP
