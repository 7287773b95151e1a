package ike

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/binary"
	"net/netip"

	"github.com/xdpsec/xdpsec/ike/message"
)

// NAT detection (RFC 7296 2.23): the NAT_DETECTION_SOURCE_IP and
// _DESTINATION_IP hashes we send in IKE_SA_INIT and how the peer's tell
// which end sits behind a NAT.

// natdPayloads returns NAT_DETECTION_SOURCE_IP and _DESTINATION_IP for a
// message with these SPIs. With ForceEncap the source hash is random, which
// makes the peer see us behind a NAT and both sides use UDP 4500
// (RFC 7296 2.23 allows faking it).
func (sa *ikeSA) natdPayloads(spir uint64) []message.Payload {
	src := natHash(sa.spii, spir, sa.local)
	if sa.conn != nil && sa.conn.ForceEncap {
		src = randomBytes(message.NATDetectionHashLen)
	}
	return []message.Payload{
		&message.Notify{NotifyType: message.NotifyNATDetectionSourceIP, Data: src},
		&message.Notify{NotifyType: message.NotifyNATDetectionDestinationIP, Data: natHash(sa.spii, spir, sa.remote)},
	}
}

// detectNAT evaluates the peer's NAT-D notifications of a message with the
// given SPIs that came from 'from' to 'to'. ok is false when the peer sent
// none (it does not support NAT-T).
func detectNAT(ns []*message.Notify, spii, spir uint64, from, to netip.AddrPort) (natLocal, natRemote, ok bool) {
	var srcs, dsts [][]byte
	for _, n := range ns {
		h, err := n.NATDetectionHash()
		if err != nil {
			continue
		}
		if n.NotifyType == message.NotifyNATDetectionSourceIP {
			srcs = append(srcs, h)
		} else {
			dsts = append(dsts, h)
		}
	}
	if len(srcs) == 0 || len(dsts) == 0 {
		return false, false, false
	}
	natRemote = true
	want := natHash(spii, spir, from)
	for _, h := range srcs {
		if hmac.Equal(h, want) {
			natRemote = false
		}
	}
	natLocal = true
	want = natHash(spii, spir, to)
	for _, h := range dsts {
		if hmac.Equal(h, want) {
			natLocal = false
		}
	}
	return natLocal, natRemote, true
}

// natHash is the NAT detection hash of RFC 7296 2.23:
// SHA-1(SPIi | SPIr | IP | Port), with the SPIs as in the message's header.
func natHash(spii, spir uint64, ap netip.AddrPort) []byte {
	h := sha1.New()
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], spii)
	binary.BigEndian.PutUint64(b[8:], spir)
	h.Write(b[:])
	h.Write(ap.Addr().Unmap().AsSlice())
	h.Write(portBytes(ap.Port()))
	return h.Sum(nil)
}

// portBytes is a port in network order, as the NAT detection hash takes it.
func portBytes(p uint16) []byte {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], p)
	return b[:]
}
