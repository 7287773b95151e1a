package xsk

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ethtoolChannels is struct ethtool_channels.
type ethtoolChannels struct {
	Cmd           uint32
	MaxRx         uint32
	MaxTx         uint32
	MaxOther      uint32
	MaxCombined   uint32
	RxCount       uint32
	TxCount       uint32
	OtherCount    uint32
	CombinedCount uint32
}

// ifreqData is struct ifreq with ifr_data set.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// Ethtool runs one SIOCETHTOOL request on the interface ifname in the
// calling thread's network namespace: data points to the ethtool
// structure, its cmd field set. It returns the ioctl's errno as is.
func Ethtool(ifname string, data unsafe.Pointer) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("ethtool: socket: %w", err)
	}
	defer unix.Close(fd)
	req := ifreqData{data: data}
	copy(req.name[:], ifname)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&req))); e != 0 {
		return e
	}
	return nil
}

// RXQueues returns the number of RX queues of the interface with index
// ifindex that can receive packets, looked up in the calling thread's
// network namespace: the rx plus combined channel counts from ethtool
// (SIOCETHTOOL, ETHTOOL_GCHANNELS), which count the queues in use, or
// IFLA_NUM_RX_QUEUES from netlink for drivers without ethtool channels.
// It does not read
// /sys/class/net/<if>/queues, because sysfs shows the namespace it was
// mounted in, not the caller's.
//
// IFLA_NUM_RX_QUEUES alone would be wrong where a driver allocates more
// queues than it uses: a veth allocates one per possible CPU but, unless
// created with an explicit queue count, uses only one, and binding to the
// others fails with EINVAL.
func RXQueues(ifindex int) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("rx queues: socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("")
	if err != nil {
		return 0, fmt.Errorf("rx queues: %w", err)
	}
	ifr.SetUint32(uint32(ifindex))
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFNAME, ifr); err != nil {
		return 0, fmt.Errorf("rx queues of ifindex %d: name: %w", ifindex, err)
	}
	ch := ethtoolChannels{Cmd: unix.ETHTOOL_GCHANNELS}
	err = Ethtool(ifr.Name(), unsafe.Pointer(&ch))
	switch {
	case err == nil && ch.RxCount+ch.CombinedCount > 0:
		return int(ch.RxCount + ch.CombinedCount), nil
	case err != nil && !errors.Is(err, unix.EOPNOTSUPP):
		return 0, fmt.Errorf("rx queues of %s: ethtool channels: %w", ifr.Name(), err)
	}
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return 0, fmt.Errorf("rx queues of %s: %w", ifr.Name(), err)
	}
	if n := l.Attrs().NumRxQueues; n > 0 {
		return n, nil
	}
	return 0, fmt.Errorf("rx queues of %s: unknown", ifr.Name())
}

// OpenAll opens one socket per RX queue of the interface with index
// ifindex (see RXQueues), socket i bound to queue i, each with its own
// UMEM sized by cfg. Like Open, it works in the calling thread's network
// namespace. On error it closes the sockets it opened.
func OpenAll(ifindex int, cfg Config) ([]*Socket, error) {
	n, err := RXQueues(ifindex)
	if err != nil {
		return nil, err
	}
	socks := make([]*Socket, 0, n)
	for q := range n {
		s, err := Open(ifindex, q, cfg)
		if err != nil {
			return nil, errors.Join(err, CloseAll(socks))
		}
		socks = append(socks, s)
	}
	return socks, nil
}

// CloseAll closes every socket and returns their errors joined.
func CloseAll(socks []*Socket) error {
	var errs []error
	for _, s := range socks {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}
