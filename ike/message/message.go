// Package message is the IKEv2 wire codec (RFC 7296 section 3, RFC 7383):
// the IKE header, every payload as a typed struct, and strict decoding whose
// errors say which error notification a responder owes its peer.
//
// The package does no I/O and no cryptography. The SK (Encrypted) and SKF
// (Encrypted Fragment) payloads are containers: decoding exposes their
// encrypted body as bytes, and the crypto layer uses
//
//   - Message.AppendSKPrefix to build the bytes an AEAD authenticates (or the
//     integrity check covers) before it appends IV, ciphertext and ICV;
//   - for a received message b, b[:len(b)-len(body)] as that same prefix,
//     since an SK/SKF payload is always the last one and its body ends b;
//   - AppendPayloads to serialise the inner payloads before encryption and
//     DecodePayloads, with the SK payload's NextPayload, after decryption.
//
// Decoding does not copy: byte slices in decoded payloads alias the input,
// so a caller that reuses its receive buffer must finish with (or copy) the
// message first.
package message

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// maxPayloadBody is the largest body the 16-bit payload length can describe.
const maxPayloadBody = 0xffff - genericHeaderLen

// criticalBit is the C bit of the generic payload header (section 3.2).
const criticalBit = 0x80

// Payload is one IKE payload. Implementations are pointers to the structs of
// this package; DecodeBody and AppendBody handle the payload body, i.e.
// everything after the 4-byte generic payload header.
type Payload interface {
	Type() PayloadType
	// DecodeBody parses body into the receiver. Errors are *Error.
	DecodeBody(body []byte) error
	// AppendBody appends the encoded body to dst. It refuses values that
	// DecodeBody would reject, so the codec never emits what it would not
	// accept.
	AppendBody(dst []byte) ([]byte, error)
}

// Message is a whole IKE message: the header and the payloads in wire
// order. When the message is protected, its last payload is an *SK or *SKF.
type Message struct {
	Header   Header
	Payloads []Payload
}

// Decode decodes an IKE message: the header (see DecodeHeader for the
// length rule and the non-ESP marker) and the chain of unencrypted payloads.
// An SK or SKF payload ends the chain and must reach the end of b; its body
// stays encrypted. The error is an *Error telling which notification to send.
func Decode(b []byte) (*Message, error) {
	h, err := DecodeHeader(b)
	if err != nil {
		return nil, err
	}
	ps, err := decodeChain(h.NextPayload, b[HeaderLen:], true)
	if err != nil {
		return nil, err
	}
	return &Message{Header: h, Payloads: ps}, nil
}

// DecodePayloads decodes a payload chain that starts with a payload of type
// first and fills b exactly: the decrypted content of an SK payload (first is
// the SK payload's NextPayload), or the reassembled content of all SKF
// fragments (first from fragment 1). SK and SKF may not appear inside.
func DecodePayloads(first PayloadType, b []byte) ([]Payload, error) {
	return decodeChain(first, b, false)
}

// Encrypted returns the final SK or SKF payload of m, or nil when m is not
// protected.
func (m *Message) Encrypted() Payload {
	if len(m.Payloads) == 0 {
		return nil
	}
	switch p := m.Payloads[len(m.Payloads)-1].(type) {
	case *SK, *SKF:
		return p
	}
	return nil
}

// Encode returns the wire form of m. The header's Length and NextPayload are
// computed, not taken from m.Header.
func (m *Message) Encode() ([]byte, error) {
	return m.AppendTo(nil)
}

// AppendTo appends the wire form of m to dst, so that a caller can reuse a
// buffer (or leave room for a non-ESP marker) and encode without allocating.
func (m *Message) AppendTo(dst []byte) ([]byte, error) {
	return m.appendTo(dst, -1)
}

