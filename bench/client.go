package main

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Connection states of a loadClient.
const (
	stDialing int32 = iota // TCP connect and HTTP upgrade in a dialer goroutine
	stJoining              // upgraded, `join` sent, waiting for `joined`
	stJoined               // member of its room
	stClosed
)

// loadClient is one benchmark connection. It has no goroutine: a dialer
// goroutine opens it and hands its socket to a poller (poller.go), whose
// goroutine then parses everything the server sends (onData). The sender
// and the churner only call conn.Write and conn.Close, which sock locks.
type loadClient struct {
	w         *loadGen
	idx       int // global connection index
	room      int
	stable    bool // expected to receive every accepted message (see Plan.isStable)
	churned   bool // opened by the churner, not by the ramp
	dialStart int64
	sh        *shard // of the poller that reads this connection

	// mu is held by the dialer from before the connection enters the
	// poller until the bytes that arrived with the 101 response are parsed,
	// so the poller cannot parse later bytes first; after that only the
	// poller takes it (uncontended, once per read, not per frame).
	mu      sync.Mutex
	conn    atomic.Pointer[sock] // set once, by connect
	fr      frameReader
	now     int64 // unix ns of the read being parsed
	lastSeq int64
	scratch []byte // pong and close replies

	state   atomic.Int32
	closing atomic.Bool // closed on purpose by the harness
}

// target is a parsed server URL.
type target struct {
	host       string // host:port
	path       string // path and query of the upgrade request
	tls        bool   // wss://
	serverName string // for the certificate check
}

func parseTarget(raw string) (target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return target{}, err
	}
	if u.Scheme != "ws" && u.Scheme != "wss" {
		return target{}, fmt.Errorf("url %q: want ws:// or wss://", raw)
	}
	host := u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "wss" {
			port = "443"
		}
		host = net.JoinHostPort(u.Hostname(), port)
	}
	path := u.RequestURI()
	if u.Path == "" {
		path = "/ws"
	}
	return target{host: host, path: path, tls: u.Scheme == "wss", serverName: u.Hostname()}, nil
}

// connect dials, upgrades and sends `join`, all blocking in the calling
// dialer goroutine, then gives the socket to a poller. Doing the
// handshake on the standard net.Conn keeps the poller side free of any
// per-connection handshake state; the pool of dialers bounds the goroutines.
func (c *loadClient) connect() error {
	w := c.w
	c.dialStart = time.Now().UnixNano()
	t := w.targets[c.idx%len(w.targets)]
	// No TCP keepalive: four setsockopt calls per connection for probes a
	// run never lasts long enough to send.
	d := net.Dialer{Timeout: w.plan.Timeout, KeepAlive: -1}
	if ip := w.plan.sourceIP(c.idx); ip != nil {
		d.LocalAddr = &net.TCPAddr{IP: ip}
		d.Control = bindNoPort
	}
	var conn net.Conn
	conn, err := d.Dial("tcp", t.host)
	if err != nil {
		return err
	}
	if t.tls {
		tc := tls.Client(conn, &tls.Config{ServerName: t.serverName, InsecureSkipVerify: insecureTLS})
		_ = tc.SetDeadline(time.Now().Add(w.plan.Timeout))
		if err := tc.Handshake(); err != nil {
			_ = conn.Close()
			return fmt.Errorf("tls: %w", err)
		}
		conn = tc
	}
	rest, err := handshake(conn, t.host, t.path, time.Now().Add(w.plan.Timeout))
	if err == nil {
		join := appendClientFrame(nil, opText, appendJoin(nil, w.plan.roomName(c.room)), rand.Uint32())
		_, err = conn.Write(join)
	}
	if err != nil {
		_ = conn.Close()
		return err
	}
	pi := c.idx % len(w.pollers)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sh = w.shards[pi]
	adopt := w.pollers[pi].adopt // dups the descriptor and closes conn
	if t.tls {
		adopt = w.pollers[pi].adoptTLS
	}
	s, err := adopt(conn, c)
	if err != nil {
		_ = conn.Close()
		return err
	}
	c.conn.Store(s)
	if !c.state.CompareAndSwap(stDialing, stJoining) {
		return errors.New("closed as soon as registered")
	}
	if len(rest) > 0 {
		c.now = time.Now().UnixNano()
		if err := c.fr.feed(rest, c); err != nil {
			c.fail(err)
		}
	}
	return nil
}

// close closes the connection on purpose (churn, end of the run).
func (c *loadClient) close() {
	c.closing.Store(true)
	if nc := c.connection(); nc != nil {
		_ = nc.Close()
	}
}

// connection returns the socket, or nil before connect set it.
func (c *loadClient) connection() *sock { return c.conn.Load() }

func (c *loadClient) fail(err error) {
	c.w.event("protocol error: " + err.Error())
	_ = c.conn.Load().CloseWithError(err)
}

// onData handles one read's worth of bytes, on the poller goroutine that
// owns the connection. The clock is read once per read, not per frame:
// every frame in the buffer arrived by then.
func (w *loadGen) onData(c *loadClient, data []byte) {
	c.mu.Lock()
	c.now = time.Now().UnixNano()
	err := c.fr.feed(data, c)
	c.mu.Unlock()
	if err != nil {
		c.fail(err)
	}
}

