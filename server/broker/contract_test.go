package broker

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// The contract tests: every implementation of Broker must pass them. Each
// opener gives a fresh broker and a way to reopen it on the same data
// (nil for one that keeps nothing across a reopen).
type opener struct {
	name string
	open func(t *testing.T) (b Messages, reopen func() Messages)
}

var implementations = []opener{
	{"local-disk", func(t *testing.T) (Messages, func() Messages) {
		dir := t.TempDir()
		open := func() Messages {
			b, err := OpenLocal(dir, 100, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = b.Close() })
			return b
		}
		return open(), open
	}},
	{"local-memory", func(t *testing.T) (Messages, func() Messages) {
		b, err := OpenLocal("", 100, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b, nil
	}},
	{"jetstream", func(t *testing.T) (Messages, func() Messages) {
		ns := testNATS(t, t.TempDir())
		open := func() Messages { return openJetStream(t, ns.ClientURL(), "n1", time.Hour) }
		return open(), open
	}},
}

func forEach(t *testing.T, fn func(t *testing.T, b Messages, reopen func() Messages)) {
	for _, impl := range implementations {
		t.Run(impl.name, func(t *testing.T) {
			t.Parallel()
			b, reopen := impl.open(t)
			fn(t, b, reopen)
		})
	}
}

func publishWait(b Messages, room, epoch string, seq uint64) error {
	done := make(chan error, 1)
	m := Message{Seq: seq, TS: time.Now().UnixMilli(), Payload: fmt.Appendf(nil, `{"seq":%d}`, seq)}
	if err := b.Publish(room, epoch, m, nil, func(_ Kept, err error) { done <- err }); err != nil {
		return err
	}
	return <-done
}

func TestContractNewRoom(t *testing.T) {
	forEach(t, func(t *testing.T, b Messages, reopen func() Messages) {
		rs, err := b.Room("a", 10)
		if err != nil || rs.Known || rs.Seq != 0 || rs.Epoch == "" {
			t.Fatalf("new room: %+v %v", rs, err)
		}
		other, _ := b.Room("b", 10)
		if other.Epoch == rs.Epoch {
			t.Fatal("two new rooms share an epoch")
		}
	})
}

