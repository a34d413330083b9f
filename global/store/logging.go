package store

import (
	"bytes"
	"context"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// hclogFor returns an hclog.Logger (what raft wants) that writes through
// logger, one slog record per line, at the line's level.
func hclogFor(logger *slog.Logger, name string) hclog.Logger {
	level := hclog.Warn
	switch {
	case logger.Enabled(context.Background(), slog.LevelDebug):
		level = hclog.Debug
	case logger.Enabled(context.Background(), slog.LevelInfo):
		level = hclog.Info
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:            name,
		Level:           level,
		Output:          &slogWriter{logger: logger.With("component", name)},
		DisableTime:     true,
		IncludeLocation: false,
	})
}

// slogWriter turns hclog's text lines ("[INFO]  raft: msg: k=v") into slog
// records.
type slogWriter struct{ logger *slog.Logger }

func (w *slogWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		level := slog.LevelInfo
		msg := string(bytes.TrimSpace(line))
		for tag, l := range map[string]slog.Level{"[TRACE]": slog.LevelDebug - 4, "[DEBUG]": slog.LevelDebug, "[INFO]": slog.LevelInfo, "[WARN]": slog.LevelWarn, "[ERROR]": slog.LevelError} {
			if bytes.HasPrefix(line, []byte(tag)) {
				level = l
				msg = string(bytes.TrimSpace(line[len(tag):]))
				break
			}
		}
		w.logger.Log(context.Background(), level, msg)
	}
	return len(p), nil
}
