package ike

import "github.com/xdpsec/xdpsec/ike/message"

// payloads is what a message carries, collected in one place for every
// exchange: each reads the fields it has a use for.
type payloads struct {
	sa       *message.SA
	ke       *message.KE
	nonce    *message.Nonce
	idi, idr *message.ID
	auth     *message.Auth
	tsi, tsr *message.TS
	deletes  []*message.Delete
	// notifies are all notifications in order; natd the NAT detection
	// ones, cookie a COOKIE's data, errN the first error, rekey REKEY_SA.
	notifies []*message.Notify
	natd     []*message.Notify
	cookie   []byte
	errN     *message.Notify
	rekey    *message.Notify
	// transport: USE_TRANSPORT_MODE; initialContact: INITIAL_CONTACT;
	// fragmentation: IKEV2_FRAGMENTATION_SUPPORTED.
	transport, initialContact, fragmentation bool
	// repeated is set when SA, KE or Nonce came more than once: which
	// one counts is anyone's guess, so IKE_SA_INIT treats the message as
	// malformed.
	repeated bool
}

func collect(ps []message.Payload) payloads {
	var r payloads
	for _, p := range ps {
		switch p := p.(type) {
		case *message.SA:
			r.repeated = r.repeated || r.sa != nil
			r.sa = p
		case *message.KE:
			r.repeated = r.repeated || r.ke != nil
			r.ke = p
		case *message.Nonce:
			r.repeated = r.repeated || r.nonce != nil
			r.nonce = p
		case *message.ID:
			if p.Responder {
				r.idr = p
			} else {
				r.idi = p
			}
		case *message.Auth:
			r.auth = p
		case *message.TS:
			if p.Responder {
				r.tsr = p
			} else {
				r.tsi = p
			}
		case *message.Delete:
			r.deletes = append(r.deletes, p)
		case *message.Notify:
			r.notify(p)
		}
	}
	return r
}

func (r *payloads) notify(n *message.Notify) {
	r.notifies = append(r.notifies, n)
	switch {
	case n.NotifyType == message.NotifyNATDetectionSourceIP || n.NotifyType == message.NotifyNATDetectionDestinationIP:
		r.natd = append(r.natd, n)
	case n.NotifyType == message.NotifyCookie:
		if c, err := n.Cookie(); err == nil {
			r.cookie = c
		}
	case n.NotifyType == message.NotifyIKEv2FragmentationSupported:
		r.fragmentation = true
	case n.NotifyType == message.NotifyUseTransportMode:
		r.transport = true
	case n.NotifyType == message.NotifyInitialContact:
		r.initialContact = true
	case n.NotifyType == message.NotifyRekeySA:
		r.rekey = n
	case n.IsError() && r.errN == nil:
		r.errN = n
	}
}
