package loadgen

import (
	"math/bits"
	"time"
)

// histogram counts latencies in log-linear buckets: exact below 64 ns,
// then 32 buckets per power of two, so a percentile is off by at most
// 1/32 (about 3 %) of its value, with a fixed 15 KiB of memory and no
// allocation per sample.
type histogram struct {
	counts [64 + 58*32]uint64
	n      uint64
	sum    time.Duration
	min    time.Duration
	max    time.Duration
}

func bucketOf(ns uint64) int {
	if ns < 64 {
		return int(ns)
	}
	shift := bits.Len64(ns) - 6 // leaves the top 6 bits: 32..63
	return 64 + (shift-1)*32 + int(ns>>shift) - 32
}

// bucketFloor is the lowest value that lands in bucket i.
func bucketFloor(i int) uint64 {
	if i < 64 {
		return uint64(i)
	}
	shift := (i-64)/32 + 1
	return uint64((i-64)%32+32) << shift
}

func (h *histogram) add(d time.Duration) {
	if d < 0 {
		d = 0 // a clock cannot run backwards here; be safe all the same
	}
	i := bucketOf(uint64(d))
	if i >= len(h.counts) {
		i = len(h.counts) - 1
	}
	h.counts[i]++
	if h.n == 0 || d < h.min {
		h.min = d
	}
	h.max = max(h.max, d)
	h.n++
	h.sum += d
}

// quantile returns the value below which a fraction q of the samples
// lie, as the middle of its bucket (exact values for min and max).
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n-1)) + 1
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := bucketFloor(i), bucketFloor(i+1)
			v := time.Duration(lo + (hi-lo)/2)
			return min(max(v, h.min), h.max)
		}
	}
	return h.max
}

// Latency is the one-way latency of a trial's datagrams, send call to
// receive, through everything between the two sockets.
type Latency struct {
	Samples uint64        `json:"samples"`
	Min     time.Duration `json:"min_ns"`
	Mean    time.Duration `json:"mean_ns"`
	P50     time.Duration `json:"p50_ns"`
	P90     time.Duration `json:"p90_ns"`
	P99     time.Duration `json:"p99_ns"`
	P999    time.Duration `json:"p999_ns"`
	Max     time.Duration `json:"max_ns"`
}

func (h *histogram) summary() Latency {
	if h.n == 0 {
		return Latency{}
	}
	return Latency{
		Samples: h.n,
		Min:     h.min,
		Mean:    h.sum / time.Duration(h.n),
		P50:     h.quantile(0.50),
		P90:     h.quantile(0.90),
		P99:     h.quantile(0.99),
		P999:    h.quantile(0.999),
		Max:     h.max,
	}
}
