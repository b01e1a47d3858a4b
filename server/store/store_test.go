package store

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// backends opens a fresh Store of each kind: the tests below hold both to
// the same semantics.
var backends = []struct {
	name string
	open func(t testing.TB, o Options) *Store
}{
	{"disk", func(t testing.TB, o Options) *Store { return openT(t, t.TempDir(), o) }},
	{"mem", func(t testing.TB, o Options) *Store { return openT(t, "", o) }},
}

func openT(t testing.TB, dir string, o Options) *Store {
	t.Helper()
	s, err := Open(dir, o)
	if err != nil {
		t.Fatalf("Open(%q): %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// forEach runs fn as a parallel subtest against every backend.
func forEach(t *testing.T, o Options, fn func(t *testing.T, s *Store)) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			fn(t, b.open(t, o))
		})
	}
}

// payload is the test records' content, a function of room and seq so a
// reader can check every byte.
func payload(room string, seq uint64) []byte {
	return fmt.Appendf(nil, `{"type":"msg","room":%q,"seq":%d,"text":"message %d of %s"}`, room, seq, seq, room)
}

func rec(room string, seq uint64, ts int64) Record {
	return Record{Seq: seq, TS: ts, Payload: payload(room, seq)}
}

// appendWait appends and waits until the record is durable or refused.
// appendCB is Append with its immediate error also reported through done.
func appendCB(s *Store, room string, r Record, done func(error)) {
	if err := s.Append(room, r, done); err != nil && done != nil {
		done(err)
	}
}

func appendWait(s *Store, room string, r Record) error {
	ch := make(chan error, 1)
	appendCB(s, room, r, func(err error) { ch <- err })
	return <-ch
}

