package message

import (
	"encoding/binary"
	"net/netip"
)

// KE is the Key Exchange payload (section 3.4).
type KE struct {
	Group KEGroup
	Data  []byte
}

func (*KE) Type() PayloadType { return PayloadKE }

func (p *KE) DecodeBody(b []byte) error {
	if len(b) < 4 {
		return syntaxErr("ke body of %d bytes, need 4", len(b))
	}
	p.Group = KEGroup(binary.BigEndian.Uint16(b))
	p.Data = b[4:]
	return p.check()
}

func (p *KE) check() error {
	// An empty key exchange value is never valid for any group; its exact
	// length per group is checked by the crypto layer, which knows groups.
	if len(p.Data) == 0 {
		return syntaxErr("ke payload without key exchange data")
	}
	return nil
}

func (p *KE) AppendBody(dst []byte) ([]byte, error) {
	if err := p.check(); err != nil {
		return dst, err
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(p.Group))
	return append(append(dst, 0, 0), p.Data...), nil
}

// ID is the Identification payload, IDi or IDr (section 3.5).
type ID struct {
	// Responder selects IDr; false means IDi.
	Responder bool
	IDType    IDType
	// Reserved holds the three reserved octets as received. They are kept
	// because the AUTH payload signs the ID body byte for byte
	// (RestOfInitIDPayload, section 2.15), so AppendBody of a decoded ID
	// must reproduce exactly what the peer sent.
	Reserved [3]byte
	Data     []byte
}

func (p *ID) Type() PayloadType {
	if p.Responder {
		return PayloadIDr
	}
	return PayloadIDi
}

func (p *ID) DecodeBody(b []byte) error {
	if len(b) < 4 {
		return syntaxErr("id body of %d bytes, need 4", len(b))
	}
	p.IDType = IDType(b[0])
	copy(p.Reserved[:], b[1:4])
	p.Data = b[4:]
	return p.check()
}

func (p *ID) check() error {
	switch p.IDType {
	case IDIPv4Addr:
		if len(p.Data) != 4 {
			return syntaxErr("ID_IPV4_ADDR of %d bytes", len(p.Data))
		}
	case IDIPv6Addr:
		if len(p.Data) != 16 {
			return syntaxErr("ID_IPV6_ADDR of %d bytes", len(p.Data))
		}
	case IDNull:
		// RFC 7619: ID_NULL carries no data.
		if len(p.Data) != 0 {
			return syntaxErr("ID_NULL with %d bytes of data", len(p.Data))
		}
	default:
		if len(p.Data) == 0 {
			return syntaxErr("empty %s identity", p.IDType)
		}
	}
	return nil
}

func (p *ID) AppendBody(dst []byte) ([]byte, error) {
	if err := p.check(); err != nil {
		return dst, err
	}
	dst = append(dst, byte(p.IDType), p.Reserved[0], p.Reserved[1], p.Reserved[2])
	return append(dst, p.Data...), nil
}

// Addr returns the address of an ID_IPV4_ADDR or ID_IPV6_ADDR identity.
func (p *ID) Addr() (netip.Addr, bool) {
	switch {
	case p.IDType == IDIPv4Addr && len(p.Data) == 4:
		return netip.AddrFrom4([4]byte(p.Data)), true
	case p.IDType == IDIPv6Addr && len(p.Data) == 16:
		return netip.AddrFrom16([16]byte(p.Data)), true
	}
	return netip.Addr{}, false
}

// IDFromAddr returns an ID_IPV4_ADDR or ID_IPV6_ADDR identity for a.
func IDFromAddr(a netip.Addr, responder bool) *ID {
	if a.Is4() || a.Is4In6() {
		b := a.Unmap().As4()
		return &ID{Responder: responder, IDType: IDIPv4Addr, Data: b[:]}
	}
	b := a.As16()
	return &ID{Responder: responder, IDType: IDIPv6Addr, Data: b[:]}
}

// Cert is the Certificate payload (section 3.6).
type Cert struct {
	Encoding CertEncoding
	Data     []byte
}

