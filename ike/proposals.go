package ike

import (
	"fmt"
	"math"
	"strings"

	"github.com/xdpsec/xdpsec/ike/crypto"
	"github.com/xdpsec/xdpsec/ike/message"
	"github.com/xdpsec/xdpsec/ike/proposal"
)

// toWire converts configured proposals into an SA payload's proposals,
// numbered from 1 in configuration order.
func toWire(ps []proposal.Proposal, proto message.ProtocolID, spi []byte) []message.Proposal {
	out := make([]message.Proposal, 0, len(ps))
	for i, p := range ps {
		var ts []message.Transform
		for _, c := range p.Encryption {
			t := message.Transform{Type: message.TransformENCR, ID: uint16(c.Alg)}
			if c.Alg.HasKeyLengthAttr() {
				t.KeyLength = uint16(c.KeyBits)
			}
			ts = append(ts, t)
		}
		if proto == message.ProtocolIKE {
			for _, f := range p.PRF {
				ts = append(ts, message.Transform{Type: message.TransformPRF, ID: uint16(f)})
			}
		}
		for _, in := range p.Integrity {
			if in != proposal.IntegNone {
				ts = append(ts, message.Transform{Type: message.TransformINTEG, ID: uint16(in)})
			}
		}
		// ESP proposals carry no KE here: the only CHILD SA negotiated so
		// far is the one of IKE_AUTH, which has no key exchange of its own
		// (RFC 7296 1.2), so a PFS group would only confuse the peer.
		if proto == message.ProtocolIKE {
			for _, g := range p.KE {
				ts = append(ts, message.Transform{Type: message.TransformKE, ID: uint16(g)})
			}
		}
		if proto == message.ProtocolESP {
			esn := p.ESN
			if len(esn) == 0 {
				esn = []bool{false}
			}
			for _, e := range esn {
				ts = append(ts, message.Transform{Type: message.TransformESN, ID: uint16(proposal.ESNFromBool(e))})
			}
		}
		out = append(out, message.Proposal{Number: uint8(i + 1), Protocol: proto, SPI: spi, Transforms: ts})
	}
	return out
}

// chosen is a negotiated proposal: one transform of each type.
type chosen struct {
	number  uint8
	spi     []byte
	encr    uint16
	keyBits int
	integ   uint16
	prf     uint16
	ke      uint16
	esn     bool
}

func (c chosen) suite() crypto.Suite {
	return crypto.Suite{Encr: c.encr, KeyBits: c.keyBits, Integ: c.integ, PRF: c.prf}
}

// wire returns the single proposal a responder sends back.
func (c chosen) wire(proto message.ProtocolID) message.Proposal {
	t := []message.Transform{{Type: message.TransformENCR, ID: c.encr}}
	if proposal.Encr(c.encr).HasKeyLengthAttr() {
		t[0].KeyLength = uint16(c.keyBits)
	}
	if proto == message.ProtocolIKE {
		t = append(t, message.Transform{Type: message.TransformPRF, ID: c.prf})
	}
	if c.integ != 0 {
		t = append(t, message.Transform{Type: message.TransformINTEG, ID: c.integ})
	}
	if c.ke != 0 {
		t = append(t, message.Transform{Type: message.TransformKE, ID: c.ke})
	}
	if proto == message.ProtocolESP {
		t = append(t, message.Transform{Type: message.TransformESN, ID: uint16(proposal.ESNFromBool(c.esn))})
	}
	return message.Proposal{Number: c.number, Protocol: proto, SPI: c.spi, Transforms: t}
}

