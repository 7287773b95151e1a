package frontdoor

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpsec/xdpsec/internal/netlab"
	"github.com/xdpsec/xdpsec/loader"
	"github.com/xdpsec/xdpsec/offload"
	"github.com/xdpsec/xdpsec/offload/none"
)

// failingKernel refuses every SA, as a kernel without ESP does.
type failingKernel struct{ *none.Dataplane }

func (failingKernel) AddSA(context.Context, offload.SA) error { return errors.New("esp4 not loaded") }

var (
	gwAddr   = netip.MustParseAddr("192.0.2.1")
	peerAddr = netip.MustParseAddr("192.0.2.2")
)

// frontLab is a gateway namespace with the front door on wan0 and a peer
// namespace on the other end of the veth.
func frontLab(t *testing.T, kernel offload.Dataplane, steering Steering) (*Dataplane, *netlab.NS) {
	t.Helper()
	netlab.RequireRoot(t)
	prefix := netlab.RandomPrefix("xfd")
	gw := netlab.NewTestNS(t, prefix, "gw")
	peer := netlab.NewTestNS(t, prefix, "peer")
	if err := netlab.AddVeth(netlab.Veth{A: gw, AName: "wan0", B: peer, BName: "eth0", MTU: 1500}); err != nil {
		t.Fatal(err)
	}
	if err := gw.AddAddr("wan0", netip.PrefixFrom(gwAddr, 24)); err != nil {
		t.Fatal(err)
	}
	if err := peer.AddAddr("eth0", netip.PrefixFrom(peerAddr, 24)); err != nil {
		t.Fatal(err)
	}
	var d *Dataplane
	err := gw.Do(func() error {
		var err error
		d, err = New(kernel, Options{WAN: "wan0", Instance: prefix, Steering: steering})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d, peer
}

func inboundSA(spi uint32) offload.SA {
	return offload.SA{Conn: "s2s", Child: "net", SPI: spi, Dir: offload.In, Src: peerAddr, Dst: gwAddr, Mode: offload.Tunnel,
		Encr: 20, KeyBits: 256, EncrKey: make(offload.Key, 36)}
}

// sendESP sends a raw ESP packet of spi from the peer to the gateway.
func sendESP(t *testing.T, peer *netlab.NS, spi uint32) {
	t.Helper()
	err := peer.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ESP)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		b := make([]byte, 64)
		b[0], b[1], b[2], b[3] = byte(spi>>24), byte(spi>>16), byte(spi>>8), byte(spi)
		b[7] = 1
		return unix.Sendto(fd, b, 0, &unix.SockaddrInet4{Addr: gwAddr.As4()})
	})
	if err != nil {
		t.Fatalf("send esp: %v", err)
	}
}

func waitCounter(t *testing.T, d *Dataplane, name string, want uint64) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		wan, _, err := d.XDPCounters()
		if err != nil {
			t.Fatal(err)
		}
		if wan[name] >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("xdp counter %s = %d, want %d (all: %v)", name, wan[name], want, wan)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFrontDoor: inbound SAs are known to XDP exactly while the kernel has
// them; ESP for other SPIs is dropped and counted, ours goes on to the
// kernel (here over the CPU map); Close leaves no pins.
func TestFrontDoor(t *testing.T) {
	ctx := context.Background()
	d, peer := frontLab(t, none.New(), PerSA)
	const ours, forged = 0xc0de0001, 0xbad00001
	if err := d.AddSA(ctx, inboundSA(ours)); err != nil {
		t.Fatal(err)
	}
	out := inboundSA(0xc0de0002)
	out.Dir, out.Src, out.Dst = offload.Out, gwAddr, peerAddr
	if err := d.AddSA(ctx, out); err != nil {
		t.Fatal(err)
	}
	if a, err := d.ld.SA(ours, gwAddr); err != nil || a != loader.SAXfrm {
		t.Fatalf("XDP SA entry: %v, %v; want the kernel's", a, err)
	}
	if _, err := d.ld.SA(out.SPI, peerAddr); !errors.Is(err, loader.ErrNotFound) {
		t.Errorf("outbound SA registered with XDP: %v", err)
	}
	sendESP(t, peer, forged)
	waitCounter(t, d, "drop_unknown_spi", 1)
	sendESP(t, peer, ours)
	waitCounter(t, d, "redirect_cpu", 1)

	if err := d.DelSA(ctx, ours, offload.In); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ld.SA(ours, gwAddr); !errors.Is(err, loader.ErrNotFound) {
		t.Errorf("XDP still knows the deleted SA: %v", err)
	}
	sendESP(t, peer, ours)
	waitCounter(t, d, "drop_unknown_spi", 2)

	dir := d.ld.PinDir()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("pins left in %s after Close: %v", dir, err)
	}
}

// TestFrontDoorKernelRefuses: an SA the kernel refuses never reaches XDP.
func TestFrontDoorKernelRefuses(t *testing.T) {
	d, _ := frontLab(t, failingKernel{none.New()}, Off)
	if err := d.AddSA(context.Background(), inboundSA(0xc0de0001)); err == nil {
		t.Fatal("AddSA succeeded with a refusing kernel")
	}
	if _, err := d.ld.SA(0xc0de0001, gwAddr); !errors.Is(err, loader.ErrNotFound) {
		t.Errorf("XDP knows an SA the kernel refused: %v", err)
	}
}

func TestUsableCPUs(t *testing.T) {
	all := usableCPUs(0)
	if len(all) == 0 {
		t.Fatal("no usable CPU")
	}
	if one := usableCPUs(1); len(one) != 1 || one[0] != all[0] {
		t.Errorf("usableCPUs(1) = %v, want the first of %v", one, all)
	}
	if more := usableCPUs(len(all) + 5); len(more) != len(all) {
		t.Errorf("asking for more CPUs than usable gave %v", more)
	}
}
