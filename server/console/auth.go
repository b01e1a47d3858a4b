package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Access control: a password exchanged for a signed session cookie, a CSRF
// token per session, bearer passwords for scripts, and a limit on failed
// attempts per address. See the package doc for the rules; this file is
// how they are kept.

const (
	// cookieName is the session cookie, scoped to /admin.
	cookieName = "noom_admin"
	// csrfHeader carries the session's CSRF token on state-changing
	// requests.
	csrfHeader = "X-CSRF-Token"
	// loginBurst failed attempts are allowed from one address at once, then
	// one more every loginRefill: five a minute.
	loginBurst  = 5
	loginRefill = 12 * time.Second
	// maxTracked bounds the addresses whose failures are remembered, and
	// maxRevoked the sessions logged out before they expired. Past
	// maxTracked, the addresses not seen before share one bucket: a flood
	// from many addresses then limits itself rather than growing memory.
	maxTracked = 10000
	maxRevoked = 10000
	// sessionIDLen is the random part of a session, in bytes.
	sessionIDLen = 16
)

// auth checks passwords and sessions. The key signs cookies and derives
// CSRF tokens; it is made at start and never leaves the process, so
// sessions end with it, at the next restart.
type auth struct {
	sum [32]byte // SHA-256 of the password: compared in constant time whatever the lengths
	ttl time.Duration
	now func() time.Time // time.Now; tests move it

	mu      sync.Mutex // guards key, fails and revoked
	key     [32]byte
	fails   map[string]*bucket
	revoked map[string]time.Time // session id → its expiry, when it may be forgotten
}

// bucket is one address's allowance of failed attempts.
type bucket struct {
	tokens float64
	at     time.Time
}

func newAuth(password []byte, ttl time.Duration) *auth {
	a := &auth{sum: sha256.Sum256(password), ttl: ttl, now: time.Now,
		fails: make(map[string]*bucket), revoked: make(map[string]time.Time)}
	if _, err := rand.Read(a.key[:]); err != nil {
		panic("console: no randomness for the session key: " + err.Error())
	}
	return a
}

// passwordOK compares given with the password in constant time.
func (a *auth) passwordOK(given []byte) bool {
	sum := sha256.Sum256(given)
	return subtle.ConstantTimeCompare(sum[:], a.sum[:]) == 1
}

// allowed reports whether addr may try a password now, and if not, when it
// may again.
func (a *auth) allowed(addr string) (bool, time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	b := a.bucketOf(addr, false)
	if b == nil {
		return true, 0
	}
	a.refill(b)
	if b.tokens >= 1 {
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) * float64(loginRefill))
}

// failed spends one of addr's attempts.
func (a *auth) failed(addr string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	b := a.bucketOf(addr, true)
	a.refill(b)
	b.tokens--
}

// succeeded forgets addr's failures.
func (a *auth) succeeded(addr string) {
	a.mu.Lock()
	delete(a.fails, addr)
	a.mu.Unlock()
}

// bucketOf returns addr's bucket, creating it if create. a.mu must be held.
func (a *auth) bucketOf(addr string, create bool) *bucket {
	if b := a.fails[addr]; b != nil {
		return b
	}
	if len(a.fails) >= maxTracked {
		for k, b := range a.fails { // forget those that have their whole allowance back
			a.refill(b)
			if b.tokens >= loginBurst {
				delete(a.fails, k)
			}
		}
		if len(a.fails) >= maxTracked {
			addr = "" // the shared overflow bucket
			if b := a.fails[addr]; b != nil || !create {
				return b
			}
		}
	}
	if !create {
		return nil
	}
	b := &bucket{tokens: loginBurst, at: a.now()}
	a.fails[addr] = b
	return b
}

func (a *auth) refill(b *bucket) {
	now := a.now()
	b.tokens = min(loginBurst, b.tokens+float64(now.Sub(b.at))/float64(loginRefill))
	b.at = now
}

// session is a verified login.
type session struct {
	id      []byte
	expires time.Time
}

// who names the session in logs: the first bytes of its id, which say
// which login did what and are no use without the signature.
func (s session) who() string { return "session " + hex.EncodeToString(s.id[:4]) }

// newSession makes a session and its cookie value: the id and expiry,
// then an HMAC of both.
func (a *auth) newSession() (session, string) {
	s := session{id: make([]byte, sessionIDLen), expires: a.now().Add(a.ttl).Truncate(time.Second)}
	_, _ = rand.Read(s.id)
	payload := binary.BigEndian.AppendUint64(append([]byte(nil), s.id...), uint64(s.expires.Unix()))
	return s, b64(payload) + "." + b64(a.mac("session", payload))
}

// verify checks a cookie value: well formed, signed by this process, not
// expired, not logged out.
func (a *auth) verify(value string) (session, bool) {
	p, sig, ok := strings.Cut(value, ".")
	if !ok {
		return session{}, false
	}
	payload, err1 := base64.RawURLEncoding.DecodeString(p)
	mac, err2 := base64.RawURLEncoding.DecodeString(sig)
	if err1 != nil || err2 != nil || len(payload) != sessionIDLen+8 || !hmac.Equal(mac, a.mac("session", payload)) {
		return session{}, false
	}
	s := session{id: payload[:sessionIDLen], expires: time.Unix(int64(binary.BigEndian.Uint64(payload[sessionIDLen:])), 0)}
	if !a.now().Before(s.expires) {
		return session{}, false
	}
	a.mu.Lock()
	_, out := a.revoked[string(s.id)]
	a.mu.Unlock()
	return s, !out
}

// revoke ends s before it expires.
func (a *auth) revoke(s session) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.revoked) >= maxRevoked {
		now := a.now()
		for id, exp := range a.revoked {
			if !now.Before(exp) { // expired anyway
				delete(a.revoked, id)
			}
		}
		if len(a.revoked) >= maxRevoked {
			// Thousands of live sessions logged out: start over with a new
			// key, which ends every session, rather than forget one.
			_, _ = rand.Read(a.key[:])
			clear(a.revoked)
			return
		}
	}
	a.revoked[string(s.id)] = s.expires
}

// csrf is s's CSRF token: derived from its id, so nothing is stored.
func (a *auth) csrf(s session) string { return b64(a.mac("csrf", s.id)) }

// csrfOK checks the token r carries for s.
func (a *auth) csrfOK(r *http.Request, s session) bool {
	got := r.Header.Get(csrfHeader)
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(a.csrf(s))) == 1
}

func (a *auth) mac(purpose string, data []byte) []byte {
	a.mu.Lock()
	key := a.key
	a.mu.Unlock()
	m := hmac.New(sha256.New, key[:])
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write(data)
	return m.Sum(nil)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// cookie is the session cookie for value, or the one that clears it
// (maxAge < 0).
func cookie(r *http.Request, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: cookieName, Value: value, Path: "/admin", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil}
}

// remoteAddr is the address failures are counted by: the peer's IP, as
// the admin listener sees it (no proxy header is believed).
func remoteAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// bearer returns the password of an Authorization: Bearer header.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") {
		return "", false
	}
	return strings.TrimSpace(h[7:]), true
}

// sameOrigin reports whether r's Origin, if it sends one, is the console's
// own. SameSite=Strict keeps the cookie off cross-site requests already;
// this refuses them even from browsers that do not honour it.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}
