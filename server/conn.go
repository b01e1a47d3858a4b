package main

import (
	"encoding/binary"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/nbhttp"
)

// client is one WebSocket connection. nbio reaches it through the
// connection's session (session.go): Parse on the poller goroutine with
// the bytes read, and CloseAndClean once the connection is closed.
//
// Ownership: the read state is touched only by Parse (one poller goroutine
// at a time); the fields marked worker-owned only by the connection's worker;
// rooms under mu; the rest is immutable or atomic. Where the connection is
// in its life is state, whose transitions and owners lifecycle.go lists.
type client struct {
	w     *worker
	nbc   *nbio.Conn   // the socket
	sink  io.Writer    // where frames go: nbc, or the TLS conn over it
	conn  *nbhttp.Conn // the hijacked conn, kept only for TLS (see UnderlayerConn)
	id    uint64
	idStr string
	nick  atomic.Pointer[string]

	// handed counts bytes given to the socket, written those the kernel
	// took; the difference is what nbio still holds for a slow reader.
	handed, written atomic.Int64
	lastRead        atomic.Int64  // clock.now() of the last bytes read
	state           atomic.Uint32 // a connState (lifecycle.go)
	// held counts its requests that wait (a join for its room's load, the
	// messages after its since or its passcode's check; a call join or
	// leave to be decided), and is 1 more while the requests queued behind
	// them run (held.go). It fills
	// state's padding: a client stays 256 bytes.
	held atomic.Int32
	// For the operator's console: when it connected (clock.now()) and the
	// requests it sent (reader); framesOut, the frames written to it, is
	// worker-owned (the console reads it through a jobRun).
	since     int64
	framesIn  atomic.Uint64
	framesOut uint64

	mu    sync.Mutex
	rooms []*room // guarded by mu; nothing is added once state is closed
	waits []*room // lobbies it waits in (lobby.go); guarded by mu

	// tok is its accepted token (tokens.go).
	tok atomic.Pointer[tokenState]

	// Read state, owned by Parse.
	part      *partial // a frame or message split across reads, if any
	discarded int64    // bytes dropped since the peer's input ended
	errs      int32    // malformed requests so far
	tokens    float64
	tokenTime int64 // clock.now() of the last refill
	rlNotice  int64 // clock.now() of the last rate_limited answer

	// Worker-owned.
	widx         int32 // index in worker.conns, -1 once unregistered
	qhead, qtail int32 // this round's pending frames (worker.nodes)
	dirty        bool

	// sinkCounts says sink adds what it hands to the socket to handed
	// itself, so write must not: with TLS that is the ciphertext, not the
	// frames (tls.go, tlsSocket). Set before the upgrade completes.
	sinkCounts bool
}

// partial is read state that only a connection whose frame or message is
// split across reads needs; the idle majority keeps a nil pointer instead.
type partial struct {
	rbuf      []byte // an incomplete frame carried over to the next read
	msg       []byte // a fragmented text message being assembled
	msgValid  int    // bytes of msg checked as UTF-8 so far
	inMessage bool   // a fragmented message is in progress
}

// UnderlayerConn implements nbhttp.ParserCloser; nbio's TLS path uses it to
// find the TLS connection to decrypt with.
func (c *client) UnderlayerConn() net.Conn {
	if c.conn == nil { // plain connections drop it: nbio asks only for TLS ones
		return nil
	}
	return c.conn
}

// reading reports whether Parse goes on with the frames of this read: not
// once the peer's input has ended or the socket is closed.
func (c *client) reading() bool {
	st := c.getState()
	return !st.discarding() && st != connClosed
}

// CloseAndClean is called once the socket is closed, whoever closed it
// (through its connSession, which nbio holds).
func (c *client) CloseAndClean(err error) {
	c.w.hub.disconnected(c, err)
}

func (c *client) nickname() string { return *c.nick.Load() }

func (c *client) setNickname(s string) { c.nick.Store(&s) }

// send queues frame for c.
func (c *client) send(frame []byte) {
	c.w.push(job{op: jobSend, c: c, frame: frame})
}

// replyError answers a refused request.
func (c *client) replyError(code, msg, ref string) {
	c.w.hub.stats.countError(code)
	c.send(encodeError(code, msg, ref))
}

// replyJoinError refuses a join of room: the error frame names the room,
// so a client with several joins on their way (a passcode is checked off
// the event loop, a lobby answers later) knows which one was refused.
func (c *client) replyJoinError(code, msg, room string) {
	c.w.hub.stats.countError(code)
	c.send(encodeRoomError(code, msg, "join", room))
}

// pending is how many bytes nbio holds that the kernel has not taken yet.
func (c *client) pending() int {
	return int(c.handed.Load() - c.written.Load())
}

