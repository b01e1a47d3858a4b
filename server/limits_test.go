package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"weak"
)

// Limits and the close codes of PROTOCOL.md.

// TestRateLimitKeepsConnectionOpen floods one connection: the burst
// passes, a little more with the refill, the rest is dropped and counted,
// rate_limited comes at most once a second, and the connection serves
// again once a token is back. Each bound comes from the bucket's rule and
// the time the test saw pass, so a slow machine loosens a bound instead of
// breaking it; nothing waits for a quiet period.
func TestRateLimitKeepsConnectionOpen(t *testing.T) {
	// A slow refill, so that sending everything fast enough to be
	// refused is certain: passing all 60 would take 8 s.
	srv := startServer(t, func(c *Config) { c.Rate, c.Burst = 5, 20 })
	ws := dial(t, srv)
	start := time.Now()
	ws.join("r") // takes a token
	const sent = 60
	for i := 0; i < sent; i++ {
		b, _ := json.Marshal(map[string]any{"type": "say", "room": "r", "text": fmt.Sprint(i)})
		if err := ws.writeFrame(opText, true, b); err != nil {
			t.Fatal(err)
		}
	}
	// Every request is answered with its msg or dropped, and the server
	// counts the drops: the flood is over when the two add up to sent.
	rec := record(ws)
	dropped := func() int { return int(srv.stats.droppedRequests.Load()) }
	rec.wait(t, "every request answered or dropped", func(ms []msg) bool { return len(ms)+dropped() >= sent }, "msg")
	elapsed := time.Since(start)
	msgs := len(rec.snapshot("msg"))
	if msgs+dropped() != sent {
		t.Fatalf("%d msg and %d dropped for %d requests", msgs, dropped(), sent)
	}
	// The join took a token of the burst; the refill adds Rate a second.
	most := float64(srv.cfg.Burst-1) + srv.cfg.Rate*elapsed.Seconds() + 1
	if msgs < srv.cfg.Burst-1 || float64(msgs) > most {
		t.Fatalf("%d of %d requests passed in %v; the bucket allows %d to %.0f", msgs, sent, elapsed, srv.cfg.Burst-1, most)
	}

	// After 1/Rate a token is back. Its answer comes after everything the
	// flood caused, so the rate_limited count below is final.
	time.Sleep(time.Duration(1.5 * float64(time.Second) / srv.cfg.Rate))
	ws.send(map[string]any{"type": "say", "room": "r", "text": "later"})
	rec.wait(t, "the msg sent after the refill", func(ms []msg) bool {
		return len(ms) > 0 && ms[len(ms)-1].str("text") == "later"
	}, "msg")
	limited := 0
	for _, m := range rec.snapshot("error") {
		if m.str("code") != errRateLimited {
			t.Fatalf("unexpected error %v", m)
		}
		limited++
	}
	// At least one notice for the drops, at most one a second of them.
	if dropped() > 0 && (limited < 1 || limited > 1+int(elapsed/time.Second)) {
		t.Fatalf("%d rate_limited for %d drops in %v, want one a second at most", limited, dropped(), elapsed)
	}
	_, body := adminGet(t, srv, "/metrics")
	if !strings.Contains(body, fmt.Sprintf("noom_dropped_requests_total %d", sent-msgs)) {
		t.Errorf("dropped requests not counted:\n%s", grepLines(body, "dropped"))
	}
}

func TestErrorBudgetCloses1008(t *testing.T) {
	srv := startServer(t, func(c *Config) { c.ErrorBudget = 5; c.Rate, c.Burst = 1000, 1000 })
	ws := dial(t, srv)
	for i := 0; i < 5; i++ {
		_ = ws.writeFrame(opText, true, []byte("nope"))
		ws.expectError(errBadJSON, "")
	}
	// Refusals that are not malformed requests do not count.
	ws.send(map[string]any{"type": "leave", "room": "r"})
	ws.expectError(errNotInRoom, "leave")
	_ = ws.writeFrame(opText, true, []byte("nope"))
	ws.expectClose(closePolicy)
}

