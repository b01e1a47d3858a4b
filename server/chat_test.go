package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Every message type of PROTOCOL.md, end to end over real sockets.

func TestHelloAndNick(t *testing.T) {
	srv := startServer(t, nil)
	a := dial(t, srv, "/ws?nick=%20alice%20")
	if a.nick != "alice" {
		t.Fatalf("nick from the query = %q, want trimmed alice", a.nick)
	}
	g := dial(t, srv, "/ws?nick=%01bad")
	if g.nick != "guest-"+g.id {
		t.Fatalf("invalid query nick gave %q, want the guest nick", g.nick)
	}
	if a.id == g.id || a.id == "" {
		t.Fatalf("ids %q and %q must be distinct and non-empty", a.id, g.id)
	}

	a.join("r")
	g.join("r")
	a.expect("presence")
	g.send(map[string]any{"type": "nick", "nick": "  Zoë 🦊  "})
	if m := g.expect("nick"); m.str("nick") != "Zoë 🦊" {
		t.Fatalf("nick reply %v", m)
	}
	p := a.expect("presence")
	if p.str("event") != "nick" || p.str("id") != g.id || p.str("nick") != "Zoë 🦊" || p.num("count") != 2 {
		t.Fatalf("presence after nick: %v", p)
	}
	// The new nick is what the room shows from now on.
	g.send(map[string]any{"type": "say", "room": "r", "text": "x"})
	if m := a.expect("msg"); m.str("nick") != "Zoë 🦊" || m.str("from") != g.id {
		t.Fatalf("msg after rename: %v", m)
	}
}

func TestJoinSayLeave(t *testing.T) {
	srv := startServer(t, nil)
	a := dial(t, srv, "/ws?nick=alice")
	b := dial(t, srv, "/ws?nick=bob")

	j := a.join("lobby")
	if j.str("room") != "lobby" || j.num("count") != 1 || len(j.list("history")) != 0 || j.str("epoch") == "" {
		t.Fatalf("first joined: %v", j)
	}
	if _, ok := j["recovered"]; ok {
		t.Fatalf("recovered must only come with since: %v", j)
	}
	j = b.join("lobby")
	if j.num("count") != 2 || len(j.list("members")) != 2 {
		t.Fatalf("second joined: %v", j)
	}
	p := a.expect("presence")
	if p.str("event") != "join" || p.str("id") != b.id || p.str("nick") != "bob" || p.num("count") != 2 || p.str("room") != "lobby" {
		t.Fatalf("presence join: %v", p)
	}

	before := time.Now().UnixMilli()
	a.send(map[string]any{"type": "say", "room": "lobby", "text": "hi \"bob\" <b>&\n"})
	for _, ws := range []*wsConn{a, b} {
		m := ws.expect("msg")
		if m.str("room") != "lobby" || m.num("seq") != 1 || m.str("from") != a.id || m.str("nick") != "alice" ||
			m.str("text") != "hi \"bob\" <b>&\n" {
			t.Fatalf("msg: %v", m)
		}
		if ts := int64(m["ts"].(float64)); ts < before-1000 || ts > time.Now().UnixMilli()+1000 {
			t.Fatalf("ts %d is not server time in ms", ts)
		}
	}

	b.send(map[string]any{"type": "leave", "room": "lobby"})
	if m := b.expect("left"); m.str("room") != "lobby" {
		t.Fatalf("left: %v", m)
	}
	p = a.expect("presence")
	if p.str("event") != "leave" || p.str("id") != b.id || p.num("count") != 1 {
		t.Fatalf("presence leave: %v", p)
	}
	a.send(map[string]any{"type": "say", "room": "lobby", "text": "still here"})
	if m := a.expect("msg"); m.num("seq") != 2 {
		t.Fatalf("second msg: %v", m)
	}
	b.expectSilence(200 * time.Millisecond) // b left: nothing more from the room

	// Closing a connection leaves every room.
	c := dial(t, srv)
	c.join("lobby")
	a.expect("presence")
	_ = c.c.Close()
	if p := a.expect("presence"); p.str("event") != "leave" || p.str("id") != c.id || p.num("count") != 1 {
		t.Fatalf("presence after disconnect: %v", p)
	}
}

