package broker

import (
	"sync"
	"time"

	"noom/server/store"
)

// settingsWriter keeps rooms' settings for Local, off the caller's
// goroutine: a store write syncs the file (milliseconds), and the hub asks
// from the event loop, which must not wait for a disk. One goroutine
// writes the rooms in the order they were first queued, all that are
// queued in one transaction and one sync (group commit, as for messages:
// a burst of new rooms shares the sync); a room saved again before its
// write keeps only the newest settings, and every done waiting on it gets
// that write's result.
type settingsWriter struct {
	st *store.Store

	mu      sync.Mutex // guards the fields below
	queued  map[string]*settingsSave
	order   []string // rooms in queued, oldest first
	closing bool
	wake    chan struct{} // one token: something is queued
	stopped chan struct{} // closed when the goroutine has returned
}

// settingsSave is one room's newest settings not yet written.
type settingsSave struct {
	epoch    string
	settings []byte
	dones    []func(error)
}

func newSettingsWriter(st *store.Store) *settingsWriter {
	w := &settingsWriter{
		st:      st,
		queued:  make(map[string]*settingsSave),
		wake:    make(chan struct{}, 1),
		stopped: make(chan struct{}),
	}
	go w.run()
	return w
}

// save queues settings for room (Local.UpdateSettings): done gets the
// outcome of the write that keeps them, or of a newer one of the room.
func (w *settingsWriter) save(room, epoch string, settings []byte, done func(error)) {
	w.mu.Lock()
	if w.closing {
		w.mu.Unlock()
		go done(store.ErrClosed)
		return
	}
	q := w.queued[room]
	if q == nil {
		q = &settingsSave{}
		w.queued[room] = q
		w.order = append(w.order, room)
	}
	q.epoch, q.settings = epoch, settings
	if done != nil {
		q.dones = append(q.dones, done)
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *settingsWriter) run() {
	defer close(w.stopped)
	for {
		w.mu.Lock()
		if len(w.order) == 0 {
			closing := w.closing
			w.mu.Unlock()
			if closing {
				return
			}
			<-w.wake
			continue
		}
		n := min(len(w.order), maxSettingsBatch)
		batch := make([]store.MetaUpdate, n)
		saves := make([]*settingsSave, n)
		now := time.Now().UnixMilli()
		for i, room := range w.order[:n] {
			q := w.queued[room]
			delete(w.queued, room)
			batch[i] = store.MetaUpdate{Room: room, Meta: store.Meta{Epoch: q.epoch, Settings: q.settings, Touched: now}}
			saves[i] = q
		}
		w.order = w.order[n:]
		w.mu.Unlock()
		err := contractErr(w.st.SetMetas(batch))
		for _, q := range saves {
			for _, done := range q.dones {
				done(err)
			}
		}
	}
}

// maxSettingsBatch is the most rooms one settings write keeps: a burst of
// new rooms (the bench's 2,000 at once) shares a sync instead of queueing
// one sync per room.
const maxSettingsBatch = 256

// close writes what is queued and stops the goroutine.
func (w *settingsWriter) close() {
	w.mu.Lock()
	w.closing = true
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	<-w.stopped
}
