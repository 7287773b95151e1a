package ike

import (
	"context"
	"errors"

	"github.com/xdpsec/xdpsec/ike/message"
)

// FailureReason classifies why a negotiation failed, in a vocabulary
// small and fixed enough to label metrics with.
type FailureReason string

// Failure reasons.
const (
	// FailTimeout: the peer never answered (down, unreachable, not
	// running IKE on that address yet).
	FailTimeout FailureReason = "timeout"
	// FailAuth: either side refused the other's authentication.
	FailAuth FailureReason = "auth_failed"
	// FailNoProposal: no common IKE or ESP proposal.
	FailNoProposal FailureReason = "no_proposal_chosen"
	// FailTSUnacceptable: the traffic selectors did not match.
	FailTSUnacceptable FailureReason = "ts_unacceptable"
	// FailOther is everything else.
	FailOther FailureReason = "other"
)

// FailureReasons lists every reason, so that a caller can create its
// metric series before the first failure.
func FailureReasons() []FailureReason {
	return []FailureReason{FailTimeout, FailAuth, FailNoProposal, FailTSUnacceptable, FailOther}
}

// NegotiationError is what Initiate returns when the negotiation itself
// failed; its text is the cause's, so logs read as before.
type NegotiationError struct {
	Reason FailureReason
	// IKEUp says the IKE SA is established and only its first CHILD SA
	// failed.
	IKEUp bool
	Err   error
}

func (e *NegotiationError) Error() string { return e.Err.Error() }
func (e *NegotiationError) Unwrap() error { return e.Err }

// ReasonOf classifies an error Initiate returned.
func ReasonOf(err error) FailureReason {
	var ne *NegotiationError
	switch {
	case errors.As(err, &ne):
		return ne.Reason
	case errors.Is(err, context.DeadlineExceeded):
		return FailTimeout
	}
	return FailOther
}

func failure(r FailureReason, err error) error { return &NegotiationError{Reason: r, Err: err} }

// notifyFailure classifies err by the error notification the peer sent
// or that we found applied.
func notifyFailure(n message.NotifyType, err error) error { return failure(notifyReason(n), err) }

func notifyReason(n message.NotifyType) FailureReason {
	switch n {
	case message.NotifyAuthenticationFailed:
		return FailAuth
	case message.NotifyNoProposalChosen:
		return FailNoProposal
	case message.NotifyTSUnacceptable:
		return FailTSUnacceptable
	}
	return FailOther
}