// write hands buf to the socket. Called by the worker only. nbio writes what
// the socket takes at once and copies the rest, so buf may be reused.
func (c *client) write(buf []byte) {
	if !c.sinkCounts {
		c.handed.Add(int64(len(buf)))
	}
	_, _ = c.sink.Write(buf) // a failed write closes the conn; CloseAndClean follows
}

// fail closes the connection with code because of what it sent.
func (c *client) fail(code int, reason string) {
	c.endReading(closeFrame(code, reason))
}

// Parse implements nbhttp.ParserCloser: it is called on the poller goroutine
// with each chunk read from the socket (decrypted, with TLS). It never
// returns an error: a bad frame fails the connection with a close frame
// instead of an abrupt close, as RFC 6455 asks.
func (c *client) Parse(data []byte) error {
	if len(data) == 0 {
		return nil
	}
	if st := c.getState(); st.discarding() {
		c.discard(len(data))
		return nil
	} else if st == connClosed {
		return nil
	}
	h := c.w.hub
	c.lastRead.Store(h.clock.now())
	h.stats.bytesIn.Add(uint64(len(data)))
	buf := data
	p := c.part
	carried := p != nil && len(p.rbuf) > 0
	if carried {
		p.rbuf = append(p.rbuf, data...)
		buf = p.rbuf
	}
	for len(buf) > 0 && c.reading() {
		fh, ok, code := parseHeader(buf, h.cfg.MaxMessage)
		if code != 0 {
			c.fail(code, closeReason(code))
			return nil
		}
		if !ok || len(buf) < fh.hlen+fh.length {
			break
		}
		payload := buf[fh.hlen : fh.hlen+fh.length]
		buf = buf[fh.hlen+fh.length:]
		unmask(payload, fh.mask)
		h.stats.framesIn.Add(1)
		c.frame(fh, payload)
	}
	if !c.reading() {
		return nil
	}
	// Keep an incomplete frame for the next read. parseHeader bounded its
	// declared length, so this holds at most one frame of MaxMessage.
	p = c.part
	switch {
	case len(buf) == 0:
		if p != nil {
			p.rbuf = nil
			if !p.inMessage {
				c.part = nil
			}
		}
	case carried:
		n := copy(p.rbuf, buf)
		p.rbuf = p.rbuf[:n]
	default:
		if p == nil {
			p = &partial{}
			c.part = p
		}
		p.rbuf = append(make([]byte, 0, max(len(buf), 512)), buf...)
	}
	return nil
}

// closeReason is the short reason sent with a close code.
func closeReason(code int) string {
	switch code {
	case closeProtocolError:
		return "protocol error"
	case closeUnsupported:
		return "binary frames are not supported"
	case closeInvalidData:
		return "invalid UTF-8"
	case closeTooBig:
		return "message too large"
	case closePolicy:
		return "too many errors"
	}
	return ""
}

// frame handles one complete, unmasked frame.
func (c *client) frame(fh frameHeader, payload []byte) {
	switch fh.opcode {
	case opPing:
		c.send(appendFrame(nil, opPong, payload))
	case opPong:
		// lastRead is refreshed already; that is all a pong is for.
	case opClose:
		c.peerClose(payload)
	case opText, opBinary:
		if c.part != nil && c.part.inMessage {
			c.fail(closeProtocolError, "new message inside a fragmented one")
			return
		}
		if fh.opcode == opBinary {
			c.fail(closeUnsupported, closeReason(closeUnsupported))
			return
		}
		if fh.fin {
			if !utf8.Valid(payload) {
				c.fail(closeInvalidData, closeReason(closeInvalidData))
				return
			}
			c.message(payload)
			return
		}
		if c.part == nil {
			c.part = &partial{}
		}
		c.part.inMessage = true
		c.part.msg = append(c.part.msg[:0], payload...)
		c.part.msgValid = 0
		c.continueMessage(false)
	case opContinuation:
		p := c.part
		if p == nil || !p.inMessage {
			c.fail(closeProtocolError, "continuation frame without a message")
			return
		}
		if len(p.msg)+len(payload) > c.w.hub.cfg.MaxMessage {
			c.fail(closeTooBig, closeReason(closeTooBig))
			return
		}
		p.msg = append(p.msg, payload...)
		c.continueMessage(fh.fin)
	}
}

