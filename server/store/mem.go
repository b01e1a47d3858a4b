package store

import (
	"fmt"
	"slices"
	"sync"
)

// mem is the backend of Open(""): the same semantics as the file, kept in
// memory, for tests and benchmarks of the server. bbolt has no in-memory
// mode, hence this second implementation; the test suite runs against
// both.
type mem struct {
	mu     sync.RWMutex
	byName map[string]*memRoom // guarded by mu
}

// memRoom is a room: its Meta and its kept records, oldest first, with
// recs[i].Seq == recs[0].Seq+i.
type memRoom struct {
	meta Meta
	recs []Record
}

func newMem() *mem { return &mem{byName: make(map[string]*memRoom)} }

func (s *mem) commit(batch []pending, rejected []error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range batch {
		p := &batch[i]
		r := s.byName[p.room]
		var last uint64
		if r != nil {
			last = r.meta.LastSeq
		}
		if p.rec.Seq != last+1 {
			rejected[i] = fmt.Errorf("%w: room %q got seq %d, want %d", ErrSeq, p.room, p.rec.Seq, last+1)
			continue
		}
		if r == nil {
			r = &memRoom{meta: Meta{Epoch: p.epoch}}
			s.byName[p.room] = r
		}
		r.recs = append(r.recs, p.rec)
		r.meta.LastSeq = p.rec.Seq
		r.meta.Touched = max(r.meta.Touched, p.rec.TS)
	}
	return nil
}

func (s *mem) meta(room string) (Meta, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r := s.byName[room]
	if r == nil {
		return Meta{}, false, nil
	}
	m := r.meta
	m.Settings = slices.Clone(m.Settings)
	return m, true, nil
}

func (s *mem) setMetas(us []MetaUpdate) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range us {
		m := u.Meta
		if len(m.Settings) == 0 {
			m.Settings = nil // as the file does
		} else {
			m.Settings = slices.Clone(m.Settings)
		}
		if r := s.byName[u.Room]; r != nil {
			m.LastSeq = r.meta.LastSeq
			r.meta = m
			continue
		}
		s.byName[u.Room] = &memRoom{meta: m}
	}
	return nil
}

func (s *mem) newest(room string, n int) ([]Record, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r := s.byName[room]
	if r == nil {
		return nil, nil
	}
	return slices.Clone(r.recs[max(0, len(r.recs)-n):]), nil
}

func (s *mem) before(room string, seq uint64, n int) ([]Record, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r := s.byName[room]
	if r == nil || len(r.recs) == 0 || seq <= r.recs[0].Seq {
		return nil, false, nil
	}
	end := min(uint64(len(r.recs)), seq-r.recs[0].Seq) // recs[:end] have Seq < seq
	start := max(0, int(end)-n)
	return slices.Clone(r.recs[start:end]), start > 0, nil
}

func (s *mem) since(room string, seq uint64, limit int) ([]Record, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var last uint64
	r := s.byName[room]
	if r != nil {
		last = r.meta.LastSeq
	}
	if seq >= last {
		return nil, seq == last, nil
	}
	if last-seq > uint64(limit) || len(r.recs) == 0 || r.recs[0].Seq > seq+1 {
		return nil, false, nil
	}
	return slices.Clone(r.recs[seq+1-r.recs[0].Seq:]), true, nil
}

func (s *mem) expire(cutoff int64, keep int) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	removed := 0
	for _, r := range s.byName {
		n := max(0, len(r.recs)-keep)
		for n < len(r.recs) && r.recs[n].TS < cutoff {
			n++
		}
		if n == 0 {
			continue
		}
		removed += n
		// Copy the survivors down so the dropped payloads can be
		// collected.
		r.recs = append(r.recs[:0], r.recs[n:]...)
		clear(r.recs[len(r.recs):cap(r.recs)])
		if len(r.recs) == 0 {
			r.recs = nil
		}
	}
	return removed, nil
}

func (s *mem) forget(room string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byName, room)
	return nil
}

func (s *mem) rooms(fn func(room string, m Meta) bool) error {
	s.mu.RLock()
	names := make([]string, 0, len(s.byName))
	for name := range s.byName {
		names = append(names, name)
	}
	s.mu.RUnlock()
	slices.Sort(names)
	for _, name := range names {
		m, ok, _ := s.meta(name)
		if ok && !fn(name, m) {
			return nil
		}
	}
	return nil
}

func (s *mem) close() error { return nil }
