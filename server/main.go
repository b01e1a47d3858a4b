// Command noom is a real-time chat and video-call server: one nbio listener
// serves the chat page, the HTTP API and WebSocket, with no goroutine per
// connection. See README.md for a reading order through this package.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// defaultGCPercent is the GC target the server runs with unless GOGC is set.
const defaultGCPercent = 50

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "noom:", err)
		os.Exit(1)
	}
}

// run is the whole program but for signal wiring: it serves until ctx ends,
// then shuts down gracefully.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, err := parseConfig(args, stderr)
	if err != nil {
		return err
	}
	level, _ := parseLevel(cfg.LogLevel) // validated by parseConfig
	log := newLogger(stderr, level)
	bridgeNbioLogs(log, level)

	if os.Getenv("GOGC") == "" {
		// Most of a chat server's heap is long-lived per-connection state and
		// its steady state allocates little, so a lower GC target trades a
		// little CPU during connection storms for a third less memory per
		// connection (README, "Memory"). GOGC in the environment wins.
		debug.SetGCPercent(defaultGCPercent)
	}
	srv := newServer(cfg, log)
	if err := srv.start(); err != nil {
		return err
	}
	if srv.tls != nil {
		// SIGHUP reloads the certificate (tls.go). Only with TLS: without,
		// it keeps its default action, ending the process, as when the
		// terminal running `make run` closes. Wired before "listening" is
		// logged, so that whoever waits for that line may send it.
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		go srv.reloadOnSignal(ctx, hup)
	}
	log.Info("listening", "addr", srv.addr, "max_conns", cfg.MaxConns, "workers", len(srv.hub.workers), "shards", len(srv.hub.shards))
	<-ctx.Done()
	log.Info("shutting down", "connections", srv.stats.connections.Load(), "timeout", cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.shutdown(sctx); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}
