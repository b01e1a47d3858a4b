package store

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// benchPayload is about the size of a chat msg frame.
var benchPayload = []byte(`{"type":"msg","room":"room-0042","seq":123456,"id":"c8f3a1","name":"alice","ts":1764582000000,"text":"hello there, this is a chat message about the meeting tomorrow at ten; please bring the slides"}`)

// BenchmarkAppend measures group-committed appends on disk (and in memory)
// the way the server makes them: producers assign Seq and call Append
// under the room's lock, and each waits for its record to be durable
// before sending the next, like a client waiting for its echo. An op is
// one record; recs/commit is how many records shared each sync.
func BenchmarkAppend(b *testing.B) {
	for _, be := range backends {
		for _, c := range []struct{ producers, rooms int }{
			{1, 1}, {16, 1}, {256, 1}, {16, 2000}, {256, 2000},
		} {
			b.Run(fmt.Sprintf("%s/producers=%d/rooms=%d", be.name, c.producers, c.rooms), func(b *testing.B) {
				benchAppend(b, be.open(b, Options{}), c.producers, c.rooms)
			})
		}
	}
}

func benchAppend(b *testing.B, s *Store, producers, rooms int) {
	type room struct {
		mu   sync.Mutex
		name string
		seq  uint64
	}
	rs := make([]*room, rooms)
	for i := range rs {
		rs[i] = &room{name: fmt.Sprintf("room-%04d", i)}
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(benchPayload)))
	commits0 := s.commits.Load()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for p := range producers {
		n := b.N / producers
		if p < b.N%producers {
			n++
		}
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(p), 0))
			ack := make(chan error, 1)
			done := func(err error) { ack <- err }
			for range n {
				r := rs[rnd.IntN(rooms)]
				r.mu.Lock()
				r.seq++
				appendCB(s, r.name, Record{Seq: r.seq, TS: 1, Payload: benchPayload}, done)
				r.mu.Unlock()
				if err := <-ack; err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "appends/s")
	b.ReportMetric(float64(b.N)/float64(max(1, s.commits.Load()-commits0)), "recs/commit")
}

// benchRoom opens a store holding 10,000 records in room "big" (and 99
// other rooms of 100 records around it).
func benchRoom(b *testing.B, open func(testing.TB, Options) *Store) *Store {
	s := open(b, Options{})
	for i := range 100 {
		room, n := fmt.Sprintf("room-%02d", i), uint64(100)
		if i == 50 {
			room, n = "big", 10_000
		}
		var wg sync.WaitGroup
		for seq := uint64(1); seq <= n; seq++ {
			wg.Add(1)
			appendCB(s, room, Record{Seq: seq, TS: int64(seq), Payload: benchPayload}, func(err error) {
				if err != nil {
					b.Error(err)
				}
				wg.Done()
			})
		}
		wg.Wait()
	}
	return s
}

// BenchmarkNewest reads the newest 50 records of a room of 10,000: what
// every join's `joined.history` costs.
func BenchmarkNewest(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			s := benchRoom(b, be.open)
			b.ReportAllocs()
			b.SetBytes(50 * int64(len(benchPayload)))
			for b.Loop() {
				recs, err := s.Newest("big", 50)
				if err != nil || len(recs) != 50 {
					b.Fatal(len(recs), err)
				}
			}
		})
	}
}

// BenchmarkBefore reads 50-record pages before random seqs of a room of
// 10,000: a `history` request scrolling back.
func BenchmarkBefore(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			s := benchRoom(b, be.open)
			rnd := rand.New(rand.NewPCG(1, 2))
			b.ReportAllocs()
			b.SetBytes(50 * int64(len(benchPayload)))
			for b.Loop() {
				recs, _, err := s.Before("big", 51+rnd.Uint64N(9950), 50)
				if err != nil || len(recs) != 50 {
					b.Fatal(len(recs), err)
				}
			}
		})
	}
}

// BenchmarkSetMetas measures keeping rooms' settings: one room a write
// (SetMeta) against 256 rooms a write (SetMetas, as the settings writer
// batches a burst of new rooms). An op is one room's settings.
func BenchmarkSetMetas(b *testing.B) {
	settings := []byte(`{"host":"2jmj7l5rSw0yVb_vlWAYkK_YBwk","lobby":false}`)
	for _, be := range backends {
		for _, batch := range []int{1, 256} {
			b.Run(fmt.Sprintf("%s/rooms-a-write=%d", be.name, batch), func(b *testing.B) {
				s := be.open(b, Options{})
				b.ReportAllocs()
				us := make([]MetaUpdate, batch)
				for i := 0; i < b.N; i += batch {
					for j := range us {
						us[j] = MetaUpdate{fmt.Sprintf("room-%07d", i+j), Meta{Epoch: "e", Settings: settings}}
					}
					if err := s.SetMetas(us); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
