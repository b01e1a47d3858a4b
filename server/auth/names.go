package auth

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// The name rules of PROTOCOL.md ("Names"): a token's name must be a valid
// nick and its rooms valid room names, and the server checks requests with
// the same two functions (server/protocol.go).
const (
	maxNickRunes = 32
	maxRoomLen   = 64
)

// NormalizeNick trims spaces and checks the nick rules: 1-32 characters, no
// control characters.
func NormalizeNick(s string) (string, bool) {
	s = strings.TrimSpace(s)
	n := utf8.RuneCountInString(s)
	if n == 0 || n > maxNickRunes || !utf8.ValidString(s) {
		return "", false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return "", false
		}
	}
	return s, true
}

// ValidRoom reports whether s is a room name: 1-64 of A-Z a-z 0-9 _ - .
func ValidRoom(s string) bool {
	if len(s) == 0 || len(s) > maxRoomLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