// TestContractOrder: concurrent publishers that take seqs under a room
// lock, as the hub does, get every message kept and every done in order.
func TestContractOrder(t *testing.T) {
	forEach(t, func(t *testing.T, b Messages, reopen func() Messages) {
		rs, _ := b.Room("r", 0)
		var mu sync.Mutex // the room lock
		var seq uint64
		var order []uint64
		var wg sync.WaitGroup
		for p := 0; p < 8; p++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 50; i++ {
					mu.Lock()
					seq++
					s := seq
					wg.Add(1)
					err := b.Publish("r", rs.Epoch, Message{Seq: s, Payload: []byte("{}")}, nil, func(_ Kept, err error) {
						defer wg.Done()
						if err != nil {
							t.Errorf("seq %d: %v", s, err)
						}
						mu.Lock()
						order = append(order, s)
						mu.Unlock()
					})
					if err != nil {
						t.Errorf("publish: %v", err)
						wg.Done()
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		for i, s := range order {
			if s != uint64(i+1) {
				t.Fatalf("done %d was seq %d: not in publish order", i, s)
			}
		}
		msgs, more, err := b.History("r", 0, 100)
		if err != nil || len(msgs) != 100 || !more || msgs[99].Seq != 400 {
			t.Fatalf("history: %d messages, more %v, %v", len(msgs), more, err)
		}
	})
}

func TestContractSeqMustFollow(t *testing.T) {
	forEach(t, func(t *testing.T, b Messages, reopen func() Messages) {
		rs, _ := b.Room("r", 0)
		if err := publishWait(b, "r", rs.Epoch, 2); !errors.Is(err, ErrSeq) {
			t.Fatalf("seq 2 first: %v, want ErrSeq", err)
		}
		if err := publishWait(b, "r", rs.Epoch, 1); err != nil {
			t.Fatal(err)
		}
		if err := publishWait(b, "r", rs.Epoch, 1); !errors.Is(err, ErrSeq) {
			t.Fatalf("seq 1 again: %v, want ErrSeq", err)
		}
	})
}

// TestContractKeepsAcrossReopen: seq, epoch and history outlive the
// process on the same data.
func TestContractKeepsAcrossReopen(t *testing.T) {
	forEach(t, func(t *testing.T, b Messages, reopen func() Messages) {
		if reopen == nil {
			t.Skip("keeps nothing across a reopen by design (-data \"\")")
		}
		rs, _ := b.Room("r", 0)
		for s := uint64(1); s <= 5; s++ {
			if err := publishWait(b, "r", rs.Epoch, s); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		b = reopen()
		got, err := b.Room("r", 3)
		if err != nil || !got.Known || got.Seq != 5 || got.Epoch != rs.Epoch || len(got.Recent) != 3 || got.Recent[0].Seq != 3 {
			t.Fatalf("after reopen: %+v %v", got, err)
		}
	})
}

func TestContractSinceAndPages(t *testing.T) {
	forEach(t, func(t *testing.T, b Messages, reopen func() Messages) {
		rs, _ := b.Room("r", 0)
		for s := uint64(1); s <= 30; s++ {
			if err := publishWait(b, "r", rs.Epoch, s); err != nil {
				t.Fatal(err)
			}
		}
		if msgs, ok, _ := b.Since("r", 25, 10); !ok || len(msgs) != 5 || msgs[0].Seq != 26 {
			t.Fatalf("since 25: %d, %v", len(msgs), ok)
		}
		if _, ok, _ := b.Since("r", 5, 10); ok {
			t.Fatal("since 5 with limit 10 claims complete")
		}
		msgs, more, _ := b.History("r", 11, 5)
		if len(msgs) != 5 || msgs[0].Seq != 6 || msgs[4].Seq != 10 || !more {
			t.Fatalf("page before 11: %v more %v", msgs, more)
		}
		msgs, more, _ = b.History("r", 3, 5)
		if len(msgs) != 2 || more {
			t.Fatalf("page before 3: %v more %v", msgs, more)
		}
		if msgs, more, err := b.HistoryIn("r", rs.Epoch, 11, 5); err != nil || len(msgs) != 5 || msgs[0].Seq != 6 || !more {
			t.Fatalf("page before 11 in the room's epoch: %v more %v %v", msgs, more, err)
		}
		if msgs, _, err := b.HistoryIn("r", rs.Epoch+"x", 0, 5); err != nil || len(msgs) != 0 {
			t.Fatalf("a page in another epoch: %v %v, want none", msgs, err)
		}
	})
}

// TestContractExpire: past retention messages go; a room with none left
// and no activity is forgotten (a new epoch next time) unless in use.
func TestContractExpire(t *testing.T) {
	forEach(t, func(t *testing.T, b Messages, reopen func() Messages) {
		if _, ok := b.(*JetStream); ok {
			t.Skip("the stream's own retention, in real time: TestJetStreamRetention")
		}
		for _, room := range []string{"busy", "idle"} {
			rs, _ := b.Room(room, 0)
			if err := publishWait(b, room, rs.Epoch, 1); err != nil {
				t.Fatal(err)
			}
		}
		old, _ := b.Room("idle", 0)
		later := time.Now().Add(48 * time.Hour)
		removed, err := b.Expire(later, 24*time.Hour, func(room string) bool { return room == "busy" })
		if err != nil || removed != 2 {
			t.Fatalf("expire: %d %v, want 2 removed", removed, err)
		}
		if rs, _ := b.Room("busy", 1); !rs.Known || rs.Seq != 1 || len(rs.Recent) != 0 {
			t.Fatalf("a room in use keeps its seq: %+v", rs)
		}
		if rs, _ := b.Room("idle", 1); rs.Known || rs.Epoch == old.Epoch {
			t.Fatalf("an idle room with nothing kept is forgotten: %+v", rs)
		}
	})
}

// TestContractSettings: a room's settings are kept with its messages,
// create a room not stored yet, and survive a reopen with their version,
// each change a version on; the room's messages are untouched by them.
func TestContractSettings(t *testing.T) {
	forEach(t, func(t *testing.T, m Messages, reopen func() Messages) {
		b, ok := m.(Broker)
		if !ok {
			t.Skip("keeps messages only: a cluster's settings are in its key-value bucket")
		}
		settings := func(b Broker) (float64, uint64) {
			t.Helper()
			cur, v, _, err := b.ReadSettings("s", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			if cur == nil {
				return 0, v
			}
			return field(t, cur, "n").(float64), v
		}
		rs, _ := b.Room("s", 0)
		if n, v := settings(b); n != 0 || v != 0 {
			t.Fatalf("new room has settings %v at %d", n, v)
		}
		if v, err := b.UpdateSettings("s", rs.Epoch, 0, []byte(`{"n":1}`)); err != nil || v != 1 {
			t.Fatal(v, err)
		}
		got, err := b.Room("s", 0)
		if n, v := settings(b); err != nil || !got.Known || got.Epoch != rs.Epoch || n != 1 || v != 1 {
			t.Fatalf("after save: %+v %v, settings %v at %d", got, err, n, v)
		}
		for s := uint64(1); s <= 3; s++ {
			if err := publishWait(b, "s", rs.Epoch, s); err != nil {
				t.Fatal(err)
			}
		}
		for i := uint64(2); i <= 20; i++ {
			if _, err := b.UpdateSettings("s", rs.Epoch, i-1, fmt.Appendf(nil, `{"n":%d}`, i)); err != nil {
				t.Fatal(err)
			}
		}
		got, _ = b.Room("s", 5)
		if n, v := settings(b); got.Seq != 3 || len(got.Recent) != 3 || n != 20 || v != 20 {
			t.Fatalf("after changes and messages: seq %d, %d recent, settings %v at %d", got.Seq, len(got.Recent), n, v)
		}
		if reopen == nil {
			return
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		b = reopen().(Broker)
		got, _ = b.Room("s", 0)
		if n, v := settings(b); got.Epoch != rs.Epoch || got.Seq != 3 || n != 20 || v != 20 {
			t.Fatalf("after reopen: %+v, settings %v at %d", got, n, v)
		}
	})
}
