package streams

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/xdpsec/xdpsec/internal/netlab"
)

func TestCounter(t *testing.T) {
	for _, tc := range []struct {
		name    string
		arrived []uint64
		sent    uint64
		want    Result
	}{
		{"empty", nil, 0, Result{}},
		{"nothing-arrived", nil, 3, Result{Sent: 3, Missing: 3, Gaps: []Gap{{0, 2}}}},
		{"in-order", []uint64{0, 1, 2, 3}, 4, Result{Sent: 4, Received: 4, Unique: 4}},
		{"tail-lost", []uint64{0, 1}, 4, Result{Sent: 4, Received: 2, Unique: 2, Missing: 2, Gaps: []Gap{{2, 3}}}},
		{"head-lost", []uint64{2, 3}, 4, Result{Sent: 4, Received: 2, Unique: 2, Missing: 2, Gaps: []Gap{{0, 1}}}},
		{"holes", []uint64{0, 2, 5, 6, 9}, 10, Result{Sent: 10, Received: 5, Unique: 5, Missing: 5, Gaps: []Gap{{1, 1}, {3, 4}, {7, 8}}}},
		{"duplicate", []uint64{0, 1, 1, 2, 0}, 3, Result{Sent: 3, Received: 5, Unique: 3, Duplicates: 2}},
		// 1 overtaken by 2 and 3: one late arrival. A duplicate of an
		// old number is a duplicate, not another reordering.
		{"reordered", []uint64{0, 2, 3, 1, 1, 4}, 5, Result{Sent: 5, Received: 6, Unique: 5, Duplicates: 1, Reordered: 1}},
		{"swapped-pairs", []uint64{1, 0, 3, 2}, 4, Result{Sent: 4, Received: 4, Unique: 4, Reordered: 2}},
		{"late-fills-gap", []uint64{0, 3, 1}, 4, Result{Sent: 4, Received: 3, Unique: 3, Missing: 1, Reordered: 1, Gaps: []Gap{{2, 2}}}},
		{"stray-beyond-sent", []uint64{0, 1, 100}, 2, Result{Sent: 2, Received: 3, Unique: 3, Stray: 1}},
		// Word boundaries of the bitmap.
		{"bitmap-words", []uint64{63, 64, 127, 128}, 129, Result{Sent: 129, Received: 4, Unique: 4, Missing: 125, Gaps: []Gap{{0, 62}, {65, 126}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c Counter
			for _, s := range tc.arrived {
				c.Add(s)
			}
			got := c.Result(tc.sent)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Result(%d) after %v\n got %+v\nwant %+v", tc.sent, tc.arrived, got, tc.want)
			}
		})
	}
}

func TestCounterGapsBounded(t *testing.T) {
	var c Counter
	for s := uint64(0); s < 100; s += 2 {
		c.Add(s)
	}
	r := c.Result(100)
	if r.Missing != 50 || len(r.Gaps) != maxGaps {
		t.Fatalf("missing %d, %d gaps; want 50 and %d", r.Missing, len(r.Gaps), maxGaps)
	}
	if s := r.String(); !strings.HasSuffix(s, ", ...") {
		t.Errorf("String() does not say the list is cut: %s", s)
	}
}

// TestStreamsLoopback runs both streams over loopback inside a namespace:
// nothing can be lost there, so the accounting must come out exact.
func TestStreamsLoopback(t *testing.T) {
	ns := netlab.NewTestNS(t, "", "streams")
	lo := netip.MustParseAddr("127.0.0.1")
	u, err := StartUDP(UDPOptions{From: ns, To: ns, Dst: lo, Rate: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Stop(0) })
	tc, err := StartTCP(TCPOptions{From: ns, To: ns, Dst: lo, Rate: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Stop(0) })
	deadline := time.Now().Add(10 * time.Second)
	for u.Sent() < 300 || tc.Snapshot().Received < 200_000 {
		if time.Now().After(deadline) {
			t.Fatalf("streams did not progress: UDP %s; TCP %s", u.Snapshot(), tc.Snapshot())
		}
		time.Sleep(20 * time.Millisecond)
	}
	r := u.Stop(time.Second)
	if r.Sent < 300 || r.Missing != 0 || r.Duplicates != 0 || r.Stray != 0 || r.Unique != r.Sent {
		t.Errorf("UDP over loopback: %s", r)
	}
	tr := tc.Stop(5 * time.Second)
	if err := tr.Err(); err != nil || tr.Sent < 200_000 {
		t.Errorf("TCP over loopback: %s: %v", tr, err)
	}
	t.Logf("UDP: %s; TCP: %s", r, tr)
}
