package auth

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Token limits and defaults.
const (
	// MinSecretLen is the shortest HS256 secret accepted, in bytes: 256 bits,
	// the size of the HMAC-SHA256 output (RFC 7518 §3.2).
	MinSecretLen = 32

	// DefaultLeeway is the clock skew allowed on exp and nbf when
	// Config.Leeway is zero.
	DefaultLeeway = 30 * time.Second

	// MaxLeeway is the largest Config.Leeway accepted. A leeway is for clock
	// skew between the token issuer and this server, not for extending
	// lifetimes.
	MaxLeeway = 5 * time.Minute

	// MaxTokenLen is the longest token Verify parses, in bytes. Longer input
	// is refused before any decoding, so a client cannot make the server
	// base64- and JSON-decode its whole message. 16 KiB holds a rooms list of
	// well over a hundred full-length names.
	MaxTokenLen = 16 << 10
)

// Errors returned by Verify, wrapped with a fixed detail where one helps the
// token's issuer. Every one of them means the protocol's `unauthorized`.
// Their text never holds any part of the token.
var (
	ErrMalformed   = errors.New("auth: malformed token")
	ErrAlgorithm   = errors.New("auth: token algorithm not accepted")
	ErrSignature   = errors.New("auth: token signature invalid")
	ErrExpired     = errors.New("auth: token expired")
	ErrNotYetValid = errors.New("auth: token not valid yet")
	ErrIssuer      = errors.New("auth: token issuer not accepted")
	ErrClaims      = errors.New("auth: invalid token claims")
)

// Config says which tokens a Verifier accepts. Exactly one of Secret and
// PublicKey must be set.
type Config struct {
	// Secret is the HS256 shared secret: the bytes of its text, as
	// PROTOCOL.md says, at least MinSecretLen (32) bytes. Default none. With
	// a secret, HS256 is the only algorithm accepted.
	Secret []byte

	// PublicKey verifies ES256 (an *ecdsa.PublicKey on P-256) or RS256 (an
	// *rsa.PublicKey of at least 2048 bits) tokens. Default none. The key's
	// type decides the one algorithm accepted: an RSA key never verifies
	// HS256 or ES256 tokens, and so on.
	PublicKey crypto.PublicKey

	// Issuer, when not empty, must equal the token's iss claim; a token
	// without iss is then refused. Default "": iss is not checked.
	Issuer string

	// Leeway is the clock skew allowed on exp and nbf. Default (zero):
	// DefaultLeeway, 30 s. Negative: none. At most MaxLeeway (5 min).
	Leeway time.Duration
}

// Verifier checks tokens against one key. It is safe for concurrent use.
type Verifier struct {
	key    any    // []byte, *ecdsa.PublicKey or *rsa.PublicKey
	alg    string // the one algorithm accepted: HS256, ES256 or RS256
	issuer string
	leeway time.Duration
}

