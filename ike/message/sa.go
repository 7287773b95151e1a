package message

import (
	"encoding/binary"
	"fmt"
)

// Substructure markers of section 3.3: the first octet of a proposal or
// transform says whether another one follows.
const (
	lastSubstruc      = 0
	moreProposals     = 2
	moreTransforms    = 3
	proposalHeaderLen = 8
	transformHdrLen   = 8
	attrHeaderLen     = 4
	attrFormatTV      = 0x8000
)

// AttrKeyLength is the only transform attribute RFC 7296 defines (section
// 3.3.5): the key length in bits, always in TV format.
const AttrKeyLength uint16 = 14

// SA is the Security Association payload (section 3.3).
type SA struct {
	Proposals []Proposal
}

// Proposal is a proposal substructure (section 3.3.1).
type Proposal struct {
	// Number is 1 for the first proposal of an offer and one more for
	// each next one; an accepted proposal keeps the number it was offered
	// under.
	Number   uint8
	Protocol ProtocolID
	// SPI is empty for IKE in IKE_SA_INIT, 8 bytes for IKE when rekeying
	// the IKE SA, 4 bytes for AH and ESP.
	SPI        []byte
	Transforms []Transform
}

// Transform is a transform substructure (section 3.3.2).
type Transform struct {
	Type TransformType
	ID   uint16
	// KeyLength is the Key Length attribute in bits; 0 means absent.
	KeyLength uint16
	// Attributes are any other attributes, kept opaque in wire order. On
	// encode they follow the Key Length attribute.
	Attributes []TransformAttribute
}

// TransformAttribute is a transform attribute other than Key Length
// (section 3.3.5).
type TransformAttribute struct {
	Type uint16 // attribute type without the AF bit
	// TV selects the short format, whose Value is exactly 2 bytes;
	// otherwise the attribute is TLV.
	TV    bool
	Value []byte
}

func (*SA) Type() PayloadType { return PayloadSA }

// SPI32 returns the 4-byte SPI of an AH or ESP proposal as a number.
func (p *Proposal) SPI32() (uint32, bool) {
	if len(p.SPI) != 4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(p.SPI), true
}

// TransformsOf returns the proposal's transforms of type t, in offer order.
func (p *Proposal) TransformsOf(t TransformType) []Transform {
	var ts []Transform
	for _, tr := range p.Transforms {
		if tr.Type == t {
			ts = append(ts, tr)
		}
	}
	return ts
}

func (p *SA) DecodeBody(b []byte) error {
	p.Proposals = nil
	for i := 1; len(b) > 0; i++ {
		if len(b) < proposalHeaderLen {
			return syntaxErr("proposal %d: %d bytes left, header truncated", i, len(b))
		}
		marker := b[0]
		plen := int(binary.BigEndian.Uint16(b[2:4]))
		if plen < proposalHeaderLen || plen > len(b) {
			return syntaxErr("proposal %d: length %d with %d bytes left", i, plen, len(b))
		}
		pb := b[:plen]
		b = b[plen:]
		switch {
		case marker == lastSubstruc && len(b) != 0:
			return syntaxErr("proposal %d: marked last but %d bytes follow", i, len(b))
		case marker == moreProposals && len(b) == 0:
			return syntaxErr("proposal %d: announces another proposal that is missing", i)
		case marker != lastSubstruc && marker != moreProposals:
			return syntaxErr("proposal %d: last substruc %d", i, marker)
		}
		var prop Proposal
		if err := prop.decode(pb); err != nil {
			return within(err, "proposal %d", i)
		}
		p.Proposals = append(p.Proposals, prop)
	}
	return checkProposals(p.Proposals)
}

// checkProposals enforces the rules of section 3.3.1 that span proposals.
func checkProposals(ps []Proposal) error {
	if len(ps) == 0 {
		return syntaxErr("sa payload without proposals")
	}
	// A single proposal may be an accepted one, which keeps its offered
	// number; an offer of several counts up from 1.
	if len(ps) == 1 {
		if ps[0].Number == 0 {
			return syntaxErr("proposal number 0")
		}
		return nil
	}
	for i, p := range ps {
		if int(p.Number) != i+1 {
			return syntaxErr("proposal %d numbered %d", i+1, p.Number)
		}
	}
	return nil
}

