package loadgen

import (
	"context"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"
)

func TestProfiles(t *testing.T) {
	for _, tc := range []struct {
		in      string
		mean    float64
		payload int
		wantErr bool
	}{
		{in: "64", mean: 64, payload: 18},
		{in: "512", mean: 512, payload: 466},
		{in: "1400", mean: 1400, payload: 1354},
		{in: "IMIX", mean: (7*64 + 4*576 + 1400) / 12.0, payload: 1354},
		{in: "63", wantErr: true},
		{in: "1519", wantErr: true},
		{in: "jumbo", wantErr: true},
	} {
		p, err := ParseProfile(tc.in, 1400)
		if tc.wantErr {
			if err == nil {
				t.Errorf("%s: accepted %+v", tc.in, p)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if p.MeanFrame() != tc.mean || p.MaxPayload() != tc.payload {
			t.Errorf("%s: mean %.2f payload %d, want %.2f %d", tc.in, p.MeanFrame(), p.MaxPayload(), tc.mean, tc.payload)
		}
		if pps := p.PPS(p.Mbps(1e5)); math.Abs(pps-1e5) > 1e-6 {
			t.Errorf("%s: PPS(Mbps(1e5)) = %v", tc.in, pps)
		}
	}
	imix := IMIX(1518)
	var n [3]int
	for _, f := range imix.Frames {
		switch f {
		case 64:
			n[0]++
		case 576:
			n[1]++
		case 1518:
			n[2]++
		}
	}
	if n != [3]int{7, 4, 1} {
		t.Errorf("IMIX mix %v, want 7:4:1", n)
	}
	if got := Fixed(64).Mbps(1e6); got != 512 {
		t.Errorf("1 Mpps of 64-byte frames = %v Mbit/s, want 512", got)
	}
}

func TestHistogramBuckets(t *testing.T) {
	for _, v := range []uint64{0, 1, 63, 64, 65, 127, 128, 1000, 123456, 1 << 40} {
		i := bucketOf(v)
		if lo, hi := bucketFloor(i), bucketFloor(i+1); v < lo || v >= hi {
			t.Errorf("%d in bucket %d [%d, %d)", v, i, lo, hi)
		}
		if hi, lo := bucketFloor(i+1), bucketFloor(i); lo > 64 && float64(hi-lo)/float64(lo) > 1.0/32+1e-9 {
			t.Errorf("bucket %d [%d, %d) wider than 1/32", i, lo, hi)
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h histogram
	var raw []time.Duration
	for range 100000 {
		// Log-normal-ish: most around 50 us, a tail to tens of ms.
		d := time.Duration(50e3 * math.Exp(rng.NormFloat64()))
		raw = append(raw, d)
		h.add(d)
	}
	slices.Sort(raw)
	s := h.summary()
	for _, tc := range []struct {
		name string
		got  time.Duration
		q    float64
	}{{"p50", s.P50, 0.5}, {"p90", s.P90, 0.9}, {"p99", s.P99, 0.99}, {"p999", s.P999, 0.999}} {
		want := raw[int(tc.q*float64(len(raw)-1))]
		if rel := math.Abs(float64(tc.got-want)) / float64(want); rel > 0.035 {
			t.Errorf("%s = %v, want %v (off by %.1f%%)", tc.name, tc.got, want, rel*100)
		}
	}
	if s.Min != raw[0] || s.Max != raw[len(raw)-1] || s.Samples != uint64(len(raw)) {
		t.Errorf("min %v max %v n %d, want %v %v %d", s.Min, s.Max, s.Samples, raw[0], raw[len(raw)-1], len(raw))
	}
	var empty histogram
	if (empty.summary() != Latency{}) {
		t.Error("empty histogram has a summary")
	}
}

func datagram(tag uint16, seq uint64, stamp time.Duration) []byte {
	d := make([]byte, probeLen)
	binary.BigEndian.PutUint16(d, tag)
	binary.BigEndian.PutUint64(d[seqOff:], seq)
	binary.BigEndian.PutUint64(d[stampOff:], uint64(stamp))
	return d
}

// TestReceiverAccounting feeds the receiver a stream with a loss, a
// duplicate, a late datagram, a stray of another trial and a short one.
func TestReceiverAccounting(t *testing.T) {
	r := newReceiver(7, time.Now())
	ms := time.Millisecond
	for _, d := range [][]byte{
		datagram(7, 0, 0), datagram(7, 1, 0), datagram(7, 3, 0), // 2 is late
		datagram(7, 3, 0),      // duplicate
		datagram(7, 2, 0),      // reordered
		datagram(9, 4, 0),      // another trial's
		datagram(7, 5, 0)[:10], // too short to be a probe
		datagram(7, 1<<40, 0),  // a sequence number no trial reaches
		datagram(7, 70000, 0),  // far ahead: grows the bitmap
	} {
		r.account(d, 2*ms)
	}
	res := r.result(Trial{Profile: Fixed(64)}, 6, time.Second)
	// 4 (another trial's) and 5 (short) never arrived; 70000 is a stray
	// beyond what was sent, so it is neither received nor lost.
	want := Result{Profile: "64", Sent: 6, Received: 4, Lost: 2, Duplicates: 1, Reordered: 1,
		SentPPS: 6, ReceivedPPS: 4, LossPercent: 200.0 / 6}
	lat := res.Latency
	res.Latency = Latency{}
	if res != want {
		t.Errorf("got %+v\nwant %+v", res, want)
	}
	if lat.Samples != 5 || lat.P50 < 2*ms*97/100 || lat.P50 > 2*ms*103/100 {
		t.Errorf("latency %+v, want 5 samples (every fresh probe) of 2ms", lat)
	}
}

type here struct{}

func (here) Do(fn func() error) error { return fn() }

// TestLoopbackTrial runs paced trials over loopback: everything sent
// arrives, at the offered rate, in order, with the profile's sizes.
func TestLoopbackTrial(t *testing.T) {
	p, err := Open(here{}, here{}, netip.MustParseAddrPort("127.0.0.1:47119"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, prof := range []Profile{Fixed(64), IMIX(1518)} {
		res, err := p.Run(context.Background(), Trial{Profile: prof, PPS: 20000, Duration: 300 * time.Millisecond, Drain: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %+v", prof.Name, res)
		if res.Sent < 5000 || res.Sent > 6100 {
			t.Errorf("%s: sent %d in 300 ms at 20000/s", prof.Name, res.Sent)
		}
		if res.Lost != 0 || res.Received != res.Sent || res.Duplicates != 0 || res.Reordered != 0 {
			t.Errorf("%s: loopback lost or mixed datagrams: %+v", prof.Name, res)
		}
		if res.Latency.Samples != res.Received || res.Latency.P50 <= 0 || res.Latency.Max > time.Second {
			t.Errorf("%s: latency %+v", prof.Name, res.Latency)
		}
	}
	// Flat out: something arrives and the rate is reported.
	res, err := p.Run(context.Background(), Trial{Profile: Fixed(1400), Duration: 100 * time.Millisecond, Drain: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent == 0 || res.Received == 0 || res.SentPPS <= 0 {
		t.Errorf("flat out: %+v", res)
	}
	if _, err := p.Run(context.Background(), Trial{Profile: Profile{Name: "none"}, Duration: time.Second}); err == nil {
		t.Error("a profile without frames was run")
	}
}

// FuzzAccount: whatever arrives on the receiver's port, counting neither
// panics nor counts more new datagrams than distinct sequence numbers.
func FuzzAccount(f *testing.F) {
	f.Add(datagram(7, 0, 0))
	f.Add(datagram(7, maxSeq-1, time.Hour))
	f.Add([]byte{0, 7})
	f.Fuzz(func(t *testing.T, d []byte) {
		r := newReceiver(7, time.Now())
		r.account(d, time.Millisecond)
		r.account(d, time.Millisecond)
		res := r.result(Trial{Profile: Fixed(64)}, 1<<16, time.Second)
		if res.Received > 1 || res.Duplicates > 1 || res.Latency.Samples > 1 {
			t.Fatalf("one datagram twice: %+v", res)
		}
	})
}
