package netlab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// syncBuffer is a goroutine-safe strings.Builder for process output.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestStartInNamespace checks that a started process runs in the
// namespace, that its output is captured, and that Stop kills its whole
// process group (a backgrounded grandchild included).
func TestStartInNamespace(t *testing.T) {
	n := NewTestNS(t, "", "proc")
	var st unix.Stat_t
	if err := unix.Fstat(int(n.NsHandle()), &st); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("net:[%d]", st.Ino)

	var out syncBuffer
	// The trap keeps sh alive through SIGTERM so Stop must escalate to
	// SIGKILL; the background sleep is the grandchild that must die too.
	cmd := exec.Command("sh", "-c", `trap '' TERM; readlink /proc/self/ns/net; sleep 300 & wait`)
	p, err := n.Start(cmd, &out)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "\n") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := strings.TrimSpace(out.String()); got != want {
		t.Errorf("process saw namespace %q, want %q", got, want)
	}
	start := time.Now()
	if err := p.Stop(200 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Stop took %v", d)
	}
	if left := liveInGroup(t, p.Pid()); len(left) > 0 {
		t.Errorf("process group %d still has live members after Stop: %v", p.Pid(), left)
	}
	if err := p.Stop(time.Second); err != nil {
		t.Errorf("second Stop: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.Run(ctx, nil, "sh", "-c", "exit 3"); err == nil {
		t.Error("Run of a failing command returned nil")
	}
}

// liveInGroup lists the non-zombie processes of process group pgid. A
// killed grandchild stays a zombie until its new parent (pid 1 or a
// subreaper) reaps it, so kill(-pgid, 0) alone would race with that.
func liveInGroup(t *testing.T, pgid int) []int {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	var live []int
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // exited meanwhile
		}
		// Fields after the parenthesised command: state ppid pgrp ...
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		var state string
		var ppid, pgrp, pid int
		if _, err := fmt.Sscanf(s[i+2:], "%s %d %d", &state, &ppid, &pgrp); err != nil {
			continue
		}
		if pgrp == pgid && state != "Z" {
			fmt.Sscanf(s, "%d", &pid)
			live = append(live, pid)
		}
	}
	return live
}
