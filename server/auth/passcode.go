package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Passcodes are hashed with argon2id (RFC 9106) at m=12 MiB, t=3, p=1: one
// of the OWASP Password Storage Cheat Sheet's equivalent settings (19 MiB
// t=2, 12 MiB t=3, 9 MiB t=4, 7 MiB t=5). Measured with BenchmarkPasscode on
// the 2-vCPU development box, a check costs about 27 ms of one core and 12 MiB
// of memory (19 MiB t=2: 35 ms; 64 MiB t=1: 67 ms; scrypt N=2^15: 109 ms and
// 32 MiB).
//
// Memory, not time, is what a flood of joins with passcodes would exhaust,
// so the memory is the smaller of the settings that cost 20-50 ms, and a
// Checker bounds how many checks run at once: the default of 2 caps the
// memory held by checks at 24 MiB however many clients knock.
//
// Meeting passcodes are often short: a 6-digit one falls to 10^6 guesses, a
// few hours of one core at this cost, so the hash protects a stolen store
// only as well as the passcode is long. Online guessing is stopped by
// Attempts, not by the hash.
const (
	argonMemory  = 12 << 10 // KiB
	argonTime    = 3
	argonThreads = 1
	argonKeyLen  = 32 // bytes
	argonSaltLen = 16 // bytes

	// Bounds on the parameters CheckPasscode accepts from an encoded
	// string, so that a corrupt or hostile store cannot make one check
	// take gigabytes or minutes.
	maxArgonMemory  = 64 << 10 // KiB
	maxArgonTime    = 16
	maxArgonThreads = 8
)

// b64 is the PHC string format's base64: standard alphabet, no padding.
var b64 = base64.RawStdEncoding

// HashPasscode returns a salted argon2id hash of passcode in the PHC string
// format, "$argon2id$v=19$m=12288,t=3,p=1$<salt>$<hash>", which is what the
// server keeps instead of the passcode. The passcode is hashed byte for
// byte, not trimmed or normalized. An empty passcode is an error: PROTOCOL.md
// uses "" to remove one.
//
// A hash costs about 27 ms of CPU and 12 MiB (see the constants above): never
// call it on the event loop; use a Checker's HashAsync or a goroutine of
// its own.
func HashPasscode(passcode string) (string, error) {
	if passcode == "" {
		return "", errors.New("auth: empty passcode")
	}
	salt := make([]byte, argonSaltLen)
	rand.Read(salt) // never fails (crypto/rand since Go 1.24)
	key := argon2.IDKey([]byte(passcode), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, argonMemory, argonTime, argonThreads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// CheckPasscode reports whether passcode matches encoded, a HashPasscode
// result. The derived keys are compared in constant time. An encoded string
// that is malformed, or whose parameters are beyond sane bounds, never
// matches (and never panics).
//
// Like HashPasscode, a check is slow on purpose (about 27 ms and 12 MiB):
// never call it on the event loop; use a Checker.
func CheckPasscode(encoded, passcode string) bool {
	p, ok := parseArgon(encoded)
	if !ok {
		return false
	}
	key := argon2.IDKey([]byte(passcode), p.salt, p.time, p.memory, p.threads, uint32(len(p.key)))
	return subtle.ConstantTimeCompare(key, p.key) == 1
}

// argonParams is a parsed PHC argon2id string.
type argonParams struct {
	memory, time uint32
	threads      uint8
	salt, key    []byte
}

// parseArgon parses "$argon2id$v=19$m=M,t=T,p=P$salt$key", strictly.
func parseArgon(s string) (argonParams, bool) {
	var p argonParams
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, false
	}
	params := strings.Split(parts[3], ",")
	if len(params) != 3 {
		return p, false
	}
	m, okM := param(params[0], "m=", maxArgonMemory)
	t, okT := param(params[1], "t=", maxArgonTime)
	th, okP := param(params[2], "p=", maxArgonThreads)
	if !okM || !okT || !okP || m < 8*th {
		return p, false
	}
	salt, err := b64.Strict().DecodeString(parts[4])
	if err != nil || len(salt) < 8 || len(salt) > 64 {
		return p, false
	}
	key, err := b64.Strict().DecodeString(parts[5])
	if err != nil || len(key) < 16 || len(key) > 64 {
		return p, false
	}
	return argonParams{memory: m, time: t, threads: uint8(th), salt: salt, key: key}, true
}

// param parses "name=N" with N a decimal from 1 to max.
func param(s, name string, max uint32) (uint32, bool) {
	digits, ok := strings.CutPrefix(s, name)
	if !ok || digits == "" || len(digits) > 10 || strings.TrimLeft(digits, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseUint(digits, 10, 32)
	if err != nil || n < 1 || n > uint64(max) {
		return 0, false
	}
	return uint32(n), true
}

// DefaultCheckers is the number of concurrent passcode hashes or checks a
// Checker allows when NewChecker is given less than 1: one per core of the
// 2-vCPU box this was measured on, 24 MiB of argon2 memory at most.
const DefaultCheckers = 2

// ErrBusy is returned by a Checker whose slots are all taken. The server
// answers the join `unavailable` rather than queueing the check.
var ErrBusy = errors.New("auth: too many passcode checks in progress")

// Checker bounds the number of passcode hashes and checks running at once,
// and so the CPU and memory that clients can make the server spend on them.
// It never queues: when every slot is taken, its methods return ErrBusy at
// once. It is safe for concurrent use.
type Checker struct {
	slots chan struct{}
}

// NewChecker returns a Checker allowing n concurrent hashes or checks
// (DefaultCheckers, 2, if n < 1).
func NewChecker(n int) *Checker {
	if n < 1 {
		n = DefaultCheckers
	}
	return &Checker{slots: make(chan struct{}, n)}
}

// acquire takes a slot without waiting.
func (c *Checker) acquire() bool {
	select {
	case c.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (c *Checker) release() { <-c.slots }

// TryCheck runs CheckPasscode in the calling goroutine if a slot is free,
// else returns ErrBusy without checking. It blocks for the whole check
// (tens of milliseconds): never call it on the event loop; CheckAsync is
// the method for that.
func (c *Checker) TryCheck(encoded, passcode string) (bool, error) {
	if !c.acquire() {
		return false, ErrBusy
	}
	defer c.release()
	return CheckPasscode(encoded, passcode), nil
}

// CheckAsync takes a slot without waiting and runs CheckPasscode in a new
// goroutine, which then frees the slot and calls done with the result; or
// returns ErrBusy at once, and done is never called. It does not block, so
// the event loop may call it; done runs on the new goroutine, so it must
// hand its result back to the loop itself.
func (c *Checker) CheckAsync(encoded, passcode string, done func(ok bool)) error {
	if !c.acquire() {
		return ErrBusy
	}
	go func() {
		ok := CheckPasscode(encoded, passcode)
		c.release()
		done(ok)
	}()
	return nil
}

// HashAsync is CheckAsync for HashPasscode (a host setting a passcode costs
// as much as a check).
func (c *Checker) HashAsync(passcode string, done func(encoded string, err error)) error {
	if !c.acquire() {
		return ErrBusy
	}
	go func() {
		encoded, err := HashPasscode(passcode)
		c.release()
		done(encoded, err)
	}()
	return nil
}
