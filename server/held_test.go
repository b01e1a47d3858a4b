package main

import (
	"fmt"
	"testing"
	"time"
)

// Requests sent right behind a join that waits for its room's load
// (held.go, load.go). Each test holds the room's queue first, so that the
// load is certain to be on its way when the requests arrive.

// TestRequestsWaitBehindJoin: join, say and history sent at once, without
// waiting for joined, take effect in that order, standalone in a new room
// (whose settings are being created) and in a cluster in a room another
// node has spoken in (loaded from the stream). Before held.go the say and
// the history got not_in_room. (A say's msg comes once it is stored, so
// the history page may be answered before it, without it.)
func TestRequestsWaitBehindJoin(t *testing.T) {
	cases := []struct {
		name  string
		nodes func(t *testing.T) (speaker, joiner *server)
	}{
		{"standalone, new room", func(t *testing.T) (*server, *server) {
			return nil, startServer(t, nil)
		}},
		{"cluster, room of another node", func(t *testing.T) (*server, *server) {
			ns := testNATS(t, t.TempDir(), 0)
			nodes := startNodes(t, ns.ClientURL(), 2, nil)
			return nodes[0], nodes[1]
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			speaker, joiner := tc.nodes(t)
			const name = "pipelined"
			if speaker != nil {
				a := dial(t, speaker)
				a.join(name)
				a.send(map[string]any{"type": "say", "room": name, "text": "before"})
				a.expect("msg")
			}
			release := holdQueue(t, joiner.hub, &room{name: name}, false)
			ws := dial(t, joiner)
			ws.send(map[string]any{"type": "join", "room": name})
			ws.send(map[string]any{"type": "say", "room": name, "text": "right after"})
			ws.send(map[string]any{"type": "history", "room": name})
			release()
			j := ws.expect("joined")
			if speaker == nil && j.str("role") != roleHost {
				t.Errorf("the creator of a new room joined as %q", j.str("role"))
			}
			before := 0
			if speaker != nil {
				before = 1
			}
			m, h := ws.expectBoth("msg", "history")
			if m.str("text") != "right after" {
				t.Fatalf("msg %v", m)
			}
			if n := len(h.list("messages")); n != before && n != before+1 {
				t.Fatalf("history %v, want %d or %d messages", h, before, before+1)
			}
			ws.send(map[string]any{"type": "leave", "room": name})
			ws.expect("left")
		})
	}
}

// TestRequestsBehindJoinBounded: a connection may have maxHeld requests
// waiting behind its join; the ones past it are refused at once with
// unavailable, and the rest run.
func TestRequestsBehindJoinBounded(t *testing.T) {
	srv := startServer(t, func(c *Config) { c.Rate, c.Burst = 10000, 10000 })
	release := holdQueue(t, srv.hub, &room{name: "many"}, false)
	ws := dial(t, srv)
	ws.send(map[string]any{"type": "join", "room": "many"})
	const extra = 5
	for i := range maxHeld + extra {
		ws.send(map[string]any{"type": "say", "room": "many", "text": fmt.Sprint(i)})
	}
	for range extra {
		ws.expectError(errUnavailable, "say")
	}
	release()
	ws.expect("joined")
	for i := range maxHeld {
		if m := ws.expect("msg"); m.str("text") != fmt.Sprint(i) {
			t.Fatalf("msg %d: %v", i, m)
		}
	}
}

// TestRequestsBehindJoinOfClosedConn: what a connection had waiting
// behind its join is forgotten when it closes, and the room it was
// creating leaves memory.
func TestRequestsBehindJoinOfClosedConn(t *testing.T) {
	srv := startServer(t, nil)
	h := srv.hub
	release := holdQueue(t, h, &room{name: "gone"}, false)
	ws := dial(t, srv)
	ws.send(map[string]any{"type": "join", "room": "gone"})
	ws.send(map[string]any{"type": "say", "room": "gone", "text": "lost with its sender"})
	eventually(t, 5*time.Second, "the say queued", func() bool {
		h.heldMu.Lock()
		defer h.heldMu.Unlock()
		return len(h.held) == 1
	})
	_ = ws.c.Close()
	eventually(t, 5*time.Second, "the connection gone", func() bool { return srv.stats.connections.Load() == 0 })
	release()
	eventually(t, 5*time.Second, "the room its closed creator was joining gone from memory", func() bool {
		return roomNamed(h, "gone") == nil
	})
	h.heldMu.Lock()
	left := len(h.held)
	h.heldMu.Unlock()
	if left != 0 {
		t.Errorf("%d connections' requests still held", left)
	}
}

// TestNewRoomOneHost: two joins of a room nobody has created: the first
// is its host, with the host key, the second a member.
func TestNewRoomOneHost(t *testing.T) {
	srv := startServer(t, nil)
	release := holdQueue(t, srv.hub, &room{name: "fresh"}, false)
	a, b := dial(t, srv), dial(t, srv)
	a.send(map[string]any{"type": "join", "room": "fresh"})
	eventually(t, 5*time.Second, "a's join waiting", func() bool { return joinWaits(srv, a) })
	b.send(map[string]any{"type": "join", "room": "fresh"})
	eventually(t, 5*time.Second, "b's join waiting", func() bool { return joinWaits(srv, b) })
	release()
	ja, jb := a.expect("joined"), b.expect("joined")
	if ja.str("role") != roleHost || ja.str("host_key") == "" {
		t.Errorf("first joiner: role %q, host key %q", ja.str("role"), ja.str("host_key"))
	}
	if jb.str("role") != roleMember || jb.str("host_key") != "" {
		t.Errorf("second joiner: role %q, host key %q", jb.str("role"), jb.str("host_key"))
	}
}

// joinWaits reports whether a join of ws waits for its room's load.
func joinWaits(srv *server, ws *wsConn) bool {
	c := srv.hub.lookup(ws.id)
	return c != nil && c.held.Load() > 0
}

// TestPasscodeJoinThenSay: a say sent right behind a join with a passcode
// waits for the passcode's check (on a goroutine of its own, a few
// milliseconds) and finds its sender in the room; a wrong passcode's say
// gets not_in_room, after bad_passcode.
func TestPasscodeJoinThenSay(t *testing.T) {
	srv := startServer(t, nil)
	host := dial(t, srv)
	host.join("guarded")
	host.send(map[string]any{"type": "settings", "room": "guarded", "passcode": "1234"})
	host.waitFor("room")
	for _, tc := range []struct{ pass, want string }{{"1234", "msg"}, {"0000", "error"}} {
		ws := dial(t, srv)
		ws.send(map[string]any{"type": "join", "room": "guarded", "passcode": tc.pass})
		ws.send(map[string]any{"type": "say", "room": "guarded", "text": "hello"})
		if tc.want == "error" {
			ws.expectError(errBadPasscode, "join")
			ws.expectError(errNotInRoom, "say")
			continue
		}
		ws.expect("joined")
		if m := ws.expect("msg"); m.str("text") != "hello" {
			t.Fatalf("msg %v", m)
		}
	}
}
