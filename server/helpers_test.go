package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Test helpers: a real server on 127.0.0.1:0 and a minimal WebSocket client
// over a plain TCP socket, so tests control every byte on the wire.

// testLogWriter sends server logs to t.Log and fails the test on any
// error-level line about a recovered panic, which nbio would otherwise only
// log.
type testLogWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
	all  strings.Builder // every line, for tests that check what is logged
}

// testLogs maps a server started by startServer to its log writer.
var testLogs sync.Map

// logsOf returns everything srv logged so far.
func logsOf(srv *server) string {
	v, ok := testLogs.Load(srv)
	if !ok {
		return ""
	}
	w := v.(*testLogWriter)
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.all.String()
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return len(p), nil
	}
	line := string(p)
	if w.all.Len() < 16<<20 {
		w.all.WriteString(line)
	}
	if strings.Contains(line, "level=ERROR") && (strings.Contains(line, "panic") || strings.Contains(line, "failed:")) &&
		!strings.Contains(line, "Accept failed") {
		w.t.Errorf("server logged an error: %s", line)
	}
	if testing.Verbose() {
		w.t.Log(strings.TrimRight(line, "\n"))
	}
	return len(p), nil
}

// nbio has one logger for the whole process, which every engine's
// goroutines read without a lock: it is bridged once, before the first
// engine starts, into liveLogs, which copies each line to the log writer of
// every server still running (a line does not say which engine wrote it).
// Bridging it per server, as run does once, would race with the engines
// of servers started before.
var (
	bridgeOnce sync.Once
	liveLogs   = &logFanout{to: map[*testLogWriter]bool{}}
)

// bridgeTestLogs points nbio's logger at liveLogs.
func bridgeTestLogs() { bridgeNbioLogs(newLogger(liveLogs, slog.LevelDebug), slog.LevelWarn) }

// logFanout writes each line to every registered testLogWriter.
type logFanout struct {
	mu sync.Mutex
	to map[*testLogWriter]bool
}

func (f *logFanout) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for w := range f.to {
		_, _ = w.Write(p)
	}
	return len(p), nil
}

func (f *logFanout) add(w *testLogWriter) {
	f.mu.Lock()
	f.to[w] = true
	f.mu.Unlock()
}

func (f *logFanout) remove(w *testLogWriter) {
	f.mu.Lock()
	delete(f.to, w)
	f.mu.Unlock()
}

// startServer runs a server on a loopback port with cfg adjusted by mutate,
// and shuts it down when the test ends.
func startServer(t testing.TB, mutate func(*Config)) *server {
	t.Helper()
	cfg := defaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.AdminAddr = "127.0.0.1:0" // a port of its own: parallel tests never meet on the default
	cfg.Data = ""                 // in memory; tests of the store on disk give a directory
	cfg.MaxConns = 5000
	cfg.RTCUDP = "127.0.0.1:0" // the SFU's media port: a free one per server
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	lw := &testLogWriter{t: t}
	bridgeOnce.Do(bridgeTestLogs)
	liveLogs.add(lw)
	t.Cleanup(func() { // after the shutdown below: cleanups run last first
		liveLogs.remove(lw)
		lw.mu.Lock()
		lw.done = true
		lw.mu.Unlock()
	})
	srv := newServer(cfg, newLogger(lw, slog.LevelDebug))
	testLogs.Store(srv, lw)
	t.Cleanup(func() { testLogs.Delete(srv) })
	if err := srv.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if !srv.draining.Load() {
			if err := srv.shutdown(ctx); err != nil {
				t.Errorf("shutdown: %v", err)
			}
		}
	})
	return srv
}

// wsConn is a test client connection.
type wsConn struct {
	t    testing.TB
	c    net.Conn
	br   *bufio.Reader
	id   string
	nick string
	// seen is every text frame it read, for tests that check what a
	// client was never sent.
	seen []byte
}

// frame is a frame read by a test client.
type frame struct {
	op      byte
	fin     bool
	payload []byte
}

// msg is a decoded server message.
type msg map[string]any

func (m msg) str(k string) string {
	s, _ := m[k].(string)
	return s
}

func (m msg) num(k string) int {
	f, _ := m[k].(float64)
	return int(f)
}

func (m msg) list(k string) []any {
	l, _ := m[k].([]any)
	return l
}

// dialOpts customizes a test handshake.
type dialOpts struct {
	path    string
	headers map[string]string // a header with an empty value is left out
	dialer  *net.Dialer       // nil: a plain dialer
}

