package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"noom/server/broker"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// Cluster tests: a real NATS server with JetStream embedded in the test
// process, and several noom nodes on loopback ports joined through it.

// testNATS runs a NATS server with JetStream on a free loopback port (or
// port), storing in dir.
func testNATS(t *testing.T, dir string, port int) *natsserver.Server {
	t.Helper()
	if port == 0 {
		port = -1
	}
	return startTestNATS(t, natsserver.Options{Host: "127.0.0.1", Port: port, JetStream: true,
		StoreDir: dir, NoSigs: true, NoLog: true})
}

// startTestNATS starts a NATS server with opts and stops it when the test
// ends.
func startTestNATS(t *testing.T, opts natsserver.Options) *natsserver.Server {
	t.Helper()
	ns, err := natsserver.NewServer(&opts)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS did not start")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// startNodes starts n noom nodes joined through the NATS server at url.
func startNodes(t *testing.T, url string, n int, mutate func(*Config)) []*server {
	var nodes []*server
	for i := 0; i < n; i++ {
		nodes = append(nodes, startServer(t, func(c *Config) {
			c.NATS = url
			if mutate != nil {
				mutate(c)
			}
		}))
	}
	// Every node knows every other once heartbeats went round.
	eventually(t, 10*time.Second, "nodes to see each other", func() bool {
		for _, s := range nodes {
			if len(s.hub.members.Nodes()) != n-1 {
				return false
			}
		}
		return true
	})
	return nodes
}

func TestClusterPresenceOrderHistory(t *testing.T) {
	ns := testNATS(t, t.TempDir(), 0)
	nodes := startNodes(t, ns.ClientURL(), 3, func(c *Config) { c.Rate, c.Burst = 1000, 1000 })
	a := dial(t, nodes[0], "/ws?nick=ann")
	b := dial(t, nodes[1], "/ws?nick=bob")
	c := dial(t, nodes[2], "/ws?nick=cat")
	prefixes := map[string]bool{}
	for _, ws := range []*wsConn{a, b, c} {
		prefixes[nodeOf(ws.id)] = true
	}
	if len(prefixes) != 3 || prefixes[""] {
		t.Fatalf("connection ids %s %s %s do not name three nodes", a.id, b.id, c.id)
	}

	a.join("r")
	joinSettle(t, b, "r", 2)
	if p := a.expect("presence"); p.str("event") != "join" || p.str("id") != b.id || p.str("nick") != "bob" || p.num("count") != 2 {
		t.Fatalf("presence across nodes: %v", p)
	}
	joinSettle(t, c, "r", 3)
	waitCount(t, a, 3)
	waitCount(t, b, 3)
	j := c.join("r") // the state again, now that every node knows everyone
	if j.num("count") != 3 || len(j.list("members")) != 3 {
		t.Fatalf("joined on the third node: %v", j)
	}

	// Order: three senders on three nodes at once; every member sees one
	// order, seq 1..n without gaps.
	const each = 40
	checkOneOrder(t, "r", []*wsConn{a, b, c}, []*wsConn{a, b, c}, each)

	// History and since from any node, also one that had no member then.
	d := dial(t, nodes[1])
	d.send(map[string]any{"type": "join", "room": "r", "since": 100, "epoch": j.str("epoch")})
	jd := d.expect("joined")
	if h := jd.list("history"); len(h) != 3*each-100 || msg(h[0].(map[string]any)).num("seq") != 101 || jd["recovered"] != true {
		t.Fatalf("since 100 on another node: %d messages, recovered %v", len(h), jd["recovered"])
	}
	e := dial(t, nodes[2])
	if h := e.join("r").list("history"); len(h) != 50 {
		t.Fatalf("history on join: %d messages, want the last 50", len(h))
	}
	for _, s := range nodes {
		eventually(t, 5*time.Second, "/api/rooms to count 5 on every node", func() bool {
			_, body := httpGet(t, s, "/api/rooms")
			return strings.Contains(body, `{"room":"r","count":5}`)
		})
	}
}

// threeInRoom starts three nodes with a call limit of 2 and puts ann, bob
// and cat, one on each, in room r, every one of them counting three.
func threeInRoom(t *testing.T) (nodes []*server, a, b, c *wsConn) {
	t.Helper()
	ns := testNATS(t, t.TempDir(), 0)
	nodes = startNodes(t, ns.ClientURL(), 3, func(c *Config) { c.CallLimit = 2 })
	a = dial(t, nodes[0], "/ws?nick=ann")
	b = dial(t, nodes[1], "/ws?nick=bob")
	c = dial(t, nodes[2], "/ws?nick=cat")
	a.join("r")
	joinSettle(t, b, "r", 2)
	joinSettle(t, c, "r", 3)
	waitCount(t, a, 3)
	waitCount(t, b, 3)
	return nodes, a, b, c
}

func TestClusterSignalAndCall(t *testing.T) {
	_, a, b, c := threeInRoom(t)

	a.send(map[string]any{"type": "call", "room": "r", "action": "join"})
	if m := a.expect("call"); len(m.list("peers")) != 0 {
		t.Fatalf("first call: %v", m)
	}
	b.send(map[string]any{"type": "call", "room": "r", "action": "join"})
	m := b.expect("call")
	if peers := m.list("peers"); len(peers) != 1 || peers[0].(map[string]any)["id"] != a.id {
		t.Fatalf("second call, on another node: %v", m)
	}
	if m := a.expect("call_peer"); m.str("event") != "join" || m.str("id") != b.id {
		t.Fatalf("call_peer across nodes: %v", m)
	}
	c.send(map[string]any{"type": "call", "room": "r", "action": "join"})
	c.expectError(errCallFull, "call") // the limit holds across nodes

	b.send(map[string]any{"type": "signal", "room": "r", "to": a.id, "data": map[string]any{"kind": "offer"}})
	if s := a.expect("signal"); s.str("from") != b.id || s.str("nick") != "bob" {
		t.Fatalf("signal across nodes: %v", s)
	}
	a.send(map[string]any{"type": "signal", "room": "r", "to": nodeOf(b.id) + "-zzzz", "data": 1})
	a.expectError(errNoSuchMember, "signal")

	_ = b.c.Close()
	if m := a.waitFor("call_peer"); m.str("event") != "leave" || m.str("id") != b.id {
		t.Fatalf("call_peer after a disconnect on another node: %v", m)
	}
	c.send(map[string]any{"type": "call", "room": "r", "action": "join"})
	if m := c.waitReply("call", "call"); len(m.list("peers")) != 1 {
		t.Fatalf("join after the call freed a place: %v", m)
	}
}

// callOfTwo has a then b join room r's call; a hears of b.
func callOfTwo(a, b *wsConn) {
	a.send(map[string]any{"type": "call", "room": "r", "action": "join"})
	a.expect("call")
	b.send(map[string]any{"type": "call", "room": "r", "action": "join"})
	b.expect("call")
	a.expect("call_peer")
}

// TestClusterSignalOnlyWithinCall checks the call rule for signals across
// nodes: the sender's node refuses a sender or target outside the call,
// also one refused with call_full and a peer that left, and the target's
// node delivers a signal only once it has applied the call list the
// sender's node checked it against, after that list's call_peer.
func TestClusterSignalOnlyWithinCall(t *testing.T) {
	nodes, a, b, c := threeInRoom(t)
	callOfTwo(a, b)
	c.send(map[string]any{"type": "call", "room": "r", "action": "join"})
	c.expectError(errCallFull, "call")

	offer := map[string]any{"kind": "offer", "sdp": "v=0\r\n"}
	signal := func(from, to *wsConn, data any) {
		from.send(map[string]any{"type": "signal", "room": "r", "to": to.id, "data": data})
	}
	signal(c, a, offer) // refused with call_full, on another node than a
	c.expectError(errNotAllowed, "signal")
	signal(a, c, offer) // a target on another node, outside the call
	a.expectError(errNotAllowed, "signal")
	signal(b, a, 1)
	if m := a.expect("signal"); m.str("from") != b.id || m.num("data") != 1 {
		t.Fatalf("signal between call peers across nodes: %v", m)
	}
	a.expectSilence(300 * time.Millisecond) // and nothing of c's

	// A signal checked on a node that is ahead waits on the target's node
	// for that call list: here one that is about to be stored.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := nodes[0].hub.cl.stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	early, _ := json.Marshal(signalRelay{Room: "r", To: a.id, From: b.id, Nick: "bob", Data: json.RawMessage(`2`),
		CallSeq: info.State.LastSeq + 1})
	if !nodes[1].hub.cl.members.Relay(nodeOf(a.id), early) {
		t.Fatal("the relay was not sent")
	}
	a.expectSilence(300 * time.Millisecond)
	b.send(map[string]any{"type": "call", "room": "r", "action": "leave"}) // the next call list
	b.expect("call")
	if m := a.expect("call_peer"); m.str("event") != "leave" || m.str("id") != b.id {
		t.Fatalf("call_peer leave: %v", m)
	}
	// Delivered after that list, which no longer has b: dropped.
	a.expectSilence(300 * time.Millisecond)

	signal(b, a, offer) // a peer that left; its node knows at once
	b.expectError(errNotAllowed, "signal")
	signal(a, b, offer) // and a's node once it told a
	a.expectError(errNotAllowed, "signal")

	// The place b freed: c joins, and a signal that waited for that list
	// comes after its call_peer join. c's node reads no more of the
	// stream from here on: it must apply the list it stored itself, before
	// it answers c, or c's own signals would be checked against the old
	// one.
	cl2 := nodes[2].hub.cl
	cl2.consMu.Lock()
	cl2.cons.Stop()
	cl2.cons = nil
	cl2.consMu.Unlock()
	info, err = nodes[0].hub.cl.stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	early, _ = json.Marshal(signalRelay{Room: "r", To: a.id, From: c.id, Nick: "cat", Data: json.RawMessage(`3`),
		CallSeq: info.State.LastSeq + 1})
	if !nodes[2].hub.cl.members.Relay(nodeOf(a.id), early) {
		t.Fatal("the relay was not sent")
	}
	c.send(map[string]any{"type": "call", "room": "r", "action": "join"})
	c.expect("call")
	if m := a.expect("call_peer"); m.str("event") != "join" || m.str("id") != c.id {
		t.Fatalf("call_peer join: %v", m)
	}
	if m := a.expect("signal"); m.str("from") != c.id || m.num("data") != 3 {
		t.Fatalf("the signal that waited for the call list: %v", m)
	}
	signal(c, a, 4) // and c's own signals, checked on its node right after its call frame
	if m := a.expect("signal"); m.str("from") != c.id || m.num("data") != 4 {
		t.Fatalf("signal from the newcomer: %v", m)
	}
}

