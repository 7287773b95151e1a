package message

import (
	"encoding/binary"
	"fmt"
)

// Notify is the Notify payload (section 3.10).
type Notify struct {
	// Protocol and SPI name the SA a notification concerns; both are zero
	// or empty for the IKE SA and for notifications about no SA.
	Protocol   ProtocolID
	SPI        []byte
	NotifyType NotifyType
	Data       []byte
}

func (*Notify) Type() PayloadType { return PayloadNotify }

// IsError reports whether the notification is an error type (below 16384),
// which section 3.10.1 distinguishes from status types.
func (p *Notify) IsError() bool { return p.NotifyType < 16384 }

func (p *Notify) DecodeBody(b []byte) error {
	if len(b) < 4 {
		return syntaxErr("notify body of %d bytes, need 4", len(b))
	}
	p.Protocol = ProtocolID(b[0])
	spiSize := int(b[1])
	p.NotifyType = NotifyType(binary.BigEndian.Uint16(b[2:4]))
	if 4+spiSize > len(b) {
		return syntaxErr("%s: spi of %d bytes overruns the payload", p.NotifyType, spiSize)
	}
	p.SPI = b[4 : 4+spiSize]
	p.Data = b[4+spiSize:]
	if err := p.check(); err != nil {
		return within(err, "%s", p.NotifyType)
	}
	return nil
}

// check bounds the SPI by its protocol. Section 3.10 lets the protocol be
// anything when there is no SPI (it must then be ignored), so only SPIs that
// are present are checked.
func (p *Notify) check() error {
	n := len(p.SPI)
	if n == 0 {
		return nil
	}
	switch p.Protocol {
	case ProtocolNone:
		return syntaxErr("spi of %d bytes without a protocol", n)
	case ProtocolIKE:
		if n != 8 {
			return syntaxErr("ike spi of %d bytes", n)
		}
	case ProtocolAH, ProtocolESP:
		if n != 4 {
			return syntaxErr("%s spi of %d bytes", p.Protocol, n)
		}
	}
	if n > 0xff {
		return syntaxErr("spi of %d bytes", n)
	}
	return nil
}

func (p *Notify) AppendBody(dst []byte) ([]byte, error) {
	if err := p.check(); err != nil {
		return dst, err
	}
	dst = append(dst, byte(p.Protocol), byte(len(p.SPI)))
	dst = binary.BigEndian.AppendUint16(dst, uint16(p.NotifyType))
	dst = append(dst, p.SPI...)
	return append(dst, p.Data...), nil
}

// SPI32 returns the 4-byte SPI of an AH or ESP notification (REKEY_SA,
// INVALID_SPI, CHILD_SA_NOT_FOUND, ...).
func (p *Notify) SPI32() (uint32, bool) {
	if len(p.SPI) != 4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(p.SPI), true
}

func (p *Notify) want(t NotifyType) error {
	if p.NotifyType != t {
		return fmt.Errorf("notify is %s, not %s", p.NotifyType, t)
	}
	return nil
}

// NewInvalidKEPayload returns INVALID_KE_PAYLOAD naming the group the
// responder wants (section 3.10.1: two octets, the accepted group).
func NewInvalidKEPayload(g KEGroup) *Notify {
	return &Notify{NotifyType: NotifyInvalidKEPayload, Data: binary.BigEndian.AppendUint16(nil, uint16(g))}
}

// InvalidKEGroup returns the group an INVALID_KE_PAYLOAD asks for.
func (p *Notify) InvalidKEGroup() (KEGroup, error) {
	if err := p.want(NotifyInvalidKEPayload); err != nil {
		return 0, err
	}
	if len(p.Data) != 2 {
		return 0, syntaxErr("INVALID_KE_PAYLOAD with %d bytes of data", len(p.Data))
	}
	return KEGroup(binary.BigEndian.Uint16(p.Data)), nil
}

// NewUnsupportedCriticalPayload returns UNSUPPORTED_CRITICAL_PAYLOAD for the
// payload type the peer marked critical (section 3.10.1: one octet).
func NewUnsupportedCriticalPayload(t PayloadType) *Notify {
	return &Notify{NotifyType: NotifyUnsupportedCriticalPayload, Data: []byte{byte(t)}}
}

// NewSetWindowSize returns SET_WINDOW_SIZE (four octets, section 3.10.1).
func NewSetWindowSize(n uint32) *Notify {
	return &Notify{NotifyType: NotifySetWindowSize, Data: binary.BigEndian.AppendUint32(nil, n)}
}

// WindowSize returns the window a SET_WINDOW_SIZE announces.
func (p *Notify) WindowSize() (uint32, error) {
	if err := p.want(NotifySetWindowSize); err != nil {
		return 0, err
	}
	if len(p.Data) != 4 {
		return 0, syntaxErr("SET_WINDOW_SIZE with %d bytes of data", len(p.Data))
	}
	return binary.BigEndian.Uint32(p.Data), nil
}

// Cookie bounds from section 2.6.
const (
	MinCookieLen = 1
	MaxCookieLen = 64
)

// Cookie returns the data of a COOKIE notification, checked to be 1 to 64
// bytes long as section 2.6 requires.
func (p *Notify) Cookie() ([]byte, error) {
	if err := p.want(NotifyCookie); err != nil {
		return nil, err
	}
	if len(p.Data) < MinCookieLen || len(p.Data) > MaxCookieLen {
		return nil, syntaxErr("COOKIE of %d bytes", len(p.Data))
	}
	return p.Data, nil
}

// NewSignatureHashAlgorithms returns SIGNATURE_HASH_ALGORITHMS (RFC 7427
// section 4): a list of 2-octet hash algorithm identifiers.
func NewSignatureHashAlgorithms(algs ...HashAlgorithm) *Notify {
	d := make([]byte, 0, 2*len(algs))
	for _, a := range algs {
		d = binary.BigEndian.AppendUint16(d, uint16(a))
	}
	return &Notify{NotifyType: NotifySignatureHashAlgorithms, Data: d}
}

// SignatureHashAlgorithms returns the hash algorithms a
// SIGNATURE_HASH_ALGORITHMS notification lists.
func (p *Notify) SignatureHashAlgorithms() ([]HashAlgorithm, error) {
	if err := p.want(NotifySignatureHashAlgorithms); err != nil {
		return nil, err
	}
	if len(p.Data) == 0 || len(p.Data)%2 != 0 {
		return nil, syntaxErr("SIGNATURE_HASH_ALGORITHMS with %d bytes of data", len(p.Data))
	}
	algs := make([]HashAlgorithm, len(p.Data)/2)
	for i := range algs {
		algs[i] = HashAlgorithm(binary.BigEndian.Uint16(p.Data[2*i:]))
	}
	return algs, nil
}

// NATDetectionHashLen is the length of the SHA-1 digest carried by
// NAT_DETECTION_SOURCE_IP and NAT_DETECTION_DESTINATION_IP (section 2.23).
const NATDetectionHashLen = 20

// NATDetectionHash returns the digest of a NAT_DETECTION_SOURCE_IP or
// NAT_DETECTION_DESTINATION_IP notification.
func (p *Notify) NATDetectionHash() ([]byte, error) {
	if p.NotifyType != NotifyNATDetectionSourceIP && p.NotifyType != NotifyNATDetectionDestinationIP {
		return nil, fmt.Errorf("notify is %s, not a nat detection notify", p.NotifyType)
	}
	if len(p.Data) != NATDetectionHashLen {
		return nil, syntaxErr("%s with %d bytes of data", p.NotifyType, len(p.Data))
	}
	return p.Data, nil
}