// TestCloseCodes checks the close code for each kind of bad frame; the
// complete RFC 6455 table lives with the hardening tests.
func TestCloseCodes(t *testing.T) {
	srv := startServer(t, func(c *Config) { c.MaxMessage = 1024 })
	cases := []struct {
		name string
		raw  func() []byte
		code int
	}{
		{"binary", func() []byte { return encodeClientFrame(opBinary, true, []byte{1, 2}) }, closeUnsupported},
		{"invalid UTF-8", func() []byte { return encodeClientFrame(opText, true, []byte{'"', 0xff, '"'}) }, closeInvalidData},
		{"too large", func() []byte { return encodeClientFrame(opText, true, make([]byte, 1025)) }, closeTooBig},
		{"fragments too large", func() []byte {
			return append(encodeClientFrame(opText, false, make([]byte, 600)), encodeClientFrame(opContinuation, true, make([]byte, 600))...)
		}, closeTooBig},
		{"unmasked", func() []byte { return []byte{0x81, 2, '{', '}'} }, closeProtocolError},
		{"reserved opcode", func() []byte { return encodeClientFrame(0x3, true, nil) }, closeProtocolError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ws := dial(t, srv)
			if _, err := ws.c.Write(tc.raw()); err != nil {
				t.Fatal(err)
			}
			ws.expectClose(tc.code)
			// The server then ends the TCP connection.
			if _, err := ws.readFrame(5 * time.Second); err == nil {
				t.Fatal("connection still open after the close frame")
			}
		})
	}

	t.Run("peer close is echoed", func(t *testing.T) {
		ws := dial(t, srv)
		_ = ws.writeFrame(opClose, true, []byte{0x0f, 0xa0, 'b', 'y', 'e'}) // 4000
		ws.expectClose(4000)
	})
	t.Run("ping answered with pong", func(t *testing.T) {
		ws := dial(t, srv)
		_ = ws.writeFrame(opPing, true, []byte("abc"))
		f, err := ws.readFrame(5 * time.Second)
		if err != nil || f.op != opPong || string(f.payload) != "abc" {
			t.Fatalf("got %+v %v, want pong abc", f, err)
		}
	})
}

// TestSlowConsumerClosed1013: a member that stops reading is closed with
// 1013 once its unsent bytes pass -send-buffer, and the other members lose
// nothing.
func TestSlowConsumerClosed1013(t *testing.T) {
	srv := startServer(t, func(c *Config) { c.SendBuffer = 64 << 10; c.Rate, c.Burst = 1e6, 1e6 })
	slow := dialWith(t, srv, dialOpts{dialer: smallReceiveBuffer()})
	checkSlowConsumer(t, slow, dial(t, srv), dial(t, srv), func() string {
		_, body := adminGet(t, srv, "/metrics")
		return body
	})
}

