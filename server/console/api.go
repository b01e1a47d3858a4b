package console

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The routes: the page, login and logout, what the console shows and what
// it does. Handlers run on the admin listener's goroutines (one per
// request), so they may wait for the Source, bounded by Options.Timeout.

// maxList bounds the rooms and connections one answer lists; total says
// how many matched.
const maxList = 1000

func (c *Console) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/admin/", c.page) // and every unknown /admin/api/ path
	mux.HandleFunc("POST /admin/api/login", c.login)
	mux.HandleFunc("POST /admin/api/logout", c.logout)
	mux.HandleFunc("GET /admin/api/session", c.look(c.session))
	mux.HandleFunc("GET /admin/api/nodes", c.look(c.nodes))
	mux.HandleFunc("GET /admin/api/rooms", c.look(c.rooms))
	mux.HandleFunc("GET /admin/api/rooms/{room}", c.look(c.room))
	mux.HandleFunc("GET /admin/api/connections", c.look(c.connections))
	mux.HandleFunc("POST /admin/api/connections/{id}/disconnect", c.act("disconnect", func(ctx context.Context, r *http.Request, by string) (map[string]any, error) {
		return nil, c.src.Disconnect(ctx, r.PathValue("id"), by)
	}))
	mux.HandleFunc("POST /admin/api/rooms/{room}/members/{id}/remove", c.act("remove", func(ctx context.Context, r *http.Request, by string) (map[string]any, error) {
		return nil, c.src.Remove(ctx, r.PathValue("room"), r.PathValue("id"), by)
	}))
	mux.HandleFunc("POST /admin/api/rooms/{room}/lock", c.act("lock", func(ctx context.Context, r *http.Request, by string) (map[string]any, error) {
		body := struct {
			Locked *bool `json:"locked"`
		}{}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1024)).Decode(&body); err != nil && !errors.Is(err, io.EOF) {
			return nil, badRequest("the body is {\"locked\": true|false}")
		}
		locked := body.Locked == nil || *body.Locked
		return map[string]any{"locked": locked}, c.src.Lock(ctx, r.PathValue("room"), locked, by)
	}))
	mux.HandleFunc("POST /admin/api/rooms/{room}/end", c.act("end", func(ctx context.Context, r *http.Request, by string) (map[string]any, error) {
		n, err := c.src.End(ctx, r.PathValue("room"), by)
		return map[string]any{"left": n}, err
	}))
	mux.HandleFunc("POST /admin/api/drain", c.act("drain", func(ctx context.Context, r *http.Request, by string) (map[string]any, error) {
		return nil, c.src.Drain(ctx, by)
	}))
	return mux
}

// pageCSP allows the console page its own scripts, styles and requests,
// and nothing inline or from elsewhere.
const pageCSP = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"

// page serves the console page's files; under /admin/api/ it is the
// answer to a path that is no endpoint.
func (c *Console) page(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/admin/api/") {
		jsonError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if c.opt.Page == nil {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	http.StripPrefix("/admin", http.FileServerFS(c.opt.Page)).ServeHTTP(w, r)
}

// caller is who made an authenticated request.
type caller struct {
	who    string   // "session 1a2b3c4d" or "bearer"
	sess   *session // nil with a bearer password
	remote string
}

// by is what the Source is told of who asked.
func (k caller) by() string { return k.who + " from " + k.remote }

// identify authenticates r by bearer password or session cookie, or
// answers 401 (or 429) and reports false.
func (c *Console) identify(w http.ResponseWriter, r *http.Request) (caller, bool) {
	remote := remoteAddr(r)
	if pw, ok := bearer(r); ok {
		if ok, retry := c.auth.allowed(remote); !ok {
			tooMany(w, retry)
			return caller{}, false
		}
		if !c.auth.passwordOK([]byte(pw)) {
			c.auth.failed(remote)
			c.log.Warn("admin bearer password refused", "remote", remote)
			jsonError(w, http.StatusUnauthorized, "wrong password")
			return caller{}, false
		}
		return caller{who: "bearer", remote: remote}, true
	}
	if ck, err := r.Cookie(cookieName); err == nil {
		if s, ok := c.auth.verify(ck.Value); ok {
			return caller{who: s.who(), sess: &s, remote: remote}, true
		}
	}
	jsonError(w, http.StatusUnauthorized, "log in first (POST /admin/api/login), or send Authorization: Bearer <password>")
	return caller{}, false
}

// look wraps a handler that only reads.
func (c *Console) look(h func(http.ResponseWriter, *http.Request, caller)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if k, ok := c.identify(w, r); ok {
			h(w, r, k)
		}
	}
}

