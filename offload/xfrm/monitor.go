package xfrm

import (
	"errors"
	"net/netip"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/xdpsec/xdpsec/offload"
)

// monitor listens to the namespace's XFRM multicast groups. It does not
// use netlink.XfrmMonitor: that one subscribes in the current namespace
// only and knows EXPIRE but not ACQUIRE.
type monitor struct {
	s    *nl.NetlinkSocket
	done chan struct{}
	wg   sync.WaitGroup
}

func startMonitor(ns netns.NsHandle, handle func(syscall.NetlinkMessage)) (*monitor, error) {
	s, err := nl.SubscribeAt(ns, netns.None(), unix.NETLINK_XFRM, nl.XFRMNLGRP_ACQUIRE, nl.XFRMNLGRP_EXPIRE)
	if err != nil {
		return nil, err
	}
	m := &monitor{s: s, done: make(chan struct{})}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for {
			msgs, from, err := s.Receive()
			select {
			case <-m.done:
				return
			default:
			}
			if err != nil {
				if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) || errors.Is(err, unix.ENOBUFS) {
					// ENOBUFS: the kernel dropped messages for a full
					// buffer; the socket goes on working.
					continue
				}
				return
			}
			if from.Pid != nl.PidKernel {
				continue
			}
			for _, msg := range msgs {
				handle(msg)
			}
		}
	}()
	return m, nil
}

// stop closes the socket, which wakes the receiver, and waits for it.
func (m *monitor) stop() {
	close(m.done)
	m.s.Close()
	m.wg.Wait()
}

// handle translates one kernel message into events for our states and
// policies; others' are none of our business.
func (d *Dataplane) handle(msg syscall.NetlinkMessage) {
	switch msg.Header.Type {
	case nl.XFRM_MSG_EXPIRE:
		if len(msg.Data) < nl.SizeofXfrmUserExpire {
			return
		}
		ex := nl.DeserializeXfrmUserExpire(msg.Data)
		if ev, ok := d.expire(&ex.XfrmUsersaInfo, ex.Hard != 0); ok {
			d.log.Info("sa expired", zap.String("conn", ev.Conn), zap.String("child", ev.Child),
				spiField(ev.SPI), zap.Bool("hard", ev.Kind == offload.HardExpire))
			d.emit(ev)
		}
	case nl.XFRM_MSG_ACQUIRE:
		if ev, ok := d.acquire(msg.Data); ok {
			d.log.Debug("acquire", zap.String("conn", ev.Conn), zap.String("child", ev.Child),
				zap.Stringer("src", ev.Src), zap.Stringer("dst", ev.Dst))
			d.emit(ev)
		}
	}
}

// expire maps an expiring state back to our SA. A hard expire means the
// kernel has deleted the state: its final counters are kept for the
// child's totals.
func (d *Dataplane) expire(info *nl.XfrmUsersaInfo, hard bool) (offload.Event, bool) {
	if !d.ourReqID(int(info.Reqid)) || info.Id.Proto != unix.IPPROTO_ESP {
		return offload.Event{}, false
	}
	spi := nl.Swap32(info.Id.Spi)
	dst := addrOf(&info.Id.Daddr, info.Family)
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, dir := range []offload.Direction{offload.In, offload.Out} {
		e, ok := d.sas[saKey{spi, dir}]
		if !ok || e.cfg.Dst.Unmap() != dst {
			continue
		}
		ev := offload.Event{Kind: offload.SoftExpire, Conn: e.cfg.Conn, Child: e.cfg.Child, SPI: spi, Dir: dir}
		if hard {
			ev.Kind = offload.HardExpire
			e.gone = true
			e.bytes, e.packets = info.Curlft.Bytes, info.Curlft.Packets
		}
		return ev, true
	}
	return offload.Event{}, false
}

// Layout of struct xfrm_user_acquire: id, saddr, sel (the packet's
// flow), policy (the policy that matched), then aalgos, ealgos, calgos,
// seq.
const (
	acquireSelOff    = nl.SizeofXfrmId + nl.SizeofXfrmAddress
	acquirePolicyOff = acquireSelOff + nl.SizeofXfrmSelector
	acquireMinLen    = acquirePolicyOff + nl.SizeofXfrmUserpolicyInfo
)

// acquire maps an ACQUIRE to the trap (or SA-less protect policy) of one
// of our children by the matched policy's selector.
func (d *Dataplane) acquire(b []byte) (offload.Event, bool) {
	if len(b) < acquireMinLen {
		return offload.Event{}, false
	}
	flow := nl.DeserializeXfrmSelector(b[acquireSelOff:])
	pol := nl.DeserializeXfrmUserpolicyInfo(b[acquirePolicyOff:])
	if pol.Dir != uint8(netlink.XFRM_DIR_OUT) {
		return offload.Event{}, false
	}
	k := offload.PolicyKey{
		Dir:   offload.Out,
		Src:   prefixOf(&pol.Sel.Saddr, pol.Sel.PrefixlenS, pol.Sel.Family),
		Dst:   prefixOf(&pol.Sel.Daddr, pol.Sel.PrefixlenD, pol.Sel.Family),
		Proto: pol.Sel.Proto,
	}
	d.mu.Lock()
	p, ok := d.policies[k]
	d.mu.Unlock()
	if !ok || p.Action != offload.Protect {
		return offload.Event{}, false
	}
	return offload.Event{
		Kind: offload.Acquire, Conn: p.Conn, Child: p.Child, Dir: offload.Out,
		Src: addrOf(&flow.Saddr, flow.Family), Dst: addrOf(&flow.Daddr, flow.Family),
	}, true
}

// addrOf reads an xfrm_address_t by its family, not by guessing from
// zero bytes as nl's ToIP does (which takes 2001:db8:: for IPv4).
func addrOf(x *nl.XfrmAddress, family uint16) netip.Addr {
	if family == unix.AF_INET {
		return netip.AddrFrom4([4]byte(x[:4]))
	}
	return netip.AddrFrom16([16]byte(x[:16]))
}

func prefixOf(x *nl.XfrmAddress, bits uint8, family uint16) netip.Prefix {
	return netip.PrefixFrom(addrOf(x, family), int(bits)).Masked()
}