// smallReceiveBuffer dials with a 4 KiB receive buffer, so the client's
// kernel takes little before the server has to queue: a reader that stops
// reading is soon a slow consumer.
func smallReceiveBuffer() *net.Dialer {
	return &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
	}}
}

// handshakeRaw dials addr, sends an upgrade request and returns the
// response, leaving the connection at the first frame.
func handshakeRaw(t testing.TB, addr string, o dialOpts) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	d := o.dialer
	if d == nil {
		d = &net.Dialer{}
	}
	d.Timeout = 5 * time.Second
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	br, resp := upgradeOver(t, c, addr, o)
	return c, br, resp
}

// upgradeOver sends the WebSocket upgrade over c (plain or TLS) and reads
// the response, leaving c at the first frame.
func upgradeOver(t testing.TB, c net.Conn, host string, o dialOpts) (*bufio.Reader, *http.Response) {
	t.Helper()
	if o.path == "" {
		o.path = "/ws"
	}
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	hdr := map[string]string{
		"Host":                  host,
		"Upgrade":               "websocket",
		"Connection":            "Upgrade",
		"Sec-WebSocket-Version": "13",
		"Sec-WebSocket-Key":     base64.StdEncoding.EncodeToString(key),
	}
	for k, v := range o.headers {
		if v == "" {
			delete(hdr, k)
		} else {
			hdr[k] = v
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\n", o.path)
	for k, v := range hdr {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n")
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(b.String())); err != nil {
		t.Fatal(err)
	}
	br := newReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	_ = c.SetDeadline(time.Time{})
	return br, resp
}

// dial connects a test client and reads its hello.
func dial(t testing.TB, srv *server, path ...string) *wsConn {
	t.Helper()
	o := dialOpts{}
	if len(path) > 0 {
		o.path = path[0]
	}
	return dialWith(t, srv, o)
}

// dialWith connects a test client with o and reads its hello.
func dialWith(t testing.TB, srv *server, o dialOpts) *wsConn {
	t.Helper()
	c, br, resp := handshakeRaw(t, srv.addr, o)
	t.Cleanup(func() { _ = c.Close() })
	return upgraded(t, c, br, resp)
}

// upgraded checks a 101 and reads the hello that must follow it.
func upgraded(t testing.TB, c net.Conn, br *bufio.Reader, resp *http.Response) *wsConn {
	t.Helper()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: status %d", resp.StatusCode)
	}
	ws := &wsConn{t: t, c: c, br: br}
	hello := ws.next()
	if hello.str("type") != "hello" || hello.num("version") != 1 {
		t.Fatalf("first frame %v, want hello version 1", hello)
	}
	ws.id, ws.nick = hello.str("id"), hello.str("nick")
	return ws
}

// writeFrame sends one masked frame.
func (ws *wsConn) writeFrame(op byte, fin bool, payload []byte) error {
	b := encodeClientFrame(op, fin, payload)
	_ = ws.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := ws.c.Write(b)
	return err
}

// encodeClientFrame builds a masked client frame.
func encodeClientFrame(op byte, fin bool, payload []byte) []byte {
	var b []byte
	b0 := op
	if fin {
		b0 |= 0x80
	}
	b = append(b, b0)
	n := len(payload)
	switch {
	case n <= 125:
		b = append(b, 0x80|byte(n))
	case n <= 0xFFFF:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	var key [4]byte
	_, _ = rand.Read(key[:])
	b = append(b, key[:]...)
	start := len(b)
	b = append(b, payload...)
	for i := range payload {
		b[start+i] ^= key[i&3]
	}
	return b
}

// send writes v as JSON in one text frame.
func (ws *wsConn) send(v any) {
	ws.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		ws.t.Fatal(err)
	}
	if err := ws.writeFrame(opText, true, b); err != nil {
		ws.t.Fatalf("send: %v", err)
	}
}

// readFrame reads the next frame, whatever it is.
func (ws *wsConn) readFrame(timeout time.Duration) (frame, error) {
	_ = ws.c.SetReadDeadline(time.Now().Add(timeout))
	var h [2]byte
	if _, err := io.ReadFull(ws.br, h[:]); err != nil {
		return frame{}, err
	}
	if h[1]&0x80 != 0 {
		return frame{}, errors.New("server frame is masked")
	}
	if h[0]&0x70 != 0 {
		return frame{}, errors.New("server frame has RSV bits")
	}
	n := int(h[1] & 0x7F)
	switch n {
	case 126:
		var e [2]byte
		if _, err := io.ReadFull(ws.br, e[:]); err != nil {
			return frame{}, err
		}
		n = int(binary.BigEndian.Uint16(e[:]))
	case 127:
		var e [8]byte
		if _, err := io.ReadFull(ws.br, e[:]); err != nil {
			return frame{}, err
		}
		n = int(binary.BigEndian.Uint64(e[:]))
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(ws.br, p); err != nil {
		return frame{}, err
	}
	return frame{op: h[0] & 0x0F, fin: h[0]&0x80 != 0, payload: p}, nil
}

// next returns the next message, skipping pings.
func (ws *wsConn) next() msg {
	ws.t.Helper()
	return ws.nextWithin(5 * time.Second)
}

func (ws *wsConn) nextWithin(d time.Duration) msg {
	ws.t.Helper()
	for {
		f, err := ws.readFrame(d)
		if err != nil {
			ws.t.Fatalf("read: %v", err)
		}
		switch f.op {
		case opPing:
			continue
		case opText:
			ws.seen = append(append(ws.seen, f.payload...), '\n')
			var m msg
			if err := json.Unmarshal(f.payload, &m); err != nil {
				ws.t.Fatalf("server sent invalid JSON %q: %v", f.payload, err)
			}
			return m
		case opClose:
			ws.t.Fatalf("unexpected close frame, code %d", closeCodeOf(f.payload))
		default:
			ws.t.Fatalf("unexpected frame opcode %d", f.op)
		}
	}
}

// expect reads the next message and checks its type. The rooms list pushed
// once a second to connections in no room is skipped unless asked for, as
// its timing depends on the clock.
func (ws *wsConn) expect(typ string) msg {
	ws.t.Helper()
	m := ws.next()
	for typ != "rooms" && m.str("type") == "rooms" {
		m = ws.next()
	}
	if m.str("type") != typ {
		ws.t.Fatalf("got %v, want a %s frame", m, typ)
	}
	return m
}

// expectBoth reads the next two messages, one of type first and one of
// type second, in either order (frames the protocol does not order, such
// as a member's presence leave and its call_peer leave), and returns them
// in that order.
func (ws *wsConn) expectBoth(first, second string) (msg, msg) {
	ws.t.Helper()
	got := map[string]msg{}
	for range 2 {
		m := ws.next()
		for m.str("type") == "rooms" {
			m = ws.next()
		}
		if typ := m.str("type"); typ != first && typ != second || got[typ] != nil {
			ws.t.Fatalf("got %v, want a %s and a %s frame", m, first, second)
		}
		got[m.str("type")] = m
	}
	return got[first], got[second]
}

// roomNamed returns room name as h holds it in memory, nil if it does not.
func roomNamed(h *hub, name string) *room {
	sh := h.shardOf(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.rooms[name]
}

// holdQueue stops r's room queue on a request that waits for release,
// and with fill fills the queue behind it, so that r's next requests are
// refused until release. A test that fails before release releases it as
// it ends, so that the server's close (which runs what is queued) does not
// wait for good.
func holdQueue(t testing.TB, h *hub, r *room, fill bool) (release func()) {
	t.Helper()
	hold, held := make(chan struct{}), make(chan struct{})
	if !h.rq.enqueue(pubReq{kind: reqRun, room: r, run: func() { close(held); <-hold }}) {
		t.Fatal("the room's queue refused the first request")
	}
	<-held
	for fill && h.rq.enqueue(pubReq{kind: reqRun, room: r, run: func() {}}) {
	}
	release = sync.OnceFunc(func() { close(hold) })
	t.Cleanup(release) // before the server's own cleanup: registered after it
	return release
}

// drainQueue waits until what r's room queue holds now has run.
func drainQueue(t testing.TB, h *hub, r *room) {
	t.Helper()
	done := make(chan struct{})
	for !h.rq.enqueue(pubReq{kind: reqRun, room: r, run: func() { close(done) }}) {
		time.Sleep(time.Millisecond) // still full
	}
	<-done
}

// waitReply reads until a message of type typ, skipping others, but fails
// at once on an error that answers ref: a refusal is not waited past.
func (ws *wsConn) waitReply(typ, ref string) msg {
	ws.t.Helper()
	for {
		m := ws.next()
		if m.str("type") == "error" && m.str("ref") == ref {
			ws.t.Fatalf("got %v, want a %s frame", m, typ)
		}
		if m.str("type") == typ {
			return m
		}
	}
}

// waitFor reads until a message of type typ, skipping others.
func (ws *wsConn) waitFor(typ string) msg {
	ws.t.Helper()
	for {
		m := ws.next()
		if m.str("type") == typ {
			return m
		}
	}
}

// expectError reads the next message and checks it is an error with code.
func (ws *wsConn) expectError(code, ref string) msg {
	ws.t.Helper()
	m := ws.expect("error")
	if m.str("code") != code || m.str("ref") != ref {
		ws.t.Fatalf("got error %v, want code %s ref %q", m, code, ref)
	}
	return m
}

// waitError reads until an error frame, skipping others, and checks its
// code and ref.
func (ws *wsConn) waitError(code, ref string) msg {
	ws.t.Helper()
	m := ws.waitFor("error")
	if m.str("code") != code || m.str("ref") != ref {
		ws.t.Fatalf("got error %v, want code %s ref %q", m, code, ref)
	}
	return m
}

// expectClose reads until a close frame and checks its code; pending text
// frames before it are skipped.
func (ws *wsConn) expectClose(code int) {
	ws.t.Helper()
	for {
		f, err := ws.readFrame(10 * time.Second)
		if err != nil {
			ws.t.Fatalf("want close %d, got %v", code, err)
		}
		if f.op == opClose {
			if got := closeCodeOf(f.payload); got != code {
				ws.t.Fatalf("close code %d (%q), want %d", got, f.payload, code)
			}
			return
		}
	}
}

// expectSilence checks that nothing but pings arrives for d.
func (ws *wsConn) expectSilence(d time.Duration) {
	ws.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		f, err := ws.readFrame(time.Until(deadline))
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return
			}
			ws.t.Fatalf("read: %v", err)
		}
		if f.op != opPing {
			ws.t.Fatalf("unexpected frame op %d %s", f.op, f.payload)
		}
	}
}