func (*Cert) Type() PayloadType { return PayloadCERT }

func (p *Cert) DecodeBody(b []byte) error {
	if len(b) < 1 {
		return syntaxErr("empty cert body")
	}
	p.Encoding = CertEncoding(b[0])
	p.Data = b[1:]
	return p.check()
}

func (p *Cert) check() error {
	if len(p.Data) == 0 {
		return syntaxErr("cert payload without certificate data")
	}
	return nil
}

func (p *Cert) AppendBody(dst []byte) ([]byte, error) {
	if err := p.check(); err != nil {
		return dst, err
	}
	return append(append(dst, byte(p.Encoding)), p.Data...), nil
}

// CertReq is the Certificate Request payload (section 3.7). Data may be
// empty: peers (Windows among them) send an empty CERTREQ to ask for any
// certificate.
type CertReq struct {
	Encoding CertEncoding
	Data     []byte
}

func (*CertReq) Type() PayloadType { return PayloadCERTREQ }

func (p *CertReq) DecodeBody(b []byte) error {
	if len(b) < 1 {
		return syntaxErr("empty certreq body")
	}
	p.Encoding = CertEncoding(b[0])
	p.Data = b[1:]
	return nil
}

func (p *CertReq) AppendBody(dst []byte) ([]byte, error) {
	return append(append(dst, byte(p.Encoding)), p.Data...), nil
}

// CAHashes splits the Certification Authority field of an X.509 CERTREQ
// into its 20-byte SHA-1 public key hashes (section 3.7). The hashes alias
// p.Data.
func (p *CertReq) CAHashes() ([][]byte, error) {
	if len(p.Data)%20 != 0 {
		return nil, syntaxErr("certreq authority field of %d bytes is not a list of sha-1 hashes", len(p.Data))
	}
	hs := make([][]byte, 0, len(p.Data)/20)
	for i := 0; i < len(p.Data); i += 20 {
		hs = append(hs, p.Data[i:i+20:i+20])
	}
	return hs, nil
}

// Auth is the Authentication payload (section 3.8).
type Auth struct {
	Method AuthMethod
	Data   []byte
}

func (*Auth) Type() PayloadType { return PayloadAUTH }

func (p *Auth) DecodeBody(b []byte) error {
	if len(b) < 4 {
		return syntaxErr("auth body of %d bytes, need 4", len(b))
	}
	p.Method = AuthMethod(b[0])
	p.Data = b[4:]
	return p.check()
}

func (p *Auth) check() error {
	if len(p.Data) == 0 {
		return syntaxErr("auth payload without authentication data")
	}
	return nil
}

func (p *Auth) AppendBody(dst []byte) ([]byte, error) {
	if err := p.check(); err != nil {
		return dst, err
	}
	return append(append(dst, byte(p.Method), 0, 0, 0), p.Data...), nil
}

// Nonce bounds from section 3.9.
const (
	MinNonceLen = 16
	MaxNonceLen = 256
)

// Nonce is the Nonce payload, Ni or Nr (section 3.9).
type Nonce struct {
	Data []byte
}

func (*Nonce) Type() PayloadType { return PayloadNonce }

func (p *Nonce) DecodeBody(b []byte) error {
	p.Data = b
	return p.check()
}

func (p *Nonce) check() error {
	if len(p.Data) < MinNonceLen || len(p.Data) > MaxNonceLen {
		return syntaxErr("nonce of %d bytes, want %d..%d", len(p.Data), MinNonceLen, MaxNonceLen)
	}
	return nil
}

func (p *Nonce) AppendBody(dst []byte) ([]byte, error) {
	if err := p.check(); err != nil {
		return dst, err
	}
	return append(dst, p.Data...), nil
}

// Delete is the Delete payload (section 3.11). Deleting the IKE SA carries
// no SPIs (they are in the header); AH and ESP carry 4-byte SPIs.
type Delete struct {
	Protocol ProtocolID
	SPIs     []uint32
}

func (*Delete) Type() PayloadType { return PayloadDelete }

