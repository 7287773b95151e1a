package ike

import "net/netip"

// INITIAL_CONTACT (RFC 7296 2.4) asserts that the new IKE SA is the only
// one between the two identities: the peer deletes every other. So it is
// sent only when no other IKE SA of ours is established, or on its way
// through IKE_AUTH, between the same identities; sending it always made a
// peer with many connections from one identity delete all but the last.
//
// The engine counts its IKE SAs by contact: our identity with the peer's,
// and our identity with the peer's address (the initiator of a connection
// that accepts any peer identity knows no more before IKE_AUTH).

type contactKey struct {
	local, peer string // identityKey
}

type contactAddrKey struct {
	local string
	addr  netip.Addr
}

// contact is what an IKE SA was counted under; nil while not counted.
type contact struct {
	id   contactKey
	byID bool // the peer identity is known
	addr contactAddrKey
}

// identityKey counts identities that Equal takes for one as one.
func identityKey(id Identity) string { return string([]byte{byte(id.Type)}) + id.key() }

func newContact(local, peer Identity, addr netip.Addr) *contact {
	return &contact{
		id:   contactKey{identityKey(local), identityKey(peer)},
		byID: !peer.IsZero(),
		addr: contactAddrKey{identityKey(local), addr.Unmap()},
	}
}

// claimContact counts sa under c and reports whether another IKE SA was
// already counted there (sa.mu held; takes e.mu). The peer identity
// decides where it is known, the address where it is not.
func (e *Engine) claimContact(sa *ikeSA, c *contact) (others bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if sa.contact != nil {
		e.dropContactLocked(sa) // counted by an earlier attempt
	}
	if c.byID {
		others = e.contacts[c.id] > 0
	} else {
		others = e.contactAddrs[c.addr] > 0
	}
	if !sa.gone {
		e.countContactLocked(sa, c)
	}
	return others
}

// countContactLocked counts sa under c (e.mu held).
func (e *Engine) countContactLocked(sa *ikeSA, c *contact) {
	sa.contact = c
	if c.byID {
		e.contacts[c.id]++
	}
	e.contactAddrs[c.addr]++
}

// dropContactLocked uncounts sa (e.mu held), when it goes.
func (e *Engine) dropContactLocked(sa *ikeSA) {
	c := sa.contact
	if c == nil {
		return
	}
	sa.contact = nil
	if c.byID {
		if e.contacts[c.id]--; e.contacts[c.id] <= 0 {
			delete(e.contacts, c.id)
		}
	}
	if e.contactAddrs[c.addr]--; e.contactAddrs[c.addr] <= 0 {
		delete(e.contactAddrs, c.addr)
	}
}
