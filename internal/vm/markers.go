package vm

import (
	"strconv"
	"strings"
)

// The guest's /init brackets each binary's output with these markers on
// the serial console, so one log carries every binary's result.
const (
	markerBooted = "=== VM-BOOTED"
	markerRun    = "=== VM-RUN "
	markerExit   = "=== VM-EXIT "
)

// parseConsole splits a console log into per-binary results, in the order
// the markers appear. A binary whose exit marker never came (the VM hung,
// panicked or was killed) has Finished false and ExitCode -1.
func parseConsole(log string) []BinaryResult {
	var out []BinaryResult
	var cur *BinaryResult
	var buf strings.Builder
	log = strings.ReplaceAll(log, "\r\n", "\n")
	for _, line := range strings.SplitAfter(log, "\n") {
		if cur == nil {
			if name, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), markerRun); ok {
				out = append(out, BinaryResult{Name: name, ExitCode: -1})
				cur = &out[len(out)-1]
				buf.Reset()
			}
			continue
		}
		// A binary's last line may lack its newline, so the exit marker
		// can start mid-line; what precedes it is still output.
		i := strings.Index(line, markerExit)
		if i < 0 {
			buf.WriteString(line)
			continue
		}
		buf.WriteString(line[:i])
		rest := strings.TrimRight(line[i+len(markerExit):], "\r\n")
		name, rc, ok := strings.Cut(rest, " rc=")
		code, err := strconv.Atoi(rc)
		if !ok || err != nil || name != cur.Name {
			// Not our marker after all (a binary printing the text):
			// keep it as output.
			buf.WriteString(line[i:])
			continue
		}
		cur.ExitCode = code
		cur.Finished = true
		cur.Output = buf.String()
		cur = nil
	}
	if cur != nil {
		cur.Output = buf.String()
	}
	return out
}
