package main

import (
	"strings"
	"testing"
	"time"
)

// Protocol tests of "Rooms that belong to someone" (PROTOCOL.md): roles,
// settings, the lobby and host controls, each with the attack it defends
// against.

// roles maps the ids of a room frame's roles to their role.
func roles(m msg) map[string]string {
	out := map[string]string{}
	for _, x := range m.list("roles") {
		e := x.(map[string]any)
		out[e["id"].(string)] = e["role"].(string)
	}
	return out
}

// settingsOf returns a joined or room frame's settings.
func settingsOf(m msg) map[string]any {
	s, _ := m["settings"].(map[string]any)
	return s
}

// memberRoles maps joined.members' ids to their role.
func memberRoles(m msg) map[string]string {
	out := map[string]string{}
	for _, x := range m.list("members") {
		e := x.(map[string]any)
		r, _ := e["role"].(string)
		out[e["id"].(string)] = r
	}
	return out
}

// hostRoom has a create room r and b join it; it returns a's host key.
func hostRoom(t *testing.T, srv *server, r string) (a, b *wsConn, key string) {
	t.Helper()
	a = dial(t, srv)
	j := a.join(r)
	key = j.str("host_key")
	if j.str("role") != roleHost || len(key) < 22 {
		t.Fatalf("creator's joined %v: want role host and a host_key", j)
	}
	b = dial(t, srv)
	jb := b.join(r)
	if jb.str("role") != roleMember || jb["host_key"] != nil {
		t.Fatalf("second joiner's joined %v: want role member, no host_key", jb)
	}
	a.expect("presence")
	return a, b, key
}

func TestCreatorIsHost(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	a, b, _ := hostRoom(t, srv, "meet")
	jb := b.join("meet") // again: the state, with roles
	if got := memberRoles(jb); got[a.id] != roleHost || got[b.id] != roleMember {
		t.Fatalf("members' roles %v", got)
	}
	s := settingsOf(jb)
	if s["passcode"] != false || s["lobby"] != false || s["locked"] != false || s["listed"] != true {
		t.Fatalf("default settings %v", s)
	}
}

// TestMemberCannotHost: every host request from a member is refused, and
// changes nothing.
func TestMemberCannotHost(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	a, b, _ := hostRoom(t, srv, "m")
	for _, req := range []map[string]any{
		{"type": "settings", "room": "m", "locked": true},
		{"type": "role", "room": "m", "id": b.id, "role": "host"},
		{"type": "role", "room": "m", "id": a.id, "role": "member"},
		{"type": "admit", "room": "m", "id": a.id},
		{"type": "deny", "room": "m", "id": a.id},
		{"type": "remove", "room": "m", "id": a.id},
		{"type": "mute", "room": "m", "id": a.id},
		{"type": "end", "room": "m"},
	} {
		b.send(req)
		b.expectError(errNotAllowed, req["type"].(string))
	}
	c := dial(t, srv)
	if j := c.join("m"); settingsOf(j)["locked"] != false || memberRoles(j)[a.id] != roleHost {
		t.Fatalf("after refused requests: %v", j)
	}
}