func closeCodeOf(p []byte) int {
	if len(p) < 2 {
		return 1005
	}
	return int(binary.BigEndian.Uint16(p))
}

// join joins room and returns the joined frame.
func (ws *wsConn) join(room string) msg {
	ws.t.Helper()
	ws.send(map[string]any{"type": "join", "room": room})
	return ws.expect("joined")
}

// httpGet fetches path from the server's public listener.
func httpGet(t testing.TB, srv *server, path string) (*http.Response, string) {
	t.Helper()
	return getURL(t, "http://"+srv.addr+path)
}

// adminGet fetches path from the server's admin listener.
func adminGet(t testing.TB, srv *server, path string) (*http.Response, string) {
	t.Helper()
	if srv.adminAddr == "" {
		t.Fatal("the admin listener is off")
	}
	return getURL(t, "http://"+srv.adminAddr+path)
}

func getURL(t testing.TB, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// eventually retries cond until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// settleGoroutines waits up to 10 s for the process to run at most most
// goroutines, and returns the last count.
func settleGoroutines(t testing.TB, most int) int {
	t.Helper()
	n := runtime.NumGoroutine()
	for deadline := time.Now().Add(10 * time.Second); n > most; n = runtime.NumGoroutine() {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after 10 s, want at most %d", n, most)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return n
}

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReaderSize(c, 64<<10) }

// checkOneOrder has every sender publish each messages to room at once and
// checks what every member (all of them in room, senders among them if
// they are members) receives: seq 1..n without gaps, each sender's own
// messages in the order it sent them, and the same order for everyone.
func checkOneOrder(t *testing.T, room string, senders, members []*wsConn, each int) {
	t.Helper()
	var recs []*recorder
	for _, ws := range members {
		recs = append(recs, record(ws))
	}
	var wg sync.WaitGroup
	for s, ws := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				b, _ := json.Marshal(map[string]any{"type": "say", "room": room, "text": fmt.Sprintf("%d/%d", s, i)})
				if err := ws.writeFrame(opText, true, b); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	total := len(senders) * each
	var ref string
	for i, r := range recs {
		ms := r.wait(t, "every message", func(ms []msg) bool { return len(ms) >= total }, "msg")
		if len(ms) != total {
			t.Fatalf("member %d got %d messages, want %d", i, len(ms), total)
		}
		order := make([]string, 0, total)
		next := make([]int, len(senders))
		for k, m := range ms {
			if m.num("seq") != k+1 {
				t.Fatalf("member %d: message %d has seq %d", i, k, m.num("seq"))
			}
			var s, n int
			if _, err := fmt.Sscanf(m.str("text"), "%d/%d", &s, &n); err != nil || s < 0 || s >= len(senders) {
				t.Fatalf("member %d: unexpected message %q", i, m.str("text"))
			}
			if n != next[s] {
				t.Fatalf("member %d: sender %d's message %d came before its %d", i, s, n, next[s])
			}
			next[s]++
			order = append(order, m.str("text"))
		}
		if got := strings.Join(order, " "); ref == "" {
			ref = got
		} else if got != ref {
			t.Fatalf("member %d saw another order", i)
		}
	}
}