// changing checks what a state-changing request made with a session must
// carry: its CSRF token, and no other site's Origin. A bearer request
// carries no cookie, so nothing a browser sends by itself, and passes.
func (c *Console) changing(w http.ResponseWriter, r *http.Request, k caller) bool {
	if k.sess == nil {
		return true
	}
	if !sameOrigin(r) || !c.auth.csrfOK(r, *k.sess) {
		c.log.Warn("admin request refused: missing or wrong CSRF token", "path", r.URL.Path, "by", k.who, "remote", k.remote)
		jsonError(w, http.StatusForbidden, "missing or wrong "+csrfHeader+" header (the token comes with the login)")
		return false
	}
	return true
}

// act wraps an action: authenticated, refused when read-only, CSRF-checked,
// bounded by the timeout, and logged whatever its outcome.
func (c *Console) act(name string, do func(ctx context.Context, r *http.Request, by string) (map[string]any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		k, ok := c.identify(w, r)
		if !ok {
			return
		}
		target := target(r)
		if c.opt.ReadOnly {
			c.log.Warn("admin action refused: read-only console", "action", name, "target", target, "by", k.who, "remote", k.remote)
			jsonError(w, http.StatusForbidden, "the console is read-only (-admin-readonly): actions are refused")
			return
		}
		if !c.changing(w, r, k) {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), c.opt.Timeout)
		defer cancel()
		start := time.Now()
		out, err := do(ctx, r, k.by())
		result := "ok"
		if err != nil {
			result = err.Error()
		}
		c.log.Info("admin action", "action", name, "target", target, "by", k.who, "remote", k.remote,
			"result", result, "took", time.Since(start).Round(time.Millisecond))
		if err != nil {
			jsonError(w, statusOf(err), err.Error())
			return
		}
		if out == nil {
			out = map[string]any{}
		}
		out["ok"] = true
		writeJSON(w, http.StatusOK, out)
	}
}

// target names what an action is about, for its log line.
func target(r *http.Request) string {
	var parts []string
	if v := r.PathValue("room"); v != "" {
		parts = append(parts, "room "+v)
	}
	if v := r.PathValue("id"); v != "" {
		parts = append(parts, "connection "+v)
	}
	if len(parts) == 0 {
		return "this node"
	}
	return strings.Join(parts, ", ")
}

// maxLoginBody bounds what a login request may send.
const maxLoginBody = 4 << 10