// fill appends seqs from..to to room, with TS = ts0 + seq.
func fill(t testing.TB, s *Store, room string, from, to uint64, ts0 int64) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, to-from+1)
	for seq := from; seq <= to; seq++ {
		wg.Add(1)
		appendCB(s, room, rec(room, seq, ts0+int64(seq)), func(err error) {
			if err != nil {
				errs <- err
			}
			wg.Done()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("append to %s: %v", room, err)
	}
}

// wantSeqs checks recs are exactly seqs from..to with their payloads.
func wantSeqs(t testing.TB, what string, room string, recs []Record, from, to uint64) {
	t.Helper()
	var got []uint64
	for _, r := range recs {
		got = append(got, r.Seq)
		if string(r.Payload) != string(payload(room, r.Seq)) {
			t.Errorf("%s: record %d payload %q", what, r.Seq, r.Payload)
		}
	}
	var want []uint64
	for seq := from; seq <= to && to > 0; seq++ {
		want = append(want, seq)
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s: seqs %v, want %d..%d", what, got, from, to)
	}
}

func TestAppendAndRead(t *testing.T) {
	forEach(t, Options{}, func(t *testing.T, s *Store) {
		fill(t, s, "a", 1, 120, 1000)
		fill(t, s, "b", 1, 5, 5000)

		recs, err := s.Newest("a", 50)
		if err != nil {
			t.Fatal(err)
		}
		wantSeqs(t, "Newest(a, 50)", "a", recs, 71, 120)
		if recs[0].TS != 1071 {
			t.Errorf("TS %d, want 1071", recs[0].TS)
		}
		recs, _ = s.Newest("b", 50)
		wantSeqs(t, "Newest(b, 50)", "b", recs, 1, 5)
		if recs, err := s.Newest("nobody", 50); err != nil || len(recs) != 0 {
			t.Errorf("Newest(nobody) = %v, %v; want none", recs, err)
		}

		pages := []struct {
			before   uint64
			n        int
			from, to uint64
			more     bool
		}{
			{71, 50, 21, 70, true},
			{21, 50, 1, 20, false},
			{1000, 10, 111, 120, true},
			{121, 120, 1, 120, false},
			{2, 50, 1, 1, false},
			{1, 50, 0, 0, false},
			{51, 50, 1, 50, false},
		}
		for _, p := range pages {
			recs, more, err := s.Before("a", p.before, p.n)
			if err != nil {
				t.Fatal(err)
			}
			what := fmt.Sprintf("Before(a, %d, %d)", p.before, p.n)
			wantSeqs(t, what, "a", recs, p.from, p.to)
			if more != p.more {
				t.Errorf("%s: more %v, want %v", what, more, p.more)
			}
		}

		m, ok, err := s.Meta("a")
		if err != nil || !ok || m.LastSeq != 120 || m.Touched != 1120 {
			t.Errorf("Meta(a) = %+v, %v, %v; want LastSeq 120, Touched 1120", m, ok, err)
		}
	})
}

func TestSeqMustFollow(t *testing.T) {
	forEach(t, Options{}, func(t *testing.T, s *Store) {
		if err := appendWait(s, "new", rec("new", 2, 1)); !errors.Is(err, ErrSeq) {
			t.Errorf("first append with seq 2: %v, want ErrSeq", err)
		}
		if _, ok, _ := s.Meta("new"); ok {
			t.Error("a refused append created the room")
		}
		fill(t, s, "a", 1, 3, 0)
		for _, seq := range []uint64{3, 5, 1} {
			if err := appendWait(s, "a", rec("a", seq, 0)); !errors.Is(err, ErrSeq) {
				t.Errorf("seq %d after 3: %v, want ErrSeq", seq, err)
			}
		}
		if err := appendWait(s, "a", rec("a", 4, 0)); err != nil {
			t.Errorf("seq 4 after 3: %v", err)
		}
		recs, _ := s.Newest("a", 10)
		wantSeqs(t, "Newest(a)", "a", recs, 1, 4)
	})
}

func TestSince(t *testing.T) {
	o := Options{Keep: 20}
	forEach(t, o, func(t *testing.T, s *Store) {
		fill(t, s, "a", 1, 30, 0)
		if _, err := s.Expire(time.UnixMilli(0)); err != nil { // keeps 11..30
			t.Fatal(err)
		}
		cases := []struct {
			since    uint64
			max      int
			complete bool
			from, to uint64
		}{
			{25, 50, true, 26, 30},
			{10, 50, true, 11, 30},
			{9, 50, false, 0, 0},  // 10 expired
			{0, 50, false, 0, 0},  // 1 expired
			{25, 4, false, 0, 0},  // 5 needed
			{25, 5, true, 26, 30}, // exactly max
			{30, 50, true, 0, 0},  // up to date
			{31, 50, false, 0, 0}, // from the future
		}
		for _, c := range cases {
			recs, complete, err := s.Since("a", c.since, c.max)
			if err != nil {
				t.Fatal(err)
			}
			what := fmt.Sprintf("Since(a, %d, %d)", c.since, c.max)
			if complete != c.complete {
				t.Errorf("%s: complete %v, want %v", what, complete, c.complete)
			}
			wantSeqs(t, what, "a", recs, c.from, c.to)
		}
		if recs, complete, err := s.Since("nobody", 0, 50); err != nil || !complete || len(recs) != 0 {
			t.Errorf("Since(nobody, 0) = %v, %v, %v; want complete, none", recs, complete, err)
		}
	})
}

func TestMeta(t *testing.T) {
	forEach(t, Options{}, func(t *testing.T, s *Store) {
		if _, ok, err := s.Meta("a"); ok || err != nil {
			t.Fatalf("Meta of a new store: %v, %v", ok, err)
		}
		settings := []byte(`{"lobby":true}`)
		if err := s.SetMeta("a", Meta{Epoch: "e1", Settings: settings, Touched: 7}); err != nil {
			t.Fatal(err)
		}
		settings[2] = 'X' // the store keeps its own copy
		m, ok, err := s.Meta("a")
		if err != nil || !ok || m.Epoch != "e1" || string(m.Settings) != `{"lobby":true}` || m.Touched != 7 || m.LastSeq != 0 {
			t.Fatalf("Meta(a) = %+v, %v, %v", m, ok, err)
		}
		fill(t, s, "a", 1, 2, 100)
		// LastSeq is Append's: SetMeta does not move it.
		if err := s.SetMeta("a", Meta{Epoch: "e1", LastSeq: 99, Touched: 200}); err != nil {
			t.Fatal(err)
		}
		m, _, _ = s.Meta("a")
		if m.LastSeq != 2 || m.Touched != 200 || m.Settings != nil {
			t.Errorf("after SetMeta: %+v, want LastSeq 2, Touched 200, no settings", m)
		}
		// A new room may start elsewhere.
		if err := s.SetMeta("b", Meta{Epoch: "e2", LastSeq: 41}); err != nil {
			t.Fatal(err)
		}
		if err := appendWait(s, "b", rec("b", 42, 1)); err != nil {
			t.Errorf("append 42 to a room set at 41: %v", err)
		}
		if err := s.SetMeta("", Meta{}); err == nil {
			t.Error("SetMeta of an empty room name succeeded")
		}
	})
}

// TestSetMetas: several rooms' metadata in one write: new rooms are
// created, a stored room keeps its LastSeq, a room named twice gets the
// later one, and a bad name refuses the whole write.
func TestSetMetas(t *testing.T) {
	forEach(t, Options{}, func(t *testing.T, s *Store) {
		fill(t, s, "old", 1, 3, 100)
		err := s.SetMetas([]MetaUpdate{
			{"old", Meta{Epoch: "e0", Settings: []byte(`{"n":1}`), LastSeq: 50}},
			{"new1", Meta{Epoch: "e1", Settings: []byte(`{"n":2}`)}},
			{"new2", Meta{Epoch: "e2", Settings: []byte(`{"n":3}`)}},
			{"new1", Meta{Epoch: "e1", Settings: []byte(`{"n":4}`)}},
		})
		if err != nil {
			t.Fatal(err)
		}
		for room, want := range map[string]struct {
			settings string
			last     uint64
		}{"old": {`{"n":1}`, 3}, "new1": {`{"n":4}`, 0}, "new2": {`{"n":3}`, 0}} {
			m, ok, err := s.Meta(room)
			if err != nil || !ok || string(m.Settings) != want.settings || m.LastSeq != want.last {
				t.Errorf("Meta(%s) = %+v, %v, %v; want settings %s, LastSeq %d", room, m, ok, err, want.settings, want.last)
			}
		}
		if err := s.SetMetas([]MetaUpdate{{"fine", Meta{}}, {"", Meta{}}}); err == nil {
			t.Error("SetMetas with an empty room name succeeded")
		}
		if _, ok, _ := s.Meta("fine"); ok {
			t.Error("a refused SetMetas kept one of its rooms")
		}
	})
}

func TestExpire(t *testing.T) {
	const hour = int64(time.Hour / time.Millisecond)
	now := time.UnixMilli(100 * hour)
	o := Options{Keep: 10, Retention: time.Hour}
	forEach(t, o, func(t *testing.T, s *Store) {
		// old: everything past retention; busy: 30 fresh records;
		// mixed: 5 old then 5 fresh; quiet: 3 fresh.
		fill(t, s, "old", 1, 20, 90*hour)
		fill(t, s, "busy", 1, 30, 100*hour-1000)
		fill(t, s, "mixed", 1, 5, 98*hour)
		fill(t, s, "mixed", 6, 10, 100*hour-1000)
		fill(t, s, "quiet", 1, 3, 100*hour-1000)
		if err := s.SetMeta("old", Meta{Epoch: "kept", Touched: 90 * hour}); err != nil {
			t.Fatal(err)
		}

		removed, err := s.Expire(now)
		if err != nil || removed != 20+20+5 {
			t.Fatalf("Expire = %d, %v; want 45", removed, err)
		}
		for _, c := range []struct {
			room     string
			from, to uint64
		}{{"old", 0, 0}, {"busy", 21, 30}, {"mixed", 6, 10}, {"quiet", 1, 3}} {
			recs, err := s.Newest(c.room, 100)
			if err != nil {
				t.Fatal(err)
			}
			wantSeqs(t, "after Expire, "+c.room, c.room, recs, c.from, c.to)
		}
		m, ok, _ := s.Meta("old")
		if !ok || m.LastSeq != 20 || m.Epoch != "kept" {
			t.Errorf("Meta(old) = %+v, %v; want it kept with LastSeq 20", m, ok)
		}
		if _, complete, _ := s.Since("old", 19, 50); complete {
			t.Error("Since(old, 19) complete after record 20 expired")
		}
		if recs, more, _ := s.Before("busy", 25, 50); more || len(recs) != 4 {
			t.Errorf("Before(busy, 25) = %d records, more %v; want 4, false", len(recs), more)
		}
		if n, _ := s.Expire(now); n != 0 {
			t.Errorf("second Expire removed %d", n)
		}
		// An expired room's sequence goes on.
		if err := appendWait(s, "old", rec("old", 21, 100*hour)); err != nil {
			t.Errorf("append 21 to an expired room: %v", err)
		}
	})
}

// TestExpireLarge crosses the disk backend's per-transaction limits.
func TestExpireLarge(t *testing.T) {
	forEach(t, Options{Keep: 100}, func(t *testing.T, s *Store) {
		const rooms, each = 300, 130
		for i := range rooms {
			fill(t, s, fmt.Sprint("r", i), 1, each, 0)
		}
		removed, err := s.Expire(time.UnixMilli(0))
		if err != nil || removed != rooms*(each-100) {
			t.Fatalf("Expire = %d, %v; want %d", removed, err, rooms*(each-100))
		}
		recs, _ := s.Newest("r7", 1000)
		wantSeqs(t, "r7", "r7", recs, 31, 130)

		removed, err = s.Expire(time.UnixMilli(1 << 50)) // all past retention
		if err != nil || removed != rooms*100 {
			t.Fatalf("Expire all = %d, %v; want %d", removed, err, rooms*100)
		}
		n := 0
		s.Rooms(func(room string, m Meta) bool {
			n++
			return m.LastSeq == each
		})
		if n != rooms {
			t.Errorf("%d rooms left after expiring every record, want %d", n, rooms)
		}
	})
}

func TestForgetRoom(t *testing.T) {
	forEach(t, Options{}, func(t *testing.T, s *Store) {
		fill(t, s, "a", 1, 10, 0)
		fill(t, s, "b", 1, 1, 0)
		if err := s.ForgetRoom("a"); err != nil {
			t.Fatal(err)
		}
		if err := s.ForgetRoom("never"); err != nil {
			t.Errorf("ForgetRoom(never): %v", err)
		}
		if _, ok, _ := s.Meta("a"); ok {
			t.Error("Meta(a) found after ForgetRoom")
		}
		if recs, _ := s.Newest("a", 10); len(recs) != 0 {
			t.Errorf("Newest(a) after ForgetRoom: %d records", len(recs))
		}
		if err := appendWait(s, "a", rec("a", 1, 0)); err != nil {
			t.Errorf("a forgotten room starts again at 1: %v", err)
		}
		recs, _ := s.Newest("b", 10)
		wantSeqs(t, "Newest(b)", "b", recs, 1, 1)
	})
}

func TestRooms(t *testing.T) {
	forEach(t, Options{}, func(t *testing.T, s *Store) {
		const n = 600 // more than one of the disk backend's chunks
		var want []string
		for i := range n {
			room := fmt.Sprintf("room%04d", i)
			want = append(want, room)
			if err := s.SetMeta(room, Meta{Epoch: room}); err != nil {
				t.Fatal(err)
			}
		}
		var got []string
		err := s.Rooms(func(room string, m Meta) bool {
			if m.Epoch != room {
				t.Errorf("room %s has epoch %q", room, m.Epoch)
			}
			got = append(got, room)
			// fn may use the Store.
			if err := s.SetMeta(room, Meta{Epoch: room, Touched: 1}); err != nil {
				t.Error(err)
			}
			return true
		})
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("Rooms listed %d rooms (err %v), want %d in order", len(got), err, n)
		}
		seen := 0
		s.Rooms(func(string, Meta) bool { seen++; return seen < 3 })
		if seen != 3 {
			t.Errorf("Rooms went on after fn returned false: %d calls", seen)
		}
	})
}