// String names the proposal strongSwan-style, e.g.
// AES_CBC_128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519: encryption,
// integrity, PRF, key exchange, ESN.
func (c chosen) String() string {
	var parts []string
	name := func(t message.TransformType, id uint16, kl int) {
		s := message.Transform{Type: t, ID: id, KeyLength: uint16(kl)}.String()
		s = strings.TrimPrefix(s, "ENCR_")
		s = strings.TrimPrefix(s, "AUTH_")
		// strongSwan writes the curve groups with an underscore.
		s = strings.Replace(s, "CURVE25519", "CURVE_25519", 1)
		s = strings.Replace(s, "CURVE448", "CURVE_448", 1)
		parts = append(parts, s)
	}
	kl := 0
	if proposal.Encr(c.encr).HasKeyLengthAttr() {
		kl = c.keyBits
	}
	name(message.TransformENCR, c.encr, kl)
	if c.integ != 0 {
		name(message.TransformINTEG, c.integ, 0)
	}
	if c.prf != 0 {
		name(message.TransformPRF, c.prf, 0)
	}
	if c.ke != 0 {
		name(message.TransformKE, c.ke, 0)
	}
	if c.esn {
		parts = append(parts, "ESN")
	}
	return strings.Join(parts, "/")
}

// offerString renders an SA payload's proposals for log lines and
// errors, bounded: the peer decides how many proposals and transforms it
// sends, and a line per flooded request must not carry kilobytes. The
// first few proposals with their first transforms are shown, the rest
// counted; offerDetail renders all of them, for debug lines.
func offerString(ps []message.Proposal) string {
	return renderOffer(ps, maxShownProposals, maxShownTransforms)
}

// offerDetail renders every proposal and transform.
func offerDetail(ps []message.Proposal) string { return renderOffer(ps, len(ps), math.MaxInt) }

const (
	maxShownProposals  = 4
	maxShownTransforms = 8
)

