package ike

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/xdpsec/xdpsec/ike/message"
	"github.com/xdpsec/xdpsec/internal/netlab"
)

// TestShutdownDeletesManySAs brings up 500 IKE SAs between two engines and
// stops one; the path loses the first Delete of every SA. The stopping
// end's paced, retransmitted Deletes leave the other with no IKE SA and
// every CHILD SA removed from its data plane. The stopping end keeps the
// default retransmission timers, whose first wait (4 s) is longer than
// the whole shutdown grace.
func TestShutdownDeletesManySAs(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	const n = 500
	ca, cb := siteConns(t, lab.V4, "aes128gcm16-prfsha256-x25519", "aes128gcm16")
	var as, bs []Conn
	for i := range n {
		a, b := ca, cb
		a.Name, b.Name = fmt.Sprintf("c%03d", i), fmt.Sprintf("c%03d", i)
		a.LocalID = mustID(t, "fqdn", fmt.Sprintf("a%03d.example.com", i))
		a.RemoteID = mustID(t, "fqdn", fmt.Sprintf("b%03d.example.com", i))
		b.LocalID, b.RemoteID = a.RemoteID, a.LocalID
		as, bs = append(as, a), append(bs, b)
	}
	var (
		mu   sync.Mutex
		seen = map[uint64]bool{}
	)
	a := startEngine(t, lab.GwA, "gwA", Options{}, 0x1000)
	b := startEngine(t, lab.GwB, "gwB", fastOpts(), 0x100000, func(e *Engine) {
		e.dropHook = func(h message.Header) bool {
			if h.Exchange != message.ExchangeInformational || h.IsResponse() {
				return false
			}
			mu.Lock()
			defer mu.Unlock()
			first := !seen[h.SPIi]
			seen[h.SPIi] = true
			return first
		}
	})
	a.e.SetConns(as)
	b.e.SetConns(bs)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	work := make(chan string)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for name := range work {
				if err := a.e.Initiate(ctx, name); err != nil {
					errs <- fmt.Errorf("%s: %w", name, err)
				}
			}
		})
	}
	for _, c := range as {
		work <- c.Name
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := len(b.e.SAs()); got != n {
		t.Fatalf("%d IKE SAs at gwB, want %d", got, n)
	}
	installed := len(b.inst.children())

	start := time.Now()
	a.stop()
	t.Logf("gwA stopped in %v", time.Since(start).Round(time.Millisecond))
	waitFor(t, 2*time.Second, "gwB to have no IKE SA left", func() bool { return len(b.e.SAs()) == 0 })
	if left := installed - len(b.inst.deletedList()); left != 0 {
		t.Errorf("gwB's data plane keeps %d of %d CHILD SAs", left, installed)
	}
	if st := a.e.Stats(); st.Retransmits < n {
		t.Errorf("gwA retransmitted %d Deletes, want at least %d (each first one was lost)", st.Retransmits, n)
	}
}
