package main

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"
)

// recorder reads every frame of a connection in the background.
type recorder struct {
	ws   *wsConn
	mu   sync.Mutex
	msgs []msg
	err  error
	done chan struct{}
}

func record(ws *wsConn) *recorder {
	r := &recorder{ws: ws, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for {
			f, err := ws.readFrame(30 * time.Second)
			if err != nil {
				r.mu.Lock()
				r.err = err
				r.mu.Unlock()
				return
			}
			if f.op != opText {
				continue
			}
			var m msg
			if err := json.Unmarshal(f.payload, &m); err != nil {
				r.mu.Lock()
				r.err = err
				r.mu.Unlock()
				return
			}
			r.mu.Lock()
			r.msgs = append(r.msgs, m)
			r.mu.Unlock()
		}
	}()
	return r
}

// snapshot returns the messages so far of the given types.
func (r *recorder) snapshot(types ...string) []msg {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []msg
	for _, m := range r.msgs {
		for _, t := range types {
			if m.str("type") == t {
				out = append(out, m)
			}
		}
	}
	return out
}

// wait reads r until cond holds for its messages of types. The bound is
// for a test that makes no progress at all: 12 MB through a slow-consumer
// test on two loaded cores took longer than 10 s.
func (r *recorder) wait(t *testing.T, what string, cond func([]msg) bool, types ...string) []msg {
	t.Helper()
	var got []msg
	eventually(t, 30*time.Second, what, func() bool {
		got = r.snapshot(types...)
		return cond(got)
	})
	return got
}

// TestPresenceFoldsIntoCount fills a room to 600 with the default presence
// limit of 500: members see presence up to 500, then count frames at most
// once a second, and presence again once the room is back at the limit.
// "Once a second" is checked by number, not by the gaps between arrivals,
// which a loaded machine squeezes: no more count frames than the server's
// one-second ticker can have fired while the test watched, each with a
// count different from the one before.
func TestPresenceFoldsIntoCount(t *testing.T) {
	srv := startServer(t, nil)
	limit := srv.cfg.PresenceLimit
	const total = 600

	observer := dial(t, srv)
	observer.join("big")
	rec := record(observer)
	conns := []*wsConn{observer}
	var folding time.Time // before the first join above the limit
	for i := 1; i < total; i++ {
		if i == limit {
			folding = time.Now()
		}
		ws := dial(t, srv)
		ws.send(map[string]any{"type": "join", "room": "big"})
		j := ws.expect("joined")
		if j.num("count") != i+1 {
			t.Fatalf("join %d: count %d", i+1, j.num("count"))
		}
		if n := len(j.list("members")); n != min(i+1, maxListMembers) {
			t.Fatalf("join %d: %d members listed, want %d", i+1, n, min(i+1, maxListMembers))
		}
		go func() { // keep reading so no member turns into a slow consumer
			for {
				if _, err := ws.readFrame(time.Minute); err != nil {
					return
				}
			}
		}()
		conns = append(conns, ws)
	}

	counts := rec.wait(t, "count 600", func(ms []msg) bool {
		return len(ms) > 0 && ms[len(ms)-1].num("count") == total
	}, "count")
	watched := time.Since(folding)
	pres := rec.snapshot("presence")
	if len(pres) != limit-1 {
		t.Fatalf("observer got %d presence frames, want %d (joins 2..%d)", len(pres), limit-1, limit)
	}
	for i, p := range pres {
		if p.str("event") != "join" || p.num("count") != i+2 {
			t.Fatalf("presence %d = %v", i, p)
		}
	}
	for i, c := range counts {
		if c.str("room") != "big" || c.num("count") <= limit || i > 0 && c.num("count") == counts[i-1].num("count") {
			t.Fatalf("count frame %d of %d: %v", i+1, len(counts), c)
		}
	}
	// A ticker fires once a second and keeps one tick for a late reader:
	// in d, its reader runs at most d/1s + 2 times.
	if most := int(watched/time.Second) + 2; len(counts) > most {
		t.Fatalf("%d count frames in %v, want at most one a second (%d)", len(counts), watched, most)
	}
	// A tick or two later, with nothing changed, nothing more.
	time.Sleep(1500 * time.Millisecond)
	if more := rec.snapshot("count"); len(more) != len(counts) {
		t.Fatalf("count frames with no change: %v", more[len(counts):])
	}

	// Leaving down to the limit: folded into count until it is reached,
	// then presence again, carrying the count.
	for _, ws := range conns[limit:] {
		ws.send(map[string]any{"type": "leave", "room": "big"})
	}
	p := rec.wait(t, "presence at the limit", func(ms []msg) bool { return len(ms) >= limit }, "presence")
	if last := p[limit-1]; last.str("event") != "leave" || last.num("count") != limit {
		t.Fatalf("presence when back at the limit: %v", last)
	}
	if extra := rec.snapshot("presence")[limit:]; len(extra) != 0 {
		t.Fatalf("presence above the limit: %v", extra)
	}
}

