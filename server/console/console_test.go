package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"
)

// The console over real HTTP (httptest on 127.0.0.1) and a small Source
// kept in the test: what it is asked, and what it answers.

const testPassword = "correct horse battery staple"

// fakeSource records the actions it is asked for and answers the looks
// with what the test put in it.
type fakeSource struct {
	mu      sync.Mutex
	nodes   []Node
	rooms   []Room
	conns   []Conn
	actions []string
	err     error // returned by every action when set
	connErr error // returned with the connections when set
}

func (f *fakeSource) record(s string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.actions = append(f.actions, s)
	return f.err
}

func (f *fakeSource) done() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.actions...)
}

func (f *fakeSource) Nodes(context.Context) ([]Node, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Node(nil), f.nodes...), nil
}

func (f *fakeSource) Rooms(_ context.Context, q string) ([]Room, error) {
	var out []Room
	for _, r := range f.rooms {
		if strings.Contains(r.Name, q) {
			out = append(out, r)
		}
	}
	return out, nil
}

func (f *fakeSource) Room(_ context.Context, name string) (RoomDetail, error) {
	for _, r := range f.rooms {
		if r.Name == name {
			return RoomDetail{Name: name, Members: []Member{{ID: "1", Nick: "ann", Role: "member"}}, MembersTotal: 1}, nil
		}
	}
	return RoomDetail{}, fmt.Errorf("no room %s: %w", name, ErrNotFound)
}

func (f *fakeSource) Connections(context.Context, string) ([]Conn, error) { return f.conns, f.connErr }

func (f *fakeSource) Disconnect(_ context.Context, id, by string) error {
	return f.record("disconnect " + id + " by " + by)
}

func (f *fakeSource) Remove(_ context.Context, room, id, by string) error {
	return f.record("remove " + id + " from " + room + " by " + by)
}

func (f *fakeSource) Lock(_ context.Context, room string, locked bool, by string) error {
	if room == "busy" {
		return fmt.Errorf("the settings could not be stored: %w", ErrUnavailable)
	}
	return f.record(fmt.Sprintf("lock %s %v by %s", room, locked, by))
}

func (f *fakeSource) End(_ context.Context, room, by string) (int, error) {
	return 2, f.record("end " + room + " by " + by)
}

func (f *fakeSource) Drain(_ context.Context, by string) error { return f.record("drain by " + by) }

// lockedBuffer collects log lines from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// fixture is a console behind a real HTTP server, with its log.
type fixture struct {
	t    *testing.T
	c    *Console
	src  *fakeSource
	srv  *httptest.Server
	logs *lockedBuffer
	// bodies collects every answer's headers and body, to check that no
	// secret is ever in one.
	mu     sync.Mutex
	bodies []string
}

func newFixture(t *testing.T, opt Options) *fixture {
	t.Helper()
	f := &fixture{t: t, src: &fakeSource{}, logs: &lockedBuffer{}}
	opt.Log = slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if opt.Page == nil {
		opt.Page = fstest.MapFS{"index.html": {Data: []byte("<!doctype html><title>console</title>")}}
	}
	f.c = New(f.src, opt)
	f.srv = httptest.NewServer(f.c)
	t.Cleanup(f.srv.Close)
	return f
}

// do sends a request and returns the answer and its body. hdr holds
// headers to set; "Cookie" is passed as is.
func (f *fixture) do(method, path, body string, hdr map[string]string) (*http.Response, string) {
	f.t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var all strings.Builder
	for k, vs := range resp.Header {
		if k != "Set-Cookie" { // the one place the cookie must be
			fmt.Fprintf(&all, "%s: %s\n", k, strings.Join(vs, ","))
		}
	}
	all.Write(b)
	f.mu.Lock()
	f.bodies = append(f.bodies, all.String())
	f.mu.Unlock()
	return resp, string(b)
}

// login logs in and returns the cookie header and the CSRF token.
func (f *fixture) login() (cookie, csrf string) {
	f.t.Helper()
	resp, body := f.do("POST", "/admin/api/login", `{"password":"`+testPassword+`"}`, nil)
	if resp.StatusCode != http.StatusOK {
		f.t.Fatalf("login: %d %s", resp.StatusCode, body)
	}
	var ans struct{ CSRF string }
	if err := json.Unmarshal([]byte(body), &ans); err != nil || ans.CSRF == "" {
		f.t.Fatalf("login answer %s: %v", body, err)
	}
	cs := resp.Cookies()
	if len(cs) != 1 || cs[0].Name != cookieName {
		f.t.Fatalf("login cookies: %v", resp.Header["Set-Cookie"])
	}
	return cs[0].Name + "=" + cs[0].Value, ans.CSRF
}