func (p *Delete) DecodeBody(b []byte) error {
	if len(b) < 4 {
		return syntaxErr("delete body of %d bytes, need 4", len(b))
	}
	p.Protocol = ProtocolID(b[0])
	spiSize := int(b[1])
	n := int(binary.BigEndian.Uint16(b[2:4]))
	rest := b[4:]
	switch p.Protocol {
	case ProtocolIKE:
		if spiSize != 0 || n != 0 || len(rest) != 0 {
			return syntaxErr("ike delete with spi size %d, %d spis, %d bytes of spis", spiSize, n, len(rest))
		}
		p.SPIs = nil
		return nil
	case ProtocolAH, ProtocolESP:
		if spiSize != 4 {
			return syntaxErr("%s delete with spi size %d", p.Protocol, spiSize)
		}
	default:
		return syntaxErr("delete for protocol %s", p.Protocol)
	}
	// Comparing against the bytes present before allocating keeps an
	// attacker's count from sizing the slice.
	if n*4 != len(rest) {
		return syntaxErr("delete announces %d spis but holds %d bytes", n, len(rest))
	}
	if n == 0 {
		return syntaxErr("%s delete without spis", p.Protocol)
	}
	p.SPIs = make([]uint32, n)
	for i := range p.SPIs {
		p.SPIs[i] = binary.BigEndian.Uint32(rest[4*i:])
	}
	return nil
}

func (p *Delete) AppendBody(dst []byte) ([]byte, error) {
	switch p.Protocol {
	case ProtocolIKE:
		if len(p.SPIs) != 0 {
			return dst, syntaxErr("ike delete with spis")
		}
		return append(dst, byte(p.Protocol), 0, 0, 0), nil
	case ProtocolAH, ProtocolESP:
		if len(p.SPIs) == 0 || len(p.SPIs) > maxPayloadBody/4 {
			return dst, syntaxErr("%s delete with %d spis", p.Protocol, len(p.SPIs))
		}
	default:
		return dst, syntaxErr("delete for protocol %s", p.Protocol)
	}
	dst = append(dst, byte(p.Protocol), 4)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(p.SPIs)))
	for _, s := range p.SPIs {
		dst = binary.BigEndian.AppendUint32(dst, s)
	}
	return dst, nil
}

// VendorID is the Vendor ID payload (section 3.12).
type VendorID struct {
	Data []byte
}

func (*VendorID) Type() PayloadType { return PayloadVendorID }

func (p *VendorID) DecodeBody(b []byte) error {
	p.Data = b
	return nil
}

func (p *VendorID) AppendBody(dst []byte) ([]byte, error) { return append(dst, p.Data...), nil }

// EAP codes (RFC 3748 section 4).
const (
	EAPRequest  uint8 = 1
	EAPResponse uint8 = 2
	EAPSuccess  uint8 = 3
	EAPFailure  uint8 = 4
)

// EAP is the Extensible Authentication payload (section 3.16), kept as an
// EAP message: Code and Identifier are decoded, Data is everything after the
// 4-byte EAP header (Type and Type-Data for requests and responses). The EAP
// Length field is checked on decode and computed on encode.
type EAP struct {
	Code       uint8
	Identifier uint8
	Data       []byte
}

func (*EAP) Type() PayloadType { return PayloadEAP }

func (p *EAP) DecodeBody(b []byte) error {
	if len(b) < 4 {
		return syntaxErr("eap message of %d bytes, need 4", len(b))
	}
	if n := int(binary.BigEndian.Uint16(b[2:4])); n != len(b) {
		return syntaxErr("eap length %d in a payload body of %d bytes", n, len(b))
	}
	p.Code, p.Identifier, p.Data = b[0], b[1], b[4:]
	return p.check()
}

func (p *EAP) check() error {
	switch p.Code {
	case EAPRequest, EAPResponse:
		if len(p.Data) == 0 {
			return syntaxErr("eap request or response without a type")
		}
	case EAPSuccess, EAPFailure:
		if len(p.Data) != 0 {
			return syntaxErr("eap success or failure with %d bytes of data", len(p.Data))
		}
	}
	if len(p.Data) > maxPayloadBody-4 {
		return syntaxErr("eap message too long")
	}
	return nil
}

