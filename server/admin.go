package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The admin listener is for the machine's operators: /metrics (process
// internals: memory, goroutines, open files, counters), with a password the
// operator's console at /admin/ (console_source.go), and with -pprof Go's
// profiler, which can cost a core for as long as a client asks. None of it
// belongs on the public listener, which keeps only /healthz for load
// balancers.
//
// It is a standard library http.Server on its own listener, with a
// goroutine per connection: a handful of scrapes a minute, and profiles
// that stream for seconds, which the nbio engine's handlers (that must
// never block) could not serve. It shares nothing with the engine but the
// Prometheus registry, which is safe for concurrent use.

// adminReadHeaderTimeout bounds how long a connection may take to send its
// request head. There is no write timeout: /debug/pprof/profile and trace
// stream for as many seconds as asked (30 by default).
const adminReadHeaderTimeout = 10 * time.Second

// adminRoutes builds the admin listener's handler.
func (s *server) adminRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	mux.Handle("/admin/", s.adminState().ui) // the console (console_source.go); off, it says how to turn it on
	if s.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index) // also the named profiles: heap, goroutine, …
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// startAdmin opens the admin listener, unless -admin-addr is empty, and
// records its bound address in s.adminAddr. An address given explicitly
// must bind or the start fails; the default one is optional (see
// defaultAdminAddr): taken, the server runs without it and says so.
func (s *server) startAdmin() error {
	if s.cfg.AdminAddr == "" {
		if pw, _ := adminPassword(&s.cfg); len(pw) > 0 {
			s.log.Warn("console off: it is served on the admin listener, and -admin-addr is empty")
		}
		return nil
	}
	ui, err := s.newConsole()
	if err != nil {
		return err
	}
	s.adminState().ui = ui
	ln, err := net.Listen("tcp", s.cfg.AdminAddr)
	if err != nil {
		if s.cfg.AdminAddr == defaultAdminAddr && errors.Is(err, syscall.EADDRINUSE) {
			s.log.Warn("admin listener off: its default address is taken; give each node its own -admin-addr",
				"addr", s.cfg.AdminAddr, "err", err)
			return nil
		}
		return fmt.Errorf("admin listener on %s: %w", s.cfg.AdminAddr, err)
	}
	s.admin = &http.Server{
		Handler:           s.adminRoutes(),
		ReadHeaderTimeout: adminReadHeaderTimeout,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn), // accept errors and handler panics, into the one log
	}
	s.adminAddr = ln.Addr().String()
	s.adminDone = make(chan struct{})
	go func() {
		defer close(s.adminDone)
		if err := s.admin.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin listener failed", "addr", s.adminAddr, "err", err)
		}
	}()
	s.log.Info("admin listening", "addr", s.adminAddr, "pprof", s.cfg.Pprof)
	return nil
}

// stopAdmin closes the admin listener: requests in flight get a second to
// finish (a profile being taken is cut off), then their connections are
// closed. It does nothing when the listener is off.
func (s *server) stopAdmin() {
	s.stopConsole()
	if s.admin == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.admin.Shutdown(ctx); err != nil {
		_ = s.admin.Close()
	}
	<-s.adminDone
	s.admin = nil
}
