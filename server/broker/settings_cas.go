package broker

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
)

// Settings is the contract's part about room settings: a room's settings
// are a JSON object opaque to the broker (the hub's: passcode hash, lobby,
// lock, listing, host key hash) with a version, created once and then
// changed by compare-and-set, so that two changes, from two requests or two
// nodes, never undo each other, and whoever applies settings as they come
// can tell newer ones from older. Methods may wait for a disk or a NATS
// server: never call them on an event loop.
type Settings interface {
	// ReadSettings returns room's settings and their version (nil and 0
	// for none). With create non-nil and none kept, it keeps create()'s as
	// the room's first: created says this call's were kept; of callers
	// racing, one is, and the others read the winner's.
	ReadSettings(room, epoch string, create func() []byte) (settings []byte, version uint64, created bool, err error)
	// UpdateSettings keeps next as room's settings if their version is
	// still version, and returns the new version once they are durable.
	// ErrSeq: they changed since; read them again and decide again.
	UpdateSettings(room, epoch string, version uint64, next []byte) (uint64, error)
}

// versionField is the member of a kept settings object that carries its
// version where the store keeps no version of its own (the cluster's
// bucket: nodes apply the puts they hear by it).
const versionField = "v"

// versionOf reads the version a settings object carries (0 for none).
func versionOf(settings []byte) uint64 {
	var v struct {
		V uint64 `json:"v"`
	}
	_ = json.Unmarshal(settings, &v)
	return v.V
}

// withVersion returns settings, a JSON object, carrying version v.
func withVersion(settings []byte, v uint64) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(settings, &m); err != nil || m == nil {
		return nil, fmt.Errorf("broker: settings must be a JSON object: %q", settings)
	}
	m[versionField] = json.RawMessage(fmt.Appendf(nil, "%d", v))
	return json.Marshal(m)
}

// localSettings versions a standalone node's settings: the version is
// kept in the settings object itself (member "v", as in the cluster's
// bucket), so it survives restarts, and only the settings on their way to
// the store are held here, so that a read sees a change from the moment
// its version is taken (the hub keeps the room in memory until it is
// written). Memory holds no more than the writes in flight.
type localSettings struct {
	mu      sync.Mutex // guards pending
	pending map[string]versioned
}

type versioned struct {
	v uint64
	s []byte
}

// current returns room's newest settings and version: on their way, or as
// stored. ls.mu must be held.
func (l *Local) current(room string) ([]byte, uint64, error) {
	if e, ok := l.versions.pending[room]; ok {
		return e.s, e.v, nil
	}
	m, _, err := l.st.Meta(room)
	if err != nil {
		return nil, 0, err
	}
	return m.Settings, versionOf(m.Settings), nil
}

// settingsOf is current for callers that do not hold the lock.
func (l *Local) settingsOf(room string) ([]byte, uint64, error) {
	l.versions.mu.Lock()
	defer l.versions.mu.Unlock()
	return l.current(room)
}

// put makes next room's settings, one version on, if room's version is
// still expect, and queues the write; done gets its outcome. ErrSeq with
// the current version if not.
func (l *Local) put(room, epoch string, expect uint64, next []byte, done func(error)) (uint64, error) {
	if _, err := withVersion(next, 0); err != nil { // refused whatever the version
		return 0, err
	}
	l.versions.mu.Lock()
	defer l.versions.mu.Unlock()
	_, cur, err := l.current(room)
	if err != nil {
		return 0, err
	}
	if cur != expect {
		return cur, fmt.Errorf("%w: settings of %q at %d, not %d", ErrSeq, room, cur, expect)
	}
	b, err := withVersion(next, cur+1)
	if err != nil {
		return 0, err
	}
	if l.versions.pending == nil {
		l.versions.pending = make(map[string]versioned)
	}
	l.versions.pending[room] = versioned{cur + 1, b}
	l.settings.save(room, epoch, b, func(err error) {
		l.versions.mu.Lock()
		if e, ok := l.versions.pending[room]; ok && e.v == cur+1 { // written (or lost): the store says from now on
			delete(l.versions.pending, room)
		}
		l.versions.mu.Unlock()
		done(err)
	})
	return cur + 1, nil
}

// ReadSettings implements Settings.
func (l *Local) ReadSettings(room, epoch string, create func() []byte) ([]byte, uint64, bool, error) {
	s, v, err := l.settingsOf(room)
	if err != nil || len(s) > 0 || create == nil {
		return s, v, false, err
	}
	first := create()
	nv, err := l.UpdateSettings(room, epoch, v, first)
	if errors.Is(err, ErrSeq) { // another caller created them first
		s, v, err = l.settingsOf(room)
		return s, v, false, err
	}
	if err != nil {
		return nil, 0, false, err
	}
	s, _, err = l.settingsOf(room)
	return s, nv, true, err
}

// UpdateSettings implements Settings: the version is checked and moved on
// at once, and the write waits for the settings writer.
func (l *Local) UpdateSettings(room, epoch string, version uint64, next []byte) (uint64, error) {
	done := make(chan error, 1)
	v, err := l.put(room, epoch, version, next, func(err error) { done <- err })
	if err != nil {
		return v, err
	}
	return v, <-done
}