// AppendSKPrefix appends what precedes the encrypted body of m's final SK or
// SKF payload: the IKE header, the unencrypted payloads and the SK/SKF
// payload header (for SKF including fragment number and total), with every
// length already accounting for an encrypted body (IV, ciphertext, padding,
// ICV) of bodyLen bytes. This is the AEAD associated data of RFC 5282, and
// the start of the data an integrity transform covers; the crypto layer then
// appends exactly bodyLen bytes. The SK/SKF payload's own Body is ignored.
func (m *Message) AppendSKPrefix(dst []byte, bodyLen int) ([]byte, error) {
	if m.Encrypted() == nil {
		return dst, errors.New("encode: message has no final sk or skf payload")
	}
	if bodyLen < 0 || bodyLen > maxPayloadBody {
		return dst, fmt.Errorf("encode: encrypted body length %d out of range", bodyLen)
	}
	return m.appendTo(dst, bodyLen)
}

// appendTo encodes m; skBodyLen >= 0 stops after the SK/SKF header and sizes
// the lengths for an encrypted body of that many bytes.
func (m *Message) appendTo(dst []byte, skBodyLen int) ([]byte, error) {
	start := len(dst)
	next := PayloadNone
	if len(m.Payloads) > 0 && m.Payloads[0] != nil {
		next = m.Payloads[0].Type()
	}
	dst = appendHeader(dst, &m.Header, next, 0)
	dst, err := appendChain(dst, m.Payloads, true, skBodyLen)
	if err != nil {
		return dst[:start], err
	}
	total := len(dst) - start
	if skBodyLen >= 0 {
		total += skBodyLen
	}
	if uint64(total) > 0xffffffff {
		return dst[:start], errors.New("encode: message longer than 2^32-1 bytes")
	}
	binary.BigEndian.PutUint32(dst[start+24:], uint32(total))
	return dst, nil
}

// AppendPayloads appends ps as a payload chain (generic headers included)
// without an IKE header: the plaintext that goes into an SK payload, whose
// NextPayload must then be ps[0].Type(). SK and SKF may not appear in ps.
func AppendPayloads(dst []byte, ps []Payload) ([]byte, error) {
	start := len(dst)
	dst, err := appendChain(dst, ps, false, -1)
	if err != nil {
		return dst[:start], err
	}
	return dst, nil
}

func appendChain(dst []byte, ps []Payload, allowSK bool, skBodyLen int) ([]byte, error) {
	for i, p := range ps {
		if p == nil {
			return dst, fmt.Errorf("encode: payload %d is nil", i)
		}
		last := i == len(ps)-1
		next := PayloadNone
		if !last && ps[i+1] != nil {
			next = ps[i+1].Type()
		}
		switch sk := p.(type) {
		case *SK:
			if !allowSK || !last {
				return dst, fmt.Errorf("encode: payload %d: sk must be the last outer payload", i)
			}
			next = sk.NextPayload
		case *SKF:
			if !allowSK || !last {
				return dst, fmt.Errorf("encode: payload %d: skf must be the last outer payload", i)
			}
			next = sk.NextPayload
		}
		// Known payloads go out with the critical bit clear, as section
		// 2.5 asks of every payload defined in RFC 7296; an Unknown
		// payload keeps whatever its creator chose.
		flags := byte(0)
		if u, ok := p.(*Unknown); ok && u.Critical {
			flags = criticalBit
		}
		hdr := len(dst)
		dst = append(dst, byte(next), flags, 0, 0)
		var err error
		if last && skBodyLen >= 0 {
			dst, err = appendSKHeaderOnly(dst, p)
		} else {
			dst, err = p.AppendBody(dst)
		}
		if err != nil {
			return dst, fmt.Errorf("encode: payload %d (%s): %w", i, p.Type(), err)
		}
		n := len(dst) - hdr
		if last && skBodyLen >= 0 {
			n += skBodyLen
		}
		if n > 0xffff {
			return dst, fmt.Errorf("encode: payload %d (%s): length %d exceeds 65535", i, p.Type(), n)
		}
		binary.BigEndian.PutUint16(dst[hdr+2:], uint16(n))
	}
	return dst, nil
}

