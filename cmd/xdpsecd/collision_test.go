package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/xdpsec/xdpsec/internal/netlab"
)

// TestRekeyCollision makes both xdpsecd rekey the same CHILD SA at once
// (RFC 7296 2.8.1), round after round, with traffic flowing: the nonces
// decide, the redundant SAs are deleted, and afterwards both ends hold
// exactly one SA pair, the same one, with the traffic through it
// unharmed.
//
// "At once" is made certain rather than hoped for: the lab's links have
// no delay (this kernel has no netem) and timers that fire together
// collide only now and then. So for each round both gateways' IKE
// datagrams are held back on their WAN egress (ESP passes) and both are
// told to rekey. Once each has sent its request into the hold, gwA's is
// lifted: its retransmission reaches gwB, whose answer stays held. Then
// gwB's is lifted: its retransmission reaches gwA, which has no answer
// yet either. Each end has taken the other's request while its own was
// out, which is what a collision is.
func TestRekeyCollision(t *testing.T) {
	netlab.RequireRoot(t)
	bins := buildBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	lab := netlab.NewTestLab(t, netlab.LabOptions{Prefix: netlab.RandomPrefix("xc"), NoGatewayRoutes: true})
	conn := xdpsecConn{ike: lcIKE, esp: lcESP, dataplane: "afxdp", ikeExtra: "retransmit_timeout: 500ms, retransmit_tries: 4"}
	a, b := conn, conn
	a.startAction, b.startAction = "start", "none"
	dA, dB, dmA, dmB := startPair(t, bins, lab, a, b)
	// collisions counts the lines in which either engine reports a lost
	// collision (the loser deletes its redundant SA).
	collisions := func() int {
		n := 0
		for _, dm := range []*daemon{dmA, dmB} {
			n += strings.Count(dm.logs.String(), "rekey collision lost")
		}
		return n
	}
	traffic := startTraffic(t, ctx, lab)
	r := newRekeyTracker(t, &dA, &dB, false)
	holdA, holdB := newIKEHold(t, lab.GwA, "wan0"), newIKEHold(t, lab.GwB, "wan0")
	const rounds = 3
	for round := range rounds {
		before := collisions()
		holdA.on(t)
		holdB.on(t)
		var wg sync.WaitGroup
		for _, d := range []labDir{dA, dB} {
			wg.Go(func() {
				// One end loses, and its command may say so: the
				// winner's rekey covers it.
				if out, code := ctl(t, bins, d.socket, "rekey", "s2s/net"); code != 0 {
					t.Logf("round %d: xdpsecctl rekey on %s: exit %d: %s", round, d.socket, code, strings.TrimSpace(out))
				}
			})
		}
		deadline := time.Now().Add(10 * time.Second)
		for holdA.held() == 0 || holdB.held() == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: rekey requests held: gwA %d, gwB %d after 10s", round, holdA.held(), holdB.held())
			}
			time.Sleep(20 * time.Millisecond)
		}
		// gwA's retransmission reaches gwB, which answers into its
		// hold: gwB has now taken gwA's request while its own is out.
		holdA.off()
		for holdB.responses() == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: gwB answered nothing within 10s", round)
			}
			time.Sleep(10 * time.Millisecond)
		}
		// gwB's next retransmission reaches gwA, whose own request is
		// still unanswered (gwB's answers, resent from its cache, stay
		// held): gwA takes gwB's request and answers it.
		holdB.responsesOnly(t)
		for holdB.responses() < 2 {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: gwA retransmitted nothing within 10s", round)
			}
			time.Sleep(10 * time.Millisecond)
		}
		// gwA's next retransmission, a full interval later, gets its
		// answer: both ends hold both answers and compare nonces.
		holdB.off()
		wg.Wait()
		r.waitFor(15*time.Second, fmt.Sprintf("colliding rekey %d", round+1), func() bool {
			return r.childRekeys > round && collisions() > before
		})
		waitSettled(t, bins, dA, &dB, nil, 15*time.Second)
	}
	ca, cb := r.lastChildA, r.lastChildB
	t.Logf("%d collisions in %d CHILD rekeys", collisions(), r.childRekeys)
	traffic.checkNoLoss(t, fmt.Sprintf("%d colliding CHILD rekeys", r.childRekeys))
	// One lineage with one count, whichever end won each collision.
	if ca.Rekeys != cb.Rekeys || ca.Rekeys < rounds {
		t.Errorf("rekeys counters after colliding rekeys: gwA %d, gwB %d; want equal and >= %d", ca.Rekeys, cb.Rekeys, rounds)
	}
}

// ikeHold drops the IKE datagrams (UDP port 500: the lab has no NAT) a
// gateway sends on one link, while it is on, and counts them.
type ikeHold struct {
	ns      *netlab.NS
	ifindex int
	// dropAll drops every IKE datagram, dropResponses only responses.
	dropAll, dropResponses *ebpf.Program
	count                  *ebpf.Map
	link                   link.Link
}

