package auth

import (
	"errors"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzVerify feeds arbitrary strings to Verify: it must never panic, must
// refuse with one of its own errors, never echo the input in them, and only
// accept tokens that carry a subject and satisfy the room claim rules.
func FuzzVerify(f *testing.F) {
	ec, _, _ := testKeys(f)
	hs := newVerifier(f, Config{Secret: testSecret, Issuer: "app"})
	es := newVerifier(f, Config{PublicKey: &ec.PublicKey})
	for _, c := range []jwt.MapClaims{
		claims(map[string]any{"iss": "app"}),
		claims(map[string]any{"iss": "app", "name": "Ada", "rooms": []string{"a", "*"}, "host": []string{"a"}, "nbf": now.Unix()}),
		claims(map[string]any{"iss": "app", "rooms": "a"}),
		claims(map[string]any{"iss": "app", "exp": 1e300}),
		claims(map[string]any{"iss": "app", "exp": -1e300}),
		claims(map[string]any{"iss": "app", "exp": 1.5}),
	} {
		f.Add(sign(f, jwt.SigningMethodHS256, testSecret, c))
		f.Add(sign(f, jwt.SigningMethodES256, ec, c))
	}
	f.Add(rawToken(`{"alg":"none"}`, `{"sub":"x","exp":9999999999}`, ""))
	f.Add(rawToken(`{"alg":"HS256","crit":["b64"]}`, `{}`, "AAAA"))
	f.Add("..")
	f.Add("a.b.c")
	f.Add("")
	f.Fuzz(func(t *testing.T, token string) {
		for _, v := range []*Verifier{hs, es} {
			c, err := v.Verify(token, now)
			if err != nil {
				if !ours(err) {
					t.Fatalf("error %v is none of ours", err)
				}
				if len(token) >= 8 && strings.Contains(err.Error(), token) {
					t.Fatalf("error %q holds the token", err)
				}
				continue
			}
			if c.Sub == "" || c.Exp.IsZero() || !c.Exp.Add(DefaultLeeway).After(now) {
				t.Fatalf("accepted claims %+v", c)
			}
			if len(c.Rooms) > 0 && !c.MayJoin(c.Rooms[0]) {
				t.Fatalf("claims %+v may not join their own room", c)
			}
		}
	})
}

func ours(err error) bool {
	for _, e := range []error{ErrMalformed, ErrAlgorithm, ErrSignature, ErrExpired, ErrNotYetValid, ErrIssuer, ErrClaims} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
