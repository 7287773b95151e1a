package afxdp

import (
	"fmt"
	"os/exec"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xdpsec/xdpsec/internal/netlab"
	"github.com/xdpsec/xdpsec/offload/afxdp/xsk"
)

// ethtoolChannels is struct ethtool_channels.
type ethtoolChannels struct {
	cmd                                         uint32
	maxRx, maxTx, maxOther, maxCombined         uint32
	rxCount, txCount, otherCount, combinedCount uint32
}

// setQueues gives the named veth n RX and TX queues (ethtool -L), through
// the ioctl rather than the ethtool binary, which the lab may lack.
func setQueues(ns *netlab.NS, ifname string, n uint32) error {
	return ns.Do(func() error {
		ch := ethtoolChannels{cmd: unix.ETHTOOL_GCHANNELS}
		if err := xsk.Ethtool(ifname, unsafe.Pointer(&ch)); err != nil {
			return fmt.Errorf("%s: get channels: %w", ifname, err)
		}
		ch.cmd = unix.ETHTOOL_SCHANNELS
		ch.rxCount, ch.txCount, ch.combinedCount = n, n, 0
		if err := xsk.Ethtool(ifname, unsafe.Pointer(&ch)); err != nil {
			return fmt.Errorf("%s: set channels to %d (max rx %d tx %d): %w", ifname, n, ch.maxRx, ch.maxTx, err)
		}
		return nil
	})
}

// TestTunnelMultiQueue runs the tunnel over two-queue veths: one socket
// per queue, one worker per CPU owning them, and several TCP flows that
// the veths spread over the queues.
func TestTunnelMultiQueue(t *testing.T) {
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	for _, x := range []struct {
		ns     *netlab.NS
		ifname string
	}{
		{lab.HostA, netlab.HostIf}, {lab.GwA, netlab.LANIf}, {lab.GwA, netlab.WANIf},
		{lab.GwB, netlab.WANIf}, {lab.GwB, netlab.LANIf}, {lab.HostB, netlab.HostIf},
	} {
		if err := setQueues(x.ns, x.ifname, 2); err != nil {
			t.Fatal(err)
		}
	}
	// Two workers would not share by default (sharingMinWorkers).
	opts := Options{DecryptSharing: SharingOn}
	a := startSiteWith(t, lab.GwA, lab.Prefix+"-gwA", opts)
	b := startSiteWith(t, lab.GwB, lab.Prefix+"-gwB", opts)
	install(t, lab.V4, a, b, newKeys(t, aes256gcm16), newKeys(t, aes256gcm16), nil)
	if len(a.dp.socks) != 4 {
		t.Fatalf("gwA has %d sockets, want 2 queues x 2 ports", len(a.dp.socks))
	}
	pingThrough(t, lab, lab.V4.HostB)
	if _, err := exec.LookPath("iperf3"); err != nil {
		t.Skip("iperf3 not installed")
	}
	// Eight flows each way: the hosts' veths hash them over both queues,
	// so every worker gets some (all on one queue: 2^-16).
	iperfArgs(t, lab, []string{"-P", "8"}, a, b)
	for _, s := range []*site{a, b} {
		per := s.dp.WorkerPackets()
		t.Logf("%s: packets per worker %v", s.ns.Name, per)
		if len(per) != 2 {
			t.Fatalf("%s: %d workers, want one per queue", s.ns.Name, len(per))
		}
		for i, n := range per {
			if n == 0 {
				t.Errorf("%s: worker %d received nothing", s.ns.Name, i)
			}
		}
	}
	// Each SA's ESP arrives on one queue (its home queue at the sender),
	// so one worker receives it; under load it shares the decryption of
	// its batches with the other (spread.go).
	for _, s := range []*site{a, b} {
		shared := s.dp.WorkerEvents()["decrypt_shared"]
		t.Logf("%s: %d packets decrypted for the other worker", s.ns.Name, shared)
		if shared == 0 {
			t.Errorf("%s: one SA's decryption stayed on one worker", s.ns.Name)
		}
	}
	// Both workers encrypt each SA's packets, but they leave in sequence
	// order through the SA's one home queue, so the peer sees them in
	// order on one queue: nothing may fall out of the default replay
	// window (1024). Sent on both queues, the peer's two workers drifted
	// apart by thousands of packets.
	for _, s := range []*site{a, b} {
		if n := drops(t, s)["replay"]; n != 0 {
			t.Errorf("%s: %d replay drops under parallel workers", s.ns.Name, n)
		}
	}
}