// TestClusterUnavailable checks that a say or call the cluster cannot take
// is answered with unavailable, not rate_limited (which is only the
// per-connection limit): here the stream refuses to store anything more.
func TestClusterUnavailable(t *testing.T) {
	ns := testNATS(t, t.TempDir(), 0)
	nodes := startNodes(t, ns.ClientURL(), 1, nil)
	a := dial(t, nodes[0])
	a.join("r")
	a.send(map[string]any{"type": "say", "room": "r", "text": "one"})
	a.expect("msg")

	cl := nodes[0].hub.cl
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := cl.stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	full := info.Config
	full.MaxMsgs, full.Discard = int64(info.State.Msgs), jetstream.DiscardNew
	if _, err := cl.js.UpdateStream(ctx, full); err != nil {
		t.Fatal(err)
	}
	a.send(map[string]any{"type": "say", "room": "r", "text": "two"})
	a.expectError(errUnavailable, "say")
	a.send(map[string]any{"type": "call", "room": "r", "action": "join"})
	a.expectError(errUnavailable, "call")

	if _, err := cl.js.UpdateStream(ctx, info.Config); err != nil {
		t.Fatal(err)
	}
	a.send(map[string]any{"type": "say", "room": "r", "text": "three"})
	if m := a.expect("msg"); m.str("text") != "three" || m.num("seq") != 2 {
		t.Fatalf("after the stream takes messages again: %v", m)
	}
	_, metrics := adminGet(t, nodes[0], "/metrics")
	if !strings.Contains(metrics, `noom_errors_total{code="unavailable"} 2`) ||
		!strings.Contains(metrics, `noom_errors_total{code="rate_limited"} 0`) {
		t.Errorf("errors by code:\n%s", grepLines(metrics, "noom_errors_total"))
	}

	// A publish queue that is full refuses at once, without blocking the
	// poller: unavailable too. Its worker is held by a publish of another
	// lifetime (refused, nothing kept) whose done waits.
	js := nodes[0].hub.cl.msgs
	hold, held := make(chan struct{}), make(chan struct{})
	if err := js.Publish("r", "x", broker.Message{Seq: 1}, nil, func(broker.Kept, error) { close(held); <-hold }); err != nil {
		t.Fatal(err)
	}
	<-held
	for js.Publish("r", "x", broker.Message{Seq: 1}, nil, func(broker.Kept, error) {}) == nil {
	}
	a.send(map[string]any{"type": "say", "room": "r", "text": "four"})
	a.expectError(errUnavailable, "say")
	close(hold)

	// So does a room queue: call changes wait there.
	h := nodes[0].hub
	release := holdQueue(t, h, roomNamed(h, "r"), true)
	defer release()
	a.send(map[string]any{"type": "call", "room": "r", "action": "join"})
	a.expectError(errUnavailable, "call")
	release()
	a.send(map[string]any{"type": "say", "room": "r", "text": "five"})
	if m := a.expect("msg"); m.str("text") != "five" || m.num("seq") != 3 {
		t.Fatalf("once the queues are free: %v", m)
	}
}

