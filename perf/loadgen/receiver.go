package loadgen

import (
	"encoding/binary"
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xdpsec/xdpsec/internal/streams"
)

// receiver counts one trial's datagrams: the sequence accounting is the
// lab's one (streams.Counter), the latency histogram its own.
type receiver struct {
	tag  uint16
	base time.Time
	seq  streams.Counter
	lat  histogram
}

func newReceiver(tag uint16, base time.Time) *receiver {
	return &receiver{tag: tag, base: base}
}

// run reads datagrams with recvmmsg until stop is closed.
func (r *receiver) run(fd int, stop <-chan struct{}) error {
	const slot = 2048
	buf := make([]byte, batchSize*slot)
	iov := make([]unix.Iovec, batchSize)
	msgs := make([]unix.Mmsghdr, batchSize)
	for i := range batchSize {
		iov[i].Base = &buf[i*slot]
		iov[i].SetLen(slot)
		msgs[i].Hdr.Iov = &iov[i]
		msgs[i].Hdr.SetIovlen(1)
	}
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), batchSize, unix.MSG_WAITFORONE, 0, 0)
		switch e {
		case 0:
		case unix.EAGAIN, unix.EINTR:
			continue // the socket's timeout: look at stop again
		default:
			return fmt.Errorf("recvmmsg: %w", e)
		}
		now := time.Since(r.base)
		for i := range int(n) {
			r.account(buf[i*slot:i*slot+int(msgs[i].Len)], now)
		}
	}
}

// maxSeq bounds the sequence numbers taken: no trial sends 2^27
// datagrams, and a forged larger one must not grow the bitmap.
const maxSeq = 1 << 27

// account counts one datagram received at now (since base).
func (r *receiver) account(d []byte, now time.Duration) {
	if len(d) < probeLen || binary.BigEndian.Uint16(d) != r.tag {
		return // not this trial's
	}
	seq := binary.BigEndian.Uint64(d[seqOff:])
	if seq >= maxSeq {
		return
	}
	fresh := !r.seq.Has(seq)
	r.seq.Add(seq)
	if fresh { // a duplicate's time says nothing new
		r.lat.add(now - time.Duration(binary.BigEndian.Uint64(d[stampOff:])))
	}
}

func (r *receiver) result(t Trial, sent uint64, elapsed time.Duration) Result {
	acc := r.seq.Result(sent)
	res := Result{
		Profile:    t.Profile.Name,
		OfferedPPS: t.PPS,
		Sent:       sent,
		Received:   acc.Unique - acc.Stray,
		Lost:       acc.Missing,
		Duplicates: acc.Duplicates,
		Reordered:  acc.Reordered,
		Latency:    r.lat.summary(),
	}
	if secs := elapsed.Seconds(); secs > 0 {
		res.SentPPS = float64(sent) / secs
		res.ReceivedPPS = float64(res.Received) / secs
	}
	if sent > 0 {
		res.LossPercent = 100 * float64(res.Lost) / float64(sent)
	}
	return res
}
