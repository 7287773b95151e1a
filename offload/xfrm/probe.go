package xfrm

import (
	"errors"
	"fmt"
	"net"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ErrNoESP says the kernel cannot do ESP at all.
var ErrNoESP = errors.New("the kernel lacks ESP support (esp4 module / CONFIG_INET_ESP); use dataplane.mode: afxdp")

// Probe tells whether the kernel can do ESP: it adds a dummy AES-GCM ESP
// state in a fresh, empty network namespace (so nothing of the caller's
// is touched, and the kernel loads esp4/esp6 and the cipher on demand),
// then throws the namespace away. The error wraps ErrNoESP when the
// kernel refuses ESP or the algorithm, and says what else went wrong
// otherwise (e.g. no CAP_NET_ADMIN).
func Probe() error {
	// netns.New moves the thread into the fresh namespace.
	return onLockedThread(func() error {
		fresh, err := netns.New()
		if err != nil {
			return fmt.Errorf("probe esp: new namespace: %w", err)
		}
		defer fresh.Close()
		return probeIn(fresh)
	})
}

// onLockedThread runs fn on a thread of its own, which fn may move into
// another network namespace: afterwards the thread goes back to the
// caller's namespace and to the pool, or, should going back fail, the
// runtime discards it with its goroutine.
func onLockedThread(fn func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			ch <- fmt.Errorf("current network namespace: %w", err)
			return
		}
		defer orig.Close()
		err = fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		ch <- err
	}()
	return <-ch
}

func probeIn(ns netns.NsHandle) error {
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_XFRM)
	if err != nil {
		return fmt.Errorf("probe esp: %w", err)
	}
	defer h.Close()
	st := &netlink.XfrmState{
		Src: net.IPv4(192, 0, 2, 1), Dst: net.IPv4(192, 0, 2, 2),
		Proto: netlink.XFRM_PROTO_ESP, Mode: netlink.XFRM_MODE_TUNNEL, Spi: 0x100,
		Aead: &netlink.XfrmStateAlgo{Name: algGCM, Key: make([]byte, 20), ICVLen: aeadICVBits},
	}
	if err := h.XfrmStateAdd(st); err != nil {
		// EPROTONOSUPPORT: no ESP type (esp4 absent); ENOSYS/ENOENT:
		// the AEAD is unknown to the kernel's crypto API.
		if errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("%w: %w", ErrNoESP, err)
		}
		return fmt.Errorf("probe esp: %w", err)
	}
	return nil
}
