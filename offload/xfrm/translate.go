package xfrm

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xdpsec/xdpsec/offload"
)

// The AEAD key's salt (RFC 4106 4) and the ICV length in bits.
const (
	aeadSaltLen = 4
	aeadICVBits = 128
)

// Kernel algorithm names (crypto API templates) for the transforms.
const (
	algGCM    = "rfc4106(gcm(aes))"
	algChaCha = "rfc7539esp(chacha20,poly1305)"
	algCBC    = "cbc(aes)"
)

// legacyReplayMax is the largest window the kernel's legacy (non-ESN)
// replay state holds: a 32-bit bitmap. Larger windows need the
// replay_esn attribute even without ESN, as strongSwan does.
const legacyReplayMax = 32

// esnDefaultWindow is used when ESN is on but no window was asked for:
// the kernel refuses ESN without a replay_esn window.
const esnDefaultWindow = 32

// Offload types as the configuration and the counters name them.
const (
	OffloadCrypto = "crypto"
	OffloadPacket = "packet"
)

// offloadAttr is XFRMA_OFFLOAD_DEV, which netlink v1.3.1's XfrmState has
// no field for.
type offloadAttr struct {
	ifindex int
	in      bool // XFRM_OFFLOAD_INBOUND
	packet  bool // XFRM_OFFLOAD_PACKET; crypto offload otherwise
}

func (o *offloadAttr) kind() string {
	if o == nil {
		return ""
	}
	if o.packet {
		return OffloadPacket
	}
	return OffloadCrypto
}

// stateSpec is what AddSA asks the kernel for: the state as netlink
// describes it plus what netlink v1.3.1 cannot express (replay_esn without
// ESN, the offload device), encoded by encodeNewSA.
type stateSpec struct {
	st netlink.XfrmState
	// replayESN, when non-zero, is the window sent as XFRMA_REPLAY_ESN_VAL
	// (always with ESN; without ESN for windows the legacy state cannot
	// hold). st.ReplayWindow is then 0, as the kernel requires.
	replayESN uint32
	offload   *offloadAttr
}

// xlat holds what translation needs beyond the SA itself.
type xlat struct {
	reqid int
	mark  *netlink.XfrmMark
	ifid  int
}

func ipOf(a netip.Addr) net.IP { return net.IP(a.Unmap().AsSlice()) }