// TestHostKeyRejoins: the host key makes a later join a host's, after a
// reconnect and after a restart on the same data; a host present steps
// down to cohost.
func TestHostKeyRejoins(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := startServer(t, func(c *Config) { c.Data = dir })
	a, b, key := hostRoom(t, srv, "k")
	a.send(map[string]any{"type": "leave", "room": "k"})
	a.expect("left")
	if m := b.waitFor("room"); len(roles(m)) != 0 {
		t.Fatalf("after the host left: roles %v", roles(m))
	}
	c := dial(t, srv)
	c.send(map[string]any{"type": "join", "room": "k", "host_key": "not-the-key-but-long-enough"})
	if j := c.expect("joined"); j.str("role") != roleMember {
		t.Fatalf("wrong host key: %v", j)
	}
	a2 := dial(t, srv)
	a2.send(map[string]any{"type": "join", "room": "k", "host_key": key})
	if j := a2.expect("joined"); j.str("role") != roleHost || j["host_key"] != nil {
		t.Fatalf("host key join: %v", j)
	}
	if m := b.waitFor("room"); roles(m)[a2.id] != roleHost {
		t.Fatalf("room after the host came back: %v", m)
	}
	a3 := dial(t, srv)
	a3.send(map[string]any{"type": "join", "room": "k", "host_key": key})
	a3.expect("joined")
	if m := b.waitFor("room"); roles(m)[a3.id] != roleHost || roles(m)[a2.id] != roleCohost {
		t.Fatalf("a second host key join: %v, want the new one host and the other cohost", m)
	}

	// A restart on the same data keeps the key.
	srv.shutdown(t.Context())
	srv2 := startServer(t, func(c *Config) { c.Data = dir })
	d := dial(t, srv2)
	if j := d.join("k"); j.str("role") != roleMember || j["host_key"] != nil {
		t.Fatalf("first join after the restart: %v, want member (the room exists)", j)
	}
	e := dial(t, srv2)
	e.send(map[string]any{"type": "join", "room": "k", "host_key": key})
	if j := e.expect("joined"); j.str("role") != roleHost {
		t.Fatalf("host key after restart: %v", j)
	}
}

func TestPasscode(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	a, b, _ := hostRoom(t, srv, "p")
	const pass = "correct horse 42"
	a.send(map[string]any{"type": "settings", "room": "p", "passcode": pass})
	if m := a.waitFor("room"); settingsOf(m)["passcode"] != true {
		t.Fatalf("room after passcode: %v", m)
	}
	if m := b.waitFor("room"); settingsOf(m)["passcode"] != true {
		t.Fatalf("member's room frame: %v", m)
	}
	// Never listed, never in /api.
	eventually(t, 5*time.Second, "the room to leave the list", func() bool {
		_, body := httpGet(t, srv, "/api/rooms")
		return !strings.Contains(body, `"p"`)
	})
	c := dial(t, srv)
	c.send(map[string]any{"type": "join", "room": "p"})
	c.expectError(errPasscodeRequired, "join")
	c.send(map[string]any{"type": "join", "room": "p", "passcode": "wrong"})
	if m := c.expectError(errBadPasscode, "join"); m.str("room") != "p" {
		t.Fatalf("a refused join's error %v: want the room", m)
	}
	c.send(map[string]any{"type": "join", "room": "p", "passcode": pass})
	if j := c.expect("joined"); j.str("role") != roleMember || settingsOf(j)["passcode"] != true {
		t.Fatalf("joined with the passcode: %v", j)
	}
	// The host's key or a present member passes without it; removing it
	// opens the room.
	a.send(map[string]any{"type": "settings", "room": "p", "passcode": ""})
	if m := a.waitFor("room"); settingsOf(m)["passcode"] != false {
		t.Fatalf("passcode removed: %v", m)
	}
	d := dial(t, srv)
	d.join("p")
	for _, ws := range []*wsConn{b, c, d} {
		if strings.Contains(string(ws.seen), pass) {
			t.Fatalf("the passcode reached a member: %s", ws.seen)
		}
	}
	if strings.Contains(logsOf(srv), pass) {
		t.Fatal("the passcode is in the log")
	}
}

// TestPasscodeBruteForce: after 5 wrong passcodes from one address for one
// room in a minute, joins are refused unchecked, the right passcode too;
// another room is not affected.
func TestPasscodeBruteForce(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	for _, r := range []string{"bf", "other"} {
		a := dial(t, srv)
		a.join(r)
		a.send(map[string]any{"type": "settings", "room": r, "passcode": "s3cret"})
		a.waitFor("room")
	}
	c := dial(t, srv)
	for i := 0; i < passAttempts; i++ {
		c.send(map[string]any{"type": "join", "room": "bf", "passcode": "guess"})
		c.expectError(errBadPasscode, "join")
	}
	c.send(map[string]any{"type": "join", "room": "bf", "passcode": "s3cret"})
	c.expectError(errTooManyAttempts, "join")
	d := dial(t, srv) // another connection from the same address
	d.send(map[string]any{"type": "join", "room": "bf", "passcode": "s3cret"})
	d.expectError(errTooManyAttempts, "join")
	d.send(map[string]any{"type": "join", "room": "other", "passcode": "s3cret"})
	d.expect("joined")
}

