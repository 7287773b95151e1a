package ike

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// On its way out the engine deletes every established IKE SA at its peer,
// so that nothing stale is left there. With hundreds of SAs, all Deletes
// at once overflow the peer's socket buffer, and a lost Delete would wait
// for the usual first retransmission (seconds) beyond any shutdown grace;
// so they go out in paced batches and are retransmitted on a short
// schedule of their own, all within shutdownGrace.
const (
	shutdownGrace = 3 * time.Second
	// shutdownBatch Deletes, then shutdownPace: 64 per 2 ms is 32,000 a
	// second, well within what a peer's 4 MB buffer and one core take.
	shutdownBatch = 64
	shutdownPace  = 2 * time.Millisecond
	// shutdownRetransmit is the first wait before an unanswered Delete
	// goes again; each further one doubles.
	shutdownRetransmit = 250 * time.Millisecond
)

func (e *Engine) shutdown() {
	e.mu.Lock()
	e.closed = true
	all := make([]*ikeSA, 0, len(e.sas))
	for _, sa := range e.sas {
		all = append(all, sa)
	}
	e.mu.Unlock()
	// A context, not a timer: its Done channel stays closed, so once the
	// grace is over no further wait blocks.
	grace, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	var deleting []*ikeSA
	for i, sa := range all {
		sa.mu.Lock()
		if sa.state == stateEstablished {
			sa.startDelete("shutting down")
			if sa.deleted != nil {
				deleting = append(deleting, sa)
			}
		} else {
			sa.remove(ErrClosed)
		}
		sa.mu.Unlock()
		if (i+1)%shutdownBatch == 0 {
			pause(grace, shutdownPace)
		}
	}
	e.awaitDeletes(grace, deleting)
	for _, sa := range all {
		sa.mu.Lock()
		sa.remove(ErrClosed)
		sa.mu.Unlock()
	}
}

// awaitDeletes waits until the peers answered the Deletes of sas or grace
// is over, sending the unanswered ones again at doubling intervals.
func (e *Engine) awaitDeletes(grace context.Context, sas []*ikeSA) {
	wait := shutdownRetransmit
	for len(sas) > 0 {
		timer := time.NewTimer(wait)
		for len(sas) > 0 {
			select {
			case <-sas[0].deleted:
				sas = sas[1:]
				continue
			case <-timer.C:
			case <-grace.Done():
			}
			break
		}
		timer.Stop()
		if grace.Err() != nil {
			if len(sas) > 0 {
				e.log.Warn("peers did not answer our Deletes before the shutdown grace ended; their IKE SAs stay until their DPD",
					zap.Int("unanswered", len(sas)), zap.Duration("grace", shutdownGrace))
			}
			return
		}
		// Not yet answered: again, paced like the first time.
		left := sas[:0]
		for _, sa := range sas {
			select {
			case <-sa.deleted:
				continue
			default:
			}
			left = append(left, sa)
			sa.resendDelete()
			if len(left)%shutdownBatch == 0 {
				pause(grace, shutdownPace)
			}
		}
		sas = left
		wait *= 2
	}
}

// resendDelete sends our outstanding Delete again.
func (sa *ikeSA) resendDelete() {
	sa.mu.Lock()
	defer sa.mu.Unlock()
	if sa.gone || sa.out == nil || sa.state != stateDeleting {
		return
	}
	sa.out.tries++
	sa.e.stats.add(&sa.e.stats.retrans)
	sa.send(sa.local, sa.remote, sa.out.pkt)
}

// pause waits d or until ctx is done.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
