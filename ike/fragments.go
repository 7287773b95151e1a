package ike

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/xdpsec/xdpsec/ike/message"
)

// IKE fragmentation, RFC 7383. Both ends announce
// IKEV2_FRAGMENTATION_SUPPORTED in IKE_SA_INIT; from then on either may
// send any protected message as Encrypted Fragment (SKF) payloads. We cut
// a message whose datagram would exceed Options.FragmentSize (an IP
// datagram's size, as strongSwan's fragment_size) into fragments that
// each fit, and retransmit them all. Each fragment we receive is
// authenticated on its own (2.6.1), kept until the set is complete and
// then decoded as the one message it was. A reassembly is bounded in
// fragments, bytes and time, and each bound that is hit is counted.

const (
	// maxFragments bounds the Total Fragments a message may claim.
	maxFragments = 64
	// maxReassembled bounds the decrypted bytes of one message.
	maxReassembled = 64 << 10
	// fragmentTimeout drops a reassembly whose set did not complete: the
	// peer retransmits every fragment long before.
	fragmentTimeout = 30 * time.Second
)

// Drop reasons of fragments.
const (
	// DropFragmentInvalid: a fragment number of 0 or above the total, a
	// total above maxFragments, or a first fragment without its next
	// payload.
	DropFragmentInvalid DropReason = "fragment_invalid"
	// DropFragmentStale: a fragment of an earlier, smaller fragmentation
	// of the message (the peer refragmented it, 2.6.1).
	DropFragmentStale DropReason = "fragment_stale"
	// DropFragmentTooLarge: the set exceeds maxReassembled.
	DropFragmentTooLarge DropReason = "fragment_too_large"
	// DropFragmentTimeout: a set that did not complete in time.
	DropFragmentTimeout DropReason = "fragment_timeout"
	// DropFragmentDuplicate: a fragment already held (or one that claims
	// its number with other content: the first copy wins).
	DropFragmentDuplicate DropReason = "fragment_duplicate"
)

// DefaultFragmentSize is the default of Options.FragmentSize: the IPv6
// minimum MTU, which every path carries.
const DefaultFragmentSize = 1280

// Per datagram: UDP header, the non-ESP marker on port 4500, the IKE
// header and the SK or SKF payload's header.
const (
	udpHeaderLen = 8
	skHeaderLen  = 4
	skfHeaderLen = 8
)

// ipHeaderLen is the outer IP header of the SA's datagrams.
func (sa *ikeSA) ipHeaderLen() int {
	if a := sa.remote.Addr(); a.Is6() && !a.Is4In6() {
		return 40
	}
	return 20
}

// overhead is a datagram's size less its encrypted body, for a payload
// header of hdr bytes.
func (sa *ikeSA) overhead(hdr int) int {
	n := sa.ipHeaderLen() + udpHeaderLen + message.HeaderLen + hdr
	if sa.natt {
		n += 4
	}
	return n
}

// wholeSize is the IP datagram the message with ptLen bytes of inner
// payloads makes unfragmented.
func (sa *ikeSA) wholeSize(ptLen int) int {
	return sa.overhead(skHeaderLen) + sa.seal.SealedLen(ptLen)
}

// fragmentMessage cuts the inner payloads pt of the message with header h
// into SKF fragments whose datagrams fit FragmentSize.
func (sa *ikeSA) fragmentMessage(h message.Header, next message.PayloadType, pt []byte) ([][]byte, error) {
	room := sa.e.opts.FragmentSize - sa.overhead(skfHeaderLen)
	chunk := room - sa.seal.SealedLen(0)
	for chunk > 0 && sa.seal.SealedLen(chunk) > room {
		chunk--
	}
	if chunk <= 0 {
		return nil, fmt.Errorf("fragment size %d leaves no room for data", sa.e.opts.FragmentSize)
	}
	total := (len(pt) + chunk - 1) / chunk
	if total > maxFragments {
		return nil, fmt.Errorf("%s of %d bytes needs %d fragments of %d, more than %d", h.Exchange, len(pt), total, chunk, maxFragments)
	}
	out := make([][]byte, 0, total)
	for k := range total {
		f := &message.SKF{Number: uint16(k + 1), Total: uint16(total)}
		if k == 0 {
			f.NextPayload = next
		}
		d, err := sa.seal1(h, f, pt[k*chunk:min((k+1)*chunk, len(pt))])
		if err != nil {
			return nil, fmt.Errorf("seal %s fragment %d: %w", h.Exchange, k+1, err)
		}
		out = append(out, d)
	}
	sa.e.stats.add(&sa.e.stats.fragmented)
	return out, nil
}