func TestLobby(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	a, b, _ := hostRoom(t, srv, "l")
	a.send(map[string]any{"type": "settings", "room": "l", "lobby": true})
	a.waitFor("room")
	b.waitFor("room")
	c := dial(t, srv)
	c.send(map[string]any{"type": "join", "room": "l"})
	if m := c.expect("waiting"); m.str("room") != "l" {
		t.Fatalf("waiting %v", m)
	}
	if k := a.expect("knock"); k.str("id") != c.id {
		t.Fatalf("knock %v, want %s", k, c.id)
	}
	// A waiting connection sees nothing of the room, and may not act in it.
	b.send(map[string]any{"type": "say", "room": "l", "text": "private"})
	b.expect("msg")
	c.send(map[string]any{"type": "say", "room": "l", "text": "x"})
	c.expectError(errNotInRoom, "say")
	c.send(map[string]any{"type": "history", "room": "l"})
	c.expectError(errNotInRoom, "history")
	// A cohost made later gets a knock for those already waiting.
	a.send(map[string]any{"type": "role", "room": "l", "id": b.id, "role": "cohost"})
	if k := b.waitFor("knock"); k.str("id") != c.id {
		t.Fatalf("cohost's knock %v", k)
	}
	d := dial(t, srv)
	d.send(map[string]any{"type": "join", "room": "l"})
	d.expect("waiting")
	b.send(map[string]any{"type": "admit", "room": "l", "id": c.id})
	j := c.expect("joined")
	if j.str("role") != roleMember || len(j.list("history")) != 1 {
		t.Fatalf("admitted: %v", j)
	}
	if p := a.waitFor("presence"); p.str("event") != "join" || p.str("id") != c.id {
		t.Fatalf("presence after admit: %v", p)
	}
	a.send(map[string]any{"type": "deny", "room": "l", "id": d.id})
	d.expectError(errDenied, "join")
	a.send(map[string]any{"type": "admit", "room": "l", "id": d.id})
	a.expectError(errNoSuchMember, "admit")
	if strings.Contains(string(c.seen[:strings.Index(string(c.seen), `"joined"`)]), "private") {
		t.Fatal("a waiting connection saw a message")
	}
	// Turning the lobby off lets everyone waiting in.
	e := dial(t, srv)
	e.send(map[string]any{"type": "join", "room": "l"})
	e.expect("waiting")
	a.send(map[string]any{"type": "settings", "room": "l", "lobby": false})
	e.expect("joined")
}

// TestLobbyLeave: a waiting connection that leaves or disconnects waits no
// more, and the lobby is bounded.
func TestLobbyLeave(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	a := dial(t, srv)
	a.join("q")
	a.send(map[string]any{"type": "settings", "room": "q", "lobby": true})
	a.waitFor("room")
	c := dial(t, srv)
	c.send(map[string]any{"type": "join", "room": "q"})
	c.expect("waiting")
	a.expect("knock")
	c.send(map[string]any{"type": "leave", "room": "q"})
	c.expect("left")
	a.send(map[string]any{"type": "admit", "room": "q", "id": c.id})
	a.expectError(errNoSuchMember, "admit")
	// Waiting in two lobbies and gone: neither keeps it.
	a2 := dial(t, srv)
	a2.join("q2")
	a2.send(map[string]any{"type": "settings", "room": "q2", "lobby": true})
	a2.waitFor("room")
	two := dial(t, srv)
	for _, r := range []string{"q", "q2"} {
		two.send(map[string]any{"type": "join", "room": r})
		two.expect("waiting")
	}
	a.waitFor("knock")
	a2.waitFor("knock")
	_ = two.c.Close()
	eventually(t, 10*time.Second, "the server to see the connection gone", func() bool { return srv.hub.lookup(two.id) == nil })
	for _, x := range []struct {
		host *wsConn
		room string
	}{{a, "q"}, {a2, "q2"}} {
		sh := srv.hub.shardOf(x.room)
		sh.mu.Lock()
		n := len(sh.rooms[x.room].meet.lobbyq)
		sh.mu.Unlock()
		if n != 0 {
			t.Fatalf("lobby of %s keeps %d after its only waiter closed", x.room, n)
		}
		x.host.send(map[string]any{"type": "admit", "room": x.room, "id": two.id})
		x.host.waitError(errNoSuchMember, "admit")
	}
	var last *wsConn
	for i := 0; i < lobbyLimit; i++ {
		last = dial(t, srv)
		last.send(map[string]any{"type": "join", "room": "q"})
		last.expect("waiting")
	}
	over := dial(t, srv)
	over.send(map[string]any{"type": "join", "room": "q"})
	over.expectError(errUnavailable, "join")
	_ = last.c.Close()
	eventually(t, 5*time.Second, "the closed waiter to leave the lobby", func() bool {
		x := dial(t, srv)
		x.send(map[string]any{"type": "join", "room": "q"})
		ok := x.next().str("type") == "waiting"
		_ = x.c.Close()
		return ok
	})
}