// TestHistoryAndSince checks joined.history, since and recovered, and the
// epoch that tells a reconnecting client the room's sequence restarted.
func TestHistoryAndSince(t *testing.T) {
	srv := startServer(t, func(c *Config) { c.HistorySize = 5 })
	a := dial(t, srv)
	j := a.join("r")
	epoch := j.str("epoch")
	for i := 1; i <= 8; i++ {
		a.send(map[string]any{"type": "say", "room": "r", "text": fmt.Sprint("m", i)})
		a.expect("msg")
	}
	seqs := func(j msg) []int {
		var out []int
		for _, h := range j.list("history") {
			hm := msg(h.(map[string]any))
			if hm.str("type") != "msg" || hm.str("text") != fmt.Sprint("m", hm.num("seq")) {
				t.Fatalf("history item %v", hm)
			}
			out = append(out, hm.num("seq"))
		}
		return out
	}
	b := dial(t, srv)
	j = b.join("r")
	a.expect("presence")
	if got := fmt.Sprint(seqs(j)); got != "[4 5 6 7 8]" {
		t.Fatalf("history on join = %s, want the last 5, oldest first", got)
	}
	cases := []struct {
		since     int
		epoch     string
		want      string
		recovered bool
	}{
		{6, "", "[7 8]", true},
		{8, "", "[]", true},
		{3, "", "[4 5 6 7 8]", true},
		{1, "", "[2 3 4 5 6 7 8]", true}, // past the ring: from the store
		{0, "", "[1 2 3 4 5 6 7 8]", true},
		{100, "", "[4 5 6 7 8]", false}, // a seq from the future: the room restarted
		{6, epoch, "[7 8]", true},
		{6, "other", "[4 5 6 7 8]", false},
	}
	for _, tc := range cases {
		c := dial(t, srv) // a reconnecting client
		c.send(map[string]any{"type": "join", "room": "r", "since": tc.since, "epoch": tc.epoch})
		j := c.expect("joined")
		if got := fmt.Sprint(seqs(j)); got != tc.want {
			t.Errorf("since %d epoch %q: history %s, want %s", tc.since, tc.epoch, got, tc.want)
		}
		if r, ok := j["recovered"].(bool); !ok || r != tc.recovered {
			t.Errorf("since %d epoch %q: recovered %v, want %v", tc.since, tc.epoch, j["recovered"], tc.recovered)
		}
		if j.str("epoch") != epoch {
			t.Errorf("epoch changed to %q", j.str("epoch"))
		}
		_ = c.c.Close()
	}

	// A room that empties keeps its seq, epoch and history (PROTOCOL.md,
	// "Rooms keep their history"), and leaves memory.
	_ = a.c.Close()
	_ = b.c.Close()
	eventually(t, 5*time.Second, "room out of memory", func() bool { return !srv.hub.roomInMemory("r") })
	d := dial(t, srv)
	d.send(map[string]any{"type": "join", "room": "r", "since": 6, "epoch": epoch})
	j = d.expect("joined")
	if j.str("epoch") != epoch || fmt.Sprint(seqs(j)) != "[7 8]" || j["recovered"] != true {
		t.Fatalf("rejoin of an emptied room: %v", j)
	}
	d.send(map[string]any{"type": "say", "room": "r", "text": "m9"})
	if m := d.expect("msg"); m.num("seq") != 9 {
		t.Fatalf("seq after the room emptied: %v", m)
	}
}

// TestOrdering has several senders publish at once to a room with several
// receivers: every member sees the same messages in the same order, with seq
// increasing by one and no gaps.
func TestOrdering(t *testing.T) {
	srv := startServer(t, func(c *Config) { c.Rate, c.Burst = 100000, 100000; c.Workers = 4 })
	const senders, receivers, each = 4, 6, 200
	var all []*wsConn
	for i := 0; i < senders+receivers; i++ {
		ws := dial(t, srv)
		ws.join("order")
		all = append(all, ws)
	}
	checkOneOrder(t, "order", all[:senders], all, each)
}
