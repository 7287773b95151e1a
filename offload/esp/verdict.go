package esp

import (
	"fmt"
	"sync/atomic"
)

// Verdict is the outcome of one packet: Accept or the reason it was dropped.
// The names of the reasons are the metric labels of the data plane.
type Verdict uint8

const (
	Accept Verdict = iota
	// DropUnknownSPI: no inbound SA has the packet's SPI.
	DropUnknownSPI
	// DropReplay: sequence number 0, left of the window or seen before.
	DropReplay
	// DropAuth: the ICV did not verify.
	DropAuth
	// DropSelector: the decrypted packet is outside the SA's selectors.
	DropSelector
	// DropMalformed: the packet cannot be parsed, or a buffer lacks room.
	DropMalformed
	// DropPad: padding bytes or pad length are wrong (RFC 4303 2.4).
	DropPad
	// DropDummy: a dummy packet (next header 59), dropped by design.
	DropDummy
	// DropECN: RFC 6040 says drop (outer CE over a not-ECT inner packet).
	DropECN
	// DropExpired: the SA reached its hard lifetime or its sequence
	// numbers are exhausted; it takes no more packets.
	DropExpired
	// DropEncap: raw ESP for a UDP-encapsulated SA or ESP-in-UDP for a
	// raw one; the kernel counts these as XfrmInStateMismatch.
	DropEncap
	// DropAddress: the outer destination is not the SA's local address,
	// or raw ESP comes from another source than the SA's peer.
	DropAddress
	numVerdicts
)

func (v Verdict) String() string {
	switch v {
	case Accept:
		return "accept"
	case DropUnknownSPI:
		return "unknown_spi"
	case DropReplay:
		return "replay"
	case DropAuth:
		return "auth"
	case DropSelector:
		return "selector"
	case DropMalformed:
		return "malformed"
	case DropPad:
		return "pad"
	case DropDummy:
		return "dummy"
	case DropECN:
		return "ecn"
	case DropExpired:
		return "expired"
	case DropEncap:
		return "encap"
	case DropAddress:
		return "address"
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// Verdicts lists every drop reason, for exporting counters.
func Verdicts() []Verdict {
	v := make([]Verdict, 0, numVerdicts-1)
	for r := Accept + 1; r < numVerdicts; r++ {
		v = append(v, r)
	}
	return v
}

// DropCounts is a snapshot of drop counters indexed by Verdict; index
// Accept is unused.
type DropCounts [numVerdicts]uint64

type dropCounters [numVerdicts]atomic.Uint64

func (d *dropCounters) snapshot() DropCounts {
	var s DropCounts
	for i := range d {
		s[i] = d[i].Load()
	}
	return s
}
