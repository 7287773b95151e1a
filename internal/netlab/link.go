package netlab

import (
	"fmt"
	"net"
	"net/netip"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Veth describes a veth pair between two namespaces.
type Veth struct {
	A, B         *NS
	AName, BName string
	// MTU of both ends; 0 keeps the kernel default (1500).
	MTU int
}

// AddVeth creates the pair and sets both ends up. The pair is created
// from A's netlink socket with the peer placed straight into B, so no
// interface ever appears in the caller's namespace (where names of
// parallel labs could collide).
func AddVeth(v Veth) error {
	la := netlink.LinkAttrs{Name: v.AName, MTU: v.MTU}
	link := &netlink.Veth{
		LinkAttrs:     la,
		PeerName:      v.BName,
		PeerNamespace: netlink.NsFd(v.B.handle),
		PeerMTU:       uint32(v.MTU),
	}
	if err := v.A.nl.LinkAdd(link); err != nil {
		return fmt.Errorf("netlab: veth %s/%s -- %s/%s: %w", v.A.Name, v.AName, v.B.Name, v.BName, err)
	}
	if err := v.A.LinkUp(v.AName); err != nil {
		return err
	}
	return v.B.LinkUp(v.BName)
}

// DelLink deletes the named link; deleting one end of a veth pair deletes
// both.
func (n *NS) DelLink(name string) error {
	l, err := n.nl.LinkByName(name)
	if err != nil {
		return fmt.Errorf("netlab: %s: link %s: %w", n.Name, name, err)
	}
	if err := n.nl.LinkDel(l); err != nil {
		return fmt.Errorf("netlab: %s: delete %s: %w", n.Name, name, err)
	}
	return nil
}

// LinkNames lists the names of all links in the namespace.
func (n *NS) LinkNames() ([]string, error) {
	links, err := n.nl.LinkList()
	if err != nil {
		return nil, fmt.Errorf("netlab: %s: list links: %w", n.Name, err)
	}
	names := make([]string, 0, len(links))
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	return names, nil
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}

// ethtoolValue is struct ethtool_value.
type ethtoolValue struct {
	cmd  uint32
	data uint32
}

// ifreqData is struct ifreq with ifr_data set.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// SetTxChecksumOffload switches TX checksum offload of link on or off
// (ETHTOOL_STXCSUM, what `ethtool -K link tx off` does). A veth with it on
// hands frames to the peer with the L4 checksum left for "later"; a
// userspace data plane on the peer (AF_XDP copies frames before anyone
// completes them) must complete them itself, which a real wire never asks
// of it.
func (n *NS) SetTxChecksumOffload(link string, on bool) error {
	return n.setEthtoolFlag(link, unix.ETHTOOL_STXCSUM, on)
}

// TxChecksumOffload reports whether TX checksum offload of link is on.
func (n *NS) TxChecksumOffload(link string) (bool, error) {
	return n.ethtoolFlag(link, unix.ETHTOOL_GTXCSUM)
}

// SetGRO switches generic receive offload of link on or off (ETHTOOL_SGRO,
// `ethtool -K link gro on`). On a veth, GRO on also gives the receiving
// end a NAPI poll loop, as a NIC driver has, which coalesces a burst of
// one flow's segments into one large packet before the stack sees it.
func (n *NS) SetGRO(link string, on bool) error {
	return n.setEthtoolFlag(link, unix.ETHTOOL_SGRO, on)
}

// GRO reports whether generic receive offload of link is on.
func (n *NS) GRO(link string) (bool, error) {
	return n.ethtoolFlag(link, unix.ETHTOOL_GGRO)
}

// setEthtoolFlag runs an ethtool set command whose value is on or off.
func (n *NS) setEthtoolFlag(link string, cmd uint32, on bool) error {
	val := ethtoolValue{cmd: cmd}
	if on {
		val.data = 1
	}
	return n.ethtool(link, &val)
}

// ethtoolFlag runs an ethtool get command whose value is on or off.
func (n *NS) ethtoolFlag(link string, cmd uint32) (bool, error) {
	val := ethtoolValue{cmd: cmd}
	err := n.ethtool(link, &val)
	return val.data != 0, err
}

// ethtool runs one SIOCETHTOOL request with an ethtool_value on link.
func (n *NS) ethtool(link string, val *ethtoolValue) error {
	return n.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("netlab: ethtool socket: %w", err)
		}
		defer unix.Close(fd)
		req := ifreqData{data: unsafe.Pointer(val)}
		copy(req.name[:], link)
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&req))); e != 0 {
			return fmt.Errorf("netlab: ethtool %#x on %s in %s: %w", val.cmd, link, n.Name, e)
		}
		return nil
	})
}
