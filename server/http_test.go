package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestHTTPEndpoints(t *testing.T) {
	srv := startServer(t, func(c *Config) {
		c.ICEServers = []ICEServer{{URLs: []string{"stun:stun.example:3478"}}}
		c.CallLimit = 4
	})

	resp, body := httpGet(t, srv, "/")
	if resp.StatusCode != 200 || !strings.Contains(body, "<html") {
		t.Fatalf("/: %d %.80s", resp.StatusCode, body)
	}
	for h, want := range map[string]string{
		"Content-Security-Policy": "default-src 'self'",
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
	} {
		if !strings.Contains(resp.Header.Get(h), want) {
			t.Errorf("/ header %s = %q, want %q", h, resp.Header.Get(h), want)
		}
	}

	resp, body = httpGet(t, srv, "/healthz")
	if resp.StatusCode != 200 || body != "ok\n" {
		t.Fatalf("/healthz: %d %q", resp.StatusCode, body)
	}

	resp, body = httpGet(t, srv, "/api/config")
	var cfg struct {
		ICEServers []struct{ URLs []string } `json:"iceServers"`
		CallLimit  int                       `json:"callLimit"`
	}
	if err := json.Unmarshal([]byte(body), &cfg); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/api/config: %d %s", resp.StatusCode, body)
	}
	if cfg.CallLimit != 4 || len(cfg.ICEServers) != 1 || cfg.ICEServers[0].URLs[0] != "stun:stun.example:3478" {
		t.Fatalf("/api/config = %s", body)
	}

	resp, body = httpGet(t, srv, "/api/rooms")
	if resp.StatusCode != 200 || strings.TrimSpace(body) != `{"rooms":[]}` {
		t.Fatalf("/api/rooms empty: %d %s", resp.StatusCode, body)
	}

	ws := dial(t, srv)
	ws.join("r")
	ws.send(map[string]any{"type": "say", "room": "r", "text": "hi"})
	ws.expect("msg")
	_, body = adminGet(t, srv, "/metrics")
	for _, want := range []string{
		"noom_connections 1", "noom_rooms 1", "noom_upgrades_total 1", "noom_deliveries_total 1",
		"noom_frames_in_total 2", "noom_bytes_in_total", "noom_frames_out_total", "noom_bytes_out_total",
		"noom_slow_consumer_closes_total 0", `noom_errors_total{code="rate_limited"} 0`,
		`noom_closes_total{code="1013"} 0`, "process_cpu_seconds_total", "process_resident_memory_bytes",
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	if resp, _ := httpGet(t, srv, "/nope"); resp.StatusCode != 404 {
		t.Errorf("/nope: %d", resp.StatusCode)
	}
	r, err := http.Post("http://"+srv.addr+"/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d", r.StatusCode)
	}
}

func TestConfigFlags(t *testing.T) {
	var out strings.Builder
	cfg, err := parseConfig([]string{"-addr", "127.0.0.1:9", "-rate", "5", "-origins", "https://a.example/, https://b.example",
		"-ice-servers", `[{"urls":"turn:t.example","username":"u","credential":"p"}]`}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "127.0.0.1:9" || cfg.Rate != 5 || cfg.Burst != 40 || len(cfg.Origins) != 2 || cfg.Origins[0] != "https://a.example" {
		t.Fatalf("parsed %+v", cfg)
	}
	if ice := cfg.ICEServers; len(ice) != 1 || ice[0].URLs[0] != "turn:t.example" || ice[0].Credential != "p" {
		t.Fatalf("ice servers %+v", ice)
	}
	if _, err := parseConfig([]string{"-ping-interval", "2m"}, &out); err == nil {
		t.Fatal("a ping interval longer than the idle timeout was accepted")
	}
	out.Reset()
	if _, err := parseConfig([]string{"-help"}, &out); err == nil || !strings.Contains(out.String(), "-send-buffer bytes") ||
		!strings.Contains(out.String(), "(default 1048576)") {
		t.Fatalf("-help output lacks the defaults:\n%s", out.String())
	}
}

// TestNoGoroutinePerConnection opens 2,000 connections, all in a room, and
// checks the process's goroutine count does not grow with them.
func TestNoGoroutinePerConnection(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 2,000 connections")
	}
	srv := startServer(t, nil)
	time.Sleep(200 * time.Millisecond)
	base := runtime.NumGoroutine()
	var conns []*wsConn
	for i := 0; i < 2000; i++ {
		ws := dial(t, srv)
		ws.send(map[string]any{"type": "join", "room": "flat"})
		conns = append(conns, ws)
	}
	for _, ws := range conns {
		ws.waitFor("joined")
	}
	if srv.stats.connections.Load() != 2000 {
		t.Fatalf("%d connections open", srv.stats.connections.Load())
	}
	// A few goroutines may come and go (nbio's handler pool, timers), and
	// on a loaded machine take a while to go; 2,000 connections must not
	// leave anything near 2,000.
	after := settleGoroutines(t, base+20)
	t.Logf("goroutines: %d before, %d with 2,000 connections", base, after)
}

// TestHeadHasNoBody: a HEAD request is answered with its status and
// headers only, so that the next request on the same keep-alive
// connection reads its own response. Each path is asked HEAD then GET
// /healthz on one raw connection, on the main listener and on the TLS
// server's redirect listener.
func TestHeadHasNoBody(t *testing.T) {
	srv := startServer(t, nil)
	tlsSrv, _ := startTLSServer(t, func(c *Config) { c.HTTPRedirect = "127.0.0.1:0" })
	check := func(addr, path string, status int, next int) {
		t.Helper()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = fmt.Fprintf(conn, "HEAD %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path)
		br := bufio.NewReader(conn)
		head, err := http.ReadResponse(br, &http.Request{Method: http.MethodHead})
		if err != nil || head.StatusCode != status {
			t.Fatalf("HEAD %s on %s: %v %v, want %d", path, addr, head, err, status)
		}
		head.Body.Close()
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
		if err != nil {
			t.Fatalf("the response after HEAD %s on %s: %v", path, addr, err)
		}
		resp.Body.Close()
		if resp.StatusCode != next {
			t.Fatalf("the response after HEAD %s on %s: %d, want %d", path, addr, resp.StatusCode, next)
		}
	}
	for path, status := range map[string]int{"/": 200, "/app.js": 200, "/api/rooms": 200, "/healthz": 200, "/nope": 404, "/ws": 405} {
		check(srv.addr, path, status, 200)
	}
	check(tlsSrv.redirectAddr, "/", http.StatusMovedPermanently, http.StatusMovedPermanently)
}