func TestLocked(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	a, _, key := hostRoom(t, srv, "lk")
	a.send(map[string]any{"type": "settings", "room": "lk", "locked": true})
	a.waitFor("room")
	c := dial(t, srv)
	c.send(map[string]any{"type": "join", "room": "lk"})
	c.expectError(errRoomLocked, "join")
	h := dial(t, srv)
	h.send(map[string]any{"type": "join", "room": "lk", "host_key": key})
	if j := h.expect("joined"); j.str("role") != roleHost {
		t.Fatalf("host key through the lock: %v", j)
	}
}

// TestRemove: a removed member is out of the room and its call, and barred
// for an hour; with the lobby on it waits instead, and an admit lifts the
// bar.
func TestRemove(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	a, b, _ := hostRoom(t, srv, "rm")
	for _, ws := range []*wsConn{a, b} {
		ws.send(map[string]any{"type": "call", "room": "rm", "action": "join"})
		ws.expect("call")
	}
	a.expect("call_peer")
	a.send(map[string]any{"type": "remove", "room": "rm", "id": a.id})
	a.expectError(errNotAllowed, "remove")
	a.send(map[string]any{"type": "remove", "room": "rm", "id": b.id})
	if m := b.waitFor("removed"); m.str("by") != a.id || m.str("room") != "rm" {
		t.Fatalf("removed %v", m)
	}
	cp, pr := a.expectBoth("call_peer", "presence")
	if cp.str("event") != "leave" || cp.str("id") != b.id {
		t.Fatalf("call_peer after remove: %v", cp)
	}
	if pr.str("event") != "leave" {
		t.Fatalf("presence after remove: %v", pr)
	}
	b.send(map[string]any{"type": "say", "room": "rm", "text": "still here?"})
	b.expectError(errNotInRoom, "say")
	b.send(map[string]any{"type": "join", "room": "rm"})
	b.expectError(errBanned, "join")
	b2 := dial(t, srv) // same address, new connection: still barred
	b2.send(map[string]any{"type": "join", "room": "rm"})
	b2.expectError(errBanned, "join")
	a.send(map[string]any{"type": "settings", "room": "rm", "lobby": true})
	a.waitFor("room")
	b.send(map[string]any{"type": "join", "room": "rm"})
	b.expect("waiting")
	a.waitFor("knock")
	a.send(map[string]any{"type": "admit", "room": "rm", "id": b.id})
	b.expect("joined")
	a.send(map[string]any{"type": "settings", "room": "rm", "lobby": false})
	b2.send(map[string]any{"type": "join", "room": "rm"})
	b2.waitFor("joined") // the admit lifted the bar on the address
}