func newIKEHold(t *testing.T, ns *netlab.NS, ifname string) *ikeHold {
	t.Helper()
	l, err := ns.Handle().LinkByName(ifname)
	if err != nil {
		t.Fatalf("ike hold: %v", err)
	}
	h := &ikeHold{ns: ns, ifindex: l.Attrs().Index}
	h.count, err = ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 2})
	if err != nil {
		t.Fatalf("ike hold map: %v", err)
	}
	t.Cleanup(func() { h.count.Close() })
	for _, p := range []struct {
		prog          **ebpf.Program
		responsesOnly bool
	}{{&h.dropAll, false}, {&h.dropResponses, true}} {
		*p.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{
			Name: "ike_hold", Type: ebpf.SchedCLS, License: "GPL",
			Instructions: dropIKE(h.count.FD(), 500, p.responsesOnly),
		})
		if err != nil {
			t.Fatalf("ike hold program: %v", err)
		}
	}
	t.Cleanup(func() { h.off(); h.dropAll.Close(); h.dropResponses.Close() })
	return h
}

// on attaches the drop program to the link's egress (tcx) and resets
// the count.
func (h *ikeHold) on(t *testing.T) {
	t.Helper()
	for key := range uint32(2) {
		if err := h.count.Put(key, uint64(0)); err != nil {
			t.Fatalf("ike hold: %v", err)
		}
	}
	err := h.ns.Do(func() error {
		var err error
		h.link, err = link.AttachTCX(link.TCXOptions{Interface: h.ifindex, Program: h.dropAll, Attach: ebpf.AttachTCXEgress})
		return err
	})
	if err != nil {
		t.Fatalf("ike hold attach: %v", err)
	}
}

// responsesOnly lets requests pass from now on.
func (h *ikeHold) responsesOnly(t *testing.T) {
	t.Helper()
	if err := h.link.Update(h.dropResponses); err != nil {
		t.Fatalf("ike hold update: %v", err)
	}
}

func (h *ikeHold) off() {
	if h.link != nil {
		h.link.Close()
		h.link = nil
	}
}

// held is how many datagrams were dropped since on.
func (h *ikeHold) held() uint64 { return h.counter(0) }

// responses is how many of them were responses.
func (h *ikeHold) responses() uint64 { return h.counter(1) }

func (h *ikeHold) counter(key uint32) uint64 {
	var n uint64
	if err := h.count.Lookup(key, &n); err != nil {
		return 0
	}
	return n
}

// dropIKE is, for a tc program,
//
//	if (eth.proto == IPv4 && ip.ihl == 5 && ip.proto == UDP && udp.dest == port) {
//		response = packet holds the IKE flags && (ike.flags & RESPONSE);
//		if (responsesOnly && !response)
//			return TC_ACT_OK;
//		count[0]++;
//		if (response)
//			count[1]++;
//		return TC_ACT_SHOT;
//	}
//	return TC_ACT_OK;
func dropIKE(countFD int, port uint16, responsesOnly bool) asm.Instructions {
	const ikeFlags = 14 + 20 + 8 + 19 // the IKE header's flags octet
	count := func(key int32, label string) asm.Instructions {
		return asm.Instructions{
			asm.Mov.Imm(asm.R1, key),
			asm.StoreMem(asm.RFP, -4, asm.R1, asm.Word),
			asm.LoadMapPtr(asm.R1, countFD),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, label),
			asm.Mov.Imm(asm.R1, 1),
			asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
		}
	}
	insns := asm.Instructions{
		asm.LoadMem(asm.R6, asm.R1, 76, asm.Word), // skb->data
		asm.LoadMem(asm.R7, asm.R1, 80, asm.Word), // skb->data_end
	}
	insns = append(insns, netlab.MatchIPv4UDPPort(asm.R6, asm.R7, port, "pass")...)
	// R8 = the Response flag (0 where the packet is too short for it).
	insns = append(insns,
		asm.Mov.Imm(asm.R8, 0),
		asm.Mov.Reg(asm.R4, asm.R6),
		asm.Add.Imm(asm.R4, ikeFlags+1),
		asm.JGT.Reg(asm.R4, asm.R7, "flagged"),
		asm.LoadMem(asm.R8, asm.R6, ikeFlags, asm.Byte),
		asm.And.Imm(asm.R8, 0x20),
	)
	if responsesOnly {
		insns = append(insns, asm.JEq.Imm(asm.R8, 0, "pass").WithSymbol("flagged"))
	} else {
		insns = append(insns, asm.Mov.Imm(asm.R1, 0).WithSymbol("flagged")) // a no-op that carries the label
	}
	insns = append(insns, count(0, "drop")...)
	insns = append(insns, asm.JEq.Imm(asm.R8, 0, "drop"))
	insns = append(insns, count(1, "drop")...)
	return append(insns,
		asm.Mov.Imm(asm.R0, 2).WithSymbol("drop"), // TC_ACT_SHOT
		asm.Return(),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("pass"), // TC_ACT_OK
		asm.Return(),
	)
}
