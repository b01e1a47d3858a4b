package main

import (
	"testing"
	"time"
)

// Rooms that belong to someone on a three-node cluster: a setting changed
// on one node holds on every node, the lobby and host controls reach
// members and waiting connections on other nodes, and a room has one host.
func TestClusterMeetings(t *testing.T) {
	ns := testNATS(t, t.TempDir(), 0)
	nodes := startNodes(t, ns.ClientURL(), 3, func(c *Config) { c.Rate, c.Burst = 1000, 1000 })
	a := dial(t, nodes[0])
	j := a.join("m")
	key := j.str("host_key")
	if j.str("role") != roleHost || key == "" {
		t.Fatalf("creator on node A: %v", j)
	}
	b := dial(t, nodes[1])
	jb := b.join("m")
	if jb.str("role") != roleMember || jb["host_key"] != nil {
		t.Fatalf("second joiner on node B: %v", jb)
	}
	if memberRoles(jb)[a.id] != roleHost {
		t.Fatalf("B's joined.members: %v, want %s host", jb.list("members"), a.id)
	}

	// The passcode, set on A, holds on C at once.
	a.send(map[string]any{"type": "settings", "room": "m", "passcode": "sesame"})
	if m := b.waitFor("room"); settingsOf(m)["passcode"] != true {
		t.Fatalf("room on B: %v", m)
	}
	a.waitFor("room")
	c := dial(t, nodes[2])
	c.send(map[string]any{"type": "join", "room": "m"})
	c.expectError(errPasscodeRequired, "join")
	c.send(map[string]any{"type": "join", "room": "m", "passcode": "nope"})
	c.expectError(errBadPasscode, "join")
	c.send(map[string]any{"type": "join", "room": "m", "passcode": "sesame"})
	c.expect("joined")

	// The lock, from B's cohost.
	a.send(map[string]any{"type": "role", "room": "m", "id": b.id, "role": "cohost"})
	if m := c.waitFor("room"); roles(m)[b.id] != roleCohost {
		t.Fatalf("room on C after a remote role change: %v", m)
	}
	b.send(map[string]any{"type": "settings", "room": "m", "locked": true})
	waitRoomWhere(t, c, func(m msg) bool { return settingsOf(m)["locked"] == true })
	d := dial(t, nodes[2])
	d.send(map[string]any{"type": "join", "room": "m", "passcode": "sesame"})
	d.expectError(errRoomLocked, "join")
	b.send(map[string]any{"type": "settings", "room": "m", "locked": false, "lobby": true})
	waitRoomWhere(t, c, func(m msg) bool { return settingsOf(m)["lobby"] == true })

	// The lobby: a knock on C reaches the host on A, whose admit lets it in.
	d.send(map[string]any{"type": "join", "room": "m", "passcode": "sesame"})
	d.expect("waiting")
	if k := a.waitFor("knock"); k.str("id") != d.id {
		t.Fatalf("knock on A: %v, want %s", k, d.id)
	}
	a.send(map[string]any{"type": "admit", "room": "m", "id": d.id})
	d.expect("joined")
	// An id of a node nobody hears from waits nowhere: answered here.
	a.send(map[string]any{"type": "admit", "room": "m", "id": "zzzzzz-1"})
	a.waitError(errNoSuchMember, "admit")

	// Remove reaches C, and the bar holds on B too.
	a.send(map[string]any{"type": "mute", "room": "m", "id": c.id})
	c.waitFor("mute")
	a.send(map[string]any{"type": "remove", "room": "m", "id": c.id})
	if m := c.waitFor("removed"); m.str("by") != a.id {
		t.Fatalf("removed on C: %v", m)
	}
	b.send(map[string]any{"type": "settings", "room": "m", "lobby": false})
	waitRoomWhere(t, a, func(m msg) bool { return settingsOf(m)["lobby"] == false })
	eventually(t, 10*time.Second, "the bar to reach node B", func() bool {
		c2 := dial(t, nodes[1])
		c2.send(map[string]any{"type": "join", "room": "m", "passcode": "sesame"})
		got := c2.next()
		_ = c2.c.Close()
		return got.str("code") == errBanned
	})

	// The host key on B makes a host there; A's host steps down. One host.
	x := dial(t, nodes[1])
	x.send(map[string]any{"type": "join", "room": "m", "host_key": key})
	if j := x.expect("joined"); j.str("role") != roleHost {
		t.Fatalf("host key on B: %v", j)
	}
	waitRoomWhere(t, d, func(m msg) bool { r := roles(m); return r[x.id] == roleHost && r[a.id] == roleCohost })

	// End from B: everyone on every node is out.
	x.send(map[string]any{"type": "end", "room": "m"})
	for _, ws := range []*wsConn{a, b, d, x} {
		ws.waitFor("ended")
	}
}

// waitRoomWhere reads room frames until one satisfies ok.
func waitRoomWhere(t *testing.T, ws *wsConn, ok func(msg) bool) msg {
	t.Helper()
	for {
		if m := ws.waitFor("room"); ok(m) {
			return m
		}
	}
}
