package clustertest

import (
	"io"
	"strings"
	"sync"
)

// maxLogLines bounds the lines a LogBuffer keeps (the oldest go first).
const maxLogLines = 50000

// LogBuffer keeps one node's log lines (slog text format), across its
// restarts, so that tests can look for events and dump them on failure.
type LogBuffer struct {
	mu    sync.Mutex
	lines []string
	echo  io.Writer // also write here (CLUSTERTEST_LOG=1: stderr)
}

// Write takes one or more log lines.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lines = append(b.lines, strings.Split(strings.TrimRight(string(p), "\n"), "\n")...)
	if over := len(b.lines) - maxLogLines; over > 0 {
		b.lines = append(b.lines[:0:0], b.lines[over:]...)
	}
	if b.echo != nil {
		_, _ = b.echo.Write(p)
	}
	return len(p), nil
}

// Lines returns a copy of the lines logged so far.
func (b *LogBuffer) Lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.lines...)
}

// Len is how many lines were kept so far; with Since, it marks a point.
func (b *LogBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.lines)
}

// Since returns the lines logged after mark (a Len).
func (b *LogBuffer) Since(mark int) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if mark > len(b.lines) {
		return nil
	}
	return append([]string(nil), b.lines[mark:]...)
}

// Count is how many lines contain substr.
func (b *LogBuffer) Count(substr string) int {
	return len(Grep(b.Lines(), substr))
}

// Grep returns the lines that contain substr.
func Grep(lines []string, substr string) []string {
	var out []string
	for _, l := range lines {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}