// TestClusterNodeDeath kills a node without goodbye: within 15 s its
// members leave the room everywhere; a new node joins and is seen.
func TestClusterNodeDeath(t *testing.T) {
	ns := testNATS(t, t.TempDir(), 0)
	nodes := startNodes(t, ns.ClientURL(), 2, nil)
	a := dial(t, nodes[0])
	b := dial(t, nodes[1])
	a.join("r")
	joinSettle(t, b, "r", 2)
	waitCount(t, a, 2)

	crash(nodes[1])
	start := time.Now()
	p := waitForWithin(t, a, "presence", 20*time.Second)
	if p.str("event") != "leave" || p.str("id") != b.id || p.num("count") != 1 {
		t.Fatalf("after the crash: %v", p)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Fatalf("members of the dead node left after %v", d)
	}
	a.send(map[string]any{"type": "say", "room": "r", "text": "still serving"})
	a.expect("msg")

	again := startServer(t, func(c *Config) { c.NATS = ns.ClientURL() })
	c := dial(t, again)
	if h := joinSettle(t, c, "r", 2).list("history"); len(h) != 1 {
		t.Fatalf("history on the new node: %v", h)
	}
	if p := waitForWithin(t, a, "presence", 10*time.Second); p.str("id") != c.id {
		t.Fatalf("presence of the new node: %v", p)
	}
}

