package main

import (
	"errors"
	"fmt"
	"time"

	"noom/server/auth"
)

// Tokens (PROTOCOL.md, "Tokens"): with a key configured (-auth-secret-file,
// NOOM_AUTH_SECRET or -auth-public-key) a client may send auth {token} at
// any time; the token's claims then name it (sub), may fix its nick
// (name), limit the rooms it may join and make it a host. With
// -auth-required every other request waits for a token, and a connection
// without a valid one 10 s after hello, or past its token's exp, is closed
// with 1008. A token only ever arrives in an auth request, never in the
// URL, where proxies and browser histories would keep it.

// authGrace is how long a connection may go without a token when one is
// required.
const authGrace = 10 * time.Second

// tokenState is a connection's accepted token, and the timer that closes
// the connection at its expiry. Replaced whole, never modified: readers
// load it without a lock. (Kept out of client, whose every byte counts in
// a hundred thousand idle connections.)
type tokenState struct {
	claims auth.Claims
	expiry *time.Timer
}

// token returns c's accepted token, nil if none.
func (c *client) token() *tokenState { return c.tok.Load() }

// authMode is hello's auth field.
func (h *hub) authMode() string {
	switch {
	case h.verifier == nil:
		return "none"
	case h.cfg.AuthRequired:
		return "required"
	}
	return "optional"
}

// authRequired reports whether c's requests wait for a token.
func (h *hub) authRequired(c *client) bool {
	return h.verifier != nil && h.cfg.AuthRequired && c.token() == nil
}

// startAuthClock closes c 10 s after hello unless it sent a valid token by
// then, when tokens are required. Called once c is registered. The timer
// is not kept: fired after c closed, it finds nothing to close.
func (h *hub) startAuthClock(c *client) {
	if h.verifier == nil || !h.cfg.AuthRequired {
		return
	}
	time.AfterFunc(authGrace, func() {
		if c.token() == nil && c.getState() != connClosed {
			h.closePolicy(c, "no token")
		}
	})
}

// closePolicy closes c with 1008: its token is missing or expired. It
// leaves its rooms at once; the close frame follows what is queued for it.
func (h *hub) closePolicy(c *client, reason string) {
	c.w.push(job{op: jobClose, c: c, frame: closeFrame(closePolicy, reason)})
	h.leaveRooms(c)
}

// authenticate handles auth: a valid token replaces c's, answers authed
// and sets the clock to its expiry; anything else answers unauthorized
// and changes nothing. The error never repeats the token.
func (h *hub) authenticate(c *client, token string) {
	if h.verifier == nil {
		c.replyError(errUnauthorized, "this server takes no tokens", "auth")
		return
	}
	now := time.Now()
	claims, err := h.verifier.Verify(token, now)
	if err != nil {
		c.replyError(errUnauthorized, tokenProblem(err), "auth")
		return
	}
	st := &tokenState{claims: claims}
	st.expiry = time.AfterFunc(claims.Exp.Sub(now), func() {
		if c.token() == st { // not replaced by a newer token meanwhile
			h.closePolicy(c, "token expired")
		}
	})
	if old := c.tok.Swap(st); old != nil {
		old.expiry.Stop()
	}
	nick := c.nickname()
	if claims.Name != "" && claims.Name != nick {
		nick = claims.Name
		h.renameQuiet(c, nick)
	}
	c.send(encodeAuthed(claims.Sub, nick, claims.Exp.Unix()))
}

// tokenProblem says what was wrong with a token, in words that name no
// part of it.
func tokenProblem(err error) string {
	switch {
	case errors.Is(err, auth.ErrExpired):
		return "the token has expired"
	case errors.Is(err, auth.ErrNotYetValid):
		return "the token is not valid yet"
	case errors.Is(err, auth.ErrAlgorithm):
		return "the token's algorithm is not accepted"
	case errors.Is(err, auth.ErrSignature):
		return "the token's signature does not verify"
	case errors.Is(err, auth.ErrIssuer):
		return "the token's issuer is not accepted"
	case errors.Is(err, auth.ErrClaims):
		return "the token's claims are invalid"
	}
	return "the token is malformed"
}

// stopAuthClock stops c's token timer: c is gone.
func (c *client) stopAuthClock() {
	if t := c.token(); t != nil {
		t.expiry.Stop()
	}
}

// loadAuth sets up the token verifier from -auth-secret-file,
// NOOM_AUTH_SECRET or -auth-public-key; none of them leaves tokens off.
// The key itself is never logged.
func (s *server) loadAuth() error {
	cfg := &s.cfg
	var ac auth.Config
	ac.Issuer = cfg.AuthIssuer
	envSecret, fromEnv, err := auth.SecretFromEnv()
	if err != nil {
		return fmt.Errorf("NOOM_AUTH_SECRET: %w", err)
	}
	sources := 0
	kind := ""
	if cfg.AuthSecretFile != "" {
		secret, warning, err := auth.LoadSecretFile(cfg.AuthSecretFile)
		if err != nil {
			return fmt.Errorf("-auth-secret-file: %w", err)
		}
		if warning != "" {
			s.log.Warn("-auth-secret-file: " + warning)
		}
		ac.Secret, kind = secret, "HS256 secret from -auth-secret-file"
		sources++
	}
	if fromEnv {
		ac.Secret, kind = envSecret, "HS256 secret from NOOM_AUTH_SECRET"
		sources++
	}
	if cfg.AuthPublicKey != "" {
		key, err := auth.LoadPublicKeyFile(cfg.AuthPublicKey)
		if err != nil {
			return fmt.Errorf("-auth-public-key: %w", err)
		}
		ac.PublicKey, kind = key, "public key from -auth-public-key"
		sources++
	}
	switch {
	case sources > 1:
		return errors.New("give one token key: -auth-secret-file, NOOM_AUTH_SECRET or -auth-public-key")
	case sources == 0 && cfg.AuthRequired:
		return errors.New("-auth-required needs a token key: -auth-secret-file, NOOM_AUTH_SECRET or -auth-public-key")
	case sources == 0:
		return nil
	}
	v, err := auth.NewVerifier(ac)
	if err != nil {
		return err
	}
	s.hub.verifier = v
	s.log.Info("tokens", "key", kind, "alg", v.Algorithm(), "required", cfg.AuthRequired, "issuer", cfg.AuthIssuer)
	return nil
}