func ipNetOf(p netip.Prefix) *net.IPNet {
	p = p.Masked()
	return &net.IPNet{IP: ipOf(p.Addr()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// seconds rounds a lifetime up: the kernel counts whole seconds and 0
// would mean no limit at all.
func seconds(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	return uint64((d + time.Second - 1) / time.Second)
}

func xfrmMode(m offload.Mode) (netlink.Mode, error) {
	switch m {
	case offload.Tunnel:
		return netlink.XFRM_MODE_TUNNEL, nil
	case offload.Transport:
		return netlink.XFRM_MODE_TRANSPORT, nil
	}
	return 0, fmt.Errorf("bad mode %d", m)
}

// stateFor translates an SA into the kernel state that implements it. It
// checks what the kernel would otherwise refuse with a bare EINVAL.
func stateFor(sa offload.SA, x xlat) (stateSpec, error) {
	var s stateSpec
	switch {
	case sa.SPI < 256:
		return s, fmt.Errorf("sa spi %d: reserved range (RFC 4303 2.1)", sa.SPI)
	case sa.Dir != offload.In && sa.Dir != offload.Out:
		return s, fmt.Errorf("sa %08x: bad direction %d", sa.SPI, sa.Dir)
	case !sa.Src.IsValid() || !sa.Dst.IsValid() || sa.Src.Unmap().Is4() != sa.Dst.Unmap().Is4():
		return s, fmt.Errorf("sa %08x: bad outer addresses %s -> %s", sa.SPI, sa.Src, sa.Dst)
	case sa.ReplayWindow < 0 || sa.ReplayWindow > math.MaxUint16:
		return s, fmt.Errorf("sa %08x: bad replay window %d", sa.SPI, sa.ReplayWindow)
	}
	mode, err := xfrmMode(sa.Mode)
	if err != nil {
		return s, fmt.Errorf("sa %08x: %w", sa.SPI, err)
	}
	st := netlink.XfrmState{
		Src: ipOf(sa.Src), Dst: ipOf(sa.Dst),
		Proto: netlink.XFRM_PROTO_ESP, Mode: mode,
		Spi: int(sa.SPI), Reqid: x.reqid,
		Mark: x.mark, Ifid: x.ifid,
		ESN: sa.ESN,
		Limits: netlink.XfrmStateLimits{
			ByteSoft: sa.Lifetime.SoftBytes, ByteHard: sa.Lifetime.HardBytes,
			PacketSoft: sa.Lifetime.SoftPackets, PacketHard: sa.Lifetime.HardPackets,
			TimeSoft: seconds(sa.Lifetime.SoftTime), TimeHard: seconds(sa.Lifetime.HardTime),
		},
	}
	keyLen := sa.KeyBits / 8
	switch sa.Encr {
	case offload.EncrAESGCM16, offload.EncrChaCha20Poly1305:
		name := algGCM
		if sa.Encr == offload.EncrChaCha20Poly1305 {
			name = algChaCha
			if keyLen == 0 {
				keyLen = 32
			}
			if keyLen != 32 {
				return s, fmt.Errorf("sa %08x: chacha20 with %d-bit key", sa.SPI, sa.KeyBits)
			}
		} else if keyLen != 16 && keyLen != 24 && keyLen != 32 {
			return s, fmt.Errorf("sa %08x: aes-gcm with %d-bit key", sa.SPI, sa.KeyBits)
		}
		if sa.Integ != offload.IntegNone {
			return s, fmt.Errorf("sa %08x: aead cipher %d with integrity %d", sa.SPI, sa.Encr, sa.Integ)
		}
		if len(sa.EncrKey) != keyLen+aeadSaltLen {
			return s, fmt.Errorf("sa %08x: key of %d bytes for %d-bit aead", sa.SPI, len(sa.EncrKey), keyLen*8)
		}
		// The kernel takes the salt as the key's last 4 bytes, which
		// is how IKE's keying material lays it out (RFC 4106 8.1).
		st.Aead = &netlink.XfrmStateAlgo{Name: name, Key: cloneKey(sa.EncrKey), ICVLen: aeadICVBits}
	case offload.EncrAESCBC:
		if keyLen != 16 && keyLen != 24 && keyLen != 32 {
			return s, fmt.Errorf("sa %08x: aes-cbc with %d-bit key", sa.SPI, sa.KeyBits)
		}
		if len(sa.EncrKey) != keyLen {
			return s, fmt.Errorf("sa %08x: key of %d bytes for %d-bit aes-cbc", sa.SPI, len(sa.EncrKey), sa.KeyBits)
		}
		var name string
		var keyBytes, trunc int
		switch sa.Integ {
		case offload.IntegHMACSHA256_128:
			name, keyBytes, trunc = "hmac(sha256)", 32, 128
		case offload.IntegHMACSHA384_192:
			name, keyBytes, trunc = "hmac(sha384)", 48, 192
		case offload.IntegHMACSHA512_256:
			name, keyBytes, trunc = "hmac(sha512)", 64, 256
		default:
			return s, fmt.Errorf("sa %08x: unsupported integrity transform %d", sa.SPI, sa.Integ)
		}
		if len(sa.IntegKey) != keyBytes {
			return s, fmt.Errorf("sa %08x: integrity key of %d bytes for %s", sa.SPI, len(sa.IntegKey), name)
		}
		st.Crypt = &netlink.XfrmStateAlgo{Name: algCBC, Key: cloneKey(sa.EncrKey)}
		st.Auth = &netlink.XfrmStateAlgo{Name: name, Key: cloneKey(sa.IntegKey), TruncateLen: trunc}
	default:
		return s, fmt.Errorf("sa %08x: unsupported encryption transform %d", sa.SPI, sa.Encr)
	}
	window := sa.ReplayWindow
	switch {
	case sa.ESN:
		if window == 0 {
			window = esnDefaultWindow
		}
		s.replayESN = uint32(window)
	case window > legacyReplayMax:
		// The legacy field is a u8 and the kernel caps it at 32: a
		// window of 1024 would silently shrink (or, truncated to a
		// byte, vanish).
		s.replayESN = uint32(window)
	default:
		st.ReplayWindow = window
	}
	if sa.Encap != nil {
		if sa.Encap.SrcPort == 0 || sa.Encap.DstPort == 0 {
			return s, fmt.Errorf("sa %08x: udp encapsulation needs both ports", sa.SPI)
		}
		// The ports as they appear on this SA's packets, which is how
		// the kernel wants them for either direction.
		st.Encap = &netlink.XfrmStateEncap{
			Type:    netlink.XFRM_ENCAP_ESPINUDP,
			SrcPort: int(sa.Encap.SrcPort), DstPort: int(sa.Encap.DstPort),
			OriginalAddress: net.IPv4zero,
		}
		if sa.Src.Unmap().Is6() {
			st.Encap.OriginalAddress = net.IPv6zero
		}
	}
	s.st = st
	return s, nil
}

func cloneKey(k offload.Key) []byte { return append([]byte(nil), k...) }

// Policy priorities: lower wins in the kernel. Ours derive from the
// selectors' specificity so that a narrower bypass or discard inside a
// protected range takes precedence regardless of insertion order; the
// band is fixed so leftovers without templates are recognisable.
const (
	priorityBase = 0x1e000
	// priorityBand is how many values the band spans: 2*(256-0)+1.
	priorityBand = 2*256 + 2
)

func priorityOf(src, dst netip.Prefix, proto uint8) int {
	pr := priorityBase + 2*(256-src.Bits()-dst.Bits())
	if proto == 0 {
		pr++
	}
	return pr
}

func inPriorityBand(p int) bool { return p >= priorityBase && p < priorityBase+priorityBand }

// policyReqIDs are the reqids a policy's template names: the child's for
// SAs, another for traps, so that a trap's template never finds a state
// (not even an old SA of the child still being deleted) and the kernel
// raises ACQUIRE.
type policyReqIDs struct {
	sa, trap int
}

// policiesFor translates a policy into its kernel policies: one dir out
// for Out; dir in and dir fwd for In, since a gateway forwards most of
// what it decrypts and the kernel checks fwd for that.
func policiesFor(p offload.Policy, r policyReqIDs, x xlat) ([]netlink.XfrmPolicy, error) {
	if !p.Src.IsValid() || !p.Dst.IsValid() || p.Src.Addr().Is4() != p.Dst.Addr().Is4() {
		return nil, fmt.Errorf("policy %s -> %s: bad selectors", p.Src, p.Dst)
	}
	base := netlink.XfrmPolicy{
		Src: ipNetOf(p.Src), Dst: ipNetOf(p.Dst), Proto: netlink.Proto(p.Proto),
		Priority: priorityOf(p.Src, p.Dst, p.Proto),
		Mark:     x.mark, Ifid: x.ifid,
	}
	switch p.Action {
	case offload.Protect:
		mode, err := xfrmMode(p.Mode)
		if err != nil {
			return nil, fmt.Errorf("policy %s -> %s: %w", p.Src, p.Dst, err)
		}
		t := netlink.XfrmPolicyTmpl{Proto: netlink.XFRM_PROTO_ESP, Mode: mode, Reqid: r.sa}
		switch {
		case p.TunnelSrc.IsValid() && p.TunnelDst.IsValid():
			if p.TunnelSrc.Unmap().Is4() != p.TunnelDst.Unmap().Is4() {
				return nil, fmt.Errorf("policy %s -> %s: bad tunnel endpoints %s -> %s", p.Src, p.Dst, p.TunnelSrc, p.TunnelDst)
			}
			t.Src, t.Dst = ipOf(p.TunnelSrc), ipOf(p.TunnelDst)
		case p.Mode == offload.Tunnel:
			return nil, fmt.Errorf("policy %s -> %s: tunnel mode without endpoints", p.Src, p.Dst)
		default:
			// Transport mode takes the packet's own addresses; the
			// template's zero address only sets the family.
			t.Src, t.Dst = net.IPv4zero, net.IPv4zero
			if p.Src.Addr().Is6() {
				t.Src, t.Dst = net.IPv6zero, net.IPv6zero
			}
		}
		if p.Dir == offload.Out {
			if p.SPI == 0 {
				t.Reqid = r.trap
			} else {
				// Pinning the SPI makes the policy use exactly the SA
				// it names, so a rekey moves traffic when AddPolicy
				// replaces the policy, not when the kernel prefers the
				// newest state of the reqid.
				t.Spi = int(p.SPI)
			}
		}
		// Inbound templates do not pin the SPI: packets still arriving
		// through the old SA of a rekey must pass the policy check.
		base.Action = netlink.XFRM_POLICY_ALLOW
		base.Tmpls = []netlink.XfrmPolicyTmpl{t}
	case offload.Bypass:
		base.Action = netlink.XFRM_POLICY_ALLOW
	case offload.Discard:
		base.Action = netlink.XFRM_POLICY_BLOCK
	default:
		return nil, fmt.Errorf("policy %s -> %s: bad action %d", p.Src, p.Dst, p.Action)
	}
	switch p.Dir {
	case offload.Out:
		base.Dir = netlink.XFRM_DIR_OUT
		return []netlink.XfrmPolicy{base}, nil
	case offload.In:
		in, fwd := base, base
		in.Dir, fwd.Dir = netlink.XFRM_DIR_IN, netlink.XFRM_DIR_FWD
		return []netlink.XfrmPolicy{in, fwd}, nil
	}
	return nil, fmt.Errorf("policy %s -> %s: bad direction %d", p.Src, p.Dst, p.Dir)
}
