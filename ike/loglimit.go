package ike

import (
	"sync"
	"time"
)

// logLimiter bounds the log lines that unauthenticated packets cause. A
// kind of line (with its source, where the caller names one) is written
// at most once a second, and all such lines together at most
// logLinesPerSecond times a second: spoofed sources each get their own
// key, so the per-key limit alone let 5,000 spoofed requests write 4,967
// lines. What is held back is counted and reported in one summary line
// when the next line is let through.
type logLimiter struct {
	mu   sync.Mutex
	last map[string]time.Time
	// window is the start of the current second of the global budget,
	// used the lines written in it.
	window time.Time
	used   int
	// suppressed lines since suppressedFrom, not yet reported.
	suppressed     int
	suppressedFrom time.Time
}

const (
	logLinesPerSecond = 10
	// maxLogKeys bounds the per-key table; a flood of distinct keys
	// clears it rather than growing it.
	maxLogKeys = 1024
)

func newLogLimiter() *logLimiter { return &logLimiter{last: map[string]time.Time{}} }

// allow reports whether a line of kind key may be written at now, and the
// number of lines suppressed (since when) that the caller should report
// first.
func (l *logLimiter) allow(key string, now time.Time) (ok bool, suppressed int, since time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.window) >= time.Second {
		l.window, l.used = now, 0
	}
	if t, seen := l.last[key]; (seen && now.Sub(t) < time.Second) || l.used >= logLinesPerSecond {
		if l.suppressed == 0 {
			l.suppressedFrom = now
		}
		l.suppressed++
		return false, 0, time.Time{}
	}
	if len(l.last) >= maxLogKeys {
		clear(l.last)
	}
	l.last[key] = now
	l.used++
	suppressed, since = l.suppressed, l.suppressedFrom
	l.suppressed = 0
	return true, suppressed, since
}