// checkSlowConsumer runs the slow-consumer scenario over any transport:
// slow never reads, healthy reads everything, pub publishes 3,000 messages
// of 4 KB (~12 MB, more than the kernel buffers plus the cap) into room
// "r". The server must close slow with 1013 (seen in metrics, the server's
// /metrics text) while healthy gets every message, in order.
func checkSlowConsumer(t *testing.T, slow, healthy, pub *wsConn, metrics func() string) {
	t.Helper()
	for _, ws := range []*wsConn{slow, healthy, pub} {
		ws.join("r")
	}
	rec := record(healthy)
	t.Cleanup(func() {
		if t.Failed() {
			rec.mu.Lock()
			t.Logf("healthy member: %d messages, read error %v", len(rec.msgs), rec.err)
			rec.mu.Unlock()
			for _, l := range strings.Split(metrics(), "\n") {
				if strings.HasPrefix(l, "noom_slow") || strings.HasPrefix(l, "noom_closes") {
					t.Log(l)
				}
			}
		}
	})
	text := strings.Repeat("x", 4000)
	const n = 3000
	go func() {
		// Paced so that the healthy member never falls more than 8
		// messages (~32 KB) behind, half the smallest cap, even on a
		// loaded machine: only the member that stopped reading may look
		// slow.
		for i := 0; i < n; i++ {
			for i-len(rec.snapshot("msg")) > 8 {
				time.Sleep(time.Millisecond)
			}
			b, _ := json.Marshal(map[string]any{"type": "say", "room": "r", "text": text})
			if err := pub.writeFrame(opText, true, b); err != nil {
				return
			}
		}
	}()
	go func() { // the publisher reads its own echo
		for {
			if _, err := pub.readFrame(time.Minute); err != nil {
				return
			}
		}
	}()
	eventually(t, 30*time.Second, "a slow-consumer close", func() bool {
		return strings.Contains(metrics(), "noom_slow_consumer_closes_total 1")
	})
	// Now read what the slow member was sent: messages, then close 1013.
	slow.expectClose(closeTryAgainLater)

	ms := rec.wait(t, "every message", func(ms []msg) bool { return len(ms) >= n }, "msg")
	if len(ms) != n {
		t.Fatalf("healthy member got %d messages, want %d", len(ms), n)
	}
	for i, m := range ms {
		if m.num("seq") != i+1 {
			t.Fatalf("healthy member: message %d has seq %d", i, m.num("seq"))
		}
	}
}

func TestConnectionCaps(t *testing.T) {
	srv := startServer(t, func(c *Config) { c.MaxConns = 3; c.MaxConnsPerIP = 2 })
	dial(t, srv)
	dial(t, srv)
	// Third from the same address: per-IP cap.
	_, _, resp := handshakeRaw(t, srv.addr, dialOpts{})
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("per-IP cap: status %d, want 429", resp.StatusCode)
	}
	// From another loopback address: allowed once, then the global cap.
	other := func() *http.Response {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
		c, err := d.Dial("tcp", srv.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
		resp, err := http.ReadResponse(newReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if r := other(); r.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("third connection: %d", r.StatusCode)
	}
	if r := other(); r.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("over the global cap: %d, want 503", r.StatusCode)
	}
	_, body := adminGet(t, srv, "/metrics")
	for _, want := range []string{`reason="conn_cap"} 1`, `reason="per_ip_cap"} 1`, "noom_connections 3"} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestOriginPolicy(t *testing.T) {
	srv := startServer(t, func(c *Config) { c.Origins = []string{"https://chat.example"} })
	self := "http://" + srv.addr
	cases := []struct {
		origin string
		status int
	}{
		{"", http.StatusSwitchingProtocols}, // not a browser
		{self, http.StatusSwitchingProtocols},
		{"https://chat.example", http.StatusSwitchingProtocols},
		{"https://evil.example", http.StatusForbidden},
		{"null", http.StatusForbidden},
		{"http://" + srv.addr + ".evil.example", http.StatusForbidden},
	}
	for _, tc := range cases {
		_, _, resp := handshakeRaw(t, srv.addr, dialOpts{headers: map[string]string{"Origin": tc.origin}})
		if resp.StatusCode != tc.status {
			t.Errorf("Origin %q: status %d, want %d", tc.origin, resp.StatusCode, tc.status)
		}
	}
}

func TestHandshakeRefusals(t *testing.T) {
	srv := startServer(t, nil)
	cases := []struct {
		name    string
		headers map[string]string
		status  int
	}{
		{"no key", map[string]string{"Sec-WebSocket-Key": ""}, http.StatusBadRequest},
		{"bad key", map[string]string{"Sec-WebSocket-Key": "short"}, http.StatusBadRequest},
		{"version 8", map[string]string{"Sec-WebSocket-Version": "8"}, http.StatusUpgradeRequired},
		{"no upgrade", map[string]string{"Upgrade": ""}, http.StatusUpgradeRequired},
	}
	for _, tc := range cases {
		_, _, resp := handshakeRaw(t, srv.addr, dialOpts{headers: tc.headers})
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
		if tc.status == http.StatusUpgradeRequired && tc.name == "version 8" && resp.Header.Get("Sec-WebSocket-Version") != "13" {
			t.Errorf("426 without Sec-WebSocket-Version: 13")
		}
	}
}

// TestIdleTimeout: the server pings; a client that answers stays, a silent
// one is dropped, not before it has been silent for the idle timeout. How
// much later depends on the machine, so only a generous deadline bounds
// that; the client that answers must still be served afterwards.
func TestIdleTimeout(t *testing.T) {
	srv := startServer(t, func(c *Config) { c.PingInterval = 100 * time.Millisecond; c.IdleTimeout = time.Second })
	alive := dial(t, srv) // first, so it is idle but for pongs longer than silent
	start := time.Now()   // before the upgrade, the last time the server reads from silent
	silent := dial(t, srv)
	served := make(chan error, 1)
	go func() { // answers pings until the answer to the probe below arrives
		for {
			f, err := alive.readFrame(30 * time.Second)
			switch {
			case err != nil:
				served <- err
				return
			case f.op == opPing:
				if err := alive.writeFrame(opPong, true, f.payload); err != nil {
					served <- err
					return
				}
			case f.op == opText && strings.Contains(string(f.payload), "still-here"):
				served <- nil
				return
			}
		}
	}()

	for {
		f, err := silent.readFrame(time.Until(start.Add(10 * time.Second)))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("silent client still connected after 10 s")
		}
		if err != nil {
			if d := time.Since(start); d < srv.cfg.IdleTimeout {
				t.Fatalf("silent client dropped after %v, before the idle timeout (%v)", d, srv.cfg.IdleTimeout)
			}
			break
		}
		if f.op != opPing {
			t.Fatalf("unexpected frame %d", f.op)
		}
	}
	// Without its pongs alive would be gone too by the next sweeps.
	time.Sleep(2 * srv.cfg.PingInterval)
	alive.send(map[string]any{"type": "nick", "nick": "still-here"})
	if err := <-served; err != nil {
		t.Fatalf("client answering pings was dropped: %v", err)
	}
}

