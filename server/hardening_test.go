package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// HTTP-side hardening: oversized heads, slow heads, garbage, reflection.

func TestHeaderSizeCap(t *testing.T) {
	srv := startServer(t, nil) // 16 KiB
	for _, tc := range []struct {
		size   int
		status int // 0: the connection is closed without an answer
	}{{1000, 200}, {20000, 431}, {200000, 0}} {
		c, err := net.Dial("tcp", srv.addr)
		if err != nil {
			t.Fatal(err)
		}
		go fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", tc.size))
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		switch {
		case tc.status == 0 && err == nil:
			t.Errorf("%d-byte header: answered %d, want the connection closed", tc.size, resp.StatusCode)
		case tc.status != 0 && err != nil:
			t.Errorf("%d-byte header: %v, want %d", tc.size, err, tc.status)
		case tc.status != 0 && resp.StatusCode != tc.status:
			t.Errorf("%d-byte header: status %d, want %d", tc.size, resp.StatusCode, tc.status)
		}
		_ = c.Close()
	}
}

// TestSlowHeaders holds 1,500 connections that never finish their request
// and checks a real client still upgrades and chats meanwhile, and that the
// slow ones are dropped after the header timeout.
func TestSlowHeaders(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 1,500 connections")
	}
	srv := startServer(t, func(c *Config) { c.HeaderTimeout = 3 * time.Second })
	var slow []net.Conn
	for i := 0; i < 1500; i++ {
		c, err := net.Dial("tcp", srv.addr)
		if err != nil {
			t.Fatal(err)
		}
		slow = append(slow, c)
		if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")); err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		for _, c := range slow {
			_ = c.Close()
		}
	}()
	eventually(t, 5*time.Second, "1,500 slow connections accepted", func() bool { return srv.engine.Online() >= 1500 })

	ws := dial(t, srv)
	ws.join("r")
	ws.send(map[string]any{"type": "say", "room": "r", "text": "not delayed"})
	ws.expect("msg")
	if n := srv.engine.Online(); n < 1500 {
		t.Fatalf("slow connections dropped too early (%d left), the test proved nothing", n)
	}

	// After the header timeout they are gone; the WebSocket stays.
	for _, c := range slow[:10] {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
			t.Fatalf("slow connection: %v, want it closed by the server", err)
		}
	}
	ws.send(map[string]any{"type": "say", "room": "r", "text": "still here"})
	ws.expect("msg")
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// TestGarbageClosesOnlyThatConnection sends bytes that are no HTTP at all.
func TestGarbageClosesOnlyThatConnection(t *testing.T) {
	srv := startServer(t, nil)
	ws := dial(t, srv)
	ws.join("r")
	for _, junk := range []string{"\x00\x01\x02\r\n\r\n", "GET\r\n\r\n", "BREW /pot HTTP/1.1\r\n\r\n", "\x16\x03\x01\x02\x00\x01\x00"} {
		c, err := net.Dial("tcp", srv.addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write([]byte(junk))
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil && !isReset(err) {
			t.Fatalf("%q: %v, want the connection closed", junk, err)
		}
		if len(b) > 0 && !strings.HasPrefix(string(b), "HTTP/1.1 4") {
			t.Fatalf("%q: answered %q", junk, b)
		}
		_ = c.Close()
	}
	ws.send(map[string]any{"type": "say", "room": "r", "text": "unaffected"})
	ws.expect("msg")
}

// TestNothingReflected: error answers never echo what the request carried.
func TestNothingReflected(t *testing.T) {
	srv := startServer(t, nil)
	const evil = "<script>alert(1)</script>"
	_, _, resp := handshakeRaw(t, srv.addr, dialOpts{headers: map[string]string{"Origin": "https://x.example/" + evil}})
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 403 || strings.Contains(string(b), "script") {
		t.Fatalf("bad origin: %d %q", resp.StatusCode, b)
	}
	_, _, resp = handshakeRaw(t, srv.addr, dialOpts{headers: map[string]string{"Sec-WebSocket-Key": evil}})
	b, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || strings.Contains(string(b), "script") {
		t.Fatalf("bad key: %d %q", resp.StatusCode, b)
	}
	r, body := httpGet(t, srv, "/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
	if r.StatusCode != 404 || strings.Contains(body, "script") {
		t.Fatalf("unknown path: %d %q", r.StatusCode, body)
	}
	if r.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("404 without nosniff")
	}
}
