package ike

import (
	"errors"

	"github.com/xdpsec/xdpsec/ike/message"
)

// errAborted ends the tasks of an IKE SA that goes away.
var errAborted = errors.New("IKE SA gone")

// task is one request of ours. The engine sends one at a time (window size
// 1, RFC 7296 2.3), in the order queued, once the IKE SA is established;
// only the set-up's own exchange (setupTask) goes before.
type task interface {
	// request builds the request; ok false drops a task that has become
	// moot while it waited (the child it was for is gone).
	request(sa *ikeSA) (exch message.ExchangeType, ps []message.Payload, ok bool)
	// response processes the peer's answer, or with err the failure of
	// the exchange (the SA is then usually gone).
	response(sa *ikeSA, ps []message.Payload, err error)
}

// enqueue queues t and sends it when the window is free.
func (sa *ikeSA) enqueue(t task) {
	if sa.gone {
		t.response(sa, nil, errAborted)
		return
	}
	sa.queue = append(sa.queue, t)
	sa.kick()
}

// kick sends the next queued request if none is in flight.
func (sa *ikeSA) kick() {
	for sa.out == nil && !sa.gone && len(sa.queue) > 0 {
		t := sa.queue[0]
		if sa.state != stateEstablished && (sa.state != stateConnecting || !setupTask(t)) {
			return
		}
		sa.queue = sa.queue[1:]
		exch, ps, ok := t.request(sa)
		if !ok {
			continue
		}
		pkt, err := sa.protect(exch, sa.nextReqID, false, ps)
		if err != nil {
			t.response(sa, nil, err)
			continue
		}
		sa.sendRequest(exch, pkt)
		sa.out.task = t
	}
}

// abortTasks fails the request in flight and every queued one.
func (sa *ikeSA) abortTasks(err error) {
	if err == nil {
		err = errAborted
	}
	if sa.out != nil {
		sa.out.timer.Stop()
		t := sa.out.task
		sa.out = nil
		if t != nil {
			t.response(sa, nil, err)
		}
	}
	q := sa.queue
	sa.queue = nil
	for _, t := range q {
		t.response(sa, nil, err)
	}
}