func TestBadRoom(t *testing.T) {
	forEach(t, Options{}, func(t *testing.T, s *Store) {
		for _, room := range []string{"", string(make([]byte, maxRoomLen+1))} {
			if err := appendWait(s, room, rec(room, 1, 0)); err == nil {
				t.Errorf("append to a room name of %d bytes succeeded", len(room))
			}
		}
	})
}

// TestBusy stalls the committer in a done callback, fills the queue and
// checks the next Append fails at once with ErrBusy, and that every queued
// one is then stored.
func TestBusy(t *testing.T) {
	forEach(t, Options{MaxQueue: 8}, func(t *testing.T, s *Store) {
		release := make(chan struct{})
		stalled := make(chan struct{})
		appendCB(s, "a", rec("a", 1, 0), func(err error) {
			close(stalled)
			<-release
		})
		<-stalled
		results := make(chan error, 8)
		for seq := uint64(2); seq <= 9; seq++ {
			appendCB(s, "a", rec("a", seq, 0), func(err error) { results <- err })
		}
		var busy error
		appendCB(s, "a", rec("a", 10, 0), func(err error) { busy = err })
		if !errors.Is(busy, ErrBusy) { // done ran before Append returned
			t.Errorf("append to a full queue: %v, want ErrBusy", busy)
		}
		close(release)
		for range 8 {
			if err := <-results; err != nil {
				t.Errorf("queued append: %v", err)
			}
		}
		// The refused seq 10 is free again.
		if err := appendWait(s, "a", rec("a", 10, 0)); err != nil {
			t.Errorf("append after ErrBusy: %v", err)
		}
	})
}