// continueMessage checks the UTF-8 of the fragments so far and, on the last
// one, handles the message.
func (c *client) continueMessage(fin bool) {
	p := c.part
	tail, ok := utf8Prefix(p.msg[p.msgValid:])
	if !ok || fin && tail != 0 {
		c.fail(closeInvalidData, closeReason(closeInvalidData))
		return
	}
	p.msgValid = len(p.msg) - tail
	if !fin {
		return
	}
	p.inMessage = false
	c.message(p.msg)
	if c.part == p { // the handler may have failed the connection
		p.msg = nil // don't keep a message buffer on an idle connection
	}
}

// peerClose handles the peer's close frame: it answers with the same code,
// unless the frame is malformed, and ends the connection.
func (c *client) peerClose(payload []byte) {
	code := closeNormal
	switch {
	case len(payload) == 1:
		c.fail(closeProtocolError, "close frame of one byte")
		return
	case len(payload) >= 2:
		code = int(binary.BigEndian.Uint16(payload))
		if !validCloseCode(code) {
			c.fail(closeProtocolError, "invalid close code")
			return
		}
		if !utf8.Valid(payload[2:]) {
			c.fail(closeInvalidData, "invalid UTF-8 in close reason")
			return
		}
	}
	if c.getState() == connClosingSent { // the answer to our close: done
		_ = c.nbc.Close()
		return
	}
	c.endReading(closeFrame(code, ""))
}

// message handles one complete text message: rate limit, decode, dispatch.
func (c *client) message(b []byte) {
	if c.getState() != connOpen {
		return // RFC 6455 §5.5.1: no data after a close frame
	}
	c.framesIn.Add(1)
	h := c.w.hub
	if !c.allow() {
		h.stats.droppedRequests.Add(1)
		if now := h.clock.now(); now-c.rlNotice >= 1000 {
			c.rlNotice = now
			c.replyError(errRateLimited, "too many requests; slow down", "")
		}
		return
	}
	var req request
	if e := decodeRequest(b, &req); e != nil {
		c.refuse(e, req.Type)
		return
	}
	h.dispatchOrHold(c, &req)
}

// dispatch runs one decoded request of c: on the poller, or behind a join
// that waited (held.go).
func (h *hub) dispatch(c *client, req *request) {
	if req.Type != "auth" && h.authRequired(c) {
		c.replyError(errUnauthorized, "this server needs a token first: send auth", req.Type)
		return
	}
	switch req.Type {
	case "nick":
		h.rename(c, req.Nick)
	case "join":
		jr := joinReq{room: req.Room, since: req.Since, epoch: req.Epoch, hostKey: req.HostKey}
		if req.Passcode != nil {
			jr.passcode = *req.Passcode
		}
		h.join(c, jr)
	case "leave":
		h.leave(c, req.Room)
	case "say":
		h.say(c, req.Room, req.Text)
	case "rooms":
		c.send(h.roomsFrame())
	case "call":
		h.callAction(c, req.Room, req.Action)
	case "signal":
		h.signal(c, req.Room, req.To, req.Data)
	case "history":
		limit := 0
		if req.Limit != nil {
			limit = *req.Limit
		}
		h.history(c, req.Room, req.Before, limit)
	case "auth":
		h.authenticate(c, req.Token)
	case "settings":
		h.changeSettings(c, req)
	case "role":
		h.changeRole(c, req.Room, req.ID, req.Role)
	case "admit", "deny":
		h.admit(c, req.Room, req.ID, req.Type == "admit")
	case "remove":
		h.remove(c, req.Room, req.ID)
	case "mute":
		h.mute(c, req.Room, req.ID)
	case "end":
		h.end(c, req.Room)
	case "media":
		h.media(c, req.Room, *req.Audio, *req.Video, *req.Screen)
	}
}

// refuse answers a malformed request and spends the error budget; past the
// budget the connection is closed with 1008.
func (c *client) refuse(e *reqError, ref string) {
	c.errs++
	if int(c.errs) > c.w.hub.cfg.ErrorBudget {
		c.w.hub.stats.countError(e.code)
		c.fail(closePolicy, closeReason(closePolicy))
		return
	}
	c.replyError(e.code, e.msg, ref)
}

// allow takes a token from the connection's bucket: Rate a second, up to
// Burst at once.
func (c *client) allow() bool {
	cfg := c.w.hub.cfg
	now := c.w.hub.clock.now()
	c.tokens += float64(now-c.tokenTime) * cfg.Rate / 1000
	c.tokenTime = now
	if c.tokens > float64(cfg.Burst) {
		c.tokens = float64(cfg.Burst)
	}
	if c.tokens < 1 {
		return false
	}
	c.tokens--
	return true
}

// guestNick is the nick of a connection that has not chosen one.
func guestNick(id string) string { return "guest-" + id }

// formatID renders a connection id for the protocol.
func formatID(id uint64) string { return strconv.FormatUint(id, 36) }