func TestRoles(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	a, b, _ := hostRoom(t, srv, "ro")
	c := dial(t, srv)
	c.join("ro")
	a.send(map[string]any{"type": "role", "room": "ro", "id": b.id, "role": "cohost"})
	if m := c.waitFor("room"); roles(m)[b.id] != roleCohost || roles(m)[a.id] != roleHost {
		t.Fatalf("room after cohost: %v", m)
	}
	// A cohost may make a member cohost, nothing else.
	b.send(map[string]any{"type": "role", "room": "ro", "id": a.id, "role": "member"})
	b.waitError(errNotAllowed, "role")
	b.send(map[string]any{"type": "role", "room": "ro", "id": c.id, "role": "host"})
	b.waitError(errNotAllowed, "role")
	b.send(map[string]any{"type": "role", "room": "ro", "id": c.id, "role": "cohost"})
	if m := c.waitFor("room"); roles(m)[c.id] != roleCohost {
		t.Fatalf("cohost made cohost: %v", m)
	}
	// A host hands over: the former host becomes cohost; one host.
	a.send(map[string]any{"type": "role", "room": "ro", "id": c.id, "role": "host"})
	m := b.waitFor("room")
	for roles(m)[c.id] != roleHost && roles(m)[a.id] == roleHost { // the earlier changes first
		m = b.waitFor("room")
	}
	if r := roles(m); r[c.id] != roleHost || r[a.id] != roleCohost || r[b.id] != roleCohost {
		t.Fatalf("after hand-over: %v", r)
	}
	a.send(map[string]any{"type": "end", "room": "ro"})
	a.waitError(errNotAllowed, "end") // only the host ends
	c.send(map[string]any{"type": "role", "room": "ro", "id": c.id, "role": "member"})
	c.waitError(errNotAllowed, "role")
	c.send(map[string]any{"type": "role", "room": "ro", "id": "nobody", "role": "cohost"})
	c.waitError(errNoSuchMember, "role")
	c.send(map[string]any{"type": "role", "room": "ro", "id": b.id, "role": "owner"})
	c.waitError(errBadField, "role")
}

// TestNoHostPromotes: a room left with members but no host or cohost gives
// its longest-present member the cohost role after -host-grace.
func TestNoHostPromotes(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *Config) { c.HostGrace = 300 * time.Millisecond })
	a, b, _ := hostRoom(t, srv, "orph")
	c := dial(t, srv)
	c.join("orph")
	a.send(map[string]any{"type": "leave", "room": "orph"})
	a.waitFor("left")
	if m := b.waitFor("room"); len(roles(m)) != 0 {
		t.Fatalf("after the host left: %v", m)
	}
	m := c.waitFor("room")
	for len(roles(m)) == 0 { // the one for the host leaving, then the promotion
		m = c.waitFor("room")
	}
	if r := roles(m); r[b.id] != roleCohost || len(r) != 1 {
		t.Fatalf("promotion: %v, want %s (longest present) cohost", r, b.id)
	}
}

// TestEnd: everyone gets ended and is out, waiting connections are denied;
// settings, host key and history stay.
func TestEnd(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	a, b, key := hostRoom(t, srv, "end")
	a.send(map[string]any{"type": "say", "room": "end", "text": "kept"})
	a.expect("msg")
	b.expect("msg")
	a.send(map[string]any{"type": "settings", "room": "end", "lobby": true})
	a.waitFor("room")
	w := dial(t, srv)
	w.send(map[string]any{"type": "join", "room": "end"})
	w.expect("waiting")
	a.send(map[string]any{"type": "end", "room": "end"})
	for _, ws := range []*wsConn{a, b} {
		if m := ws.waitFor("ended"); m.str("by") != a.id {
			t.Fatalf("ended %v", m)
		}
	}
	w.expectError(errDenied, "join")
	b.send(map[string]any{"type": "say", "room": "end", "text": "x"})
	b.expectError(errNotInRoom, "say")
	h := dial(t, srv)
	h.send(map[string]any{"type": "join", "room": "end", "host_key": key})
	j := h.expect("joined")
	if j.str("role") != roleHost || settingsOf(j)["lobby"] != true || len(j.list("history")) != 1 {
		t.Fatalf("after end: %v", j)
	}
}