// TestShutdownSends1001: a shutdown says 1001 to every connection, answers
// 503 on /healthz and to upgrades while it drains, and returns once the
// connections are gone.
func TestShutdownSends1001(t *testing.T) {
	srv := startServer(t, nil)
	var clients []*wsConn
	for i := 0; i < 20; i++ {
		ws := dial(t, srv)
		ws.join("r")
		clients = append(clients, ws)
	}
	if resp, _ := httpGet(t, srv, "/healthz"); resp.StatusCode != 200 {
		t.Fatalf("healthz %d before shutdown", resp.StatusCode)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- srv.shutdown(ctx)
	}()
	for _, ws := range clients[1:] {
		ws.expectClose(closeGoingAway)
	}
	// The first client has not answered yet, so the server is draining.
	if resp, body := httpGet(t, srv, "/healthz"); resp.StatusCode != 503 {
		t.Fatalf("healthz while draining: %d %s", resp.StatusCode, body)
	}
	if _, _, resp := handshakeRaw(t, srv.addr, dialOpts{}); resp.StatusCode != 503 {
		t.Fatalf("upgrade while draining: %d", resp.StatusCode)
	}
	for _, ws := range clients {
		_ = ws.writeFrame(opClose, true, []byte{0x03, 0xe9})
	}
	clients[0].expectClose(closeGoingAway)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown did not return")
	}
}

// TestHTTPDeadlineRearmed: nbio's accept path may arm its HTTP read deadline
// again after the upgrade cleared it (it does so after handing the socket to
// the poller). The server settles new connections a second or two later, so
// a quiet WebSocket outlives -header-timeout.
func TestHTTPDeadlineRearmed(t *testing.T) {
	srv := startServer(t, func(c *Config) { c.HeaderTimeout = 3 * time.Second })
	ws := dial(t, srv)
	ws.join("r")
	c := srv.hub.lookup(ws.id)
	_ = c.nbc.SetReadDeadline(time.Now().Add(srv.cfg.HeaderTimeout)) // what the race does
	ws.expectSilence(4 * time.Second)
	ws.send(map[string]any{"type": "say", "room": "r", "text": "still open"})
	ws.expect("msg")
}

