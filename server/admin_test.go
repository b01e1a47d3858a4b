package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
)

// TestAdminListener: /metrics and, with -pprof, the profiler answer on the
// admin listener only; the public listener answers 404 for them and keeps
// /healthz.
func TestAdminListener(t *testing.T) {
	t.Parallel()
	for _, pprof := range []bool{false, true} {
		srv := startServer(t, func(c *Config) { c.Pprof = pprof })
		if srv.adminAddr == "" || srv.adminAddr == srv.addr {
			t.Fatalf("admin address %q beside public %q", srv.adminAddr, srv.addr)
		}
		if host, _, _ := net.SplitHostPort(srv.adminAddr); host != "127.0.0.1" {
			t.Fatalf("admin listens on %s", srv.adminAddr)
		}
		for _, path := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/profile?seconds=1", "/debug/pprof/trace?seconds=1"} {
			if resp, body := httpGet(t, srv, path); resp.StatusCode != http.StatusNotFound {
				t.Errorf("public %s: %d %.60q, want 404", path, resp.StatusCode, body)
			}
		}
		if resp, body := httpGet(t, srv, "/healthz"); resp.StatusCode != 200 || body != "ok\n" {
			t.Errorf("public /healthz: %d %q", resp.StatusCode, body)
		}
		resp, body := adminGet(t, srv, "/metrics")
		if resp.StatusCode != 200 || !strings.Contains(body, "noom_connections 0") || !strings.Contains(body, "process_resident_memory_bytes") {
			t.Errorf("admin /metrics: %d %.200s", resp.StatusCode, body)
		}
		want := http.StatusNotFound
		if pprof {
			want = http.StatusOK
		}
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline"} {
			if resp, _ := adminGet(t, srv, path); resp.StatusCode != want {
				t.Errorf("pprof %v: admin %s: %d, want %d", pprof, path, resp.StatusCode, want)
			}
		}
	}
}

// TestAdminAddresses: empty turns the admin listener off; an explicit
// address that is taken fails the start; the default one, taken, leaves
// it off and the server up; -pprof without it is refused.
func TestAdminAddresses(t *testing.T) {
	t.Run("off", func(t *testing.T) {
		srv := startServer(t, func(c *Config) { c.AdminAddr = "" })
		if srv.admin != nil || srv.adminAddr != "" {
			t.Fatalf("admin listener on at %q", srv.adminAddr)
		}
		if resp, _ := httpGet(t, srv, "/metrics"); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("public /metrics: %d", resp.StatusCode)
		}
	})
	t.Run("taken explicitly", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		cfg := defaultConfig()
		cfg.Data = "" // no store in the package directory
		cfg.Data = "" // no store in the package directory
		cfg.Addr, cfg.AdminAddr = "127.0.0.1:0", ln.Addr().String()
		srv := newServer(cfg, newLogger(io.Discard, slog.LevelError))
		if err := srv.start(); err == nil || !strings.Contains(err.Error(), "admin listener on "+cfg.AdminAddr) {
			t.Fatalf("start with a taken -admin-addr: %v", err)
		}
	})
	t.Run("default taken", func(t *testing.T) {
		// Hold the default port, unless something else on the machine
		// does already: taken either way.
		if ln, err := net.Listen("tcp", defaultAdminAddr); err == nil {
			defer ln.Close()
		} else if !errors.Is(err, syscall.EADDRINUSE) {
			t.Skip(err)
		}
		var logs lockedBuffer
		cfg := defaultConfig()
		cfg.Data = "" // no store in the package directory
		cfg.Data = "" // no store in the package directory
		cfg.Addr = "127.0.0.1:0"
		srv := newServer(cfg, newLogger(&logs, slog.LevelInfo))
		if err := srv.start(); err != nil {
			t.Fatalf("start with the default admin address taken: %v", err)
		}
		defer func() { _ = srv.shutdown(context.Background()) }()
		if srv.admin != nil || !strings.Contains(logs.String(), "admin listener off") {
			t.Fatalf("admin %v, log:\n%s", srv.adminAddr, logs.String())
		}
		if resp, body := httpGet(t, srv, "/healthz"); resp.StatusCode != 200 {
			t.Fatalf("/healthz: %d %q", resp.StatusCode, body)
		}
	})
	t.Run("pprof needs it", func(t *testing.T) {
		if _, err := parseConfig([]string{"-pprof", "-admin-addr", ""}, io.Discard); err == nil {
			t.Fatal("-pprof without an admin listener accepted")
		}
	})
}
