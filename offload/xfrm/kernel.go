package xfrm

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// kernel is the XFRM state and policy database the data plane programs;
// an interface so that the table logic is tested without a kernel.
type kernel interface {
	addState(s stateSpec) error
	// offloadOf says which offload the kernel has in force for a state:
	// "", "crypto" or "packet".
	offloadOf(st *netlink.XfrmState) (string, error)
	delState(st *netlink.XfrmState) error
	listStates() ([]netlink.XfrmState, error)
	updatePolicy(p *netlink.XfrmPolicy) error
	delPolicy(p *netlink.XfrmPolicy) error
	listPolicies() ([]netlink.XfrmPolicy, error)
	close()
}

// XFRM_OFFLOAD_* flags of struct xfrm_user_offload.
const (
	offloadFlagInbound = 2
	offloadFlagPacket  = 4
	sizeofUserOffload  = 8 // int ifindex; __u8 flags; padded
)

// nlKernel talks to the kernel of one network namespace over netlink: a
// netlink.Handle for what the library covers, and a raw NETLINK_XFRM
// socket in the same namespace for adding states and reading back their
// offload, because netlink v1.3.1 cannot send XFRMA_OFFLOAD_DEV nor a
// replay_esn window without ESN, and does not parse the offload back.
type nlKernel struct {
	h   *netlink.Handle
	raw *nl.SocketHandle
}

func newNLKernel(ns netns.NsHandle) (*nlKernel, error) {
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_XFRM)
	if err != nil {
		return nil, fmt.Errorf("netlink handle: %w", err)
	}
	s, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_XFRM)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	return &nlKernel{h: h, raw: &nl.SocketHandle{Socket: s}}, nil
}

func (k *nlKernel) close() {
	k.h.Close()
	k.raw.Close()
}

func (k *nlKernel) request(msgType, flags int) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(msgType, flags)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_XFRM: k.raw}
	return req
}

