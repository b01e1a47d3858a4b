package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Protocol tests of "Tokens" (PROTOCOL.md): the auth request, the claims
// and the attacks on them.

const testSecret = "0123456789abcdef0123456789abcdef-test"

// secretServer starts a server whose tokens are signed with testSecret.
func secretServer(t *testing.T, required bool) *server {
	t.Helper()
	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, []byte(testSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return startServer(t, func(c *Config) {
		c.AuthSecretFile = file
		c.AuthRequired = required
	})
}

// sign makes an HS256 token with claims, exp an hour away unless given.
func sign(t *testing.T, key []byte, claims jwt.MapClaims) string {
	t.Helper()
	if _, ok := claims["exp"]; !ok {
		claims["exp"] = time.Now().Add(time.Hour).Unix()
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestHelloAuthMode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		srv  *server
		want string
	}{
		{startServer(t, nil), "none"},
		{secretServer(t, false), "optional"},
		{secretServer(t, true), "required"},
	} {
		c, br, resp := handshakeRaw(t, tc.srv.addr, dialOpts{})
		ws := &wsConn{t: t, c: c, br: br}
		_ = resp
		if h := ws.next(); h.str("type") != "hello" || h.str("auth") != tc.want {
			t.Fatalf("hello %v, want auth %q", h, tc.want)
		}
		_ = c.Close()
	}
}

func TestAuthToken(t *testing.T) {
	t.Parallel()
	srv := secretServer(t, false)
	a := dial(t, srv)
	exp := time.Now().Add(time.Hour).Unix()
	tok := sign(t, []byte(testSecret), jwt.MapClaims{"sub": "user-1", "name": "Ada", "exp": exp})
	a.send(map[string]any{"type": "auth", "token": tok})
	m := a.expect("authed")
	if m.str("sub") != "user-1" || m.str("nick") != "Ada" || int64(m.num("exp")) != exp {
		t.Fatalf("authed %v", m)
	}
	a.send(map[string]any{"type": "nick", "nick": "Eve"})
	a.expectError(errNotAllowed, "nick")
	if j := a.join("r"); memberNick(j, a.id) != "Ada" {
		t.Fatalf("joined %v: want the token's name", j)
	}
	// Without name, the current nick stays.
	b := dial(t, srv)
	b.send(map[string]any{"type": "nick", "nick": "bob"})
	b.expect("nick")
	b.send(map[string]any{"type": "auth", "token": sign(t, []byte(testSecret), jwt.MapClaims{"sub": "user-2"})})
	if m := b.expect("authed"); m.str("nick") != "bob" {
		t.Fatalf("authed %v", m)
	}
	if strings.Contains(logsOf(srv), tok) || strings.Contains(logsOf(srv), testSecret) {
		t.Fatal("a token or the secret is in the log")
	}
}

// memberNick returns the nick of member id in a joined frame.
func memberNick(j msg, id string) string {
	for _, x := range j.list("members") {
		e := x.(map[string]any)
		if e["id"] == id {
			return e["nick"].(string)
		}
	}
	return ""
}

// TestForgedTokens: every token the server must refuse gets unauthorized
// and changes nothing; the error never repeats the token.
func TestForgedTokens(t *testing.T) {
	t.Parallel()
	srv := secretServer(t, false)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	es256, _ := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"sub": "x", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(ec)
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"x","exp":4102444800}`)) + "."
	pub, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	pemPub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
	for name, tok := range map[string]string{
		"alg none":           none,
		"another secret":     sign(t, []byte("another-secret-of-at-least-32-bytes!!"), jwt.MapClaims{"sub": "x"}),
		"another algorithm":  es256,
		"public key as HMAC": sign(t, pemPub, jwt.MapClaims{"sub": "x"}),
		"expired":            sign(t, []byte(testSecret), jwt.MapClaims{"sub": "x", "exp": time.Now().Add(-time.Hour).Unix()}),
		"not yet valid":      sign(t, []byte(testSecret), jwt.MapClaims{"sub": "x", "nbf": time.Now().Add(time.Hour).Unix()}),
		"no sub":             sign(t, []byte(testSecret), jwt.MapClaims{"name": "x"}),
		"no exp":             mustSign(t, jwt.MapClaims{"sub": "x"}),
		"garbage":            "not.a.token",
	} {
		a := dial(t, srv)
		a.send(map[string]any{"type": "auth", "token": tok})
		m := a.expectError(errUnauthorized, "auth")
		if strings.Contains(m.str("message"), tok) {
			t.Fatalf("%s: the error repeats the token", name)
		}
		a.send(map[string]any{"type": "nick", "nick": "still-anon"}) // no name took hold
		if m := a.expect("nick"); m.str("nick") != "still-anon" {
			t.Fatalf("%s: %v", name, m)
		}
	}
}

// mustSign is sign without the default exp.
func mustSign(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestTokenRoomsAndHost: rooms limits what a token joins; host makes it a
// host of a room someone else created, through a lock.
func TestTokenRoomsAndHost(t *testing.T) {
	t.Parallel()
	srv := secretServer(t, false)
	owner := dial(t, srv)
	owner.join("team")
	owner.send(map[string]any{"type": "settings", "room": "team", "locked": true})
	owner.waitFor("room")
	a := dial(t, srv)
	a.send(map[string]any{"type": "auth", "token": sign(t, []byte(testSecret), jwt.MapClaims{"sub": "u", "rooms": []string{"lobby"}})})
	a.expect("authed")
	a.send(map[string]any{"type": "join", "room": "team"})
	a.expectError(errNotAllowed, "join")
	a.join("lobby")
	h := dial(t, srv)
	h.send(map[string]any{"type": "auth", "token": sign(t, []byte(testSecret), jwt.MapClaims{"sub": "boss", "host": []string{"team"}})})
	h.expect("authed")
	h.send(map[string]any{"type": "join", "room": "team"})
	if j := h.expect("joined"); j.str("role") != roleHost {
		t.Fatalf("host grant: %v", j)
	}
	if m := owner.waitFor("room"); roles(m)[owner.id] != roleCohost {
		t.Fatalf("the host present steps down: %v", m)
	}
}

// TestRemoveBarsTheSub: with tokens, a removed member's bar is on its
// sub, whatever connection or address it comes back from.
func TestRemoveBarsTheSub(t *testing.T) {
	t.Parallel()
	srv := secretServer(t, false)
	host := dial(t, srv)
	host.join("bar")
	m := dial(t, srv)
	m.send(map[string]any{"type": "auth", "token": sign(t, []byte(testSecret), jwt.MapClaims{"sub": "mallory"})})
	m.expect("authed")
	m.join("bar")
	host.send(map[string]any{"type": "remove", "room": "bar", "id": m.id})
	m.waitFor("removed")
	m2 := dial(t, srv)
	m2.send(map[string]any{"type": "auth", "token": sign(t, []byte(testSecret), jwt.MapClaims{"sub": "mallory"})})
	m2.expect("authed")
	m2.send(map[string]any{"type": "join", "room": "bar"})
	m2.expectError(errBanned, "join")
	other := dial(t, srv) // same address, another sub: not barred
	other.send(map[string]any{"type": "auth", "token": sign(t, []byte(testSecret), jwt.MapClaims{"sub": "alice"})})
	other.expect("authed")
	other.join("bar")
}

// TestAuthRequired: every request but auth waits for a token, and a
// connection without one is closed 1008 after 10 s; one whose token
// expires is closed 1008 then.
func TestAuthRequired(t *testing.T) {
	t.Parallel()
	srv := secretServer(t, true)
	a := dial(t, srv)
	a.send(map[string]any{"type": "join", "room": "r"})
	a.expectError(errUnauthorized, "join")
	b := dial(t, srv)
	b.send(map[string]any{"type": "auth", "token": sign(t, []byte(testSecret), jwt.MapClaims{"sub": "b", "exp": time.Now().Add(2 * time.Second).Unix()})})
	b.expect("authed")
	b.join("r")
	c := dial(t, srv)
	c.send(map[string]any{"type": "auth", "token": sign(t, []byte(testSecret), jwt.MapClaims{"sub": "c"})})
	c.expect("authed")
	c.join("r")
	b.expectClose(closePolicy) // its token expired
	a.expectClose(closePolicy) // no token within 10 s
	if p := c.waitFor("presence"); p.str("event") != "leave" || p.str("id") != b.id {
		t.Fatalf("presence %v: the expired connection leaves", p)
	}
	c.send(map[string]any{"type": "say", "room": "r", "text": "still here"})
	c.waitFor("msg")
}
