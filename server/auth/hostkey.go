package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
)

// hostKeyBytes is the entropy of a host key: 128 bits, PROTOCOL.md's minimum,
// which no online or offline guessing reaches.
const hostKeyBytes = 16

// NewHostKey returns a new room's host key: 128 bits from crypto/rand as
// base64url without padding, 22 characters, safe in a URL. The server sends
// it once, in the creator's `joined`, and keeps only HashHostKey of it.
func NewHostKey() string {
	b := make([]byte, hostKeyBytes)
	rand.Read(b) // never fails (crypto/rand since Go 1.24)
	return base64.RawURLEncoding.EncodeToString(b)
}

// HashHostKey returns the SHA-256 of key, base64url without padding (43
// characters): what the server stores, so that a copy of its store does not
// give host rights. A plain fast hash is enough because a host key has 128
// random bits; a slow hash is for guessable secrets such as passcodes.
func HashHostKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// HostKeyMatches reports whether given is the host key whose HashHostKey is
// hash, in time that does not depend on how much of it matches. An empty
// hash or an empty given never matches.
func HostKeyMatches(hash, given string) bool {
	if hash == "" || given == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(HashHostKey(given)), []byte(hash)) == 1
}