// appendSKHeaderOnly writes the part of an SK/SKF body that is not
// encrypted: nothing for SK, fragment number and total for SKF.
func appendSKHeaderOnly(dst []byte, p Payload) ([]byte, error) {
	if f, ok := p.(*SKF); ok {
		if err := f.check(); err != nil {
			return dst, err
		}
		dst = binary.BigEndian.AppendUint16(dst, f.Number)
		return binary.BigEndian.AppendUint16(dst, f.Total), nil
	}
	return dst, nil
}

// decodeChain walks the generic payload headers of b starting with a payload
// of type first. allowSK marks the outer chain, where SK/SKF may end it.
func decodeChain(first PayloadType, b []byte, allowSK bool) ([]Payload, error) {
	var ps []Payload
	next := first
	for i := 1; next != PayloadNone; i++ {
		t := next
		if len(b) < genericHeaderLen {
			return nil, syntaxErr("payload %d (%s): %d bytes left, generic header truncated", i, t, len(b))
		}
		next = PayloadType(b[0])
		critical := b[1]&criticalBit != 0
		plen := int(binary.BigEndian.Uint16(b[2:4]))
		if plen < genericHeaderLen {
			return nil, syntaxErr("payload %d (%s): length %d below 4", i, t, plen)
		}
		if plen > len(b) {
			return nil, syntaxErr("payload %d (%s): length %d overruns the %d bytes left", i, t, plen, len(b))
		}
		body := b[genericHeaderLen:plen]
		b = b[plen:]

		var p Payload
		switch t {
		case PayloadSK, PayloadSKF:
			if !allowSK {
				return nil, syntaxErr("payload %d (%s): encrypted payload inside an encrypted payload", i, t)
			}
			if len(b) != 0 {
				return nil, syntaxErr("payload %d (%s): %d bytes follow the encrypted payload", i, t, len(b))
			}
			if t == PayloadSK {
				p = &SK{NextPayload: next}
			} else {
				p = &SKF{NextPayload: next}
			}
			// The SK header's Next Payload names the first inner
			// payload, so the outer chain ends here.
			next = PayloadNone
		default:
			p = newPayload(t)
			if p == nil {
				if critical {
					return nil, &Error{
						Notify: NotifyUnsupportedCriticalPayload,
						Data:   []byte{byte(t)},
						Reason: fmt.Sprintf("payload %d: unknown critical payload type %d", i, t),
					}
				}
				p = &Unknown{PayloadType: t}
			}
		}
		if err := p.DecodeBody(body); err != nil {
			return nil, within(err, "payload %d (%s)", i, t)
		}
		ps = append(ps, p)
	}
	if len(b) != 0 {
		return nil, syntaxErr("%d bytes after the last payload", len(b))
	}
	return ps, nil
}

// newPayload returns an empty payload of a type this package understands,
// or nil.
func newPayload(t PayloadType) Payload {
	switch t {
	case PayloadSA:
		return &SA{}
	case PayloadKE:
		return &KE{}
	case PayloadIDi:
		return &ID{}
	case PayloadIDr:
		return &ID{Responder: true}
	case PayloadCERT:
		return &Cert{}
	case PayloadCERTREQ:
		return &CertReq{}
	case PayloadAUTH:
		return &Auth{}
	case PayloadNonce:
		return &Nonce{}
	case PayloadNotify:
		return &Notify{}
	case PayloadDelete:
		return &Delete{}
	case PayloadVendorID:
		return &VendorID{}
	case PayloadTSi:
		return &TS{}
	case PayloadTSr:
		return &TS{Responder: true}
	case PayloadCP:
		return &CP{}
	case PayloadEAP:
		return &EAP{}
	}
	return nil
}