func TestSeveralRooms(t *testing.T) {
	srv := startServer(t, func(c *Config) { c.MaxRooms = 3 })
	a := dial(t, srv)
	for _, r := range []string{"a", "b.c", "D-_9"} {
		a.join(r)
	}
	a.send(map[string]any{"type": "join", "room": "x"})
	a.expectError(errTooManyRooms, "join")
	// Joining a room again answers its state again and costs no place.
	if j := a.join("a"); j.num("count") != 1 {
		t.Fatalf("rejoin: %v", j)
	}
	a.send(map[string]any{"type": "say", "room": "b.c", "text": "one"})
	if m := a.expect("msg"); m.str("room") != "b.c" {
		t.Fatalf("msg %v", m)
	}
	a.send(map[string]any{"type": "leave", "room": "a"})
	a.expect("left")
	a.join("x")
}

func TestRoomsListAndPush(t *testing.T) {
	srv := startServer(t, nil)
	watcher := dial(t, srv) // in no room: gets the list pushed
	a := dial(t, srv)
	b := dial(t, srv)
	a.join("big")
	b.join("big")
	a.expect("presence")
	b.join("small")

	want := `[{"count":2,"room":"big"},{"count":1,"room":"small"}]`
	roomsWithin(t, a, want)

	// The push reaches the connection in no room within about a second, and
	// shows the final state.
	deadline := time.Now().Add(5 * time.Second)
	for {
		m := watcher.nextWithin(3 * time.Second)
		if m.str("type") != "rooms" {
			t.Fatalf("watcher got %v", m)
		}
		if got, _ := json.Marshal(m["rooms"]); string(got) == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("rooms push never showed the final list")
		}
	}
	// Members of a room get no push.
	a.expectSilence(1500 * time.Millisecond)

	resp, body := httpGet(t, srv, "/api/rooms")
	var api struct{ Rooms any }
	if err := json.Unmarshal([]byte(body), &api); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/api/rooms: %d %s", resp.StatusCode, body)
	}
	if got, _ := json.Marshal(api.Rooms); string(got) != want {
		t.Fatalf("/api/rooms = %s, want %s", got, want)
	}
}