// TestCloseFlushes queues appends without waiting and closes: every done
// gets nil, and the disk store has them all when reopened.
func TestCloseFlushes(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			dir := ""
			if b.name == "disk" {
				dir = t.TempDir()
			}
			s, err := Open(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var acked []uint64
			for seq := uint64(1); seq <= 500; seq++ {
				appendCB(s, "a", rec("a", seq, 0), func(err error) {
					if err != nil {
						t.Errorf("append %d: %v", seq, err)
					}
					mu.Lock()
					acked = append(acked, seq)
					mu.Unlock()
				})
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if len(acked) != 500 || !slices.IsSorted(acked) {
				t.Errorf("Close returned with %d of 500 done called (in order: %v)", len(acked), slices.IsSorted(acked))
			}
			if err := appendWait(s, "a", rec("a", 501, 0)); !errors.Is(err, ErrClosed) {
				t.Errorf("Append after Close: %v, want ErrClosed", err)
			}
			if _, err := s.Newest("a", 1); !errors.Is(err, ErrClosed) {
				t.Errorf("Newest after Close: %v, want ErrClosed", err)
			}
			if err := s.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			if dir == "" {
				return
			}
			s = openT(t, dir, Options{})
			recs, _ := s.Newest("a", 1000)
			wantSeqs(t, "after reopen", "a", recs, 1, 500)
		})
	}
}