// onClose runs once when a connection's socket is closed, by either side.
func (w *loadGen) onClose(c *loadClient, err error) {
	prev := c.state.Swap(stClosed)
	if prev == stJoined {
		w.open.Add(-1)
	}
	if c.closing.Load() || w.stopping.Load() {
		return
	}
	switch prev {
	case stJoining:
		if c.churned {
			w.churnFailed.Add(1)
		} else {
			w.failed.Add(1)
		}
		w.event("closed before joined: " + closeReason(err))
	case stJoined:
		w.dropped.Add(1)
		who := ""
		if w.plan.isPublisher(c.idx) {
			who = " (a publisher)"
		}
		w.event("closed during run" + who + ": " + closeReason(err))
	}
}

// onMessage handles one text or binary message (frameHandler).
func (c *loadClient) onMessage(op byte, p []byte) {
	if op != opText {
		c.w.event("binary frame")
		return
	}
	if bytes.HasPrefix(p, msgHead) {
		c.onMsg(p)
		return
	}
	switch t := frameType(p); string(t) {
	case "msg":
		c.onMsg(p)
	case "joined":
		c.onJoined()
	case "error":
		c.w.event("error " + string(stringField(p, keyCode)))
	case "hello", "presence", "count", "rooms", "left", "nick":
		c.sh.other.Add(1)
	default:
		c.w.event("frame " + string(t))
	}
}

// onMsg is the hot path: one delivery. It reads `seq` (duplicates) and the
// text's publisher, number and intended time (latency, loss) and nothing
// else.
func (c *loadClient) onMsg(p []byte) {
	w, sh := c.w, c.sh
	slot := sh.series.at(c.now)
	slot.Deliveries.Add(1)
	sh.deliveries.Add(1)
	if c.now >= w.windowStart.Load() && c.now < w.tEnd.Load() {
		sh.rxWindow.Add(1) // throughput counts by receive time
	}
	seq, text, ok := msgFieldsFast(p, w.prefix[c.room])
	if !ok {
		sh.foreign.Add(1)
		return
	}
	// seq is strictly increasing per room and a client is in one room, so
	// anything not above the last seq is a repeat (or out of order). Both
	// noom and the reference number a room's messages consecutively (a
	// reconnect's `since` relies on it), so a jump between two deliveries
	// is a message this member missed: a loss the expected/received
	// accounting cannot see for members that come and go (churn), as it
	// counts only the members that stay.
	if seq <= c.lastSeq {
		sh.duplicates.Add(1)
		return
	}
	if c.lastSeq > 0 && seq > c.lastSeq+1 {
		sh.gaps.Add(uint64(seq - c.lastSeq - 1))
	}
	c.lastSeq = seq
	pub, n, due, ok2 := parseText(text)
	if !ok2 || pub < 0 || pub >= w.plan.Publishers || n < 0 {
		sh.foreign.Add(1)
		return
	}
	k := w.plan.msgIndex(pub, n)
	if k < 0 || k >= w.kEnd { // (k < 0: an absurd n overflowed)
		sh.foreign.Add(1)
		return
	}
	lat := time.Duration(c.now - due)
	slot.Latency.Record(lat)
	w.seen.Set(k)
	if k >= w.kStart {
		sh.latency.Record(lat)
		sh.inWindow.Add(1)
		if c.stable {
			sh.received.Add(1)
		}
	}
}

func (c *loadClient) onJoined() {
	if !c.state.CompareAndSwap(stJoining, stJoined) {
		return
	}
	w := c.w
	w.open.Add(1)
	lat := time.Duration(c.now - c.dialStart)
	if c.churned {
		w.churnLatency.Record(lat)
		w.churnJoined.Add(1)
		return
	}
	w.rampLatency.Record(lat)
	w.joined.Add(1)
	for { // the time of the last join ends the ramp
		last := w.lastJoin.Load()
		if c.now <= last || w.lastJoin.CompareAndSwap(last, c.now) {
			break
		}
	}
}

func (c *loadClient) onPing(payload []byte) {
	c.scratch = appendClientFrame(c.scratch[:0], opPong, payload, rand.Uint32())
	_, _ = c.conn.Load().Write(c.scratch)
}

// onCloseFrame answers the server's close frame with the same code, as RFC
// 6455 §5.5.1 asks, and closes the socket.
func (c *loadClient) onCloseFrame(code int, reason []byte) {
	if !c.closing.Load() && !c.w.stopping.Load() {
		c.w.event(fmt.Sprintf("close %d %s", code, reason))
	}
	var body []byte
	if code != 1005 {
		body = []byte{byte(code >> 8), byte(code)}
	}
	c.scratch = appendClientFrame(c.scratch[:0], opClose, body, rand.Uint32())
	nc := c.conn.Load()
	_, _ = nc.Write(c.scratch)
	_ = nc.CloseWithError(fmt.Errorf("close frame %d", code))
}

// closeReason names why a connection was closed, briefly.
func closeReason(err error) string {
	switch {
	case err == nil:
		return "closed"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EPIPE):
		return "broken pipe"
	}
	return err.Error()
}

// dialReason groups dial failures into a few stable strings (addresses and
// ports would make every error unique).
func dialReason(err error) string {
	var errno syscall.Errno
	switch {
	case errors.As(err, &errno):
		return "dial: " + errno.Error()
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "dial: timeout"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "dial: timeout"
	}
	s := err.Error()
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}
