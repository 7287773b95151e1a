package netlab

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
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
