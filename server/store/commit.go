package store

import (
	"errors"
	"fmt"
	"sync"
)

// pending is one queued append.
type pending struct {
	room  string
	epoch string // the room's epoch, should this append create it
	rec   Record
	done  func(error)
}

// queue holds the appends waiting for the committer. Producers hold mu only
// to add one entry; the committer holds it only to take a batch, so neither
// waits on the other's I/O.
type queue struct {
	mu    sync.Mutex
	items []pending // guarded by mu; FIFO, at most max
	max   int
	shut  bool  // guarded by mu: Close was called
	fatal error // guarded by mu: a write error after which nothing is appended
	// wake has room for one token: a push that finds it full knows the
	// committer has been told already.
	wake chan struct{}
}

func (q *queue) init(max int) {
	q.max = max
	q.wake = make(chan struct{}, 1)
}

// push adds p, or says why it cannot.
func (q *queue) push(p pending) error {
	q.mu.Lock()
	switch {
	case q.shut:
		q.mu.Unlock()
		return ErrClosed
	case q.fatal != nil:
		err := q.fatal
		q.mu.Unlock()
		return err
	case len(q.items) >= q.max:
		q.mu.Unlock()
		return ErrBusy
	}
	q.items = append(q.items, p)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return nil
}

// take moves up to n queued appends into a batch and returns it, with
// false once the queue is shut and empty. It blocks while the queue is
// empty. The batch is the committer's until its next take.
func (q *queue) take(batch []pending, n int) ([]pending, bool) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			if len(q.items) <= n {
				// The common case: take everything and hand the
				// producers the previous batch's array.
				batch, q.items = q.items, batch[:0]
			} else {
				batch = append(batch[:0], q.items[:n]...)
				rest := copy(q.items, q.items[n:])
				clear(q.items[rest:])
				q.items = q.items[:rest]
			}
			q.mu.Unlock()
			return batch, true
		}
		shut := q.shut
		q.mu.Unlock()
		if shut {
			return batch, false
		}
		<-q.wake
	}
}

func (q *queue) close() {
	q.mu.Lock()
	q.shut = true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// setFatal records err; every later append fails with it.
func (q *queue) setFatal(err error) {
	q.mu.Lock()
	if q.fatal == nil {
		q.fatal = err
	}
	q.mu.Unlock()
}

func (q *queue) failed() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.fatal
}

// wrote passes on the result of a write, and stops the Store if the write
// failed for another reason than a full disk (or a close). After a failed
// sync the file's state is unknown (the kernel may have dropped the dirty
// pages, and bbolt may see a meta page that never reached the disk):
// writing more could lose acknowledged records, so nothing is written until
// the store is opened again.
func (s *Store) wrote(err error) error {
	if err == nil || errors.Is(err, ErrFull) || errors.Is(err, ErrClosed) {
		return err
	}
	err = fmt.Errorf("store: stopped after a write error: %w", err)
	s.q.setFatal(err)
	return err
}

// commitLoop is the committer: it takes whatever is queued, writes it in one
// transaction with one sync, then reports to each done in order. While it
// writes, new appends queue up and become the next batch, so under load a
// sync covers many records.
func (s *Store) commitLoop() {
	defer close(s.done)
	var batch []pending
	var rejected []error
	for {
		var ok bool
		batch, ok = s.q.take(batch, s.opt.MaxBatch)
		if !ok {
			return
		}
		if cap(rejected) < len(batch) {
			rejected = make([]error, len(batch))
		} else {
			rejected = rejected[:len(batch)]
			clear(rejected)
		}
		err := s.q.failed()
		if err == nil {
			s.commits.Add(1)
			err = s.wrote(s.b.commit(batch, rejected))
		}
		for i := range batch {
			e := err
			if e == nil {
				e = rejected[i]
			}
			batch[i].done(e)
			batch[i] = pending{} // drop the payload and closure
		}
	}
}
