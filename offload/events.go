package offload

import (
	"sync"
	"sync/atomic"
)

// EventQueue carries a data plane's events to the control plane (its
// Events channel) without ever blocking the data plane: when the control
// plane lets the buffer fill, further events are dropped and counted.
// Emit after Close is a no-op, so a late event of a worker or monitor
// that is still stopping cannot panic on the closed channel.
type EventQueue struct {
	mu     sync.Mutex
	ch     chan Event
	closed bool
	lost   atomic.Uint64
}

// NewEventQueue returns a queue buffering size events.
func NewEventQueue(size int) *EventQueue {
	return &EventQueue{ch: make(chan Event, size)}
}

// C is the channel Dataplane.Events returns.
func (q *EventQueue) C() <-chan Event { return q.ch }

// Emit queues ev and reports whether it was queued.
func (q *EventQueue) Emit(ev Event) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	select {
	case q.ch <- ev:
		return true
	default:
		q.lost.Add(1)
		return false
	}
}

// Lost counts the events dropped for a full buffer.
func (q *EventQueue) Lost() uint64 { return q.lost.Load() }

// Close closes the channel; it may be called more than once.
func (q *EventQueue) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		close(q.ch)
	}
}
