package espprobe

import (
	"bytes"
	"net"
	"testing"

	"github.com/vishvananda/netlink"
)

// espState is an SA as xdpsec installs them: tunnel mode, AES-GCM-16 with a
// 128-bit key and the 4-byte salt appended (RFC 4106).
func espState(src, dst string, spi int, encap bool) *netlink.XfrmState {
	st := &netlink.XfrmState{
		Src:   net.ParseIP(src),
		Dst:   net.ParseIP(dst),
		Proto: netlink.XFRM_PROTO_ESP,
		Mode:  netlink.XFRM_MODE_TUNNEL,
		Spi:   spi,
		Reqid: 7,
		Aead: &netlink.XfrmStateAlgo{
			Name:   "rfc4106(gcm(aes))",
			Key:    bytes.Repeat([]byte{0x42}, 20),
			ICVLen: 128,
		},
		ReplayWindow: 64,
	}
	if encap {
		// ESP in UDP, as after NAT detection.
		st.Encap = &netlink.XfrmStateEncap{
			Type:    netlink.XFRM_ENCAP_ESPINUDP,
			SrcPort: 4500,
			DstPort: 4500,
		}
	}
	return st
}

func TestESPState(t *testing.T) {
	for _, tc := range []struct {
		name     string
		src, dst string
		encap    bool
	}{
		{"v4", "192.0.2.1", "192.0.2.2", false},
		{"v4-udp", "192.0.2.1", "192.0.2.2", true},
		{"v6", "2001:db8::1", "2001:db8::2", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := espState(tc.src, tc.dst, 0x1000+len(tc.name), tc.encap)
			if err := netlink.XfrmStateAdd(st); err != nil {
				t.Fatalf("add ESP state: %v", err)
			}
			defer netlink.XfrmStateDel(st)
			got, err := netlink.XfrmStateGet(st)
			if err != nil {
				t.Fatalf("get ESP state: %v", err)
			}
			if got.Aead == nil || got.Aead.Name != "rfc4106(gcm(aes))" || got.Spi != st.Spi {
				t.Fatalf("state read back as %+v", got)
			}
			if tc.encap && (got.Encap == nil || got.Encap.DstPort != 4500) {
				t.Fatalf("encap read back as %+v", got.Encap)
			}
			all, err := netlink.XfrmStateList(netlink.FAMILY_ALL)
			if err != nil {
				t.Fatalf("list states: %v", err)
			}
			if len(all) != 1 {
				t.Fatalf("listed %d states, want 1", len(all))
			}
			if err := netlink.XfrmStateDel(st); err != nil {
				t.Fatalf("delete ESP state: %v", err)
			}
		})
	}
}

func TestVeth(t *testing.T) {
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "probe0"}, PeerName: "probe1"}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	defer netlink.LinkDel(veth)
	if err := netlink.LinkSetUp(veth); err != nil {
		t.Fatalf("set up: %v", err)
	}
	if _, err := netlink.LinkByName("probe1"); err != nil {
		t.Fatalf("peer: %v", err)
	}
}
