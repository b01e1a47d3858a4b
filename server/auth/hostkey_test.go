package auth

import (
	"encoding/base64"
	"testing"
)

func TestHostKey(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 1000 {
		k := NewHostKey()
		if len(k) < 22 {
			t.Fatalf("key %q is shorter than 22 characters", k)
		}
		b, err := base64.RawURLEncoding.Strict().DecodeString(k)
		if err != nil || len(b) < 16 {
			t.Fatalf("key %q: not 128 bits of base64url (%v)", k, err)
		}
		if seen[k] {
			t.Fatalf("key %q twice", k)
		}
		seen[k] = true
	}
}

func TestHostKeyMatches(t *testing.T) {
	t.Parallel()
	k := NewHostKey()
	h := HashHostKey(k)
	if h == k || len(h) != 43 {
		t.Fatalf("hash %q of %q", h, k)
	}
	if HashHostKey(k) != h {
		t.Fatal("the hash is not deterministic")
	}
	if !HostKeyMatches(h, k) {
		t.Fatal("the key does not match its hash")
	}
	for _, wrong := range []string{"", k[:21], k + "A", " " + k, h, NewHostKey()} {
		if HostKeyMatches(h, wrong) {
			t.Errorf("%q matches", wrong)
		}
	}
	if HostKeyMatches(k, k) {
		t.Error("the key matches itself as a stored hash")
	}
	if HostKeyMatches("", "") || HostKeyMatches("", k) {
		t.Error("an empty hash matches")
	}
}