func renderOffer(ps []message.Proposal, maxProps, maxTransforms int) string {
	var b strings.Builder
	for i, p := range ps {
		if i == maxProps {
			fmt.Fprintf(&b, " (+%d more proposals)", len(ps)-i)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		for j, t := range p.Transforms {
			if j == maxTransforms {
				fmt.Fprintf(&b, "/+%d more", len(p.Transforms)-j)
				break
			}
			if j > 0 {
				b.WriteByte('/')
			}
			b.WriteString(t.String())
		}
	}
	return b.String()
}

func confString(ps []proposal.Proposal) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

// selectProposal picks, for the first of the peer's proposals that one of
// ours supports, the first transform of each type that the peer listed and
// we accept. The peer's order wins, as strongSwan does unless told to prefer
// its own. preferKE, when not zero and acceptable, is taken as the KE group
// so that a KE payload already sent need not be retried.
func selectProposal(offer []message.Proposal, ours []proposal.Proposal, proto message.ProtocolID, preferKE uint16) (chosen, bool) {
	for _, p := range offer {
		if p.Protocol != proto {
			continue
		}
		for _, o := range ours {
			if c, ok := matchProposal(p, o, proto, preferKE); ok {
				return c, true
			}
		}
	}
	return chosen{}, false
}

func matchProposal(p message.Proposal, o proposal.Proposal, proto message.ProtocolID, preferKE uint16) (chosen, bool) {
	c := chosen{number: p.Number, spi: p.SPI}
	// Unknown transform types make the whole proposal unacceptable.
	for _, t := range p.Transforms {
		if t.Type < message.TransformENCR || t.Type > message.TransformESN {
			return c, false
		}
	}
	var found bool
	if c.encr, c.keyBits, found = matchEncr(p, o); !found {
		return c, false
	}
	aead := proposal.Encr(c.encr).IsAEAD()
	integs := p.TransformsOf(message.TransformINTEG)
	switch {
	case aead:
		// RFC 5282 8: an AEAD proposal has no integrity transform or NONE.
		for _, t := range integs {
			if t.ID != 0 {
				return c, false
			}
		}
	default:
		id, ok := firstCommon(integs, o.Integrity, func(i proposal.Integ) uint16 { return uint16(i) })
		if !ok || id == 0 {
			return c, false
		}
		c.integ = id
	}
	if proto == message.ProtocolIKE {
		prfs := o.PRF
		if len(prfs) == 0 {
			for _, i := range o.Integrity {
				prfs = append(prfs, i.PRF())
			}
		}
		id, ok := firstCommon(p.TransformsOf(message.TransformPRF), prfs, func(f proposal.PRF) uint16 { return uint16(f) })
		if !ok {
			return c, false
		}
		c.prf = id
	}
	// A CHILD SA created in IKE_AUTH has no key exchange, so KE transforms
	// in an ESP proposal are ignored there (RFC 7296 1.2), as strongSwan
	// does.
	if proto == message.ProtocolIKE {
		var ok bool
		if c.ke, ok = matchKE(p, o, preferKE); !ok {
			return c, false
		}
	}
	if proto == message.ProtocolESP {
		var ok bool
		if c.esn, ok = matchESN(p, o); !ok {
			return c, false
		}
	}
	return c, true
}

// matchEncr picks the first of the peer's ciphers we configure, with its
// key length.
func matchEncr(p message.Proposal, o proposal.Proposal) (uint16, int, bool) {
	for _, t := range p.TransformsOf(message.TransformENCR) {
		for _, oc := range o.Encryption {
			kb := int(t.KeyLength)
			if uint16(oc.Alg) == t.ID && (kb == oc.KeyBits || !oc.Alg.HasKeyLengthAttr() && kb == 0) && len(t.Attributes) == 0 {
				return t.ID, oc.KeyBits, true
			}
		}
	}
	return 0, 0, false
}

// matchKE picks the key exchange of an IKE proposal: preferKE when both
// have it (its KE payload is already there), else the first common one.
func matchKE(p message.Proposal, o proposal.Proposal, preferKE uint16) (uint16, bool) {
	kes := p.TransformsOf(message.TransformKE)
	if preferKE != 0 && containsFn(o.KE, func(g proposal.KEGroup) bool { return uint16(g) == preferKE }) {
		for _, t := range kes {
			if t.ID == preferKE {
				return preferKE, true
			}
		}
	}
	ke, ok := firstCommon(kes, o.KE, func(g proposal.KEGroup) uint16 { return uint16(g) })
	return ke, ok && ke != 0
}

// matchESN picks extended sequence numbers or not; a proposal without an
// ESN transform means no ESN.
func matchESN(p message.Proposal, o proposal.Proposal) (bool, bool) {
	esns := p.TransformsOf(message.TransformESN)
	if len(esns) == 0 {
		esns = []message.Transform{{Type: message.TransformESN, ID: 0}}
	}
	ourESN := o.ESN
	if len(ourESN) == 0 {
		ourESN = []bool{false}
	}
	id, ok := firstCommon(esns, ourESN, func(b bool) uint16 { return uint16(proposal.ESNFromBool(b)) })
	return id == 1, ok
}

func firstCommon[T any](offer []message.Transform, ours []T, id func(T) uint16) (uint16, bool) {
	for _, t := range offer {
		if len(t.Attributes) > 0 || t.KeyLength != 0 {
			continue
		}
		for _, o := range ours {
			if id(o) == t.ID {
				return t.ID, true
			}
		}
	}
	return 0, false
}

func containsFn[T any](s []T, f func(T) bool) bool {
	for _, v := range s {
		if f(v) {
			return true
		}
	}
	return false
}

// acceptAnswer checks a responder's single proposal against what we offered
// (RFC 7296 3.3.6: it must be one of ours, unchanged) and returns it.
func acceptAnswer(sa *message.SA, ours []proposal.Proposal, proto message.ProtocolID) (chosen, error) {
	if sa == nil || len(sa.Proposals) != 1 {
		return chosen{}, fmt.Errorf("responder must return exactly one proposal")
	}
	p := sa.Proposals[0]
	for _, tt := range []message.TransformType{message.TransformENCR, message.TransformPRF, message.TransformINTEG, message.TransformKE, message.TransformESN} {
		if len(p.TransformsOf(tt)) > 1 {
			return chosen{}, fmt.Errorf("responder returned several %s transforms", tt)
		}
	}
	if int(p.Number) < 1 || int(p.Number) > len(ours) {
		return chosen{}, fmt.Errorf("responder chose proposal %d, we offered %d", p.Number, len(ours))
	}
	c, ok := matchProposal(p, ours[p.Number-1], proto, 0)
	if !ok {
		return chosen{}, fmt.Errorf("responder chose %s, which we did not offer", offerString(sa.Proposals))
	}
	return c, nil
}
