package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// testSecret is exactly MinSecretLen bytes.
var testSecret = []byte("0123456789abcdef0123456789abcdef")

// now is the fixed "current time" of every token test.
var now = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// Keys generated once for the package's tests: RSA generation is slow.
var (
	keysOnce sync.Once
	ecKey    *ecdsa.PrivateKey
	ecKey2   *ecdsa.PrivateKey
	rsaKey   *rsa.PrivateKey
)

func testKeys(t testing.TB) (*ecdsa.PrivateKey, *ecdsa.PrivateKey, *rsa.PrivateKey) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if ecKey2, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return ecKey, ecKey2, rsaKey
}

// claims builds a valid claims set, valid at now for an hour, then applies
// edits; a nil value deletes the claim.
func claims(edits map[string]any) jwt.MapClaims {
	c := jwt.MapClaims{
		"sub": "user-1",
		"exp": now.Add(time.Hour).Unix(),
		"iat": now.Unix(),
	}
	for k, v := range edits {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func sign(t testing.TB, m jwt.SigningMethod, key any, c jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// rawToken builds a token from a header and a payload as given, with sig as
// the signature segment: for shapes jwt refuses to sign.
func rawToken(header, payload, sig string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc([]byte(payload)) + "." + sig
}

func newVerifier(t testing.TB, cfg Config) *Verifier {
	t.Helper()
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerify(t *testing.T) {
	t.Parallel()
	ec, ec2, rk := testKeys(t)
	hs := newVerifier(t, Config{Secret: testSecret})
	hsIss := newVerifier(t, Config{Secret: testSecret, Issuer: "app"})
	es := newVerifier(t, Config{PublicKey: &ec.PublicKey})
	rs := newVerifier(t, Config{PublicKey: &rk.PublicKey})
	hsExact := newVerifier(t, Config{Secret: testSecret, Leeway: -1})

	ecPub, err := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaPub, err := x509.MarshalPKIXPublicKey(&rk.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsaPub})
	ecPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecPub})

	good := sign(t, jwt.SigningMethodHS256, testSecret, claims(nil))
	goodParts := strings.Split(good, ".")
	payload := func(c jwt.MapClaims) string {
		b, _ := json.Marshal(c)
		return string(b)
	}

	tests := []struct {
		name  string
		v     *Verifier
		token string
		want  error // nil: accepted
		check func(t *testing.T, c Claims)
	}{
		{name: "HS256 good", v: hs, token: good, check: func(t *testing.T, c Claims) {
			if c.Sub != "user-1" || c.Name != "" || c.Rooms != nil || c.Host != nil {
				t.Errorf("claims %+v", c)
			}
			if !c.Exp.Equal(now.Add(time.Hour)) {
				t.Errorf("exp %v", c.Exp)
			}
		}},
		{name: "ES256 good", v: es, token: sign(t, jwt.SigningMethodES256, ec, claims(nil))},
		{name: "RS256 good", v: rs, token: sign(t, jwt.SigningMethodRS256, rk, claims(nil))},
		{name: "all claims", v: hs, token: sign(t, jwt.SigningMethodHS256, testSecret, claims(map[string]any{
			"name": "  Ada Lovelace  ", "rooms": []string{"a", "b.c"}, "host": []string{"a"}, "nbf": now.Unix(), "aud": "whatever",
		})), check: func(t *testing.T, c Claims) {
			if c.Name != "Ada Lovelace" || !slices.Equal(c.Rooms, []string{"a", "b.c"}) || !slices.Equal(c.Host, []string{"a"}) {
				t.Errorf("claims %+v", c)
			}
		}},
		{name: "rooms empty array", v: hs, token: sign(t, jwt.SigningMethodHS256, testSecret, claims(map[string]any{"rooms": []string{}})),
			check: func(t *testing.T, c Claims) {
				if c.Rooms == nil || len(c.Rooms) != 0 || c.MayJoin("a") {
					t.Errorf("rooms %#v may join a: %v", c.Rooms, c.MayJoin("a"))
				}
			}},
		{name: "name and host null are absent", v: hs, token: sign(t, jwt.SigningMethodHS256, testSecret, claims(map[string]any{"name": json.RawMessage("null"), "host": json.RawMessage("null")})),
			check: func(t *testing.T, c Claims) {
				if c.Name != "" || c.Host != nil {
					t.Errorf("claims %+v", c)
				}
			}},
		{name: "issuer good", v: hsIss, token: sign(t, jwt.SigningMethodHS256, testSecret, claims(map[string]any{"iss": "app"}))},
		{name: "issuer not checked when unset", v: hs, token: sign(t, jwt.SigningMethodHS256, testSecret, claims(map[string]any{"iss": "other"}))},

		// Algorithms.
		{name: "alg none", v: hs, token: rawToken(`{"alg":"none","typ":"JWT"}`, payload(claims(nil)), ""), want: ErrAlgorithm},
		{name: "alg none with signature", v: hs, token: rawToken(`{"alg":"none"}`, payload(claims(nil)), goodParts[2]), want: ErrAlgorithm},
		{name: "alg None", v: hs, token: rawToken(`{"alg":"None"}`, payload(claims(nil)), ""), want: ErrAlgorithm},
		{name: "alg missing", v: hs, token: rawToken(`{"typ":"JWT"}`, payload(claims(nil)), goodParts[2]), want: ErrAlgorithm},
		{name: "alg unknown", v: hs, token: rawToken(`{"alg":"XS999"}`, payload(claims(nil)), goodParts[2]), want: ErrAlgorithm},
		{name: "alg not a string", v: hs, token: rawToken(`{"alg":256}`, payload(claims(nil)), goodParts[2]), want: ErrAlgorithm},
		{name: "HS512 with the right secret", v: hs, token: sign(t, jwt.SigningMethodHS512, testSecret, claims(nil)), want: ErrAlgorithm},
		{name: "HS256 signed with the RSA public key PEM", v: rs, token: sign(t, jwt.SigningMethodHS256, rsaPEM, claims(nil)), want: ErrAlgorithm},
		{name: "HS256 signed with the RSA public key DER", v: rs, token: sign(t, jwt.SigningMethodHS256, rsaPub, claims(nil)), want: ErrAlgorithm},
		{name: "HS256 signed with the EC public key PEM", v: es, token: sign(t, jwt.SigningMethodHS256, ecPEM, claims(nil)), want: ErrAlgorithm},
		{name: "ES256 token to an RSA verifier", v: rs, token: sign(t, jwt.SigningMethodES256, ec, claims(nil)), want: ErrAlgorithm},
		{name: "RS256 token to an EC verifier", v: es, token: sign(t, jwt.SigningMethodRS256, rk, claims(nil)), want: ErrAlgorithm},
		{name: "PS256 with the RSA key", v: rs, token: sign(t, jwt.SigningMethodPS256, rk, claims(nil)), want: ErrAlgorithm},
		{name: "RS256 to a secret verifier", v: hs, token: sign(t, jwt.SigningMethodRS256, rk, claims(nil)), want: ErrAlgorithm},
		{name: "crit header", v: hs, token: func() string {
			tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(nil))
			tok.Header["crit"] = []string{"exp"}
			s, _ := tok.SignedString(testSecret)
			return s
		}(), want: ErrMalformed},

		// Keys and signatures.
		{name: "another secret", v: hs, token: sign(t, jwt.SigningMethodHS256, []byte("another secret, 32 bytes or more!"), claims(nil)), want: ErrSignature},
		{name: "another EC key", v: es, token: sign(t, jwt.SigningMethodES256, ec2, claims(nil)), want: ErrSignature},
		{name: "payload changed", v: hs, token: goodParts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(payload(claims(map[string]any{"sub": "admin"})))) + "." + goodParts[2], want: ErrSignature},
		{name: "signature dropped", v: hs, token: goodParts[0] + "." + goodParts[1] + ".", want: ErrSignature},
		{name: "signature not canonical base64", v: hs, token: goodParts[0] + "." + goodParts[1] + "." + goodParts[2][:len(goodParts[2])-1] + "9", want: ErrMalformed},

		// Malformed.
		{name: "empty", v: hs, token: "", want: ErrMalformed},
		{name: "garbage", v: hs, token: "not a token", want: ErrMalformed},
		{name: "two segments", v: hs, token: goodParts[0] + "." + goodParts[1], want: ErrMalformed},
		{name: "four segments", v: hs, token: good + ".x", want: ErrMalformed},
		{name: "header not JSON", v: hs, token: rawToken(`{alg`, payload(claims(nil)), goodParts[2]), want: ErrMalformed},
		{name: "payload not JSON", v: hs, token: rawToken(`{"alg":"HS256"}`, `[1,2`, goodParts[2]), want: ErrMalformed},
		{name: "padded base64", v: hs, token: goodParts[0] + "==." + goodParts[1] + "." + goodParts[2], want: ErrMalformed},
		{name: "too long", v: hs, token: strings.Repeat("a", MaxTokenLen+1), want: ErrMalformed},
		{name: "sub a number", v: hs, token: sign(t, jwt.SigningMethodHS256, testSecret, claims(map[string]any{"sub": 42})), want: ErrMalformed},
		{name: "exp a string", v: hs, token: sign(t, jwt.SigningMethodHS256, testSecret, claims(map[string]any{"exp": "tomorrow"})), want: ErrMalformed},

		// Times.
		{name: "expired beyond leeway", v: hs, token: sign(t, jwt.SigningMethodHS256, testSecret, claims(map[string]any{"exp": now.Add(-DefaultLeeway - time.Second).Unix()})), want: ErrExpired},
		{name: "expired within leeway", v: hs, token: sign(t, jwt.SigningMethodHS256, testSecret, claims(map[string]any{"exp": now.Add(-DefaultLeeway + time.Second).Unix()}))},
		{name: "expired, no leeway", v: hsExact, token: sign(t, jwt.SigningMethodHS256, testSecret, claims(map[string]any{"exp": now.Add(-time.Second).Unix()})), want: ErrExpired},
		{name: "exp is now, no leeway", v: hsExact, token: sign(t, jwt.SigningMethodHS256, testSecret, claims(map[string]any{"exp": now.Unix()})), want: ErrExpired},
		{name: "nbf in the future", v: hs, token: sign(t, jwt.SigningMethodHS256, testSecret, claims(map[string]any{"nbf": now.Add(time.Minute).Unix()})), want: ErrNotYetValid},
		{name: "nbf within leeway", v: hs, token: sign(t, jwt.SigningMethodHS256, testSecret, claims(map[string]any{"nbf": now.Add(DefaultLeeway - time.Second).Unix()}))},
		{name: "nbf future, no leeway", v: hsExact, token: sign(t, jwt.SigningMethodHS256, testSecret, claims(map[string]any{"nbf": now.Add(time.Second).Unix()})), want: ErrNotYetValid},
		{name: "iat in the future is ignored", v: hs, token: sign(t, jwt.SigningMethodHS256, testSecret, claims(map[string]any{"iat": now.Add(time.Hour).Unix()}))},

		// Issuer.
		{name: "wrong issuer", v: hsIss, token: sign(t, jwt.SigningMethodHS256, testSecret, claims(map[string]any{"iss": "evil"})), want: ErrIssuer},
		{name: "missing issuer", v: hsIss, token: sign(t, jwt.SigningMethodHS256, testSecret, claims(nil)), want: ErrIssuer},
		{name: "wrong issuer and expired", v: hsIss, token: sign(t, jwt.SigningMethodHS256, testSecret, claims(map[string]any{"iss": "evil", "exp": now.Add(-time.Hour).Unix()})), want: ErrIssuer},

		// Claims.
		{name: "missing sub", v: hs, token: sign(t, jwt.SigningMethodHS256, testSecret, claims(map[string]any{"sub": nil})), want: ErrClaims},
		{name: "empty sub", v: hs, token: sign(t, jwt.SigningMethodHS256, testSecret, claims(map[string]any{"sub": ""})), want: ErrClaims},
		{name: "missing exp", v: hs, token: sign(t, jwt.SigningMethodHS256, testSecret, claims(map[string]any{"exp": nil})), want: ErrClaims},
		{name: "exp null", v: hs, token: sign(t, jwt.SigningMethodHS256, testSecret, claims(map[string]any{"exp": json.RawMessage("null")})), want: ErrClaims},
		{name: "rooms a string", v: hs, token: sign(t, jwt.SigningMethodHS256, testSecret, claims(map[string]any{"rooms": "a"})), want: ErrClaims},
		{name: "rooms null", v: hs, token: sign(t, jwt.SigningMethodHS256, testSecret, claims(map[string]any{"rooms": json.RawMessage("null")})), want: ErrClaims},
		{name: "rooms of numbers", v: hs, token: sign(t, jwt.SigningMethodHS256, testSecret, claims(map[string]any{"rooms": []int{1}})), want: ErrClaims},
		{name: "rooms an object", v: hs, token: sign(t, jwt.SigningMethodHS256, testSecret, claims(map[string]any{"rooms": map[string]bool{"a": true}})), want: ErrClaims},
		{name: "rooms with a bad name", v: hs, token: sign(t, jwt.SigningMethodHS256, testSecret, claims(map[string]any{"rooms": []string{"a b"}})), want: ErrClaims},
		{name: "rooms with null", v: hs, token: sign(t, jwt.SigningMethodHS256, testSecret, claims(map[string]any{"rooms": []any{"a", nil}})), want: ErrClaims},
		{name: "host a string", v: hs, token: sign(t, jwt.SigningMethodHS256, testSecret, claims(map[string]any{"host": "*"})), want: ErrClaims},
		{name: "host true", v: hs, token: sign(t, jwt.SigningMethodHS256, testSecret, claims(map[string]any{"host": true})), want: ErrClaims},
		{name: "name a number", v: hs, token: sign(t, jwt.SigningMethodHS256, testSecret, claims(map[string]any{"name": 7})), want: ErrClaims},
		{name: "name empty", v: hs, token: sign(t, jwt.SigningMethodHS256, testSecret, claims(map[string]any{"name": "   "})), want: ErrClaims},
		{name: "name too long", v: hs, token: sign(t, jwt.SigningMethodHS256, testSecret, claims(map[string]any{"name": strings.Repeat("é", 33)})), want: ErrClaims},
		{name: "name 32 runes", v: hs, token: sign(t, jwt.SigningMethodHS256, testSecret, claims(map[string]any{"name": strings.Repeat("é", 32)}))},
		{name: "name with a control char", v: hs, token: sign(t, jwt.SigningMethodHS256, testSecret, claims(map[string]any{"name": "a\nb"})), want: ErrClaims},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := tt.v.Verify(tt.token, now)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if tt.check != nil {
					tt.check(t, c)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify error %v, want %v", err, tt.want)
			}
			if c.Sub != "" || c.Rooms != nil || c.Host != nil || !c.Exp.IsZero() {
				t.Errorf("claims returned with an error: %+v", c)
			}
			t.Log(err)
			checkErrorText(t, err, tt.token)
		})
	}
}