func (p *EAP) AppendBody(dst []byte) ([]byte, error) {
	if err := p.check(); err != nil {
		return dst, err
	}
	dst = append(dst, p.Code, p.Identifier)
	dst = binary.BigEndian.AppendUint16(dst, uint16(4+len(p.Data)))
	return append(dst, p.Data...), nil
}

// SK is the Encrypted and Authenticated payload (section 3.14) before
// decryption.
type SK struct {
	// NextPayload is the SK header's Next Payload field: the type of the
	// first payload inside the encrypted body.
	NextPayload PayloadType
	// Body is IV, ciphertext (with padding and pad length) and ICV as on
	// the wire. After Decode it is the tail of the decoded datagram.
	Body []byte
}

func (*SK) Type() PayloadType { return PayloadSK }

func (p *SK) DecodeBody(b []byte) error {
	p.Body = b
	return p.check()
}

func (p *SK) check() error {
	if len(p.Body) == 0 {
		return syntaxErr("encrypted payload without body")
	}
	return nil
}

func (p *SK) AppendBody(dst []byte) ([]byte, error) {
	if err := p.check(); err != nil {
		return dst, err
	}
	return append(dst, p.Body...), nil
}

// SKF is the Encrypted Fragment payload (RFC 7383 section 2.5).
type SKF struct {
	// NextPayload is the first inner payload's type in fragment 1 and
	// zero in the others (RFC 7383 section 2.5).
	NextPayload PayloadType
	Number      uint16 // 1-based fragment number
	Total       uint16 // number of fragments of the original message
	// Body is IV, ciphertext and ICV of this fragment as on the wire.
	Body []byte
}

func (*SKF) Type() PayloadType { return PayloadSKF }

func (p *SKF) DecodeBody(b []byte) error {
	if len(b) < 4 {
		return syntaxErr("skf body of %d bytes, need 4", len(b))
	}
	p.Number = binary.BigEndian.Uint16(b[0:2])
	p.Total = binary.BigEndian.Uint16(b[2:4])
	p.Body = b[4:]
	if err := p.check(); err != nil {
		return err
	}
	if len(p.Body) == 0 {
		return syntaxErr("encrypted fragment without body")
	}
	return nil
}

func (p *SKF) check() error {
	if p.Number == 0 || p.Total == 0 || p.Number > p.Total {
		return syntaxErr("fragment %d of %d", p.Number, p.Total)
	}
	return nil
}

func (p *SKF) AppendBody(dst []byte) ([]byte, error) {
	if err := p.check(); err != nil {
		return dst, err
	}
	if len(p.Body) == 0 {
		return dst, syntaxErr("encrypted fragment without body")
	}
	dst = binary.BigEndian.AppendUint16(dst, p.Number)
	dst = binary.BigEndian.AppendUint16(dst, p.Total)
	return append(dst, p.Body...), nil
}

// Unknown is a payload of a type this package does not understand. Decoding
// keeps non-critical ones (so they can be logged) and rejects critical ones
// with UNSUPPORTED_CRITICAL_PAYLOAD, as section 2.5 requires.
type Unknown struct {
	PayloadType PayloadType
	// Critical is the C bit to send; decoded Unknown payloads always have
	// it clear.
	Critical bool
	Body     []byte
}

func (p *Unknown) Type() PayloadType { return p.PayloadType }

func (p *Unknown) DecodeBody(b []byte) error {
	p.Body = b
	return nil
}

func (p *Unknown) AppendBody(dst []byte) ([]byte, error) {
	if newPayload(p.PayloadType) != nil || p.PayloadType == PayloadSK || p.PayloadType == PayloadSKF || p.PayloadType == PayloadNone {
		return dst, syntaxErr("unknown payload with the known type %s", p.PayloadType)
	}
	return append(dst, p.Body...), nil
}