// joinSettle joins room and waits until ws sees n members: other nodes'
// members may be known a moment after the join. It returns the joined frame.
func joinSettle(t *testing.T, ws *wsConn, room string, n int) msg {
	t.Helper()
	j := ws.join(room)
	if j.num("count") != n {
		waitCount(t, ws, n)
	}
	return j
}

// waitCount reads presence and count frames until the room's count, as ws
// sees it, is n: in a cluster other nodes' members arrive a little later.
// A room frame may come between them: a host who joined on another node
// after ws's join arrives as a presence join, then its role.
func waitCount(t *testing.T, ws *wsConn, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		m := ws.nextWithin(10 * time.Second)
		switch m.str("type") {
		case "presence", "count", "joined":
			if m.num("count") == n {
				return
			}
		case "rooms", "room":
		default:
			t.Fatalf("waiting for count %d: %v", n, m)
		}
	}
	t.Fatalf("count never reached %d", n)
}

// waitForWithin is waitFor with a longer read timeout.
func waitForWithin(t *testing.T, ws *wsConn, typ string, d time.Duration) msg {
	t.Helper()
	for {
		if m := ws.nextWithin(d); m.str("type") == typ {
			return m
		}
	}
}

// crash stops a node the way a killed process would: no bye, no leave
// events, sockets gone.
func crash(s *server) {
	cl := s.hub.cl
	cl.ready.Store(false) // no more events
	close(cl.stop)
	cl.nc.Close()
	s.draining.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = s.engine.Shutdown(ctx)
}