// checkErrorText fails if err's text holds the token, any of its segments,
// or the test secret.
func checkErrorText(t *testing.T, err error, token string) {
	t.Helper()
	msg := err.Error()
	if strings.Contains(msg, string(testSecret)) {
		t.Errorf("error %q holds the secret", msg)
	}
	if token != "" && strings.Contains(msg, token) {
		t.Errorf("error %q holds the token", msg)
	}
	for _, seg := range strings.Split(token, ".") {
		if len(seg) >= 8 && strings.Contains(msg, seg) {
			t.Errorf("error %q holds the token segment %q", msg, seg)
		}
	}
}

func TestVerifyZeroNowIsWallClock(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, Config{Secret: testSecret})
	past := sign(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": "u", "exp": time.Now().Add(-time.Hour).Unix()})
	if _, err := v.Verify(past, time.Time{}); !errors.Is(err, ErrExpired) {
		t.Fatalf("a token expired an hour ago, zero now: %v", err)
	}
	fresh := sign(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": "u", "exp": time.Now().Add(time.Hour).Unix()})
	if _, err := v.Verify(fresh, time.Time{}); err != nil {
		t.Fatalf("a fresh token, zero now: %v", err)
	}
}

func TestNewVerifier(t *testing.T) {
	t.Parallel()
	ec, _, rk := testKeys(t)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     Config
		wantAlg string // "" means an error
	}{
		{"secret", Config{Secret: testSecret}, "HS256"},
		{"EC P-256", Config{PublicKey: &ec.PublicKey}, "ES256"},
		{"RSA 2048", Config{PublicKey: &rk.PublicKey}, "RS256"},
		{"leeway max", Config{Secret: testSecret, Leeway: MaxLeeway}, "HS256"},
		{"nothing", Config{}, ""},
		{"both", Config{Secret: testSecret, PublicKey: &ec.PublicKey}, ""},
		{"short secret", Config{Secret: testSecret[:31]}, ""},
		{"empty secret", Config{Secret: []byte{}}, ""},
		{"PEM as secret", Config{Secret: []byte("-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n")}, ""},
		{"EC P-384", Config{PublicKey: &p384.PublicKey}, ""},
		{"RSA 1024", Config{PublicKey: &small.PublicKey}, ""},
		{"private key", Config{PublicKey: ec}, ""},
		{"EC key by value", Config{PublicKey: ec.PublicKey}, ""},
		{"nil EC key", Config{PublicKey: (*ecdsa.PublicKey)(nil)}, ""},
		{"nil RSA key", Config{PublicKey: (*rsa.PublicKey)(nil)}, ""},
		{"leeway over max", Config{Secret: testSecret, Leeway: MaxLeeway + 1}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, err := NewVerifier(tt.cfg)
			if tt.wantAlg == "" {
				if err == nil {
					t.Fatalf("NewVerifier accepted it (alg %s)", v.Algorithm())
				}
				if strings.Contains(err.Error(), string(testSecret[:16])) {
					t.Errorf("error %q holds the secret", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v.Algorithm() != tt.wantAlg {
				t.Errorf("alg %s, want %s", v.Algorithm(), tt.wantAlg)
			}
		})
	}
}

func TestVerifierCopiesSecret(t *testing.T) {
	t.Parallel()
	s := []byte(string(testSecret))
	v := newVerifier(t, Config{Secret: s})
	clear(s)
	if _, err := v.Verify(sign(t, jwt.SigningMethodHS256, testSecret, claims(nil)), now); err != nil {
		t.Fatalf("after the caller cleared its secret: %v", err)
	}
}

func TestClaimsRooms(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		c            Claims
		join, notIn  []string
		host, noHost []string
	}{
		{"no claims", Claims{}, []string{"a", "b"}, nil, nil, []string{"a"}},
		{"star", Claims{Rooms: []string{"*"}, Host: []string{"*"}}, []string{"a", "b"}, nil, []string{"a", "b"}, nil},
		{"lists", Claims{Rooms: []string{"a", "b"}, Host: []string{"b"}}, []string{"a", "b"}, []string{"c", "A", ""}, []string{"b"}, []string{"a", "c"}},
		{"empty rooms", Claims{Rooms: []string{}}, nil, []string{"a"}, nil, []string{"a"}},
		{"host does not widen rooms", Claims{Rooms: []string{"a"}, Host: []string{"b"}}, []string{"a"}, []string{"b"}, []string{"b"}, []string{"a"}},
	}
	for _, tt := range tests {
		for _, r := range tt.join {
			if !tt.c.MayJoin(r) {
				t.Errorf("%s: MayJoin(%q) false", tt.name, r)
			}
		}
		for _, r := range tt.notIn {
			if tt.c.MayJoin(r) {
				t.Errorf("%s: MayJoin(%q) true", tt.name, r)
			}
		}
		for _, r := range tt.host {
			if !tt.c.IsHost(r) {
				t.Errorf("%s: IsHost(%q) false", tt.name, r)
			}
		}
		for _, r := range tt.noHost {
			if tt.c.IsHost(r) {
				t.Errorf("%s: IsHost(%q) true", tt.name, r)
			}
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	ec, _, rk := testKeys(b)
	for _, bc := range []struct {
		name string
		cfg  Config
		m    jwt.SigningMethod
		key  any
	}{
		{"HS256", Config{Secret: testSecret}, jwt.SigningMethodHS256, testSecret},
		{"ES256", Config{PublicKey: &ec.PublicKey}, jwt.SigningMethodES256, ec},
		{"RS256", Config{PublicKey: &rk.PublicKey}, jwt.SigningMethodRS256, rk},
	} {
		b.Run(bc.name, func(b *testing.B) {
			v := newVerifier(b, bc.cfg)
			tok := sign(b, bc.m, bc.key, claims(map[string]any{"name": "Ada", "rooms": []string{"a", "b"}}))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(tok, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
