package xfrm

import (
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
)

// FuzzMonitorMessage feeds arbitrary XFRM notifications to the monitor's
// decoder, with an SA and a trap installed for it to find: nothing may
// panic, short messages are ignored, and whatever it emits names one of
// our children.
func FuzzMonitorMessage(f *testing.F) {
	ex := expireMsg(usersaInfo(0x2000, gwA, DefaultReqIDBase), true)
	acq := acquireMsg(lanA, lanB, netlink.XFRM_DIR_OUT, lanA.Addr().Next(), lanB.Addr().Next())
	f.Add(uint16(nl.XFRM_MSG_EXPIRE), ex.Data)
	f.Add(uint16(nl.XFRM_MSG_ACQUIRE), acq.Data)
	f.Add(uint16(nl.XFRM_MSG_EXPIRE), ex.Data[:10])
	f.Fuzz(func(t *testing.T, typ uint16, data []byte) {
		d, _ := newTestDP(t, Options{})
		must(t, d.AddSA(bgCtx, inSA(0x2000)))
		must(t, d.AddPolicy(bgCtx, outPolicy(0)))
		d.handle(syscall.NetlinkMessage{Header: syscall.NlMsghdr{Type: typ}, Data: data})
		select {
		case ev := <-d.Events():
			if ev.Conn != "site-b" || ev.Child != "net" {
				t.Fatalf("event for someone else's state or policy: %+v", ev)
			}
		default:
		}
	})
}
