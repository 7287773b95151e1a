package message

import (
	"errors"
	"fmt"
)

// Error is a decode failure. Notify is the error notification a responder
// must send back (RFC 7296 section 2.21): INVALID_SYNTAX for malformed
// input, UNSUPPORTED_CRITICAL_PAYLOAD for an unknown critical payload (Data
// then holds the one-octet payload type, as section 3.10.1 requires) and
// INVALID_MAJOR_VERSION for a major version other than 2. Whether anything is
// sent at all (e.g. not for an unauthenticated response) is the state
// machine's decision, not the codec's.
//
// Use errors.As to get at it:
//
//	var me *message.Error
//	if errors.As(err, &me) { send(me.Notify, me.Data) }
type Error struct {
	Notify NotifyType
	Data   []byte
	Reason string
}

func (e *Error) Error() string {
	return "ike message: " + e.Reason + " (" + e.Notify.String() + ")"
}

// NotifyOf returns the notification that err asks the responder to send,
// when err is or wraps an *Error.
func NotifyOf(err error) (NotifyType, []byte, bool) {
	var e *Error
	if !errors.As(err, &e) {
		return 0, nil, false
	}
	return e.Notify, e.Data, true
}

func syntaxErr(format string, args ...any) *Error {
	return &Error{Notify: NotifyInvalidSyntax, Reason: fmt.Sprintf(format, args...)}
}

// within prefixes the reason of a decode error with where it happened, so
// the log line points at the offending structure ("payload 3 (N): ...").
func within(err error, format string, args ...any) error {
	var e *Error
	if !errors.As(err, &e) {
		return fmt.Errorf(format+": %w", append(args, err)...)
	}
	return &Error{Notify: e.Notify, Data: e.Data, Reason: fmt.Sprintf(format, args...) + ": " + e.Reason}
}