func (k *nlKernel) addState(s stateSpec) error {
	req := k.request(nl.XFRM_MSG_NEWSA, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	for _, d := range encodeNewSA(s) {
		req.AddData(d)
	}
	_, err := req.Execute(unix.NETLINK_XFRM, 0)
	return err
}

// encodeNewSA builds the body of an XFRM_MSG_NEWSA for s, as netlink's
// XfrmStateAdd would plus the attributes it lacks.
func encodeNewSA(s stateSpec) []nl.NetlinkRequestData {
	st := &s.st
	msg := &nl.XfrmUsersaInfo{}
	fam := uint16(nl.GetIPFamily(st.Dst))
	msg.Family = fam
	msg.Sel.Family = fam
	msg.Id.Daddr.FromIP(st.Dst)
	msg.Saddr.FromIP(st.Src)
	msg.Id.Proto = uint8(st.Proto)
	msg.Id.Spi = nl.Swap32(uint32(st.Spi))
	msg.Mode = uint8(st.Mode)
	msg.Reqid = uint32(st.Reqid)
	msg.ReplayWindow = uint8(st.ReplayWindow)
	if st.ESN {
		msg.Flags |= nl.XFRM_STATE_ESN
	}
	lft := &msg.Lft
	lft.SoftByteLimit, lft.HardByteLimit = inf(st.Limits.ByteSoft), inf(st.Limits.ByteHard)
	lft.SoftPacketLimit, lft.HardPacketLimit = inf(st.Limits.PacketSoft), inf(st.Limits.PacketHard)
	lft.SoftAddExpiresSeconds, lft.HardAddExpiresSeconds = st.Limits.TimeSoft, st.Limits.TimeHard
	out := []nl.NetlinkRequestData{msg}
	algo := func(a *netlink.XfrmStateAlgo) (name [64]byte) {
		copy(name[:63], a.Name)
		return name
	}
	if st.Aead != nil {
		a := nl.XfrmAlgoAEAD{AlgName: algo(st.Aead), AlgKeyLen: uint32(len(st.Aead.Key) * 8),
			AlgICVLen: uint32(st.Aead.ICVLen), AlgKey: st.Aead.Key}
		out = append(out, nl.NewRtAttr(nl.XFRMA_ALG_AEAD, a.Serialize()))
	}
	if st.Crypt != nil {
		a := nl.XfrmAlgo{AlgName: algo(st.Crypt), AlgKeyLen: uint32(len(st.Crypt.Key) * 8), AlgKey: st.Crypt.Key}
		out = append(out, nl.NewRtAttr(nl.XFRMA_ALG_CRYPT, a.Serialize()))
	}
	if st.Auth != nil {
		a := nl.XfrmAlgoAuth{AlgName: algo(st.Auth), AlgKeyLen: uint32(len(st.Auth.Key) * 8),
			AlgTruncLen: uint32(st.Auth.TruncateLen), AlgKey: st.Auth.Key}
		out = append(out, nl.NewRtAttr(nl.XFRMA_ALG_AUTH_TRUNC, a.Serialize()))
	}
	if st.Encap != nil {
		e := nl.XfrmEncapTmpl{
			EncapType:  uint16(st.Encap.Type),
			EncapSport: nl.Swap16(uint16(st.Encap.SrcPort)),
			EncapDport: nl.Swap16(uint16(st.Encap.DstPort)),
		}
		e.EncapOa.FromIP(st.Encap.OriginalAddress)
		out = append(out, nl.NewRtAttr(nl.XFRMA_ENCAP, e.Serialize()))
	}
	if st.Mark != nil {
		m := nl.XfrmMark{Value: st.Mark.Value, Mask: st.Mark.Mask}
		if m.Mask == 0 {
			m.Mask = ^uint32(0)
		}
		out = append(out, nl.NewRtAttr(nl.XFRMA_MARK, m.Serialize()))
	}
	if s.replayESN != 0 {
		r := nl.XfrmReplayStateEsn{ReplayWindow: s.replayESN, BmpLen: (s.replayESN + 31) / 32}
		out = append(out, nl.NewRtAttr(nl.XFRMA_REPLAY_ESN_VAL, r.Serialize()))
	}
	if st.Ifid != 0 {
		out = append(out, nl.NewRtAttr(nl.XFRMA_IF_ID, nl.Uint32Attr(uint32(st.Ifid))))
	}
	if o := s.offload; o != nil {
		b := make([]byte, sizeofUserOffload)
		nl.NativeEndian().PutUint32(b, uint32(int32(o.ifindex)))
		if o.in {
			b[4] |= offloadFlagInbound
		}
		if o.packet {
			b[4] |= offloadFlagPacket
		}
		out = append(out, nl.NewRtAttr(nl.XFRMA_OFFLOAD_DEV, b))
	}
	return out
}

func inf(v uint64) uint64 {
	if v == 0 {
		return nl.XFRM_INF
	}
	return v
}

func (k *nlKernel) offloadOf(st *netlink.XfrmState) (string, error) {
	req := k.request(nl.XFRM_MSG_GETSA, unix.NLM_F_ACK)
	id := &nl.XfrmUsersaId{}
	id.Family = uint16(nl.GetIPFamily(st.Dst))
	id.Daddr.FromIP(st.Dst)
	id.Proto = uint8(st.Proto)
	id.Spi = nl.Swap32(uint32(st.Spi))
	req.AddData(id)
	if st.Mark != nil {
		m := nl.XfrmMark{Value: st.Mark.Value, Mask: st.Mark.Mask}
		if m.Mask == 0 {
			m.Mask = ^uint32(0)
		}
		req.AddData(nl.NewRtAttr(nl.XFRMA_MARK, m.Serialize()))
	}
	req.AddData(nl.NewRtAttr(nl.XFRMA_SRCADDR, st.Src.To16()))
	msgs, err := req.Execute(unix.NETLINK_XFRM, nl.XFRM_MSG_NEWSA)
	if err != nil {
		return "", err
	}
	if len(msgs) == 0 || len(msgs[0]) < nl.SizeofXfrmUsersaInfo {
		return "", errors.New("short getsa reply")
	}
	return offloadFromAttrs(msgs[0][nl.SizeofXfrmUsersaInfo:])
}

// offloadFromAttrs finds XFRMA_OFFLOAD_DEV among a state's attributes.
func offloadFromAttrs(b []byte) (string, error) {
	attrs, err := nl.ParseRouteAttr(b)
	if err != nil {
		return "", fmt.Errorf("parse sa attributes: %w", err)
	}
	for _, a := range attrs {
		if a.Attr.Type != nl.XFRMA_OFFLOAD_DEV || len(a.Value) < 5 {
			continue
		}
		if a.Value[4]&offloadFlagPacket != 0 {
			return OffloadPacket, nil
		}
		return OffloadCrypto, nil
	}
	return "", nil
}

func (k *nlKernel) delState(st *netlink.XfrmState) error {
	id := netlink.XfrmState{Src: st.Src, Dst: st.Dst, Proto: st.Proto, Spi: st.Spi, Mark: st.Mark, Ifid: st.Ifid}
	return k.h.XfrmStateDel(&id)
}

func (k *nlKernel) listStates() ([]netlink.XfrmState, error) {
	return k.h.XfrmStateList(netlink.FAMILY_ALL)
}

func (k *nlKernel) updatePolicy(p *netlink.XfrmPolicy) error { return k.h.XfrmPolicyUpdate(p) }

func (k *nlKernel) delPolicy(p *netlink.XfrmPolicy) error { return k.h.XfrmPolicyDel(p) }

func (k *nlKernel) listPolicies() ([]netlink.XfrmPolicy, error) {
	return k.h.XfrmPolicyList(netlink.FAMILY_ALL)
}

// isGone tells whether a delete failed only because the object is no
// longer there (a hard-expired state, a policy already removed).
func isGone(err error) bool {
	return errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT)
}