func (p *Proposal) decode(b []byte) error {
	p.Number = b[4]
	p.Protocol = ProtocolID(b[5])
	spiSize := int(b[6])
	nt := int(b[7])
	if proposalHeaderLen+spiSize > len(b) {
		return syntaxErr("spi of %d bytes overruns the proposal", spiSize)
	}
	p.SPI = b[proposalHeaderLen : proposalHeaderLen+spiSize]
	if err := checkSPISize(p.Protocol, spiSize); err != nil {
		return err
	}
	rest := b[proposalHeaderLen+spiSize:]
	// Each transform takes at least 8 bytes, which bounds the
	// preallocation by the data actually present, not by the count.
	p.Transforms = make([]Transform, 0, min(nt, len(rest)/transformHdrLen))
	for j := 1; len(rest) > 0; j++ {
		if len(rest) < transformHdrLen {
			return syntaxErr("transform %d: %d bytes left, header truncated", j, len(rest))
		}
		marker := rest[0]
		tlen := int(binary.BigEndian.Uint16(rest[2:4]))
		if tlen < transformHdrLen || tlen > len(rest) {
			return syntaxErr("transform %d: length %d with %d bytes left", j, tlen, len(rest))
		}
		tb := rest[:tlen]
		rest = rest[tlen:]
		switch {
		case marker == lastSubstruc && len(rest) != 0:
			return syntaxErr("transform %d: marked last but %d bytes follow", j, len(rest))
		case marker == moreTransforms && len(rest) == 0:
			return syntaxErr("transform %d: announces another transform that is missing", j)
		case marker != lastSubstruc && marker != moreTransforms:
			return syntaxErr("transform %d: last substruc %d", j, marker)
		}
		var t Transform
		if err := t.decode(tb); err != nil {
			return within(err, "transform %d", j)
		}
		p.Transforms = append(p.Transforms, t)
	}
	if len(p.Transforms) != nt {
		return syntaxErr("announces %d transforms but holds %d", nt, len(p.Transforms))
	}
	if nt == 0 {
		return syntaxErr("proposal without transforms")
	}
	return nil
}

// checkSPISize applies section 3.3.1: IKE SPIs are absent (IKE_SA_INIT) or
// 8 bytes (IKE SA rekey), AH and ESP SPIs are 4 bytes. Protocols this
// package does not know keep whatever SPI they carry, so that policy, not
// syntax, rejects them.
func checkSPISize(proto ProtocolID, n int) error {
	switch proto {
	case ProtocolNone:
		return syntaxErr("proposal for protocol 0")
	case ProtocolIKE:
		if n != 0 && n != 8 {
			return syntaxErr("ike spi of %d bytes", n)
		}
	case ProtocolAH, ProtocolESP:
		if n != 4 {
			return syntaxErr("%s spi of %d bytes", proto, n)
		}
	}
	return nil
}

func (t *Transform) decode(b []byte) error {
	t.Type = TransformType(b[4])
	t.ID = binary.BigEndian.Uint16(b[6:8])
	rest := b[transformHdrLen:]
	for k := 1; len(rest) > 0; k++ {
		if len(rest) < attrHeaderLen {
			return syntaxErr("attribute %d: %d bytes left, header truncated", k, len(rest))
		}
		af := binary.BigEndian.Uint16(rest[0:2])
		typ := af &^ attrFormatTV
		if af&attrFormatTV != 0 {
			val := rest[2:4]
			rest = rest[4:]
			if typ == AttrKeyLength {
				if t.KeyLength != 0 {
					return syntaxErr("attribute %d: second key length", k)
				}
				t.KeyLength = binary.BigEndian.Uint16(val)
				if t.KeyLength == 0 {
					return syntaxErr("attribute %d: key length 0", k)
				}
				continue
			}
			t.Attributes = append(t.Attributes, TransformAttribute{Type: typ, TV: true, Value: val})
			continue
		}
		if typ == AttrKeyLength {
			return syntaxErr("attribute %d: key length in tlv format", k)
		}
		n := int(binary.BigEndian.Uint16(rest[2:4]))
		if attrHeaderLen+n > len(rest) {
			return syntaxErr("attribute %d: value of %d bytes overruns the transform", k, n)
		}
		t.Attributes = append(t.Attributes, TransformAttribute{Type: typ, Value: rest[attrHeaderLen : attrHeaderLen+n]})
		rest = rest[attrHeaderLen+n:]
	}
	return nil
}

