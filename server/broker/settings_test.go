package broker

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The settings' contract tests, over the standalone node's (on disk and in
// memory) and the cluster's bucket (a NATS server embedded in the test).
// Each opener gives two handles on the same settings (two nodes of a
// cluster, or the one standalone node twice) and a way to open them again
// on the same data (nil for memory).
type settingsOpener struct {
	name string
	open func(t *testing.T) (a, b Settings, reopen func() Settings)
}

var settingsImplementations = []settingsOpener{
	{"local-disk", func(t *testing.T) (Settings, Settings, func() Settings) {
		dir := t.TempDir()
		var cur *Local
		open := func() Settings {
			if cur != nil {
				_ = cur.Close()
			}
			l, err := OpenLocal(dir, 100, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = l.Close() })
			cur = l
			return l
		}
		l := open()
		return l, l, open
	}},
	{"local-memory", func(t *testing.T) (Settings, Settings, func() Settings) {
		l, err := OpenLocal("", 100, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Close() })
		return l, l, nil
	}},
	{"jetstream-kv", func(t *testing.T) (Settings, Settings, func() Settings) {
		ns := testNATS(t, t.TempDir())
		open := func() Settings { return openKVSettings(t, ns.ClientURL()) }
		return open(), open(), open
	}},
}

// openKVSettings connects to url and returns settings over the bucket
// "rooms", closed when the test ends.
func openKVSettings(t *testing.T, url string) *KVSettings {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "rooms", History: 1, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	return NewKVSettings(kv, time.Hour, 5*time.Second)
}

func forEachSettings(t *testing.T, fn func(t *testing.T, a, b Settings, reopen func() Settings)) {
	for _, impl := range settingsImplementations {
		t.Run(impl.name, func(t *testing.T) {
			t.Parallel()
			a, b, reopen := impl.open(t)
			fn(t, a, b, reopen)
		})
	}
}

// field reads member k of a settings object.
func field(t *testing.T, s []byte, k string) any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(s, &m); err != nil {
		t.Fatalf("settings %q: %v", s, err)
	}
	return m[k]
}

// TestSettingsCreateOnce: of two callers creating a room's settings, one
// is kept, and both read the same.
func TestSettingsCreateOnce(t *testing.T) {
	forEachSettings(t, func(t *testing.T, a, b Settings, _ func() Settings) {
		if s, v, created, err := a.ReadSettings("r", "e1", nil); err != nil || s != nil || v != 0 || created {
			t.Fatalf("a room without settings: %q %d %v %v", s, v, created, err)
		}
		var wg sync.WaitGroup
		got := make([][]byte, 2)
		vers := make([]uint64, 2)
		made := make([]bool, 2)
		for i, s := range []Settings{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var err error
				got[i], vers[i], made[i], err = s.ReadSettings("r", "e1", func() []byte {
					return []byte(`{"by":` + string(rune('0'+i)) + `}`)
				})
				if err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if made[0] == made[1] {
			t.Fatalf("created by both or neither: %v", made)
		}
		if field(t, got[0], "by") != field(t, got[1], "by") || vers[0] != vers[1] || vers[0] == 0 {
			t.Fatalf("the two read %q at %d and %q at %d", got[0], vers[0], got[1], vers[1])
		}
	})
}

// TestSettingsCompareAndSet: a change is kept only from the version it was
// decided on; the stale one gets ErrSeq; versions grow; a reopen keeps the
// newest.
func TestSettingsCompareAndSet(t *testing.T) {
	forEachSettings(t, func(t *testing.T, a, b Settings, reopen func() Settings) {
		_, v0, _, err := a.ReadSettings("r", "e1", func() []byte { return []byte(`{"lock":false}`) })
		if err != nil {
			t.Fatal(err)
		}
		v1, err := a.UpdateSettings("r", "e1", v0, []byte(`{"lock":true}`))
		if err != nil || v1 <= v0 {
			t.Fatalf("update from %d: %d %v", v0, v1, err)
		}
		if _, err := b.UpdateSettings("r", "e1", v0, []byte(`{"lock":false}`)); !errors.Is(err, ErrSeq) {
			t.Fatalf("an update from the old version %d after %d: %v, want ErrSeq", v0, v1, err)
		}
		s, v, _, err := b.ReadSettings("r", "e1", nil)
		if err != nil || v != v1 || field(t, s, "lock") != true {
			t.Fatalf("read back: %q at %d %v, want lock at %d", s, v, err, v1)
		}
		if _, err := a.UpdateSettings("r", "e1", 0, []byte(`not an object`)); err == nil || errors.Is(err, ErrSeq) {
			t.Fatalf("settings that are no JSON object: %v", err)
		}
		if reopen == nil {
			return
		}
		c := reopen()
		s, v, _, err = c.ReadSettings("r", "e1", nil)
		if err != nil || field(t, s, "lock") != true {
			t.Fatalf("after a reopen: %q %v", s, err)
		}
		if _, err := c.UpdateSettings("r", "e1", v, []byte(`{"lock":false}`)); err != nil {
			t.Fatalf("an update after a reopen, from %d: %v", v, err)
		}
	})
}

// TestSettingsNoLostChange: twelve changes at once from both handles, each
// adding one to a counter by compare-and-set, retrying on ErrSeq: none is
// lost.
func TestSettingsNoLostChange(t *testing.T) {
	forEachSettings(t, func(t *testing.T, a, b Settings, _ func() Settings) {
		if _, _, _, err := a.ReadSettings("r", "e1", func() []byte { return []byte(`{"n":0}`) }); err != nil {
			t.Fatal(err)
		}
		const changes = 12
		var wg sync.WaitGroup
		for i := range changes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := []Settings{a, b}[i%2]
				for {
					cur, v, _, err := s.ReadSettings("r", "e1", nil)
					if err != nil {
						t.Error(err)
						return
					}
					var m struct{ N int }
					_ = json.Unmarshal(cur, &m)
					next, _ := json.Marshal(map[string]int{"n": m.N + 1})
					if _, err = s.UpdateSettings("r", "e1", v, next); err == nil {
						return
					} else if !errors.Is(err, ErrSeq) {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		s, _, _, _ := b.ReadSettings("r", "e1", nil)
		if n := field(t, s, "n"); n != float64(changes) {
			t.Fatalf("counter %v after %d changes: %q", n, changes, s)
		}
	})
}

// TestLocalSettingsLeaveMemory: once written, a standalone node's settings
// are held by the store only (their version with them): memory does not
// grow with the rooms ever created.
func TestLocalSettingsLeaveMemory(t *testing.T) {
	l, err := OpenLocal(t.TempDir(), 100, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var wg sync.WaitGroup
	for i := range 500 {
		wg.Add(1)
		room := "r" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		go func() {
			defer wg.Done()
			if _, err := l.UpdateSettings(room, "e", 0, []byte(`{"host":"h"}`)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	l.versions.mu.Lock()
	held := len(l.versions.pending)
	l.versions.mu.Unlock()
	if held != 0 {
		t.Fatalf("%d rooms' settings still in memory after their writes", held)
	}
	if _, v, _, err := l.ReadSettings("raa", "e", nil); err != nil || v != 1 {
		t.Fatalf("a room's settings after the write: version %d %v, want 1", v, err)
	}
}