// errFragmentHeld: the fragment is kept; the message is not complete.
var errFragmentHeld = errors.New("fragment held for reassembly")

// fragmentDrop is a fragment dropped for one of the reasons above.
type fragmentDrop struct{ reason DropReason }

func (e *fragmentDrop) Error() string { return "fragment dropped: " + string(e.reason) }

// reassembly is the set of fragments of one message being collected.
type reassembly struct {
	id      uint32
	total   uint16
	next    message.PayloadType
	parts   [][]byte
	have    int
	size    int
	started time.Time
}

// reassemble authenticates the fragment f of message m (as received in b)
// and adds it to its set; it returns the message's payloads once the set
// is complete, errFragmentHeld before, or why the fragment was dropped.
func (sa *ikeSA) reassemble(m *message.Message, b []byte, f *message.SKF) ([]message.Payload, error) {
	if !sa.fragOK {
		return nil, errFragmented
	}
	if f.Number == 0 || f.Number > f.Total || f.Total > maxFragments || (f.Number == 1 && f.NextPayload == message.PayloadNone) {
		return nil, &fragmentDrop{DropFragmentInvalid}
	}
	pt, err := sa.open.Open(nil, b[:len(b)-len(f.Body)], f.Body)
	if err != nil {
		return nil, err
	}
	dir := 0
	if m.Header.IsResponse() {
		dir = 1
	}
	r := sa.fragIn[dir]
	if r != nil && time.Since(r.started) > fragmentTimeout {
		sa.e.stats.drop(DropFragmentTimeout)
		r = nil
	}
	switch {
	case r == nil || r.id != m.Header.MessageID || f.Total > r.total:
		// A new message, or the peer refragmented this one into more
		// pieces: start anew (RFC 7383 2.6.1).
		r = &reassembly{id: m.Header.MessageID, total: f.Total, parts: make([][]byte, f.Total), started: time.Now()}
		sa.fragIn[dir] = r
	case f.Total < r.total:
		return nil, &fragmentDrop{DropFragmentStale}
	case r.parts[f.Number-1] != nil:
		return nil, &fragmentDrop{DropFragmentDuplicate}
	}
	if r.size+len(pt) > maxReassembled {
		sa.fragIn[dir] = nil
		return nil, &fragmentDrop{DropFragmentTooLarge}
	}
	if f.Number == 1 {
		r.next = f.NextPayload
	}
	r.parts[f.Number-1] = pt
	r.have++
	r.size += len(pt)
	if r.have < int(r.total) {
		return nil, errFragmentHeld
	}
	sa.fragIn[dir] = nil
	sa.e.stats.add(&sa.e.stats.reassembled)
	ps, err := message.DecodePayloads(r.next, bytes.Join(r.parts, nil))
	if err != nil {
		return nil, &innerError{err}
	}
	return ps, nil
}

// authentic reports whether b, a protected message or fragment from the
// peer, carries a valid ICV, without decoding or keeping anything.
func (sa *ikeSA) authentic(b []byte) bool {
	if sa.open == nil {
		return false
	}
	m, err := message.Decode(b)
	if err != nil {
		return false
	}
	var body []byte
	switch enc := m.Encrypted().(type) {
	case *message.SK:
		body = enc.Body
	case *message.SKF:
		body = enc.Body
	default:
		return false
	}
	_, err = sa.open.Open(nil, b[:len(b)-len(body)], body)
	return err == nil
}

// laterFragment reports whether b is an SKF fragment other than the
// first: a retransmitted fragmented request is answered from the cache
// once, on its fragment 1, not once per fragment.
func laterFragment(b []byte) bool {
	// The SKF payload follows the IKE header at once.
	const hdr = message.HeaderLen
	if len(b) < hdr+skfHeaderLen || message.PayloadType(b[16]) != message.PayloadSKF {
		return false
	}
	return binary.BigEndian.Uint16(b[hdr+4:]) != 1
}
