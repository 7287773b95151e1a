package netlab

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// DefaultStopGrace is how long Stop waits after SIGTERM before SIGKILL
// when a namespace or lab is closed.
const DefaultStopGrace = 5 * time.Second

// killWait bounds the wait after SIGKILL: a process that survives it is
// stuck in the kernel and waiting longer would only hang the test.
const killWait = 5 * time.Second

// Process is a command started inside a namespace by NS.Start.
type Process struct {
	Cmd *exec.Cmd

	done chan struct{}
	err  error // set before done is closed
}

func newProcess(cmd *exec.Cmd) *Process {
	p := &Process{Cmd: cmd, done: make(chan struct{})}
	// Reap the child as soon as it exits so Done can be watched and no
	// zombie is left if the caller never calls Stop.
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p
}

// Pid returns the process id (also its process group id).
func (p *Process) Pid() int { return p.Cmd.Process.Pid }

// Done is closed when the process has exited and its output is drained.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err returns the exit error after Done is closed (nil before).
func (p *Process) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Stop sends SIGTERM to the process group, waits up to grace, then sends
// SIGKILL and waits a bounded time more. A process that had already exited
// is not an error; one that cannot be killed is.
func (p *Process) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	pgid := p.Cmd.Process.Pid
	// Negative pid: the whole process group, which Start made the child
	// lead, so helpers it forked die with it.
	if err := syscall.Kill(-pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("netlab: SIGTERM %s: %w", p.name(), err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("netlab: SIGKILL %s: %w", p.name(), err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(killWait):
		return fmt.Errorf("netlab: %s (pid %d) did not exit after SIGKILL", p.name(), pgid)
	}
}

func (p *Process) name() string { return strings.Join(p.Cmd.Args, " ") }
