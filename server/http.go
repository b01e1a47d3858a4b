package main

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	ltls "github.com/lesismal/llib/std/crypto/tls"
	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/nbhttp"

	"noom/static"
)

// routes builds the HTTP side of the one listener.
func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	page := http.FileServerFS(static.FS())
	mux.Handle("/", s.pageHeaders(page))
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /api/rooms", s.apiRooms)
	mux.HandleFunc("GET /api/config", s.apiConfig)
	mux.HandleFunc("/ws", s.serveWS)
	// /metrics and /debug/pprof/ are on the admin listener only (admin.go).
	return s.limitHeaders(s.checkHost(mux))
}

// limitHeaders answers 431 to a request whose head is over -max-header-bytes.
// nbio's parser bounds what it buffers across reads (ReadLimit), but a head
// that arrives in one read is parsed whole; this bounds the rest.
func (s *server) limitHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		size := len(r.Method) + len(r.RequestURI) + len(r.Proto) + 4
		for k, vs := range r.Header {
			for _, v := range vs {
				size += len(k) + len(v) + 4
			}
		}
		if size > s.cfg.MaxHeaderBytes {
			w.Header().Set("Connection", "close")
			http.Error(w, "request header fields too large", http.StatusRequestHeaderFieldsTooLarge)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// contentSecurityPolicy allows the page its own scripts, styles and
// WebSocket, and the camera and microphone streams of calls; nothing inline.
const contentSecurityPolicy = "default-src 'self'; connect-src 'self'; img-src 'self' data: blob:; " +
	"media-src 'self' blob: mediastream:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"

// pageHeaders adds the security headers every page response carries.
func (s *server) pageHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Permissions-Policy", "camera=(self), microphone=(self), display-capture=(self)")
		h.Set("Cache-Control", "no-cache")
		next.ServeHTTP(w, r)
	})
}

// healthz answers 200 while the server accepts connections, 503 while it
// drains.
func (s *server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	switch {
	case s.draining.Load():
		writeBody(w, http.StatusServiceUnavailable, "text/plain; charset=utf-8", []byte("draining\n"))
	case s.stats.degraded.Load():
		// Still serving its own members, so still healthy for a load
		// balancer; the body and noom_cluster_degraded say what is wrong.
		writeBody(w, http.StatusOK, "text/plain; charset=utf-8", []byte("degraded: NATS unreachable, serving local members only\n"))
	default:
		writeBody(w, http.StatusOK, "text/plain; charset=utf-8", []byte("ok\n"))
	}
}

// defaultAPIRooms is how many rooms /api/rooms lists without ?limit=.
const defaultAPIRooms = 100

// apiRooms answers {"rooms":[{room,count}]}, largest first: the first
// ?limit= rooms (1 to maxAPIRooms, default defaultAPIRooms; more is taken
// as the most) of the list the tick builds once a second (roomlist.go),
// without walking the rooms.
func (s *server) apiRooms(w http.ResponseWriter, r *http.Request) {
	limit := defaultAPIRooms
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			http.Error(w, "limit must be a whole number from 1 to "+strconv.Itoa(maxAPIRooms), http.StatusBadRequest)
			return
		}
		limit = min(n, maxAPIRooms)
	}
	w.Header().Set("Cache-Control", "no-store")
	writeBody(w, http.StatusOK, "application/json", s.hub.roomsJSON(limit))
}

func (s *server) apiConfig(w http.ResponseWriter, r *http.Request) {
	ice := s.cfg.ICEServers
	if ice == nil {
		ice = []ICEServer{}
	}
	mode := s.cfg.SFU
	if s.hub.sfu == nil {
		mode = sfuOff
	}
	writeJSON(w, map[string]any{"iceServers": ice, "callLimit": s.cfg.CallLimit, "sfu": mode})
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeBody(w, http.StatusOK, "application/json", append(b, '\n'))
}

