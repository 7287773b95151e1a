package afxdp

import (
	"bytes"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xdpsec/xdpsec/offload/afxdp/tun"
	"github.com/xdpsec/xdpsec/offload/afxdp/xsk"
)

// LANOutput is where decrypted packets for the LAN leave (Options.LANOutput).
//
// With LANOutputAFXDP a worker writes each one into a frame of its LAN
// socket, addressed to the next hop from the FIB. In copy mode (every
// virtual NIC) the kernel then builds one skb per packet for it, and the
// host behind the LAN coalesces them again with GRO.
//
// With LANOutputTUN it writes TCP data (tun.Coalescer.AddTCP) to the TUN
// port instead, consecutive segments of one flow merged into one
// super-packet of up to 64 KiB (tun.Coalescer, GRO's rules), and the
// gateway's stack forwards it to the LAN as the one skb a NIC driver's
// GRO would have made: one skb and one forwarding decision per 64 KiB
// instead of per packet. The stack does the next hop, the TTL and the MTU
// then (it must forward: the gateway's ip_forward; IPv6 packets take the
// LAN socket where IPv6 is not forwarded). Everything else (UDP, ICMP,
// pure ACKs) still takes the LAN socket: written one by one to the TUN
// port it cost a system call each, 0.6x-0.8x the UDP rates.
type LANOutput string

const (
	// LANOutputAuto picks LANOutputTUN where the data plane has a TUN
	// port, forwards, and its LAN port is a virtual NIC (veth, virtio),
	// on which AF_XDP works in copy mode only; else LANOutputAFXDP.
	LANOutputAuto  LANOutput = "auto"
	LANOutputAFXDP LANOutput = "af_xdp"
	LANOutputTUN   LANOutput = "tun"
)

// copyModeDrivers are the LAN drivers whose AF_XDP is copy mode only, on
// which LANOutputAuto writes to the TUN port.
var copyModeDrivers = []string{"veth", "virtio_net"}

// chooseLANOutput settles Options.LANOutput for LAN port lan, once the TUN
// port is open.
func (d *Dataplane) chooseLANOutput(want LANOutput, lan string) (LANOutput, error) {
	switch want {
	case LANOutputAFXDP:
		return LANOutputAFXDP, nil
	case LANOutputTUN:
		if d.tun == nil {
			return "", fmt.Errorf("afxdp: lan output tun needs a tun port")
		}
		if !forwarding() {
			return "", fmt.Errorf("afxdp: lan output tun needs IPv4 forwarding (net.ipv4.ip_forward) on the gateway")
		}
		d.tunV6 = forwardingV6()
		return LANOutputTUN, nil
	case LANOutputAuto, "":
	default:
		return "", fmt.Errorf("afxdp: lan output %q: want auto, af_xdp or tun", want)
	}
	if d.tun == nil || !d.tun.Offload() || !forwarding() {
		return LANOutputAFXDP, nil
	}
	drv, err := driverName(lan)
	if err != nil {
		return LANOutputAFXDP, nil // unknown: the path that works everywhere
	}
	for _, c := range copyModeDrivers {
		if drv == c {
			d.tunV6 = forwardingV6()
			return LANOutputTUN, nil
		}
	}
	return LANOutputAFXDP, nil
}

// forwarding reports whether this network namespace forwards IPv4.
func forwarding() bool { return sysctlOn("/proc/sys/net/ipv4/ip_forward") }

// forwardingV6 reports whether this network namespace forwards IPv6.
func forwardingV6() bool { return sysctlOn("/proc/sys/net/ipv6/conf/all/forwarding") }

func sysctlOn(path string) bool {
	b, err := os.ReadFile(path)
	return err == nil && bytes.Equal(bytes.TrimSpace(b), []byte("1"))
}

// ethtoolDrvInfo is the head of struct ethtool_drvinfo.
type ethtoolDrvInfo struct {
	cmd    uint32
	driver [32]byte
	rest   [160]byte
}

// driverName asks ethtool (ETHTOOL_GDRVINFO) for the driver of ifname.
func driverName(ifname string) (string, error) {
	info := ethtoolDrvInfo{cmd: unix.ETHTOOL_GDRVINFO}
	if err := xsk.Ethtool(ifname, unsafe.Pointer(&info)); err != nil {
		return "", fmt.Errorf("%s: driver info: %w", ifname, err)
	}
	return unix.ByteSliceToString(info.driver[:]), nil
}

// LANOutput reports where decrypted packets for the LAN leave.
func (d *Dataplane) LANOutput() LANOutput { return d.lanOut }

// Paths names the path each direction of each port takes, for `xdpsecctl
// stats`: "wan" and "lan" are AF_XDP in both directions (with the
// sockets' mode), but for "lan_out", which may be the TUN port.
func (d *Dataplane) Paths() map[string]string {
	mode := "af_xdp"
	if len(d.socks) > 0 {
		mode = "af_xdp " + d.socks[0].Mode().String()
	}
	out := mode
	if d.lanOut == LANOutputTUN {
		out = "tun (gro)"
	}
	return map[string]string{"wan": mode, "lan_in": mode, "lan_out": out}
}

// newCoalescer returns the TUN coalescer of a worker when decrypted
// packets leave through the TUN port, else nil.
func (d *Dataplane) newCoalescer() (*tun.Coalescer, error) {
	if d.lanOut != LANOutputTUN {
		return nil, nil
	}
	return tun.NewCoalescer(d.tun)
}