// TestClusterNATSRestart stops NATS under two nodes: each keeps serving its
// members (a room runs as an island, announced with a joined frame) and
// says it is degraded; when NATS is back they are one service again.
func TestClusterNATSRestart(t *testing.T) {
	dir := t.TempDir()
	ns := testNATS(t, dir, 0)
	port := ns.Addr().(*net.TCPAddr).Port
	nodes := startNodes(t, ns.ClientURL(), 2, nil)
	a := dial(t, nodes[0])
	a2 := dial(t, nodes[0])
	b := dial(t, nodes[1])
	epoch := a.join("r").str("epoch")
	a2.join("r")
	b.join("r")
	a.send(map[string]any{"type": "say", "room": "r", "text": "before"})
	for _, ws := range []*wsConn{a, a2, b} {
		ws.waitFor("msg")
	}

	ns.Shutdown()
	ns.WaitForShutdown()
	eventually(t, 10*time.Second, "degraded", func() bool {
		_, body := httpGet(t, nodes[0], "/healthz")
		return strings.HasPrefix(body, "degraded")
	})
	_, metrics := adminGet(t, nodes[0], "/metrics")
	if !strings.Contains(metrics, "noom_cluster_degraded 1") {
		t.Fatal("metrics do not say degraded")
	}
	a.send(map[string]any{"type": "say", "room": "r", "text": "alone"})
	j := a2.waitFor("joined") // the island's epoch
	if j.str("epoch") == epoch || j["recovered"] != false {
		t.Fatalf("island announcement: %v", j)
	}
	if m := a2.waitFor("msg"); m.str("text") != "alone" || m.num("seq") != 2 {
		t.Fatalf("island message: %v", m)
	}

	ns2 := testNATS(t, dir, port)
	_ = ns2
	eventually(t, 20*time.Second, "healthy again", func() bool {
		_, body := httpGet(t, nodes[0], "/healthz")
		_, body2 := httpGet(t, nodes[1], "/healthz")
		return body == "ok\n" && body2 == "ok\n"
	})
	if j := a2.waitFor("joined"); j.str("epoch") != epoch {
		t.Fatalf("back in the cluster: %v", j)
	}
	eventually(t, 15*time.Second, "the nodes to see each other again", func() bool {
		return len(nodes[0].hub.members.Nodes()) == 1 && len(nodes[1].hub.members.Nodes()) == 1
	})
	b.send(map[string]any{"type": "say", "room": "r", "text": "after"})
	if m := a2.waitFor("msg"); m.str("text") != "after" || m.num("seq") != 2 {
		t.Fatalf("after NATS came back: %v", m)
	}
}

// TestClusterHistoryPages: a history request in a cluster pages back
// through the stream, past what the room keeps in memory (-history), on
// a node other than the one that took the messages, as a standalone node
// pages through its store.
func TestClusterHistoryPages(t *testing.T) {
	ns := testNATS(t, t.TempDir(), 0)
	nodes := startNodes(t, ns.ClientURL(), 2, func(c *Config) { c.Rate, c.Burst, c.HistorySize = 10000, 10000, 10 })
	a := dial(t, nodes[0])
	a.join("r")
	sayN(t, a, "r", 1, 45)

	b := dial(t, nodes[1])
	j := b.join("r")
	if got := seqsOf(t, j.list("history")); len(got) != 10 || got[0] != 36 {
		t.Fatalf("joined.history %v, want 36..45", got)
	}
	if all := pageBack(t, b, "r", 36, 15); fmt.Sprint(all) != fmt.Sprint(seqRange(1, 35)) {
		t.Fatalf("pages gave %v, want 1..35", all)
	}
}

// TestClusterCallFullIsChecked: a node whose call list is behind the
// stream's (here its consumer is stopped, so it never reads the leave of
// a peer on another node) checks a refusal against the stream: the join
// takes the place that was freed instead of call_full.
func TestClusterCallFullIsChecked(t *testing.T) {
	nodes, a, b, c := threeInRoom(t)
	callOfTwo(a, b)
	h := nodes[2].hub
	eventually(t, 10*time.Second, "the third node to see two in the call", func() bool {
		sh := h.shardOf("r")
		sh.mu.Lock()
		defer sh.mu.Unlock()
		return len(sh.rooms["r"].call) == 2
	})
	h.cl.consMu.Lock()
	h.cl.cons.Stop()
	h.cl.cons = nil
	h.cl.consMu.Unlock()

	b.send(map[string]any{"type": "call", "room": "r", "action": "leave"})
	if m := a.waitFor("call_peer"); m.str("event") != "leave" || m.str("id") != b.id {
		t.Fatalf("call_peer after a leave: %v", m)
	}
	c.send(map[string]any{"type": "call", "room": "r", "action": "join"})
	m := c.next()
	if m.str("type") != "call" || len(m.list("peers")) != 1 {
		t.Fatalf("a join on a node behind the stream: %v", m)
	}
}
