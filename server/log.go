package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/lesismal/nbio/logging"
)

// newLogger returns the server's structured logger, writing text to w.
func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// nbioLogger bridges nbio's printf-style logger into slog, so the engine's
// messages (among them recovered panics, at error level) land in the same
// stream with the same levels.
type nbioLogger struct{ l *slog.Logger }

func (n nbioLogger) log(level slog.Level, format string, v ...any) {
	if n.l.Enabled(context.Background(), level) {
		n.l.Log(context.Background(), level, fmt.Sprintf(format, v...), "component", "nbio")
	}
}

// Debug implements logging.Logger.
func (n nbioLogger) Debug(format string, v ...any) { n.log(slog.LevelDebug, format, v...) }

// Info implements logging.Logger.
func (n nbioLogger) Info(format string, v ...any) { n.log(slog.LevelInfo, format, v...) }

// Warn implements logging.Logger.
func (n nbioLogger) Warn(format string, v ...any) { n.log(slog.LevelWarn, format, v...) }

// Error implements logging.Logger.
func (n nbioLogger) Error(format string, v ...any) { n.log(slog.LevelError, format, v...) }

// bridgeNbioLogs routes nbio's process-wide logger into l. nbio's Info lines
// (one per listener) are noise next to ours, so they show at debug only.
func bridgeNbioLogs(l *slog.Logger, level slog.Level) {
	logging.SetLogger(nbioLogger{l})
	switch {
	case level <= slog.LevelDebug:
		logging.SetLevel(logging.LevelDebug)
	case level <= slog.LevelWarn:
		logging.SetLevel(logging.LevelWarn)
	default:
		logging.SetLevel(logging.LevelError)
	}
}