func wantError(t *testing.T, what string, resp *http.Response, body string, status int, contains string) {
	t.Helper()
	var e struct{ Error string }
	if resp.StatusCode != status || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, contains) {
		t.Fatalf("%s: %d %s, want %d and an error with %q", what, resp.StatusCode, body, status, contains)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s: Content-Type %q", what, ct)
	}
}

func TestConsoleOff(t *testing.T) {
	f := newFixture(t, Options{})
	if f.c.Enabled() {
		t.Fatal("enabled without a password")
	}
	for _, p := range []string{"/admin/", "/admin/api/nodes", "/admin/api/login", "/admin/index.html"} {
		resp, body := f.do("GET", p, "", nil)
		if resp.StatusCode != http.StatusNotFound || body != offText {
			t.Errorf("GET %s: %d %q, want 404 %q", p, resp.StatusCode, body, offText)
		}
	}
	if resp, _ := f.do("POST", "/admin/api/login", `{"password":"x"}`, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("login with the console off: %d", resp.StatusCode)
	}
	f.c.Start() // does nothing: no goroutine to stop
	f.c.Close()
}

func TestLoginRateLimit(t *testing.T) {
	f := newFixture(t, Options{Password: []byte(testPassword)})
	now := time.Now()
	f.c.auth.now = func() time.Time { return now }
	for i := 0; i < loginBurst; i++ {
		resp, body := f.do("POST", "/admin/api/login", `{"password":"wrong"}`, nil)
		wantError(t, "wrong password", resp, body, http.StatusUnauthorized, "wrong password")
	}
	// Over the limit even the right password is not compared.
	for _, pw := range []string{"wrong", testPassword} {
		resp, body := f.do("POST", "/admin/api/login", `{"password":"`+pw+`"}`, nil)
		wantError(t, "over the limit", resp, body, http.StatusTooManyRequests, "too many")
		if ra := resp.Header.Get("Retry-After"); ra != "12" {
			t.Fatalf("Retry-After %q, want 12", ra)
		}
	}
	// A wrong bearer password is a failed attempt too, and limited alike.
	resp, body := f.do("GET", "/admin/api/nodes", "", map[string]string{"Authorization": "Bearer " + testPassword})
	wantError(t, "bearer over the limit", resp, body, http.StatusTooManyRequests, "too many")

	// One attempt comes back every loginRefill.
	now = now.Add(loginRefill)
	resp, body = f.do("POST", "/admin/api/login", "password=wrong", map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	wantError(t, "after a refill", resp, body, http.StatusUnauthorized, "wrong password")
	resp, body = f.do("POST", "/admin/api/login", `{"password":"`+testPassword+`"}`, nil)
	wantError(t, "spent again", resp, body, http.StatusTooManyRequests, "too many")
	now = now.Add(loginRefill)
	resp, body = f.do("POST", "/admin/api/login", "password="+strings.ReplaceAll(testPassword, " ", "+"), map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("form login after a refill: %d %s", resp.StatusCode, body)
	}
	// A success forgets the failures.
	for i := 0; i < loginBurst; i++ {
		resp, body := f.do("POST", "/admin/api/login", `{"password":"wrong"}`, nil)
		wantError(t, "after a success", resp, body, http.StatusUnauthorized, "wrong password")
	}
}

func TestLimiterMemoryBounded(t *testing.T) {
	a := newAuth([]byte("pw"), time.Hour)
	for i := 0; i < maxTracked+500; i++ {
		a.failed(fmt.Sprintf("10.0.%d.%d", i/256, i%256))
	}
	if n := len(a.fails); n > maxTracked+1 {
		t.Fatalf("%d addresses tracked, want at most %d and the shared bucket", n, maxTracked)
	}
	// The addresses past the bound share one bucket, which they spend together.
	if ok, _ := a.allowed("10.9.9.9"); ok {
		t.Fatal("a new address past the bound is not limited by the shared bucket")
	}
}

func TestCookieFlags(t *testing.T) {
	for _, tls := range []bool{false, true} {
		c := New(&fakeSource{}, Options{Password: []byte(testPassword), Log: slog.New(slog.DiscardHandler), SessionTTL: 2 * time.Hour})
		var srv *httptest.Server
		if tls {
			srv = httptest.NewTLSServer(c)
		} else {
			srv = httptest.NewServer(c)
		}
		resp, err := srv.Client().Post(srv.URL+"/admin/api/login", "application/json", strings.NewReader(`{"password":"`+testPassword+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		raw := resp.Header.Get("Set-Cookie")
		for _, want := range []string{cookieName + "=", "Path=/admin", "Max-Age=7200", "HttpOnly", "SameSite=Strict"} {
			if !strings.Contains(raw, want) {
				t.Errorf("TLS %v: Set-Cookie %q lacks %s", tls, raw, want)
			}
		}
		if strings.Contains(raw, "Secure") != tls {
			t.Errorf("TLS %v: Set-Cookie %q", tls, raw)
		}
		srv.Close()
	}
}

func TestCSRFAndSessions(t *testing.T) {
	f := newFixture(t, Options{Password: []byte(testPassword)})
	cookie, csrf := f.login()

	resp, body := f.do("GET", "/admin/api/session", "", map[string]string{"Cookie": cookie})
	if resp.StatusCode != 200 || !strings.Contains(body, csrf) {
		t.Fatalf("session: %d %s", resp.StatusCode, body)
	}
	resp, body = f.do("GET", "/admin/api/nodes", "", nil)
	wantError(t, "no cookie", resp, body, http.StatusUnauthorized, "log in")
	resp, body = f.do("GET", "/admin/api/nodes", "", map[string]string{"Cookie": cookie + "x"})
	wantError(t, "a forged cookie", resp, body, http.StatusUnauthorized, "log in")

	const path = "/admin/api/connections/7/disconnect"
	resp, body = f.do("POST", path, "", map[string]string{"Cookie": cookie})
	wantError(t, "no CSRF token", resp, body, http.StatusForbidden, csrfHeader)
	resp, body = f.do("POST", path, "", map[string]string{"Cookie": cookie, csrfHeader: csrf[:len(csrf)-2] + "AA"})
	wantError(t, "a wrong CSRF token", resp, body, http.StatusForbidden, csrfHeader)
	resp, body = f.do("POST", path, "", map[string]string{"Cookie": cookie, csrfHeader: csrf, "Origin": "http://evil.example"})
	wantError(t, "another site's Origin", resp, body, http.StatusForbidden, csrfHeader)
	if got := f.src.done(); len(got) != 0 {
		t.Fatalf("refused requests reached the source: %v", got)
	}
	resp, body = f.do("POST", path, "", map[string]string{"Cookie": cookie, csrfHeader: csrf, "Origin": f.srv.URL})
	if resp.StatusCode != 200 || body != "{\"ok\":true}\n" {
		t.Fatalf("disconnect with the token: %d %s", resp.StatusCode, body)
	}
	got := f.src.done()
	if len(got) != 1 || !strings.HasPrefix(got[0], "disconnect 7 by session ") || !strings.HasSuffix(got[0], " from 127.0.0.1") {
		t.Fatalf("source saw %v", got)
	}

	// Another login has another token; the first one's does not work with it.
	cookie2, csrf2 := f.login()
	if csrf2 == csrf {
		t.Fatal("two sessions share a CSRF token")
	}
	resp, body = f.do("POST", path, "", map[string]string{"Cookie": cookie2, csrfHeader: csrf})
	wantError(t, "another session's token", resp, body, http.StatusForbidden, csrfHeader)

	// Logout needs the token too, then the cookie is dead.
	resp, body = f.do("POST", "/admin/api/logout", "", map[string]string{"Cookie": cookie})
	wantError(t, "logout without the token", resp, body, http.StatusForbidden, csrfHeader)
	resp, _ = f.do("POST", "/admin/api/logout", "", map[string]string{"Cookie": cookie, csrfHeader: csrf})
	if resp.StatusCode != 200 || len(resp.Cookies()) != 1 || resp.Cookies()[0].MaxAge >= 0 {
		t.Fatalf("logout: %d %v", resp.StatusCode, resp.Header["Set-Cookie"])
	}
	resp, body = f.do("GET", "/admin/api/nodes", "", map[string]string{"Cookie": cookie})
	wantError(t, "after logout", resp, body, http.StatusUnauthorized, "log in")
	if resp, _ := f.do("GET", "/admin/api/nodes", "", map[string]string{"Cookie": cookie2}); resp.StatusCode != 200 {
		t.Fatalf("the other session after a logout: %d", resp.StatusCode)
	}

	// Sessions expire.
	f.c.auth.now = func() time.Time { return time.Now().Add(12*time.Hour + time.Second) }
	resp, body = f.do("GET", "/admin/api/nodes", "", map[string]string{"Cookie": cookie2})
	wantError(t, "an expired session", resp, body, http.StatusUnauthorized, "log in")
}

func TestBearer(t *testing.T) {
	f := newFixture(t, Options{Password: []byte(testPassword)})
	auth := map[string]string{"Authorization": "Bearer " + testPassword}
	if resp, body := f.do("GET", "/admin/api/rooms", "", auth); resp.StatusCode != 200 {
		t.Fatalf("GET with bearer: %d %s", resp.StatusCode, body)
	}
	resp, body := f.do("POST", "/admin/api/rooms/r1/end", "", auth)
	if resp.StatusCode != 200 || !strings.Contains(body, `"left":2`) {
		t.Fatalf("end with bearer, no CSRF token: %d %s", resp.StatusCode, body)
	}
	resp, body = f.do("POST", "/admin/api/drain", "", map[string]string{"Authorization": "Bearer nope"})
	wantError(t, "wrong bearer", resp, body, http.StatusUnauthorized, "wrong password")
	if got := f.src.done(); len(got) != 1 || got[0] != "end r1 by bearer from 127.0.0.1" {
		t.Fatalf("source saw %v", got)
	}
}

func TestReadOnly(t *testing.T) {
	f := newFixture(t, Options{Password: []byte(testPassword), ReadOnly: true})
	cookie, csrf := f.login()
	hdr := map[string]string{"Cookie": cookie, csrfHeader: csrf}
	for _, p := range []string{"/admin/api/connections/1/disconnect", "/admin/api/rooms/r/members/1/remove",
		"/admin/api/rooms/r/lock", "/admin/api/rooms/r/end", "/admin/api/drain"} {
		resp, body := f.do("POST", p, "", hdr)
		wantError(t, p, resp, body, http.StatusForbidden, "read-only")
		resp, body = f.do("POST", p, "", map[string]string{"Authorization": "Bearer " + testPassword})
		wantError(t, p+" with bearer", resp, body, http.StatusForbidden, "read-only")
	}
	if got := f.src.done(); len(got) != 0 {
		t.Fatalf("read-only console reached the source: %v", got)
	}
	for _, p := range []string{"/admin/api/nodes", "/admin/api/rooms", "/admin/api/connections", "/admin/api/session"} {
		if resp, body := f.do("GET", p, "", hdr); resp.StatusCode != 200 {
			t.Errorf("read-only GET %s: %d %s", p, resp.StatusCode, body)
		}
	}
	if _, body := f.do("GET", "/admin/api/session", "", hdr); !strings.Contains(body, `"readonly":true`) {
		t.Errorf("session does not say read-only: %s", body)
	}
}

func TestEndpoints(t *testing.T) {
	f := newFixture(t, Options{Password: []byte(testPassword)})
	f.src.rooms = []Room{{Name: "small", Members: 1}, {Name: "big", Members: 9}, {Name: "mid", Members: 4}, {Name: "bigger.x", Members: 9}}
	auth := map[string]string{"Authorization": "Bearer " + testPassword}

	_, body := f.do("GET", "/admin/api/rooms", "", auth)
	var rooms struct {
		Rooms []Room
		Total int
	}
	if err := json.Unmarshal([]byte(body), &rooms); err != nil || rooms.Total != 4 {
		t.Fatalf("rooms: %s", body)
	}
	var order []string
	for _, r := range rooms.Rooms {
		order = append(order, r.Name)
	}
	if strings.Join(order, " ") != "big bigger.x mid small" {
		t.Fatalf("rooms in order %v, want most members first, then by name", order)
	}
	if _, body := f.do("GET", "/admin/api/rooms?q=big", "", auth); !strings.Contains(body, `"total":2`) {
		t.Fatalf("rooms?q=big: %s", body)
	}
	if resp, body := f.do("GET", "/admin/api/rooms/bigger.x", "", auth); resp.StatusCode != 200 || !strings.Contains(body, `"room":"bigger.x"`) {
		t.Fatalf("room: %d %s", resp.StatusCode, body)
	}
	resp, body := f.do("GET", "/admin/api/rooms/nope", "", auth)
	wantError(t, "no such room", resp, body, http.StatusNotFound, "no room nope")

	if resp, body = f.do("POST", "/admin/api/rooms/mid/lock", "", auth); resp.StatusCode != http.StatusOK {
		t.Fatalf("lock: %d %s", resp.StatusCode, body)
	}
	resp, body = f.do("POST", "/admin/api/rooms/busy/lock", "", auth)
	wantError(t, "a lock the source could not store", resp, body, http.StatusServiceUnavailable, "could not be stored")
	f.do("POST", "/admin/api/rooms/mid/lock", `{"locked":false}`, auth)
	resp, body = f.do("POST", "/admin/api/rooms/mid/lock", `{"locked":`, auth)
	wantError(t, "a bad lock body", resp, body, http.StatusBadRequest, "locked")
	f.do("POST", "/admin/api/rooms/mid/members/a-1/remove", "", auth)
	want := []string{"lock mid true by bearer from 127.0.0.1", "lock mid false by bearer from 127.0.0.1", "remove a-1 from mid by bearer from 127.0.0.1"}
	if got := f.src.done(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("source saw %v, want %v", got, want)
	}
	resp, body = f.do("GET", "/admin/api/nothing", "", auth)
	wantError(t, "unknown endpoint", resp, body, http.StatusNotFound, "no such endpoint")
	if resp, body := f.do("GET", "/admin/", "", nil); resp.StatusCode != 200 || !strings.Contains(body, "<title>console") ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Fatalf("page: %d %s %v", resp.StatusCode, body, resp.Header)
	}

	// A partial answer is served with what failed; no answer at all is an error.
	f.src.conns, f.src.connErr = []Conn{{ID: "b-2", Node: "b"}, {ID: "a-10", Node: "a"}, {ID: "a-9", Node: "a"}}, fmt.Errorf("nodes c did not answer: %w", ErrUnavailable)
	resp, body = f.do("GET", "/admin/api/connections", "", auth)
	if resp.StatusCode != 200 || !strings.Contains(body, `"warning":"nodes c did not answer: unavailable"`) ||
		!strings.Contains(body, `"connections":[{"id":"a-9"`) || !strings.Contains(body, `"total":3`) {
		t.Fatalf("a partial answer: %d %s", resp.StatusCode, body)
	}
	f.src.conns = nil
	resp, body = f.do("GET", "/admin/api/connections", "", auth)
	wantError(t, "no answer", resp, body, http.StatusServiceUnavailable, "nodes c did not answer")

	f.src.err = fmt.Errorf("node x did not answer: %w", ErrUnavailable)
	resp, body = f.do("POST", "/admin/api/connections/x-1/disconnect", "", auth)
	wantError(t, "unavailable", resp, body, http.StatusServiceUnavailable, "node x did not answer")
}

// TestNoSecrets: neither the password nor a session cookie is in any
// answer (but the Set-Cookie that hands it over) or any log line, and
// every action's log line says who, what and the outcome.
func TestNoSecrets(t *testing.T) {
	f := newFixture(t, Options{Password: []byte(testPassword)})
	f.do("POST", "/admin/api/login", `{"password":"`+testPassword+`x"}`, nil)
	cookie, csrf := f.login()
	hdr := map[string]string{"Cookie": cookie, csrfHeader: csrf}
	f.do("POST", "/admin/api/connections/c9/disconnect", "", hdr)
	f.do("POST", "/admin/api/rooms/r/end", "", map[string]string{"Authorization": "Bearer " + testPassword})
	f.do("POST", "/admin/api/drain", "", map[string]string{"Authorization": "Bearer " + testPassword + "!"})
	f.do("GET", "/admin/api/session", "", hdr)
	f.do("POST", "/admin/api/logout", "", hdr)

	secrets := []string{testPassword, strings.TrimPrefix(cookie, cookieName+"=")}
	logs := f.logs.String()
	f.mu.Lock()
	answers := strings.Join(f.bodies, "\n")
	f.mu.Unlock()
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("a secret is in the log:\n%s", logs)
		}
		if strings.Contains(answers, s) {
			t.Errorf("a secret is in an answer:\n%s", answers)
		}
	}
	for _, want := range []string{
		`msg="admin login failed" component=console remote=127.0.0.1`,
		`msg="admin action" component=console action=disconnect target="connection c9" by="session `,
		`msg="admin action" component=console action=end target="room r" by=bearer remote=127.0.0.1 result=ok`,
		`msg="admin bearer password refused" component=console remote=127.0.0.1`,
		`msg="admin logout" component=console by="session `,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
}
