package sfu

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// pionLogs bridges pion's leveled loggers into the SFU's slog.Logger, so
// pion's messages land in the server's log with the same format instead
// of on stderr. pion is chatty: its Info is every state change, and its
// Warn fires on every normal close ("Failed to accept RTP stream is
// already closed", reads on closed pipes), so both go to Debug; pion's
// Error becomes a Warn. What an operator must act on, the SFU logs itself
// (a failed connection, a page that does not answer).
type pionLogs struct{ log *slog.Logger }

// NewLogger implements logging.LoggerFactory.
func (f pionLogs) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{log: f.log.With("pion", scope)}
}

type pionLogger struct{ log *slog.Logger }

func (l pionLogger) out(level slog.Level, msg string) {
	l.log.Log(context.Background(), level, msg)
}

func (l pionLogger) outf(level slog.Level, format string, args ...any) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, fmt.Sprintf(format, args...))
	}
}

func (l pionLogger) Trace(msg string)                  {}
func (l pionLogger) Tracef(format string, args ...any) {}
func (l pionLogger) Debug(msg string)                  { l.out(slog.LevelDebug-4, msg) }
func (l pionLogger) Debugf(format string, args ...any) { l.outf(slog.LevelDebug-4, format, args...) }
func (l pionLogger) Info(msg string)                   { l.out(slog.LevelDebug, msg) }
func (l pionLogger) Infof(format string, args ...any)  { l.outf(slog.LevelDebug, format, args...) }
func (l pionLogger) Warn(msg string)                   { l.out(slog.LevelDebug, msg) }
func (l pionLogger) Warnf(format string, args ...any)  { l.outf(slog.LevelDebug, format, args...) }
func (l pionLogger) Error(msg string)                  { l.out(slog.LevelWarn, msg) }
func (l pionLogger) Errorf(format string, args ...any) { l.outf(slog.LevelWarn, format, args...) }