// writeBody answers with a body of known length, so small answers go out
// whole instead of chunked.
func writeBody(w http.ResponseWriter, status int, contentType string, body []byte) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// websocketGUID is the RFC 6455 constant for Sec-WebSocket-Accept.
const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// serveWS upgrades /ws. Every refusal happens here, as an HTTP answer,
// before the connection becomes a WebSocket.
//
// It runs on the poller goroutine, inside nbio's HTTP parser (the engine's
// executor is inline, server.go), so nothing else reads the socket while
// the client is built: once it is the parser's ParserCloser, the bytes that
// followed the request in the same read, and every read after, go to
// c.Parse, in order. A second request behind the first is then a frame
// like any other, and a malformed one.
func (s *server) serveWS(w http.ResponseWriter, r *http.Request) {
	st := s.stats
	refuse := func(reason, status int, msg string) {
		st.rejected[reason].Add(1)
		http.Error(w, msg, status)
	}
	if s.draining.Load() {
		w.Header().Set("Retry-After", "5")
		refuse(rejectDraining, http.StatusServiceUnavailable, "server shutting down")
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		refuse(rejectHandshake, http.StatusMethodNotAllowed, "WebSocket upgrades use GET")
		return
	}
	if !headerHasToken(r.Header, "Connection", "upgrade") || !headerHasToken(r.Header, "Upgrade", "websocket") {
		w.Header().Set("Upgrade", "websocket")
		refuse(rejectHandshake, http.StatusUpgradeRequired, "this endpoint speaks WebSocket only")
		return
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		w.Header().Set("Sec-WebSocket-Version", "13")
		refuse(rejectHandshake, http.StatusUpgradeRequired, "unsupported WebSocket version")
		return
	}
	key := r.Header.Get("Sec-WebSocket-Key")
	if k, err := base64.StdEncoding.DecodeString(key); err != nil || len(k) != 16 {
		refuse(rejectHandshake, http.StatusBadRequest, "missing or invalid Sec-WebSocket-Key")
		return
	}
	if !s.originAllowed(r) {
		refuse(rejectOrigin, http.StatusForbidden, "origin not allowed")
		return
	}
	if !s.acquireConn() {
		w.Header().Set("Retry-After", "5")
		refuse(rejectCap, http.StatusServiceUnavailable, "too many connections")
		return
	}
	ip := ""
	if s.cfg.MaxConnsPerIP > 0 {
		ip = remoteIP(r.RemoteAddr)
		if !s.acquireIP(ip) {
			s.releaseConn("")
			refuse(rejectPerIP, http.StatusTooManyRequests, "too many connections from your address")
			return
		}
	}

	res, ok := w.(*nbhttp.Response)
	if !ok || res.Parser == nil || res.Parser.ParserCloser != nil {
		s.releaseConn(ip)
		http.Error(w, "upgrade not supported here", http.StatusInternalServerError)
		return
	}
	parser := res.Parser
	conn, _, err := res.Hijack()
	if err != nil {
		s.releaseConn(ip)
		return
	}
	nc, ok := conn.(*nbhttp.Conn)
	if !ok {
		s.releaseConn(ip)
		_ = conn.Close()
		return
	}
	nbc, sink := s.socketOf(nc)
	if nbc == nil {
		s.releaseConn(ip)
		_ = conn.Close()
		return
	}

	h := s.hub
	id := s.nextID.Add(1)
	c := &client{id: id, idStr: h.idPrefix + formatID(id), nbc: nbc, sink: sink, since: h.clock.now()}
	if tc, ok := sink.(*ltls.Conn); ok {
		c.conn = nc                      // nbio decrypts through it (UnderlayerConn)
		c.sinkCounts = upgradeTLS(c, tc) // tls.go
	}
	c.w = h.worker(id)
	nick, ok := normalizeNick(r.URL.Query().Get("nick"))
	if !ok {
		nick = guestNick(c.idStr)
	}
	c.setNickname(nick)
	now := h.clock.now()
	c.lastRead.Store(now)
	c.tokenTime = now
	c.tokens = float64(s.cfg.Burst)
	c.rlNotice = now - 1000

	_ = nbc.SetReadDeadline(time.Time{}) // the idle sweep takes over from nbio's HTTP keepalive
	// A fixed kernel send buffer (the kernel doubles it): left to Linux's
	// autotuning it grows to megabytes for a reader that stalls, all of it
	// unsent data that the -send-buffer cap would not see. It must still
	// take a worker's whole round with room to spare, or healthy readers
	// would look slow.
	_ = nbc.SetWriteBuffer(max(s.cfg.SendBuffer/4, 2*h.flushAt))
	// c is the session before anything is written: nbio reports the bytes
	// the kernel took to the session (onWritten), the 101 included, and
	// pending() would otherwise count it unsent for ever.
	nc.Parser = nil
	sess := newSession(c)
	nbc.SetSession(sess)
	st.upgrades.Add(1)
	// The handshake response goes through c's worker ahead of any frame, so
	// nothing the client sends can be answered before it. If the socket
	// closed since SetSession, nbio has told c already and register adds
	// nothing.
	h.register(c, handshake(key, c.idStr, nick, h.authMode()))
	h.startAuthClock(c)
	// Only now, with c registered, do the bytes that came behind the
	// request reach c.Parse: nbio hands them to the parser's ParserCloser
	// when this handler returns. Every later read goes to the session.
	parser.ParserCloser = sess
	// The socket may have closed before SetSession, and nbio then told the
	// HTTP parser, not c. Under nbio's lock the close is either before this
	// check, which sees it, or after SetSession, and nbio tells c: c is
	// disconnected either way, once (disconnect does its work once).
	nbc.Lock()
	closed, _ := nbc.IsClosed()
	nbc.Unlock()
	if closed {
		sess.CloseAndClean(nil)
	}
}

