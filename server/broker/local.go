package broker

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"noom/server/store"
)

// Local is the standalone node's broker over an embedded store: durable
// when the store is on disk, in memory for -data "".
type Local struct {
	st *store.Store
	// instance starts every epoch this process creates, seq numbers the
	// rest, so two rooms created in the same millisecond, or a room
	// forgotten and created again, never share an epoch.
	instance string
	seq      atomic.Uint64
	settings *settingsWriter
	// versions numbers the settings saved (settings_cas.go).
	versions localSettings
	// MemCalls keeps the call lists: live state, in memory even when the
	// messages are on disk (after a restart nobody is in a call).
	*MemCalls
}

// OpenLocal opens the store in dir ("" for memory) with keep messages per
// room and retention, and returns its broker.
func OpenLocal(dir string, keep int, retention time.Duration) (*Local, error) {
	st, err := store.Open(dir, store.Options{Keep: keep, Retention: retention})
	if err != nil {
		return nil, err
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	return &Local{st: st, instance: base64.RawURLEncoding.EncodeToString(b[:]), settings: newSettingsWriter(st), MemCalls: NewMemCalls()}, nil
}

func (l *Local) newEpoch() string {
	return strconv.FormatInt(time.Now().UnixMilli(), 36) + "." + l.instance + "." + strconv.FormatUint(l.seq.Add(1), 36)
}

// Room implements Broker.
func (l *Local) Room(room string, recent int) (RoomState, error) {
	m, ok, err := l.st.Meta(room)
	if err != nil {
		return RoomState{}, err
	}
	if !ok {
		return RoomState{Epoch: l.newEpoch()}, nil
	}
	// Publish creates a room's metadata with its epoch (AppendIn), so a
	// stored room always has one.
	rs := RoomState{Epoch: m.Epoch, Seq: m.LastSeq, Known: true}
	if recent > 0 && m.LastSeq > 0 {
		recs, err := l.st.Newest(room, recent)
		if err != nil {
			return RoomState{}, err
		}
		rs.Recent = messages(recs)
	}
	return rs, nil
}

// Publish implements Broker.
// Local is the room's only writer: renumber is never needed, and a seq
// that does not follow is refused.
func (l *Local) Publish(room, epoch string, m Message, _ func(uint64) []byte, done func(Kept, error)) error {
	err := l.st.AppendIn(room, epoch, store.Record{Seq: m.Seq, TS: m.TS, Payload: m.Payload}, func(err error) {
		done(Kept{Message: m, Epoch: epoch}, contractErr(err))
	})
	return contractErr(err)
}

// History implements Broker.
func (l *Local) History(room string, before uint64, limit int) ([]Message, bool, error) {
	return l.HistoryIn(room, "", before, limit)
}

// HistoryIn implements Broker.
func (l *Local) HistoryIn(room, epoch string, before uint64, limit int) ([]Message, bool, error) {
	if before == 0 || epoch != "" {
		m, ok, err := l.st.Meta(room)
		if err != nil || !ok || epoch != "" && m.Epoch != epoch {
			return nil, false, err
		}
		if before == 0 {
			before = m.LastSeq + 1
		}
	}
	recs, more, err := l.st.Before(room, before, limit)
	return messages(recs), more, err
}

// Since implements Broker.
func (l *Local) Since(room string, seq uint64, limit int) ([]Message, bool, error) {
	recs, complete, err := l.st.Since(room, seq, limit)
	return messages(recs), complete, err
}

// Expire implements Broker: the store drops old messages, then rooms with
// none left and no activity for idle are forgotten, so that their next join
// starts a new epoch.
func (l *Local) Expire(now time.Time, idle time.Duration, inUse func(string) bool) (int, error) {
	removed, err := l.st.Expire(now)
	if err != nil {
		return removed, err
	}
	var forget []string
	cutoff := now.Add(-idle).UnixMilli()
	err = l.st.Rooms(func(room string, m store.Meta) bool {
		if m.Touched < cutoff && (inUse == nil || !inUse(room)) {
			if recs, err := l.st.Newest(room, 1); err == nil && len(recs) == 0 {
				forget = append(forget, room)
			}
		}
		return true
	})
	for _, room := range forget {
		if e := l.st.ForgetRoom(room); e != nil {
			err = errors.Join(err, e)
		}
	}
	return removed, err
}

// Close implements Broker: queued settings are written first.
func (l *Local) Close() error {
	l.settings.close()
	return l.st.Close()
}

func messages(recs []store.Record) []Message {
	if len(recs) == 0 {
		return nil
	}
	out := make([]Message, len(recs))
	for i, r := range recs {
		out[i] = Message{Seq: r.Seq, TS: r.TS, Payload: r.Payload}
	}
	return out
}

// contractErr maps the store's errors onto the contract's.
func contractErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrBusy):
		return fmt.Errorf("%w: %w", ErrBusy, err)
	case errors.Is(err, store.ErrSeq):
		return fmt.Errorf("%w: %w", ErrSeq, err)
	}
	return err
}