// TestConcurrentOrder has producers append to shared rooms the way the
// server does, assigning Seq and calling Append under the room's lock, and
// checks each room's records and done calls come out in Seq order.
func TestConcurrentOrder(t *testing.T) {
	forEach(t, Options{MaxBatch: 64}, func(t *testing.T, s *Store) {
		const rooms, producers, each = 8, 16, 200
		type room struct {
			mu   sync.Mutex
			seq  uint64
			done []uint64 // guarded by the committer: done runs there
		}
		rs := make([]*room, rooms)
		for i := range rs {
			rs[i] = &room{}
		}
		var wg sync.WaitGroup
		for p := range producers {
			wg.Go(func() {
				for i := range each {
					idx := (p + i) % rooms
					r := rs[idx]
					name := fmt.Sprint("room", idx)
					ack := make(chan error, 1)
					r.mu.Lock()
					r.seq++
					seq := r.seq
					appendCB(s, name, rec(name, seq, int64(seq)), func(err error) {
						r.done = append(r.done, seq)
						ack <- err
					})
					r.mu.Unlock()
					if err := <-ack; err != nil {
						t.Errorf("append %s/%d: %v", name, seq, err)
						return
					}
				}
			})
		}
		wg.Wait()
		total := 0
		for i, r := range rs {
			name := fmt.Sprint("room", i)
			if !slices.IsSorted(r.done) {
				t.Errorf("%s: done calls out of order", name)
			}
			recs, err := s.Newest(name, 10_000)
			if err != nil {
				t.Fatal(err)
			}
			wantSeqs(t, name, name, recs, 1, r.seq)
			total += len(recs)
		}
		if total != producers*each {
			t.Errorf("%d records stored, want %d", total, producers*each)
		}
	})
}

// TestAppendInEpoch: the first append of a new room stores the epoch it is
// given in the same transaction; later ones leave it alone.
func TestAppendInEpoch(t *testing.T) {
	forEach(t, Options{}, func(t *testing.T, s *Store) {
		for seq, epoch := range []string{"e1", "e2"} {
			ch := make(chan error, 1)
			if err := s.AppendIn("a", epoch, rec("a", uint64(seq+1), 0), func(err error) { ch <- err }); err != nil {
				t.Fatal(err)
			}
			if err := <-ch; err != nil {
				t.Fatal(err)
			}
		}
		m, ok, err := s.Meta("a")
		if err != nil || !ok || m.Epoch != "e1" || m.LastSeq != 2 {
			t.Fatalf("meta %+v %v %v, want epoch e1 and LastSeq 2", m, ok, err)
		}
	})
}