// handshake is the 101 response followed by the hello frame.
func handshake(key, id, nick, auth string) []byte {
	sum := sha1.Sum([]byte(key + websocketGUID))
	b := make([]byte, 0, 160)
	b = append(b, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	b = base64.StdEncoding.AppendEncode(b, sum[:])
	b = append(b, "\r\n\r\n"...)
	return append(b, encodeHello(id, nick, auth)...)
}

// socketOf finds the nbio socket under a hijacked connection, and what to
// write frames to.
func (s *server) socketOf(nc *nbhttp.Conn) (*nbio.Conn, io.Writer) {
	switch u := nc.Conn.(type) {
	case *nbio.Conn:
		return u, u
	case *ltls.Conn: // over the tlsSocket hookTLSSockets put under it
		if ts, ok := u.Conn().(*tlsSocket); ok {
			return ts.Conn, u
		}
	}
	return nil, nil
}

// headerHasToken reports whether a comma-separated header holds token,
// ignoring case (RFC 7230 §7).
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// originAllowed applies the origin policy: no Origin header (a non-browser
// client) or the page's own origin is allowed; any other only if listed in
// -origins. A browser page elsewhere must not ride its visitors' cookies
// into this server (cross-site WebSocket hijacking).
func (s *server) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	for _, o := range s.cfg.Origins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return false // includes the opaque origin "null"
	}
	// Without TLS the scheme is not compared: behind a proxy that
	// terminates TLS the page is https:// while this server sees plain
	// HTTP. With TLS the page is only ever served over https on this host
	// and port, so an http:// origin naming them is a forgery or an
	// attacker's page on a spoofed plain-HTTP connection.
	if s.tls != nil && u.Scheme != "https" {
		return false
	}
	// With -hosts, the page's own origin must also be one of its names:
	// checkHost refuses other Hosts already, and this keeps the rule
	// where the origin is decided (hosts.go says why: DNS rebinding).
	if !s.hostAllowed(u.Host) {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}

// remoteIP is the address part of host:port.
func remoteIP(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}
