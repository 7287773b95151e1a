package message

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// HeaderLen is the size of the IKE header (RFC 7296 section 3.1).
const HeaderLen = 28

// genericHeaderLen is the size of the generic payload header (section 3.2).
const genericHeaderLen = 4

// Flags are the IKE header flags. Reserved bits are dropped on decode
// because section 3.1 says they MUST be ignored on receipt.
type Flags uint8

const (
	FlagInitiator Flags = 0x08 // I: sent by the original initiator of the IKE SA
	FlagVersion   Flags = 0x10 // V: sender can speak a higher major version
	FlagResponse  Flags = 0x20 // R: this message is a response
	flagsDefined        = FlagInitiator | FlagVersion | FlagResponse
)

// String lists the set flags by their RFC letters, e.g. "I|R", or "-".
func (f Flags) String() string {
	var s []string
	if f&FlagInitiator != 0 {
		s = append(s, "I")
	}
	if f&FlagVersion != 0 {
		s = append(s, "V")
	}
	if f&FlagResponse != 0 {
		s = append(s, "R")
	}
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, "|")
}

// Header is the IKE header. The version is not a field: encoding always
// writes 2.0, and decoding rejects any major version but 2 and ignores the
// minor version as section 3.1 requires.
type Header struct {
	SPIi, SPIr uint64
	// NextPayload is the type of the first payload. Encoding derives it
	// from the message's payloads and ignores this field.
	NextPayload PayloadType
	Exchange    ExchangeType
	Flags       Flags
	MessageID   uint32
	// Length is the whole message's length as received. Encoding computes
	// it and ignores this field.
	Length uint32
}

// IsResponse reports whether the R flag is set.
func (h *Header) IsResponse() bool { return h.Flags&FlagResponse != 0 }

// IsInitiator reports whether the I flag is set.
func (h *Header) IsInitiator() bool { return h.Flags&FlagInitiator != 0 }

// DecodeHeader decodes the IKE header at the start of b, which must be the
// whole IKE message: b is a UDP payload on port 500, or a UDP payload on port
// 4500 from which the caller has already removed the 4-byte non-ESP marker
// (see StripNonESPMarker). The Length field must equal len(b).
//
// Whenever b holds at least HeaderLen bytes the returned Header is filled in,
// even together with an error, because a responder answering with
// INVALID_MAJOR_VERSION or INVALID_SYNTAX needs the SPIs and message ID.
func DecodeHeader(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, syntaxErr("message of %d bytes shorter than the ike header", len(b))
	}
	h := Header{
		SPIi:        binary.BigEndian.Uint64(b[0:8]),
		SPIr:        binary.BigEndian.Uint64(b[8:16]),
		NextPayload: PayloadType(b[16]),
		Exchange:    ExchangeType(b[18]),
		Flags:       Flags(b[19]) & flagsDefined,
		MessageID:   binary.BigEndian.Uint32(b[20:24]),
		Length:      binary.BigEndian.Uint32(b[24:28]),
	}
	if major := b[17] >> 4; major != 2 {
		return h, &Error{Notify: NotifyInvalidMajorVersion, Reason: fmt.Sprintf("major version %d", major)}
	}
	if uint64(h.Length) != uint64(len(b)) {
		return h, syntaxErr("header length %d but datagram of %d bytes", h.Length, len(b))
	}
	return h, nil
}

// StripNonESPMarker removes the four zero octets that precede an IKE message
// on UDP port 4500 (RFC 3948 section 2.2). ok is false when b does not start
// with the marker, i.e. when it is ESP-in-UDP (or a NAT-T keepalive) rather
// than IKE.
func StripNonESPMarker(b []byte) (ike []byte, ok bool) {
	if len(b) < 4 || b[0]|b[1]|b[2]|b[3] != 0 {
		return nil, false
	}
	return b[4:], true
}

func appendHeader(dst []byte, h *Header, next PayloadType, length uint32) []byte {
	dst = binary.BigEndian.AppendUint64(dst, h.SPIi)
	dst = binary.BigEndian.AppendUint64(dst, h.SPIr)
	dst = append(dst, byte(next), 0x20, byte(h.Exchange), byte(h.Flags&flagsDefined))
	dst = binary.BigEndian.AppendUint32(dst, h.MessageID)
	return binary.BigEndian.AppendUint32(dst, length)
}
