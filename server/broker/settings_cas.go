package broker

import (
	"bytes"
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

// VersionOf reads the version a settings object carries (0 for none).
func VersionOf(settings []byte) uint64 {
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

// localSettings numbers a standalone node's settings changes in memory,
// with the newest settings of each room changed since the start: every
// writer is in this process, so the version of what the store holds when
// a room is first read is 0, each save or update adds one, and a read
// sees a change from the moment its version is taken, before the settings
// writer has made it durable (the hub keeps the room in memory until then).
type localSettings struct {
	mu sync.Mutex // guards m
	m  map[string]versioned
}

type versioned struct {
	v uint64
	s []byte
}

// get returns room's newest settings since the start, if changed.
func (ls *localSettings) get(room string) (versioned, bool) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	e, ok := ls.m[room]
	return e, ok
}

// bump makes s room's newest settings, one version on, if room's version
// is still expect, or with force whatever it is (SaveSettings); ok false
// and the current version if not.
func (ls *localSettings) bump(room string, expect uint64, force bool, s []byte) (uint64, bool) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.m == nil {
		ls.m = make(map[string]versioned)
	}
	cur := ls.m[room].v
	if !force && cur != expect {
		return cur, false
	}
	ls.m[room] = versioned{cur + 1, s}
	return cur + 1, true
}

func (ls *localSettings) forget(room string) {
	ls.mu.Lock()
	delete(ls.m, room)
	ls.mu.Unlock()
}

// settingsOf returns room's newest settings and version: changed since the
// start, or as the store has them (version 0).
func (l *Local) settingsOf(room string, stored []byte) ([]byte, uint64) {
	if e, ok := l.versions.get(room); ok {
		return e.s, e.v
	}
	return stored, 0
}

// ReadSettings implements Settings.
func (l *Local) ReadSettings(room, epoch string, create func() []byte) ([]byte, uint64, bool, error) {
	m, _, err := l.st.Meta(room)
	if err != nil {
		return nil, 0, false, err
	}
	s, v := l.settingsOf(room, m.Settings)
	if len(s) > 0 || create == nil {
		return s, v, false, nil
	}
	first := create()
	nv, err := l.UpdateSettings(room, epoch, v, first)
	if errors.Is(err, ErrSeq) { // another caller created them first
		s, v = l.settingsOf(room, m.Settings)
		return s, v, false, nil
	}
	return first, nv, err == nil, err
}

// UpdateSettings implements Settings: the version is checked and moved on
// at once, in memory, and the write waits for the settings writer.
func (l *Local) UpdateSettings(room, epoch string, version uint64, next []byte) (uint64, error) {
	if !bytes.HasPrefix(bytes.TrimSpace(next), []byte("{")) {
		return 0, fmt.Errorf("broker: settings must be a JSON object: %q", next)
	}
	v, ok := l.versions.bump(room, version, false, next)
	if !ok {
		return v, fmt.Errorf("%w: settings of %q at %d, not %d", ErrSeq, room, v, version)
	}
	done := make(chan error, 1)
	l.settings.save(room, epoch, next, func(err error) { done <- err })
	return v, <-done
}