// TestMuteAndMedia: call peers announce their media; a host's mute reaches
// the member; nobody outside the call announces media.
func TestMuteAndMedia(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	a, b, _ := hostRoom(t, srv, "mm")
	b.send(map[string]any{"type": "media", "room": "mm", "audio": true, "video": true, "screen": false})
	b.expectError(errNotAllowed, "media")
	b.send(map[string]any{"type": "media", "room": "mm", "audio": true})
	b.expectError(errBadField, "media")
	for _, ws := range []*wsConn{a, b} {
		ws.send(map[string]any{"type": "call", "room": "mm", "action": "join"})
		ws.expect("call")
	}
	a.expect("call_peer")
	b.send(map[string]any{"type": "media", "room": "mm", "audio": true, "video": false, "screen": true})
	m := a.expect("call_peer")
	if m.str("event") != "media" || m.str("id") != b.id || m["audio"] != true || m["video"] != false || m["screen"] != true {
		t.Fatalf("call_peer media %v", m)
	}
	c := dial(t, srv)
	c.join("mm")
	c.send(map[string]any{"type": "call", "room": "mm", "action": "join"})
	call := c.expect("call")
	for _, x := range call.list("peers") {
		p := x.(map[string]any)
		if p["id"] == b.id && (p["audio"] != true || p["screen"] != true) {
			t.Fatalf("call peers %v: want b's media state", call)
		}
	}
	a.send(map[string]any{"type": "mute", "room": "mm", "id": b.id})
	if m := b.waitFor("mute"); m.str("by") != a.id || m.str("room") != "mm" {
		t.Fatalf("mute %v", m)
	}
	c.send(map[string]any{"type": "mute", "room": "mm", "id": a.id})
	c.expectError(errNotAllowed, "mute")
}

// TestRoomsListHidesPrivateRooms: unlisted rooms and rooms with a passcode
// are in neither rooms nor /api/rooms.
func TestRoomsListHidesPrivateRooms(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	a := dial(t, srv)
	a.join("shown")
	h := dial(t, srv)
	h.join("hidden")
	h.send(map[string]any{"type": "settings", "room": "hidden", "listed": false})
	if m := h.waitFor("room"); settingsOf(m)["listed"] != false {
		t.Fatalf("listed false: %v", m)
	}
	eventually(t, 5*time.Second, "the list to show only the listed room", func() bool {
		_, body := httpGet(t, srv, "/api/rooms")
		return strings.Contains(body, `"shown"`) && !strings.Contains(body, `"hidden"`)
	})
	a.send(map[string]any{"type": "rooms"})
	if m := a.expect("rooms"); strings.Contains(string(a.seen), `"room":"hidden"`) {
		t.Fatalf("rooms frame lists the unlisted room: %v", m)
	}
}

// TestSecretsStayHidden: the host key and passcode reach nobody but the
// creator's own joined frame: no other member's frames, no log line, no
// /api or /metrics answer.
func TestSecretsStayHidden(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	a, b, key := hostRoom(t, srv, "sec")
	const pass = "hunter2-passcode"
	a.send(map[string]any{"type": "settings", "room": "sec", "passcode": pass, "lobby": true})
	a.waitFor("room")
	w := dial(t, srv)
	w.send(map[string]any{"type": "join", "room": "sec", "passcode": pass})
	w.expect("waiting")
	a.send(map[string]any{"type": "admit", "room": "sec", "id": w.id})
	w.expect("joined")
	a.send(map[string]any{"type": "role", "room": "sec", "id": b.id, "role": "cohost"})
	b.waitFor("room")
	a.send(map[string]any{"type": "join", "room": "sec", "host_key": key}) // again, with the key
	a.waitFor("joined")
	seenBy := map[string]string{"member": string(b.seen), "admitted": string(w.seen)}
	_, api := httpGet(t, srv, "/api/rooms")
	_, cfg := httpGet(t, srv, "/api/config")
	_, metrics := adminGet(t, srv, "/metrics")
	seenBy["/api/rooms"], seenBy["/api/config"], seenBy["/metrics"], seenBy["log"] = api, cfg, metrics, logsOf(srv)
	for where, text := range seenBy {
		if strings.Contains(text, key) || strings.Contains(text, pass) {
			t.Errorf("a secret is in %s", where)
		}
	}
	if n := strings.Count(string(a.seen), key); n != 1 {
		t.Errorf("the host key is in %d of the host's frames, want 1 (its first joined)", n)
	}
}