// roomsWithin asks for the rooms list until it is want. The list is built
// once a second (roomlist.go), so a new room or count shows within a
// second; the deadline leaves room for a loaded machine.
func roomsWithin(t *testing.T, ws *wsConn, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ws.send(map[string]any{"type": "rooms"})
		got, _ := json.Marshal(ws.expect("rooms")["rooms"])
		if string(got) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("rooms = %s, want %s", got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAPIRoomsLimit checks that GET /api/rooms lists the largest rooms up
// to ?limit= (default 100, at most 1000), and refuses a limit that is no
// count.
func TestAPIRoomsLimit(t *testing.T) {
	srv := startServer(t, nil)
	const conns, each = 12, 15 // 180 rooms of one, and "big" with all 12
	for i := 0; i < conns; i++ {
		ws := dial(t, srv)
		ws.join("big")
		for j := 0; j < each; j++ {
			ws.join(fmt.Sprintf("r%03d", i*each+j))
		}
	}
	rooms := func(query string) []roomCount {
		t.Helper()
		resp, body := httpGet(t, srv, "/api/rooms"+query)
		var api struct{ Rooms []roomCount }
		if err := json.Unmarshal([]byte(body), &api); err != nil || resp.StatusCode != 200 {
			t.Fatalf("/api/rooms%s: %d %s", query, resp.StatusCode, body)
		}
		return api.Rooms
	}
	eventually(t, 5*time.Second, "every room in the list", func() bool { return len(rooms("?limit=1000")) == 1+conns*each })
	for _, tc := range []struct {
		query string
		n     int
	}{{"", 100}, {"?limit=3", 3}, {"?limit=1", 1}, {"?limit=150", 150}, {"?limit=1000", 181}, {"?limit=5000", 181}} {
		got := rooms(tc.query)
		if len(got) != tc.n {
			t.Errorf("/api/rooms%s lists %d rooms, want %d", tc.query, len(got), tc.n)
			continue
		}
		if got[0] != (roomCount{"big", conns}) || len(got) > 1 && (got[1] != (roomCount{"r000", 1}) || got[len(got)-1].Room != fmt.Sprintf("r%03d", len(got)-2)) {
			t.Errorf("/api/rooms%s: not largest first, then by name: %v ... %v", tc.query, got[:min(3, len(got))], got[len(got)-1])
		}
	}
	for _, q := range []string{"?limit=0", "?limit=-1", "?limit=ten", "?limit=1.5"} {
		if resp, body := httpGet(t, srv, "/api/rooms"+q); resp.StatusCode != 400 {
			t.Errorf("/api/rooms%s: %d %.60s, want 400", q, resp.StatusCode, body)
		}
	}
}

func TestCallAndSignal(t *testing.T) {
	srv := startServer(t, func(c *Config) { c.CallLimit = 2 })
	a := dial(t, srv, "/ws?nick=a")
	b := dial(t, srv, "/ws?nick=b")
	c := dial(t, srv, "/ws?nick=c")
	a.join("r")
	b.join("r")
	c.join("r")
	a.expect("presence")
	a.expect("presence")
	b.expect("presence")

	a.send(map[string]any{"type": "call", "room": "r", "action": "join"})
	if m := a.expect("call"); m.str("room") != "r" || len(m.list("peers")) != 0 {
		t.Fatalf("first call reply: %v", m)
	}
	b.send(map[string]any{"type": "call", "room": "r", "action": "join"})
	m := b.expect("call")
	peers := m.list("peers")
	if len(peers) != 1 || peers[0].(map[string]any)["id"] != a.id || peers[0].(map[string]any)["nick"] != "a" {
		t.Fatalf("second call reply: %v", m)
	}
	if m := a.expect("call_peer"); m.str("event") != "join" || m.str("id") != b.id || m.str("nick") != "b" {
		t.Fatalf("call_peer join: %v", m)
	}
	c.send(map[string]any{"type": "call", "room": "r", "action": "join"})
	c.expectError(errCallFull, "call")

	// The newcomer offers; the offer and the answer are relayed as is.
	offer := map[string]any{"kind": "offer", "sdp": "v=0\r\n"}
	b.send(map[string]any{"type": "signal", "room": "r", "to": a.id, "data": offer})
	s := a.expect("signal")
	if s.str("room") != "r" || s.str("from") != b.id || s.str("nick") != "b" || s["data"].(map[string]any)["sdp"] != "v=0\r\n" {
		t.Fatalf("signal: %v", s)
	}
	a.send(map[string]any{"type": "signal", "room": "r", "to": b.id, "data": []int{1, 2}})
	if s := b.expect("signal"); fmt.Sprint(s["data"]) != "[1 2]" {
		t.Fatalf("signal with an array: %v", s)
	}
	a.send(map[string]any{"type": "signal", "room": "r", "to": "nobody", "data": 1})
	a.expectError(errNoSuchMember, "signal")
	d := dial(t, srv) // a real connection, but not in the room
	a.send(map[string]any{"type": "signal", "room": "r", "to": d.id, "data": 1})
	a.expectError(errNoSuchMember, "signal")
	d.send(map[string]any{"type": "signal", "room": "r", "to": a.id, "data": 1})
	d.expectError(errNotInRoom, "signal")

	// Leaving the call, leaving the room and disconnecting all tell the peers.
	b.send(map[string]any{"type": "call", "room": "r", "action": "leave"})
	b.expect("call")
	if m := a.expect("call_peer"); m.str("event") != "leave" || m.str("id") != b.id {
		t.Fatalf("call_peer leave: %v", m)
	}
	c.send(map[string]any{"type": "call", "room": "r", "action": "join"})
	c.expect("call")
	a.expect("call_peer")
	c.send(map[string]any{"type": "leave", "room": "r"})
	c.expect("left")
	if m, _ := a.expectBoth("call_peer", "presence"); m.str("event") != "leave" || m.str("id") != c.id {
		t.Fatalf("call_peer after room leave: %v", m)
	}
	b.expect("presence")
	b.send(map[string]any{"type": "call", "room": "r", "action": "join"})
	b.expect("call")
	a.expect("call_peer")
	_ = b.c.Close()
	if m, _ := a.expectBoth("call_peer", "presence"); m.str("event") != "leave" || m.str("id") != b.id {
		t.Fatalf("call_peer after disconnect: %v", m)
	}
}

// TestSignalOnlyWithinCall checks PROTOCOL.md "Calls: who may signal whom":
// signal goes only between two peers of the room's call. A member outside
// the call, one just refused with call_full, and a peer that left get
// not_allowed, and the target receives nothing; a target that is not a
// member stays no_such_member.
func TestSignalOnlyWithinCall(t *testing.T) {
	srv := startServer(t, func(c *Config) { c.CallLimit = 2 })
	a := dial(t, srv, "/ws?nick=a")
	b := dial(t, srv, "/ws?nick=b")
	c := dial(t, srv, "/ws?nick=c")
	out := dial(t, srv, "/ws?nick=out") // not in the room at all
	a.join("r")
	b.join("r")
	c.join("r")
	a.waitFor("presence")
	a.waitFor("presence")
	b.waitFor("presence")
	a.send(map[string]any{"type": "call", "room": "r", "action": "join"})
	a.expect("call")
	b.send(map[string]any{"type": "call", "room": "r", "action": "join"})
	b.expect("call")
	a.expect("call_peer")
	offer := map[string]any{"kind": "offer", "sdp": "v=0\r\n"}
	signal := func(from, to *wsConn, data any) {
		from.send(map[string]any{"type": "signal", "room": "r", "to": to.id, "data": data})
	}
	// delivered checks that to's next frame is a signal from from with
	// data n: nothing refused before it reached to.
	delivered := func(from, to *wsConn, n int) {
		t.Helper()
		signal(from, to, n)
		if m := to.expect("signal"); m.str("from") != from.id || m.num("data") != n {
			t.Fatalf("signal %d from %s: got %v", n, from.id, m)
		}
	}

	signal(c, a, offer) // c is a member, not in the call
	c.expectError(errNotAllowed, "signal")
	signal(a, c, offer) // nor may a call peer signal c
	a.expectError(errNotAllowed, "signal")
	c.send(map[string]any{"type": "call", "room": "r", "action": "join"})
	c.expectError(errCallFull, "call")
	signal(c, b, offer) // refused with call_full: still outside
	c.expectError(errNotAllowed, "signal")
	delivered(b, a, 1) // call peers signal each other; nothing of c's came first
	delivered(a, b, 2)
	delivered(b, b, 3) // to oneself, as before: both ends are in the call
	signal(a, out, 1)  // not a member: no_such_member, as before
	a.expectError(errNoSuchMember, "signal")

	b.send(map[string]any{"type": "call", "room": "r", "action": "leave"})
	b.expect("call")
	a.expect("call_peer")
	signal(b, a, offer) // a peer that left can no longer signal
	b.expectError(errNotAllowed, "signal")
	signal(a, b, offer)
	a.expectError(errNotAllowed, "signal")
	c.send(map[string]any{"type": "call", "room": "r", "action": "join"}) // the place b freed
	c.expect("call")
	a.expect("call_peer")
	delivered(c, a, 4)
	b.expectSilence(200 * time.Millisecond)
}

// TestErrors covers every error code a request can get, each answered with
// an error frame that names the request, the connection staying open.
func TestErrors(t *testing.T) {
	srv := startServer(t, nil)
	ws := dial(t, srv)
	ws.join("r")
	other := dial(t, srv)
	long := strings.Repeat("x", maxTextBytes+1)
	cases := []struct {
		raw  string
		code string
		ref  string
	}{
		{`not json`, errBadJSON, ""},
		{`{"type":"say",`, errBadJSON, ""},
		{`[1,2]`, errBadJSON, ""},
		{`{"room":"r"}`, errBadJSON, ""},
		{`{"type":7}`, errBadJSON, ""},
		{`{"type":"dance"}`, errUnknownType, "dance"},
		{`{"type":"join"}`, errBadField, "join"},
		{`{"type":"join","room":"a b"}`, errBadField, "join"},
		{`{"type":"join","room":"` + strings.Repeat("a", 65) + `"}`, errBadField, "join"},
		{`{"type":"join","room":"r","since":-1}`, errBadField, "join"},
		{`{"type":"join","room":"r","since":"5"}`, errBadField, "join"},
		{`{"type":"join","room":5}`, errBadField, "join"},
		{`{"type":"nick","nick":""}`, errBadField, "nick"},
		{`{"type":"nick","nick":"   "}`, errBadField, "nick"},
		{`{"type":"nick","nick":"a\u0007b"}`, errBadField, "nick"},
		{`{"type":"nick","nick":"` + strings.Repeat("é", 33) + `"}`, errBadField, "nick"},
		{`{"type":"say","room":"r","text":""}`, errBadField, "say"},
		{`{"type":"say","room":"r","text":"` + long + `"}`, errTooLarge, "say"},
		{`{"type":"say","room":"nope","text":"hi"}`, errNotInRoom, "say"},
		{`{"type":"leave","room":"nope"}`, errNotInRoom, "leave"},
		{`{"type":"call","room":"r","action":"dance"}`, errBadField, "call"},
		{`{"type":"call","room":"nope","action":"join"}`, errNotInRoom, "call"},
		{`{"type":"signal","room":"r","data":1}`, errBadField, "signal"},
		{`{"type":"signal","room":"r","to":"` + other.id + `"}`, errBadField, "signal"},
		{`{"type":"signal","room":"r","to":"` + other.id + `","data":1}`, errNoSuchMember, "signal"},
	}
	for _, tc := range cases {
		if err := ws.writeFrame(opText, true, []byte(tc.raw)); err != nil {
			t.Fatal(err)
		}
		m := ws.expect("error")
		if m.str("code") != tc.code || m.str("ref") != tc.ref || m.str("message") == "" {
			t.Errorf("%.60s: got %v, want code %s ref %q", tc.raw, m, tc.code, tc.ref)
		}
	}
	// Still open and working.
	ws.send(map[string]any{"type": "say", "room": "r", "text": "ok"})
	ws.expect("msg")
	_, body := adminGet(t, srv, "/metrics")
	if !strings.Contains(body, `noom_errors_total{code="bad_json"} 5`) {
		t.Errorf("metrics do not count errors by code:\n%s", grepLines(body, "noom_errors_total"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestMembersKeepJoinOrder checks the promise of joined.members: join
// order, also after someone in the middle leaves or disconnects.
func TestMembersKeepJoinOrder(t *testing.T) {
	srv := startServer(t, nil)
	var ws []*wsConn
	for _, nick := range []string{"a", "b", "c", "d", "e", "f"} {
		ws = append(ws, dial(t, srv, "/ws?nick="+nick))
	}
	nicks := func(j msg) string {
		var out []string
		for _, m := range j.list("members") {
			out = append(out, m.(map[string]any)["nick"].(string))
		}
		return strings.Join(out, ",")
	}
	for _, w := range ws[:4] {
		w.join("q")
	}
	ws[1].send(map[string]any{"type": "leave", "room": "q"})
	ws[1].waitFor("left")
	if got := nicks(ws[4].join("q")); got != "a,c,d,e" {
		t.Fatalf("joined.members after b left = %s, want a,c,d,e", got)
	}
	_ = ws[0].c.Close() // a disconnect takes the same path
	for {
		if p := ws[4].waitFor("presence"); p.str("event") == "leave" && p.str("id") == ws[0].id {
			break
		}
	}
	if got := nicks(ws[5].join("q")); got != "c,d,e,f" {
		t.Fatalf("joined.members after a disconnected = %s, want c,d,e,f", got)
	}
}

// aInCallBInRoom puts a and b in room r of srv, and a alone in its call.
func aInCallBInRoom(t *testing.T, srv *server) (a, b *wsConn) {
	t.Helper()
	a = dial(t, srv, "/ws?nick=a")
	b = dial(t, srv, "/ws?nick=b")
	a.join("r")
	b.join("r")
	a.expect("presence")
	a.send(map[string]any{"type": "call", "room": "r", "action": "join"})
	a.expect("call")
	return a, b
}

// TestCallLeaveRefusedIsSwept: a call leave that the room's queue refused
// (full) does not keep the place: the sweep finds the peer that is no
// member and takes it out, and the call has room again.
func TestCallLeaveRefusedIsSwept(t *testing.T) {
	srv := startServer(t, func(c *Config) { c.CallLimit = 1 })
	h := srv.hub
	a, b := aInCallBInRoom(t, srv)
	r := roomNamed(h, "r")
	release := holdQueue(t, h, r, true) // a's leave will find the queue full
	a.send(map[string]any{"type": "leave", "room": "r"})
	a.expect("left")
	b.expect("presence")
	release()
	drainQueue(t, h, r)

	b.send(map[string]any{"type": "call", "room": "r", "action": "join"})
	b.waitError(errCallFull, "call") // a's leave was lost: its place is still taken
	h.sweepCalls(h.leftCall, h.withoutLeft)
	b.send(map[string]any{"type": "call", "room": "r", "action": "join"})
	if m := b.waitReply("call", "call"); len(m.list("peers")) != 0 {
		t.Fatalf("b's call after the sweep: %v, want an empty call of its own", m)
	}
}

// TestCallJoinOnItsWayKeepsRoom: the last member asks to join the call
// and disconnects before the join is decided (a leave request would wait
// behind the join: held.go). The room stays in memory while the join is
// on its way (a list applied later must not bring back a room without its
// state), and leaves it once the join is dropped; its messages are still
// there for the next join.
func TestCallJoinOnItsWayKeepsRoom(t *testing.T) {
	srv := startServer(t, nil)
	h := srv.hub
	a := dial(t, srv, "/ws?nick=a")
	a.join("r")
	a.send(map[string]any{"type": "say", "room": "r", "text": "one"})
	a.expect("msg")
	r := roomNamed(h, "r")
	release := holdQueue(t, h, r, false)
	a.send(map[string]any{"type": "call", "room": "r", "action": "join"})
	eventually(t, 5*time.Second, "the call join queued", func() bool { return r.callJoins.Load() == 1 })
	_ = a.c.Close()
	eventually(t, 5*time.Second, "a gone", func() bool { return srv.stats.connections.Load() == 0 })
	if roomNamed(h, "r") != r {
		t.Fatal("the room left memory with a call join on its way")
	}
	release()
	drainQueue(t, h, r)
	if roomNamed(h, "r") != nil {
		t.Fatal("the room is still in memory after its call join was dropped")
	}
	b := dial(t, srv, "/ws?nick=b")
	if j := b.join("r"); len(j.list("history")) != 1 || j.list("history")[0].(map[string]any)["text"] != "one" {
		t.Fatalf("joined after the room came back: %v", j)
	}
}

// TestCallRequestsInOrder: a page that asks to join the call and, without
// waiting for the call frame, announces its media and offers to a peer
// finds itself in the call: its requests take effect in the order it sent
// them, and the offer and its candidates arrive in order.
func TestCallRequestsInOrder(t *testing.T) {
	srv := startServer(t, func(c *Config) { c.Rate, c.Burst = 1000, 1000 })
	a, b := aInCallBInRoom(t, srv)
	for round := range 20 {
		b.send(map[string]any{"type": "call", "room": "r", "action": "join"})
		b.send(map[string]any{"type": "media", "room": "r", "audio": true, "video": false, "screen": false})
		for i := range 3 {
			b.send(map[string]any{"type": "signal", "room": "r", "to": a.id, "data": map[string]any{"n": i}})
		}
		if m := b.waitReply("call", "media"); len(m.list("peers")) != 1 {
			t.Fatalf("round %d: b's call: %v", round, m)
		}
		a.expect("call_peer") // b joined
		if m := a.expect("call_peer"); m.str("event") != "media" {
			t.Fatalf("round %d: after b's media: %v", round, m)
		}
		for i := range 3 {
			if s := a.expect("signal"); s["data"].(map[string]any)["n"] != float64(i) {
				t.Fatalf("round %d: signal %d arrived as %v", round, i, s)
			}
		}
		b.send(map[string]any{"type": "call", "room": "r", "action": "leave"})
		b.expect("call")
		a.expect("call_peer") // b left
	}
}