// NewVerifier checks cfg and returns a Verifier for it. It copies
// cfg.Secret, so the caller may clear its own copy.
func NewVerifier(cfg Config) (*Verifier, error) {
	v := &Verifier{issuer: cfg.Issuer}
	switch {
	case cfg.Leeway == 0:
		v.leeway = DefaultLeeway
	case cfg.Leeway < 0:
		v.leeway = 0
	case cfg.Leeway > MaxLeeway:
		return nil, fmt.Errorf("auth: leeway %v is over the maximum of %v", cfg.Leeway, MaxLeeway)
	default:
		v.leeway = cfg.Leeway
	}
	switch {
	case cfg.Secret != nil && cfg.PublicKey != nil:
		return nil, errors.New("auth: give either a secret or a public key, not both")
	case cfg.Secret != nil:
		if err := checkSecret(cfg.Secret); err != nil {
			return nil, err
		}
		v.key, v.alg = bytes.Clone(cfg.Secret), jwt.SigningMethodHS256.Alg()
	case cfg.PublicKey != nil:
		alg, err := checkPublicKey(cfg.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
		v.key, v.alg = cfg.PublicKey, alg
	default:
		return nil, errors.New("auth: no secret and no public key")
	}
	return v, nil
}

// Algorithm returns the one JWS algorithm v accepts: "HS256", "ES256" or
// "RS256".
func (v *Verifier) Algorithm() string { return v.alg }

// checkSecret refuses an HS256 secret that is too short, or that is a PEM
// block: a public key given as a shared secret is the configuration behind
// the RS256/HS256 confusion, where anyone holding the public key can sign.
func checkSecret(s []byte) error {
	if len(s) < MinSecretLen {
		return fmt.Errorf("auth: the HS256 secret is %d bytes, shorter than the minimum of %d", len(s), MinSecretLen)
	}
	if bytes.Contains(s, []byte("-----BEGIN ")) {
		return errors.New("auth: the HS256 secret holds a PEM block; a secret is plain text, a public key goes in the public key setting")
	}
	return nil
}

// checkPublicKey returns the algorithm for k, or why k is refused (without
// the "auth:" prefix).
func checkPublicKey(k crypto.PublicKey) (string, error) {
	switch k := k.(type) {
	case *ecdsa.PublicKey:
		if k == nil || k.Curve == nil || k.Curve.Params().Name != "P-256" {
			return "", errors.New("an ECDSA key must be on the P-256 curve (ES256)")
		}
		return jwt.SigningMethodES256.Alg(), nil
	case *rsa.PublicKey:
		if k == nil || k.N == nil {
			return "", errors.New("empty RSA key")
		}
		if n := k.N.BitLen(); n < 2048 {
			return "", fmt.Errorf("the RSA key has %d bits, fewer than the minimum of 2048", n)
		}
		return jwt.SigningMethodRS256.Alg(), nil
	default:
		return "", fmt.Errorf("unsupported public key type %T (want ECDSA P-256 for ES256 or RSA for RS256)", k)
	}
}

// Claims are what a verified token says, per PROTOCOL.md "Tokens".
type Claims struct {
	// Sub is the user's identity, never empty.
	Sub string
	// Name is the nick the token sets, trimmed, or "" when it has no name.
	Name string
	// Exp is when the token expires (its exp claim).
	Exp time.Time
	// Rooms are the rooms the token may join. Nil means any room (the claim
	// was absent); an entry "*" also means any; an empty, non-nil slice
	// means none.
	Rooms []string
	// Host are the rooms where the token has the host role; "*" means any.
	// Nil or empty: none.
	Host []string
}

// MayJoin reports whether the token allows joining room. A host grant does
// not widen Rooms: a token with rooms ["a"] and host ["b"] may not join b.
func (c Claims) MayJoin(room string) bool {
	return c.Rooms == nil || slices.Contains(c.Rooms, "*") || slices.Contains(c.Rooms, room)
}

// IsHost reports whether the token grants the host role in room.
func (c Claims) IsHost(room string) bool {
	return slices.Contains(c.Host, "*") || slices.Contains(c.Host, room)
}

// tokenClaims is the claims set as decoded. The claims of our own are raw so
// that Verify can refuse a wrong type with a clear message, and does so only
// once the signature has been checked.
type tokenClaims struct {
	jwt.RegisteredClaims
	Name  json.RawMessage `json:"name"`
	Rooms json.RawMessage `json:"rooms"`
	Host  json.RawMessage `json:"host"`
}

// errCrit is returned by the key function for a token with a "crit" header:
// RFC 7515 §4.1.11 requires refusing extensions one does not understand.
var errCrit = errors.New("crit header")

// Verify checks token at the time now and returns its claims. It accepts
// only the algorithm of v's key (HS256 with a secret; ES256 or RS256 with a
// public key of that type), so "alg":"none", another algorithm, and an HS256
// token signed with the bytes of the public key are all refused. The
// signature is checked before any claim. Then exp is required and must be
// after now, nbf if present must not be after now (both with the leeway),
// iss must match when v has an issuer, sub must be a non-empty string, name
// if present must be a valid nick (a token whose name is not is refused, not
// stripped of it), and rooms and host if present must be arrays of room
// names or "*". A "rooms": null is refused, since an issuer that produced it
// from an empty list would otherwise grant every room; "name": null and
// "host": null count as absent. The aud, iat and jti claims are ignored.
//
// A zero now means time.Now(). Every error wraps one of the Err variables
// above and never holds any part of token.
func (v *Verifier) Verify(token string, now time.Time) (Claims, error) {
	if len(token) > MaxTokenLen {
		return Claims{}, fmt.Errorf("%w: longer than %d bytes", ErrMalformed, MaxTokenLen)
	}
	if now.IsZero() {
		now = time.Now()
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{v.alg}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(v.leeway),
		jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithStrictDecoding(),
	}
	if v.issuer != "" {
		opts = append(opts, jwt.WithIssuer(v.issuer))
	}
	var tc tokenClaims
	tok, err := jwt.NewParser(opts...).ParseWithClaims(token, &tc, v.keyFunc)
	if err != nil {
		return Claims{}, v.classify(tok, &tc, err)
	}
	return tc.claims()
}

// keyFunc returns v's key for a token whose algorithm is v's (the parser has
// already checked it against WithValidMethods; this checks again, so that
// the key can never meet another algorithm's verifier).
func (v *Verifier) keyFunc(t *jwt.Token) (any, error) {
	if _, ok := t.Header["crit"]; ok {
		return nil, errCrit
	}
	if t.Method == nil || t.Method.Alg() != v.alg {
		return nil, ErrAlgorithm
	}
	return v.key, nil
}

// classify turns a jwt error into one of ours, with fixed text. When the
// claims failed validation the signature was good, so tc may be read.
func (v *Verifier) classify(tok *jwt.Token, tc *tokenClaims, err error) error {
	switch {
	case errors.Is(err, errCrit):
		return fmt.Errorf("%w: critical header extensions are not supported", ErrMalformed)
	case errors.Is(err, jwt.ErrTokenMalformed):
		return ErrMalformed
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		// No alg, an unknown alg, or our key function refused it.
		return fmt.Errorf("%w: want %s", ErrAlgorithm, v.alg)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		if tok == nil || tok.Method == nil || tok.Method.Alg() != v.alg {
			return fmt.Errorf("%w: want %s", ErrAlgorithm, v.alg)
		}
		return ErrSignature
	case errors.Is(err, jwt.ErrTokenInvalidClaims):
		// The signature is good; say the most useful thing first.
		switch {
		case tc.ExpiresAt == nil:
			return fmt.Errorf("%w: exp is required", ErrClaims)
		case v.issuer != "" && tc.Issuer != v.issuer:
			return ErrIssuer
		case errors.Is(err, jwt.ErrTokenExpired):
			return ErrExpired
		case errors.Is(err, jwt.ErrTokenNotValidYet):
			return ErrNotYetValid
		}
	}
	return ErrMalformed
}

// claims checks our own claims of a token whose signature and standard
// claims have been verified.
func (tc *tokenClaims) claims() (Claims, error) {
	c := Claims{Sub: tc.Subject, Exp: tc.ExpiresAt.Time}
	if c.Sub == "" {
		return Claims{}, fmt.Errorf("%w: sub is required", ErrClaims)
	}
	if len(tc.Name) > 0 && !isNull(tc.Name) {
		var name string
		if json.Unmarshal(tc.Name, &name) != nil {
			return Claims{}, fmt.Errorf("%w: name must be a string", ErrClaims)
		}
		n, ok := NormalizeNick(name)
		if !ok {
			return Claims{}, fmt.Errorf("%w: name must be a nick: 1-32 characters after trimming spaces, no control characters", ErrClaims)
		}
		c.Name = n
	}
	var err error
	if len(tc.Rooms) > 0 {
		if isNull(tc.Rooms) {
			return Claims{}, fmt.Errorf("%w: rooms must be an array (omit it for any room)", ErrClaims)
		}
		if c.Rooms, err = roomList(tc.Rooms, "rooms"); err != nil {
			return Claims{}, err
		}
	}
	if len(tc.Host) > 0 && !isNull(tc.Host) {
		if c.Host, err = roomList(tc.Host, "host"); err != nil {
			return Claims{}, err
		}
	}
	return c, nil
}

// isNull reports whether raw is the JSON literal null.
func isNull(raw json.RawMessage) bool { return string(raw) == "null" }

// roomList decodes a claim that must be an array of room names or "*". The
// result is non-nil, even for [].
func roomList(raw json.RawMessage, claim string) ([]string, error) {
	list := []string{}
	if json.Unmarshal(raw, &list) != nil {
		return nil, fmt.Errorf("%w: %s must be an array of strings", ErrClaims, claim)
	}
	for _, r := range list {
		if r != "*" && !ValidRoom(r) {
			return nil, fmt.Errorf("%w: %s must hold room names (1-64 of A-Z a-z 0-9 _ - .) or \"*\"", ErrClaims, claim)
		}
	}
	return list, nil
}
