package main

import (
	"fmt"
	"testing"

	"noom/server/broker"
)

// TestClusterRecoversBeyondRing: in a cluster, a join whose since is
// beyond the ring (-history 10, 45 messages, since 5) gets every message
// after since from the stream, recovered, as standalone from the store.
// Before recovery.go it got the newest 10 and recovered false.
func TestClusterRecoversBeyondRing(t *testing.T) {
	ns := testNATS(t, t.TempDir(), 0)
	nodes := startNodes(t, ns.ClientURL(), 2, func(c *Config) { c.Rate, c.Burst, c.HistorySize = 10000, 10000, 10 })
	a := dial(t, nodes[0])
	epoch := a.join("r").str("epoch")
	sayN(t, a, "r", 1, 45)
	for _, node := range nodes { // a member here, and a node that loads the room for this join
		b := dial(t, node)
		b.send(map[string]any{"type": "join", "room": "r", "since": 5, "epoch": epoch})
		j := b.expect("joined")
		if got := seqsOf(t, j.list("history")); fmt.Sprint(got) != fmt.Sprint(seqRange(6, 45)) || j["recovered"] != true {
			t.Fatalf("joined.history %v recovered %v, want 6..45 recovered", got, j["recovered"])
		}
	}
}

// TestRecoveredMeetsRing: what a join read after since is used only where
// it meets the ring, byte for byte; the ring supplies what followed.
func TestRecoveredMeetsRing(t *testing.T) {
	r := &room{name: "r"}
	payload := func(s uint64) []byte { return fmt.Appendf(nil, `{"seq":%d}`, s) }
	for s := uint64(11); s <= 20; s++ { // the ring: 11..20, delivered 20
		r.addHistory(payload(s), 10)
	}
	read := func(from, to uint64, of func(uint64) []byte) *recovery {
		rec := &recovery{complete: true}
		for s := from; s <= to; s++ {
			rec.msgs = append(rec.msgs, broker.Message{Seq: s, Payload: of(s)})
		}
		return rec
	}
	other := func(s uint64) []byte { return fmt.Appendf(nil, `{"seq":%d,"other":1}`, s) }
	cases := []struct {
		name string
		rec  *recovery
		want int // messages returned, 0 for the ring and false
	}{
		{"read up to the newest", read(3, 20, payload), 18},
		{"read up to 15, the ring has the rest", read(3, 15, payload), 18},
		{"read ahead of what members received", read(3, 24, payload), 18},
		{"read before the ring", read(3, 9, payload), 0},
		{"another lifetime", read(3, 20, other), 0},
		{"not complete", &recovery{}, 0},
		{"not from since", read(4, 20, payload), 0},
	}
	for _, tc := range cases {
		got, ok := r.recovered(tc.rec, 2, 20, nil)
		if tc.want == 0 {
			if ok || got != nil {
				t.Errorf("%s: %d messages, %v; want the ring", tc.name, len(got), ok)
			}
			continue
		}
		if !ok || len(got) != tc.want || string(got[0]) != string(payload(3)) || string(got[len(got)-1]) != string(payload(20)) {
			t.Errorf("%s: %d messages, %v; want 3..20", tc.name, len(got), ok)
		}
	}
}