func (p *SA) AppendBody(dst []byte) ([]byte, error) {
	if err := checkProposals(p.Proposals); err != nil {
		return dst, err
	}
	for i := range p.Proposals {
		var err error
		if dst, err = p.Proposals[i].append(dst, i == len(p.Proposals)-1); err != nil {
			return dst, fmt.Errorf("proposal %d: %w", i+1, err)
		}
	}
	return dst, nil
}

func (p *Proposal) append(dst []byte, last bool) ([]byte, error) {
	if err := checkSPISize(p.Protocol, len(p.SPI)); err != nil {
		return dst, err
	}
	if len(p.SPI) > 0xff {
		return dst, syntaxErr("spi of %d bytes", len(p.SPI))
	}
	if len(p.Transforms) == 0 || len(p.Transforms) > 0xff {
		return dst, syntaxErr("%d transforms", len(p.Transforms))
	}
	marker := byte(moreProposals)
	if last {
		marker = lastSubstruc
	}
	start := len(dst)
	dst = append(dst, marker, 0, 0, 0, p.Number, byte(p.Protocol), byte(len(p.SPI)), byte(len(p.Transforms)))
	dst = append(dst, p.SPI...)
	for j := range p.Transforms {
		var err error
		if dst, err = p.Transforms[j].append(dst, j == len(p.Transforms)-1); err != nil {
			return dst, fmt.Errorf("transform %d: %w", j+1, err)
		}
	}
	n := len(dst) - start
	if n > 0xffff {
		return dst, syntaxErr("proposal of %d bytes", n)
	}
	binary.BigEndian.PutUint16(dst[start+2:], uint16(n))
	return dst, nil
}

func (t *Transform) append(dst []byte, last bool) ([]byte, error) {
	marker := byte(moreTransforms)
	if last {
		marker = lastSubstruc
	}
	start := len(dst)
	dst = append(dst, marker, 0, 0, 0, byte(t.Type), 0)
	dst = binary.BigEndian.AppendUint16(dst, t.ID)
	if t.KeyLength != 0 {
		dst = binary.BigEndian.AppendUint16(dst, attrFormatTV|AttrKeyLength)
		dst = binary.BigEndian.AppendUint16(dst, t.KeyLength)
	}
	for _, a := range t.Attributes {
		if a.Type&attrFormatTV != 0 || a.Type == AttrKeyLength {
			return dst, syntaxErr("attribute type %d not encodable as an opaque attribute", a.Type)
		}
		if a.TV {
			if len(a.Value) != 2 {
				return dst, syntaxErr("tv attribute %d with %d-byte value", a.Type, len(a.Value))
			}
			dst = binary.BigEndian.AppendUint16(dst, attrFormatTV|a.Type)
			dst = append(dst, a.Value...)
			continue
		}
		if len(a.Value) > 0xffff {
			return dst, syntaxErr("tlv attribute %d with %d-byte value", a.Type, len(a.Value))
		}
		dst = binary.BigEndian.AppendUint16(dst, a.Type)
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(a.Value)))
		dst = append(dst, a.Value...)
	}
	n := len(dst) - start
	if n > 0xffff {
		return dst, syntaxErr("transform of %d bytes", n)
	}
	binary.BigEndian.PutUint16(dst[start+2:], uint16(n))
	return dst, nil
}
