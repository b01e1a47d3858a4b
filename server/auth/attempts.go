package auth

import (
	"container/list"
	"net"
	"net/netip"
	"sync"
	"time"
)

// The failed-passcode limit of PROTOCOL.md: more than 5 failed passcodes
// from one address for one room in a minute are refused without checking.
const (
	// AttemptLimit is the number of failed checks allowed per address and
	// room within AttemptWindow.
	AttemptLimit = 5
	// AttemptWindow is the sliding window of AttemptLimit.
	AttemptWindow = time.Minute

	// MaxAttemptEntries bounds the (address, room) pairs an Attempts
	// remembers; past it the least recently failed pair is forgotten. An
	// entry is created only by a failed check, and a Checker lets the server
	// run about DefaultCheckers/27 ms ≈ 75 checks a second, so within one
	// window at most ~4 500 entries can be created: with a bound of 10 000,
	// no flood of failures from other addresses or rooms can evict a pair
	// whose failures are still in their window, and so none can reset an
	// attacker's count. At about 300 bytes an entry, the bound is 3 MB.
	MaxAttemptEntries = 10000
)

// Attempts counts failed passcode checks per (address, room) over a sliding
// window: Allow is false once limit failures fall within the last window,
// and true again as soon as the oldest of them is a window old. So at most
// limit wrong passcodes are ever checked per pair per window; the attempt
// after them is refused without a check (`too_many_attempts`).
//
// Memory is bounded by MaxAttemptEntries: when full, a new pair first drops
// the pairs whose failures are all past their window, then the least
// recently failed pair. Refusing new pairs instead would let anyone with
// enough addresses lock everyone else out; evicting costs nothing as long as
// the bound exceeds the failures the server can check in one window (see
// MaxAttemptEntries).
//
// Times are passed in and are expected not to go backwards by much (they
// come from one clock). Attempts is safe for concurrent use.
type Attempts struct {
	limit  int
	window time.Duration
	max    int // MaxAttemptEntries; tests lower it

	mu      sync.Mutex
	entries map[attemptKey]*list.Element // of *attemptEntry
	order   *list.List                   // least recently failed first
}

type attemptKey struct{ addr, room string }

type attemptEntry struct {
	key   attemptKey
	fails []time.Time // the last limit failures, oldest first
}

// NewAttempts returns an empty limiter allowing limit failures per window
// (AttemptLimit and AttemptWindow when limit or window is not positive).
func NewAttempts(limit int, window time.Duration) *Attempts {
	if limit < 1 {
		limit = AttemptLimit
	}
	if window <= 0 {
		window = AttemptWindow
	}
	return &Attempts{
		limit:   limit,
		window:  window,
		max:     MaxAttemptEntries,
		entries: make(map[attemptKey]*list.Element),
		order:   list.New(),
	}
}

// Allow reports whether a passcode from addr for room may be checked at
// now. It does not count anything: call Fail after a failed check.
func (a *Attempts) Allow(addr, room string, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	el, ok := a.entries[attemptKey{addr, room}]
	if !ok {
		return true
	}
	fails := el.Value.(*attemptEntry).fails
	return len(fails) < a.limit || now.Sub(fails[0]) >= a.window
}

// Fail records a failed check from addr for room at now.
func (a *Attempts) Fail(addr, room string, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	k := attemptKey{addr, room}
	el, ok := a.entries[k]
	if !ok {
		if len(a.entries) >= a.max {
			a.expire(now)
		}
		if len(a.entries) >= a.max {
			a.remove(a.order.Front())
		}
		el = a.order.PushBack(&attemptEntry{key: k, fails: make([]time.Time, 0, a.limit)})
		a.entries[k] = el
	} else {
		a.order.MoveToBack(el)
	}
	e := el.Value.(*attemptEntry)
	if len(e.fails) == a.limit {
		copy(e.fails, e.fails[1:])
		e.fails = e.fails[:a.limit-1]
	}
	e.fails = append(e.fails, now)
}

// Forget drops what is known of addr and room, for instance after a right
// passcode.
func (a *Attempts) Forget(addr, room string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if el, ok := a.entries[attemptKey{addr, room}]; ok {
		a.remove(el)
	}
}

// Expire drops every pair whose last failure is at least a window before
// now: they can no longer refuse anything. Call it now and then (say, once
// a window); Fail also calls it when full.
func (a *Attempts) Expire(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.expire(now)
}

// expire is Expire; a.mu must be held. The order is by last failure, so it
// stops at the first pair still in its window.
func (a *Attempts) expire(now time.Time) {
	for el := a.order.Front(); el != nil; el = a.order.Front() {
		fails := el.Value.(*attemptEntry).fails
		if now.Sub(fails[len(fails)-1]) < a.window {
			return
		}
		a.remove(el)
	}
}

// remove drops one pair; a.mu must be held.
func (a *Attempts) remove(el *list.Element) {
	delete(a.entries, el.Value.(*attemptEntry).key)
	a.order.Remove(el)
}

// Len returns the number of (address, room) pairs remembered.
func (a *Attempts) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.entries)
}

// AddrKey returns the part of a remote address that identifies a client for
// Attempts and, without tokens, for Bars: the IP without its port or zone,
// IPv4-mapped IPv6 as IPv4, and an IPv6 address as its /64 prefix, since a
// single host is commonly given a whole /64 and could otherwise change
// address for every guess. remote may be "host:port" (net.Conn.RemoteAddr)
// or a bare IP; anything else is returned unchanged.
//
// A /64, like an IPv4 address behind NAT, may be shared by several people:
// limits and bars on it apply to all of them.
func AddrKey(remote string) string {
	host := remote
	if h, _, err := net.SplitHostPort(remote); err == nil {
		host = h
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return remote
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		return ip.String()
	}
	p, _ := ip.Prefix(64)
	return p.String()
}
