package offload

import "errors"

// Errors shared by the data planes, for errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrClosed   = errors.New("data plane closed")
)