// login exchanges the password for a session cookie and its CSRF token.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	remote := remoteAddr(r)
	if !sameOrigin(r) {
		jsonError(w, http.StatusForbidden, "login from another site refused")
		return
	}
	if ok, retry := c.auth.allowed(remote); !ok {
		c.log.Warn("admin login refused: too many failures", "remote", remote)
		tooMany(w, retry)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginBody)
	var pw string
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "application/json" {
		var body struct {
			Password string `json:"password"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			jsonError(w, http.StatusBadRequest, `the body is {"password": "..."}`)
			return
		}
		pw = body.Password
	} else {
		if err := r.ParseForm(); err != nil {
			jsonError(w, http.StatusBadRequest, "unreadable form")
			return
		}
		pw = r.PostForm.Get("password")
	}
	if pw == "" {
		jsonError(w, http.StatusBadRequest, "no password given")
		return
	}
	if !c.auth.passwordOK([]byte(pw)) {
		c.auth.failed(remote)
		c.log.Warn("admin login failed", "remote", remote)
		jsonError(w, http.StatusUnauthorized, "wrong password")
		return
	}
	c.auth.succeeded(remote)
	s, value := c.auth.newSession()
	http.SetCookie(w, cookie(r, value, int(c.opt.SessionTTL/time.Second)))
	c.log.Info("admin login", "by", s.who(), "remote", remote, "expires", s.expires)
	writeJSON(w, http.StatusOK, c.sessionInfo(caller{who: s.who(), sess: &s, remote: remote}))
}

// logout ends the session of the cookie.
func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	k, ok := c.identify(w, r)
	if !ok {
		return
	}
	if k.sess == nil {
		jsonError(w, http.StatusBadRequest, "a bearer password has no session to end")
		return
	}
	if !c.changing(w, r, k) {
		return
	}
	c.auth.revoke(*k.sess)
	http.SetCookie(w, cookie(r, "", -1))
	c.log.Info("admin logout", "by", k.who, "remote", k.remote)
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

func (c *Console) session(w http.ResponseWriter, r *http.Request, k caller) {
	writeJSON(w, http.StatusOK, c.sessionInfo(k))
}

// sessionInfo is what the page learns of its session: above all its CSRF
// token, which only a request bearing the cookie can read.
func (c *Console) sessionInfo(k caller) map[string]any {
	out := map[string]any{"who": k.who, "readonly": c.opt.ReadOnly}
	if k.sess != nil {
		out["csrf"] = c.auth.csrf(*k.sess)
		out["expires"] = k.sess.expires.UTC().Format(time.RFC3339)
	}
	return out
}

// nodeView is a node as GET /admin/api/nodes lists it: its last sample and
// its rates per second.
type nodeView struct {
	Node
	Rates map[string]*float64 `json:"rates"`
}

// totalView sums the nodes that answered the last sample.
type totalView struct {
	Nodes   int `json:"nodes"`
	Missing int `json:"missing"`
	Load
	Rates map[string]*float64 `json:"rates"`
}

func (c *Console) nodes(w http.ResponseWriter, r *http.Request, _ caller) {
	var since int64
	if v := r.URL.Query().Get("since"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			jsonError(w, http.StatusBadRequest, "since is a time in Unix milliseconds")
			return
		}
		since = n
	}
	ticks := c.ser.all()
	views := []nodeView{}
	tot := totalView{Load: Load{Errors: map[string]uint64{}}}
	var names []string
	if len(ticks) > 0 {
		for _, n := range ticks[len(ticks)-1].nodes {
			name := n.Name
			views = append(views, nodeView{n, latestRates(ticks, func(i int, m *metric) float64 { return value(ticks, i, name, m) })})
			if n.Missing {
				tot.Missing++
				continue
			}
			names = append(names, n.Name)
			tot.Nodes++
			tot.add(n.Load)
		}
	}
	tot.Rates = latestRates(ticks, func(i int, m *metric) float64 { return total(ticks, i, names, m) })
	writeJSON(w, http.StatusOK, struct {
		Now      int64           `json:"now"`
		Interval int64           `json:"interval_ms"`
		Nodes    []nodeView      `json:"nodes"`
		Total    totalView       `json:"total"`
		Series   json.RawMessage `json:"series"`
	}{time.Now().UnixMilli(), c.opt.SampleEvery.Milliseconds(), views, tot, seriesJSON(ticks, since)})
}

// maxQuery bounds a search string.
const maxQuery = 128

func (c *Console) rooms(w http.ResponseWriter, r *http.Request, _ caller) {
	q := r.URL.Query().Get("q")
	if len(q) > maxQuery {
		jsonError(w, http.StatusBadRequest, "q is too long")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), c.opt.Timeout)
	defer cancel()
	rooms, err := c.src.Rooms(ctx, q)
	if err != nil {
		jsonError(w, statusOf(err), err.Error())
		return
	}
	slices.SortFunc(rooms, func(a, b Room) int {
		if a.Members != b.Members {
			return b.Members - a.Members
		}
		return strings.Compare(a.Name, b.Name)
	})
	total := len(rooms)
	if rooms == nil {
		rooms = []Room{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"rooms": rooms[:min(total, maxList)], "total": total})
}

func (c *Console) room(w http.ResponseWriter, r *http.Request, _ caller) {
	ctx, cancel := context.WithTimeout(r.Context(), c.opt.Timeout)
	defer cancel()
	d, err := c.src.Room(ctx, r.PathValue("room"))
	if err != nil {
		jsonError(w, statusOf(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (c *Console) connections(w http.ResponseWriter, r *http.Request, _ caller) {
	q := r.URL.Query().Get("q")
	if len(q) > maxQuery {
		jsonError(w, http.StatusBadRequest, "q is too long")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), c.opt.Timeout)
	defer cancel()
	conns, err := c.src.Connections(ctx, q)
	if err != nil && conns == nil {
		jsonError(w, statusOf(err), err.Error())
		return
	}
	// By node, then id: ids are base 36 numbers, shorter ones first.
	slices.SortFunc(conns, func(a, b Conn) int {
		if x := strings.Compare(a.Node, b.Node); x != 0 {
			return x
		}
		if len(a.ID) != len(b.ID) {
			return len(a.ID) - len(b.ID)
		}
		return strings.Compare(a.ID, b.ID)
	})
	total := len(conns)
	if conns == nil {
		conns = []Conn{}
	}
	ans := map[string]any{"connections": conns[:min(total, maxList)], "total": total}
	if err != nil { // some nodes did not answer: what the others said, and who they are
		ans["warning"] = err.Error()
	}
	writeJSON(w, http.StatusOK, ans)
}

// badRequest is an error answered 400.
type badRequest string

func (e badRequest) Error() string { return string(e) }

// statusOf picks the HTTP status for an error of the Source.
func statusOf(err error) int {
	var br badRequest
	switch {
	case errors.As(err, &br):
		return http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func tooMany(w http.ResponseWriter, retry time.Duration) {
	secs := int(retry.Seconds() + 0.999)
	w.Header().Set("Retry-After", strconv.Itoa(max(1, secs)))
	jsonError(w, http.StatusTooManyRequests, "too many failed attempts from your address; try again in "+strconv.Itoa(max(1, secs))+" s")
}

func jsonError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
