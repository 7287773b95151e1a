// Package loadgen is the benchmark's traffic generator: paced IPv4 UDP
// streams of RFC 2544 frame sizes (or IMIX) with a sequence number and a
// send time in every datagram, and a receiver that counts loss,
// duplicates and reordering and keeps a latency histogram. Sender and
// receiver run in one process, so they share the monotonic clock and a
// one-way latency needs no clock synchronisation, whatever namespaces
// their sockets live in.
//
// It exists because iperf3 sends one size per run, reports no latency and
// needs one syscall per datagram; the generator batches with
// sendmmsg/recvmmsg so that at 64-byte frames the gateways, not the
// sender, are what runs out first.
package loadgen

import (
	"fmt"
	"strconv"
	"strings"
)

// Overheads between an RFC 2544 frame size and the UDP payload that makes
// it: the frame counts the Ethernet header and the FCS (RFC 2544 section
// 9), then come the IPv4 and UDP headers.
const (
	ethernetOverhead = 14 + 4
	ipv4UDPHeaders   = 20 + 8
	// MinFrame is the smallest Ethernet frame; its UDP payload (18 bytes)
	// still holds a probe header.
	MinFrame = 64
	// MaxFrame is the largest frame this generator makes: 1518 on a
	// 1500-byte MTU.
	MaxFrame = 1518
)

// Profile is what one trial sends: a cycle of frame sizes repeated for
// the whole trial. A single size is a cycle of one.
type Profile struct {
	// Name is how reports show it: "64", "512", "imix".
	Name string
	// Frames is the cycle of Ethernet frame sizes in bytes, FCS included.
	Frames []int
}

// Fixed returns the profile of one frame size.
func Fixed(frame int) Profile {
	return Profile{Name: strconv.Itoa(frame), Frames: []int{frame}}
}

// IMIX returns the "simple IMIX" of 7 : 4 : 1 frames of 64, 576 and large
// bytes, interleaved so that the large frames do not come in bursts.
// large is 1518 on a plain 1500-byte path; a tunnel benchmark caps it to
// the largest frame every tunnel carries without fragmentation.
func IMIX(large int) Profile {
	s, m, l := MinFrame, 576, large
	return Profile{
		Name:   "imix",
		Frames: []int{s, m, s, s, m, s, l, s, m, s, s, m},
	}
}

// ParseProfile reads "64", "1400" or "imix" (imix with large frames of
// imixLarge bytes).
func ParseProfile(s string, imixLarge int) (Profile, error) {
	if strings.EqualFold(s, "imix") {
		return IMIX(imixLarge), nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return Profile{}, fmt.Errorf("frame size %q: want a number of bytes or imix", s)
	}
	p := Fixed(n)
	return p, p.validate()
}

func (p Profile) validate() error {
	if len(p.Frames) == 0 {
		return fmt.Errorf("profile %q has no frames", p.Name)
	}
	for _, f := range p.Frames {
		if f < MinFrame || f > MaxFrame {
			return fmt.Errorf("profile %q: frame size %d outside %d..%d", p.Name, f, MinFrame, MaxFrame)
		}
	}
	return nil
}

// MeanFrame is the average frame size of the cycle in bytes.
func (p Profile) MeanFrame() float64 {
	sum := 0
	for _, f := range p.Frames {
		sum += f
	}
	return float64(sum) / float64(len(p.Frames))
}

// Mbps converts a frame rate of this profile to Mbit/s of Ethernet frames
// (RFC 2544's unit: frames as they are counted on the link, FCS included,
// preamble and gap not).
func (p Profile) Mbps(pps float64) float64 { return pps * p.MeanFrame() * 8 / 1e6 }

// PPS converts Mbit/s of this profile's frames to frames per second.
func (p Profile) PPS(mbps float64) float64 { return mbps * 1e6 / 8 / p.MeanFrame() }

// payloadLen is the UDP payload that makes a frame of frame bytes.
func payloadLen(frame int) int { return frame - ethernetOverhead - ipv4UDPHeaders }

// MaxPayload is the largest UDP payload of the profile.
func (p Profile) MaxPayload() int {
	m := 0
	for _, f := range p.Frames {
		m = max(m, payloadLen(f))
	}
	return m
}
