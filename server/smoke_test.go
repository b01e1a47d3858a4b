package main

import "testing"

func TestSmoke(t *testing.T) {
	srv := startServer(t, nil)
	a := dial(t, srv, "/ws?nick=alice")
	b := dial(t, srv)
	if a.nick != "alice" || b.nick != "guest-"+b.id {
		t.Fatalf("nicks %q %q", a.nick, b.nick)
	}
	j := a.join("lobby")
	t.Log(j)
	j = b.join("lobby")
	t.Log(j)
	p := a.expect("presence")
	t.Log(p)
	a.send(map[string]any{"type": "say", "room": "lobby", "text": "hi"})
	t.Log(a.expect("msg"), b.expect("msg"))
}