// TestChurnLeavesNoResidue connects and disconnects 600 times, half of
// them after joining, saying and leaving, then checks that nothing is
// left: no connection, no room, no registered client, and every
// connection's state collected by the GC.
func TestChurnLeavesNoResidue(t *testing.T) {
	srv := startServer(t, func(c *Config) { c.Rate, c.Burst = 1000, 1000 })
	h := srv.hub
	var clients []weak.Pointer[client]
	for i := 0; i < churnConns; i++ {
		// Not dial: its cleanup would keep every socket reachable.
		c, br, resp := handshakeRaw(t, srv.addr, dialOpts{})
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade: %d", resp.StatusCode)
		}
		ws := &wsConn{t: t, c: c, br: br}
		hello := ws.expect("hello")
		clients = append(clients, weak.Make(h.lookup(hello.str("id"))))
		if i%2 == 0 { // the rest close in the lobby, right after hello
			for _, room := range []string{"a", fmt.Sprint("r", i%7)} {
				ws.send(map[string]any{"type": "join", "room": room})
			}
			ws.send(map[string]any{"type": "say", "room": "a", "text": "hi"})
			ws.send(map[string]any{"type": "leave", "room": "a"})
			ws.waitFor("left")
		}
		if i%3 == 0 { // some leave by a close frame, the rest by dropping TCP
			_ = ws.writeFrame(opClose, true, []byte{0x03, 0xe8})
			ws.expectClose(closeNormal)
		}
		_ = c.Close()
	}
	eventually(t, 10*time.Second, "every connection gone", func() bool { return srv.stats.connections.Load() == 0 })
	eventually(t, 5*time.Second, "no room left", func() bool { return h.roomCount.Load() == 0 && len(h.roomList(0)) == 0 })
	for i := range h.shards {
		h.shards[i].mu.Lock()
		n := len(h.shards[i].rooms)
		h.shards[i].mu.Unlock()
		if n != 0 {
			t.Fatalf("shard %d still holds %d rooms", i, n)
		}
	}
	h.clientsMu.RLock()
	left := len(h.clients)
	h.clientsMu.RUnlock()
	if left != 0 {
		t.Fatalf("%d clients still registered", left)
	}
	// Workers keep the connections of the last two seconds for settling
	// nbio's HTTP deadline (worker.settle); after that only the last
	// connection may still sit in a parked goroutine's local variable.
	// nbio may hold closed sockets' Conns longer, of any age, and so did
	// their clients until the session let go of them (session.go): one to
	// ten of 600 stayed reachable.
	const held = 1
	reachable := func() (n int, which []int) {
		runtime.GC()
		for i, p := range clients {
			if p.Value() != nil {
				n++
				if len(which) < 20 {
					which = append(which, i)
				}
			}
		}
		return n, which
	}
	alive, which := reachable()
	for deadline := time.Now().Add(10 * time.Second); alive > held && time.Now().Before(deadline); alive, which = reachable() {
		time.Sleep(10 * time.Millisecond)
	}
	if alive > held {
		// Say what holds them where a test can see it: the workers' lists
		// of the lobby (the connections in no room), read once the
		// workers have stopped.
		online := srv.engine.Online()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.shutdown(ctx)
		inLobby := 0
		for _, part := range h.lobby.parts {
			inLobby += len(part)
		}
		t.Fatalf("%d of %d connections' state still reachable after 10 s (%v); the workers' lobby lists still hold %d closed connections, nbio's engine %d",
			alive, len(clients), which, inLobby, online)
	}
	t.Logf("%d of %d connections' state still reachable (%v)", alive, len(clients), which)
}

var churnConns = func() int {
	if v, err := strconv.Atoi(os.Getenv("CHURN")); err == nil {
		return v
	}
	return 600
}()
