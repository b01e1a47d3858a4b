package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Cluster tests under faults (issue 13): a NATS connection that stalls,
// lost acks, messages past retention, races between a call join and a
// leave, nodes that die for good, and memory that must not grow.

// stallProxy forwards TCP between NATS clients and a NATS server. Paused,
// it stops reading what the clients send, as a NATS server that stops
// reading would; its sockets have a small receive buffer, so that a
// client's socket fills soon.
type stallProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cond   *sync.Cond
	paused bool
}

// startStallProxy forwards a loopback port to the NATS server at target
// (host:port) until the test ends.
func startStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) // accepted sockets inherit it
		})
	}}
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, target: target}
	p.cond = sync.NewCond(&p.mu)
	t.Cleanup(func() { p.resume(); _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			go func() { _, _ = io.Copy(c, s); _ = c.Close() }()
			go p.forward(s, c)
		}
	}()
	return p
}

// url is the proxy's NATS URL.
func (p *stallProxy) url() string { return "nats://" + p.ln.Addr().String() }

// forward copies from c to s, waiting while the proxy is paused.
func (p *stallProxy) forward(s, c net.Conn) {
	defer s.Close()
	buf := make([]byte, 512)
	for {
		p.mu.Lock()
		for p.paused {
			p.cond.Wait()
		}
		p.mu.Unlock()
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := s.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *stallProxy) pause() {
	p.mu.Lock()
	p.paused = true
	p.mu.Unlock()
}

func (p *stallProxy) resume() {
	p.mu.Lock()
	p.paused = false
	p.cond.Broadcast()
	p.mu.Unlock()
}

// drain reads and discards everything ws receives until the test ends, so
// that a client that sends much is never a slow consumer.
func drain(ws *wsConn) {
	go func() {
		for {
			_ = ws.c.SetReadDeadline(time.Now().Add(time.Minute))
			if _, err := ws.br.Discard(1 << 12); err != nil && !isTimeout(err) {
				return
			}
		}
	}()
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestClusterStalledNATSDoesNotStallJoins stops a NATS server from reading
// a node's connection while a member renames itself thousands of times:
// the membership events that this produces fill the socket and overflow
// the node's event queue, but a join on that node is answered at once,
// and once NATS reads again the other node's view of the room is right
// again (it sees the gap in the numbers and asks for a snapshot).
func TestClusterStalledNATSDoesNotStallJoins(t *testing.T) {
	ns := testNATS(t, t.TempDir(), 0)
	proxy := startStallProxy(t, ns.Addr().String())
	fast := func(c *Config) { c.Rate, c.Burst = 100000, 100000 }
	stalled := startNodes(t, proxy.url(), 1, fast)[0]
	other := startServer(t, func(c *Config) { c.NATS = ns.ClientURL(); fast(c) })
	eventually(t, 10*time.Second, "nodes to see each other", func() bool {
		return len(stalled.hub.members.Nodes()) == 1 && len(other.hub.members.Nodes()) == 1
	})

	z := dial(t, stalled)
	z.join("s")
	w := dial(t, other)
	joinSettle(t, w, "s", 2)

	// x is in as many rooms as it may be, with long names: each rename is
	// an event of about a kilobyte.
	x := dial(t, stalled)
	for i := 0; i < 16; i++ {
		x.join(strings.Repeat("r", 60) + string(rune('a'+i)))
	}
	drain(x)
	y := dial(t, stalled)
	proxy.pause()
	defer proxy.resume() // before the cleanups, which shut the nodes down
	for i := 0; i < 10000; i++ {
		x.send(map[string]any{"type": "nick", "nick": "x" + strings.Repeat("-", i%20)})
	}

	// NATS stays paused until the joined frame came: a join that waited
	// for it would never be answered, so the bound below is only the
	// test's patience on a loaded machine, well inside the time nats.go
	// takes to call a silent server stale (two missed pings, minutes).
	y.send(map[string]any{"type": "join", "room": "s"})
	got := make(chan msg, 1)
	go func() {
		for {
			f, err := y.readFrame(30 * time.Second)
			if err != nil {
				close(got)
				return
			}
			var m msg
			if f.op == opText && json.Unmarshal(f.payload, &m) == nil && m.str("type") == "joined" {
				got <- m
				return
			}
		}
	}()
	select {
	case m, ok := <-got:
		if !ok {
			t.Fatal("no joined frame while NATS does not read")
		}
		if m.num("count") < 2 {
			t.Fatalf("joined while NATS stalls: %v", m)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a join waited for a NATS server that does not read")
	}
	eventually(t, 10*time.Second, "the event queue to overflow", func() bool { return stalled.hub.cl.members.Dropped() > 0 })
	proxy.resume()

	// The other node has missed events (the queue overflowed): it resyncs.
	eventually(t, 15*time.Second, "the other node to count s's three members", func() bool {
		sh := other.hub.shardOf("s")
		sh.mu.Lock()
		defer sh.mu.Unlock()
		r := sh.rooms["s"]
		return r != nil && r.count() == 3
	})
}

// streamTexts returns the texts of room's messages in the stream, oldest
// first.
func streamTexts(t *testing.T, cl *cluster, room string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cons, err := cl.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subjMsg + subjectRoom(room)}})
	if err != nil {
		t.Fatal(err)
	}
	n := cons.CachedInfo().NumPending
	var texts []string
	if n == 0 {
		return nil
	}
	batch, err := cons.Fetch(int(n), jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		var p struct{ Text string }
		if len(m.Data()) > 0 {
			if err := json.Unmarshal(m.Data(), &p); err != nil {
				t.Fatalf("stored message %q: %v", m.Data(), err)
			}
			texts = append(texts, p.Text)
		}
	}
	return texts
}

// TestClusterLostAck loses the ack of a stored message: the node must find
// out that the message is stored, and neither answer unavailable nor store
// it again (here the client retries what is unavailable, as PROTOCOL.md
// lets it). The room's seq goes up by one.
func TestClusterLostAck(t *testing.T) {
	ns := testNATS(t, t.TempDir(), 0)
	node := startNodes(t, ns.ClientURL(), 1, nil)[0]
	a := dial(t, node)
	a.join("r")
	node.hub.cl.msgs.DropAcks(1)
	say := map[string]any{"type": "say", "room": "r", "text": "once"}
	a.send(say)
	var seqs []int
	for quiet := time.Now().Add(2 * time.Second); ; { // until 2 s without a text frame
		f, err := a.readFrame(time.Until(quiet))
		if isTimeout(err) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if f.op != opText {
			continue
		}
		quiet = time.Now().Add(2 * time.Second)
		var m msg
		_ = json.Unmarshal(f.payload, &m)
		switch m.str("type") {
		case "msg":
			seqs = append(seqs, m.num("seq"))
		case "error":
			t.Logf("%v: the client says it again", m)
			a.send(say)
		}
	}
	if texts := streamTexts(t, node.hub.cl, "r"); len(texts) != 1 || len(seqs) != 1 {
		t.Fatalf("a message whose ack was lost: stored as %q, received with seqs %v", texts, seqs)
	}
	a.send(map[string]any{"type": "say", "room": "r", "text": "next"})
	if m := a.expect("msg"); m.num("seq") != seqs[0]+1 {
		t.Fatalf("the next message: %v, want seq %d", m, seqs[0]+1)
	}
}

// TestClusterSayDuringRejoin says something in a room while its node,
// reconnected to NATS, still catches up with the stream (here the test
// holds the consumer's lock, which the catching up takes): the room runs
// as an island for that message, and must then return to the cluster's
// epoch and see the other node's messages.
func TestClusterSayDuringRejoin(t *testing.T) {
	dir := t.TempDir()
	ns := testNATS(t, dir, 0)
	port := ns.Addr().(*net.TCPAddr).Port
	nodes := startNodes(t, ns.ClientURL(), 2, nil)
	a := dial(t, nodes[0])
	b := dial(t, nodes[1])
	epoch := a.join("r").str("epoch")
	joinSettle(t, b, "r", 2)
	a.send(map[string]any{"type": "say", "room": "r", "text": "before"})
	a.waitFor("msg")
	b.waitFor("msg")

	cl := nodes[0].hub.cl
	ns.Shutdown()
	ns.WaitForShutdown()
	eventually(t, 10*time.Second, "degraded", cl.degraded.Load)
	cl.consMu.Lock()
	locked := true
	defer func() {
		if locked {
			cl.consMu.Unlock()
		}
	}()
	testNATS(t, dir, port)
	eventually(t, 20*time.Second, "reconnected", cl.nc.IsConnected)
	if !cl.degraded.Load() {
		t.Fatal("back in the cluster without catching up with the stream")
	}
	a.send(map[string]any{"type": "say", "room": "r", "text": "during"})
	if j := a.waitFor("joined"); j.str("epoch") == epoch {
		t.Fatalf("a say during the rejoin, not on an island: %v", j)
	}
	if m := a.waitFor("msg"); m.str("text") != "during" {
		t.Fatalf("island message: %v", m)
	}
	cl.consMu.Unlock()
	locked = false

	deadline := time.Now().Add(20 * time.Second)
	for {
		f, err := a.readFrame(time.Until(deadline))
		if err != nil {
			t.Fatalf("the room stayed an island after NATS came back: %v", err)
		}
		var m msg
		if json.Unmarshal(f.payload, &m) == nil && m.str("type") == "joined" && m.str("epoch") == epoch {
			break
		}
	}
	eventually(t, 15*time.Second, "the other node back in the cluster", func() bool {
		return !nodes[1].hub.cl.degraded.Load() && len(nodes[1].hub.members.Nodes()) == 1
	})
	b.send(map[string]any{"type": "say", "room": "r", "text": "after"})
	if m := a.waitFor("msg"); m.str("text") != "after" || m.num("seq") != 2 {
		t.Fatalf("the other node's message after NATS came back: %v", m)
	}
}

// roomsInMemory counts the rooms in the shards of s.
func roomsInMemory(s *server) int {
	n := 0
	for i := range s.hub.shards {
		sh := &s.hub.shards[i]
		sh.mu.Lock()
		n += len(sh.rooms)
		sh.mu.Unlock()
	}
	return n
}

// TestClusterEmptyRoomsLeaveMemory has members on two nodes join, speak in
// and leave many rooms: once a room has nobody in it on any node (and no
// call), no node keeps it in memory, its messages having been stored. A
// join brings it back from the stream: history, seq and epoch.
func TestClusterEmptyRoomsLeaveMemory(t *testing.T) {
	ns := testNATS(t, t.TempDir(), 0)
	nodes := startNodes(t, ns.ClientURL(), 2, func(c *Config) { c.Rate, c.Burst = 10000, 10000 })
	a := dial(t, nodes[0])
	b := dial(t, nodes[1])
	const rooms = 200
	epochs := map[string]string{}
	for i := 0; i < rooms; i++ {
		name := "cycle-" + strconv.Itoa(i)
		epochs[name] = a.join(name).str("epoch")
		b.join(name)
		for _, text := range []string{"one", "two"} {
			a.send(map[string]any{"type": "say", "room": name, "text": text})
			a.waitFor("msg")
		}
		b.waitFor("msg")
		b.waitFor("msg")
		a.send(map[string]any{"type": "leave", "room": name})
		a.waitFor("left")
		b.send(map[string]any{"type": "leave", "room": name})
		b.waitFor("left")
	}
	for i, s := range nodes {
		deadline := time.Now().Add(10 * time.Second)
		for n := roomsInMemory(s); n > 0; n = roomsInMemory(s) {
			if time.Now().After(deadline) {
				t.Fatalf("node %d keeps %d empty rooms of %d in memory", i, n, rooms)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	// Back from the stream, on either node.
	for i, ws := range []*wsConn{a, b} {
		name := "cycle-" + strconv.Itoa(i)
		j := ws.join(name)
		h := j.list("history")
		if len(h) != 2 || msg(h[1].(map[string]any)).num("seq") != 2 || j.str("epoch") != epochs[name] {
			t.Fatalf("joined %s again: %v, want its two messages, epoch %s", name, j, epochs[name])
		}
		ws.send(map[string]any{"type": "say", "room": name, "text": "three"})
		if m := ws.waitFor("msg"); m.num("seq") != 3 {
			t.Fatalf("said again in %s: %v", name, m)
		}
	}
}

// TestClusterRetention lets a room's messages pass -nats-retention (2 s
// here) in a three-node cluster, a day of quiet: the stream then keeps
// nothing of the room, so its sequence is lost, and the room starts over,
// seq 1 under a new epoch, announced to its members on both nodes that
// have some with a joined frame. A third node that starts meanwhile, on a
// stream that holds nothing, starts, and agrees on the new epoch.
func TestClusterRetention(t *testing.T) {
	ns := testNATS(t, t.TempDir(), 0)
	short := func(c *Config) { c.NATSRetention = 2 * time.Second }
	nodes := startNodes(t, ns.ClientURL(), 2, short)
	node := nodes[0]
	a := dial(t, node)
	epoch := a.join("r").str("epoch")
	o := dial(t, nodes[1])
	joinSettle(t, o, "r", 2)
	a.waitFor("presence")
	a.send(map[string]any{"type": "say", "room": "r", "text": "old"})
	a.expect("msg")
	if m := o.waitFor("msg"); m.str("text") != "old" {
		t.Fatalf("on the other node: %v", m)
	}
	cl := node.hub.cl
	eventually(t, 10*time.Second, "the stream to expire the room's messages", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		info, err := cl.stream.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})

	fresh := startServer(t, func(c *Config) { c.NATS = ns.ClientURL(); short(c) })

	a.send(map[string]any{"type": "say", "room": "r", "text": "new"})
	j := a.expect("joined")
	if j.str("epoch") == epoch || len(j.list("history")) != 0 || j["recovered"] != false {
		t.Fatalf("the room's new lifetime, announced: %v (epoch was %s)", j, epoch)
	}
	if m := a.expect("msg"); m.str("text") != "new" || m.num("seq") != 1 {
		t.Fatalf("the first message after the room's expired: %v", m)
	}
	if jo := o.waitFor("joined"); jo.str("epoch") != j.str("epoch") {
		t.Fatalf("the new lifetime on the other node: %v, want epoch %s", jo, j.str("epoch"))
	}
	if m := o.waitFor("msg"); m.str("text") != "new" || m.num("seq") != 1 {
		t.Fatalf("the first message after the room's expired, on the other node: %v", m)
	}

	b := dial(t, fresh)
	jb := joinSettle(t, b, "r", 3)
	if h := jb.list("history"); jb.str("epoch") != j.str("epoch") || len(h) != 1 || msg(h[0].(map[string]any)).str("text") != "new" {
		t.Fatalf("joined on the node that started after the expiry: %v, want epoch %s and the new message", jb, j.str("epoch"))
	}
	b.send(map[string]any{"type": "say", "room": "r", "text": "next"})
	for _, ws := range []*wsConn{a, o} {
		if m := ws.waitFor("msg"); m.str("text") != "next" || m.num("seq") != 2 {
			t.Fatalf("a message from the new node: %v", m)
		}
	}
}

// TestClusterCallJoinThenDisconnect queues a call join on a room queue
// that is held, and disconnects: the join, decided after, must not put a
// peer that is gone into the call list (call_limit 1 here, so the next
// joiner would get call_full for good).
func TestClusterCallJoinThenDisconnect(t *testing.T) {
	ns := testNATS(t, t.TempDir(), 0)
	node := startNodes(t, ns.ClientURL(), 1, func(c *Config) { c.CallLimit = 1 })[0]
	y := dial(t, node)
	y.join("r")
	j := dial(t, node)
	j.join("r")
	y.waitFor("presence")
	r := roomNamed(node.hub, "r")
	release := holdQueue(t, node.hub, r, false)
	j.send(map[string]any{"type": "call", "room": "r", "action": "join"})
	eventually(t, 5*time.Second, "the call join to be queued", func() bool { return r.callJoins.Load() == 1 })
	_ = j.c.Close()
	if p := y.waitFor("presence"); p.str("event") != "leave" || p.str("id") != j.id {
		t.Fatalf("presence: %v", p)
	}
	release()
	y.send(map[string]any{"type": "call", "room": "r", "action": "join"})
	if m := y.waitFor2("call", "error"); m.str("type") != "call" {
		t.Fatalf("a call join after a peer's join was queued and it disconnected: %v", m)
	}
}

// waitFor2 reads until a message of type a or b, skipping others.
func (ws *wsConn) waitFor2(a, b string) msg {
	ws.t.Helper()
	for {
		if m := ws.next(); m.str("type") == a || m.str("type") == b {
			return m
		}
	}
}

// callJoinWithin has ws ask to join room's call until it gets a call frame
// or d passes, and returns the last answer.
func callJoinWithin(t *testing.T, ws *wsConn, room string, d time.Duration) msg {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ws.send(map[string]any{"type": "call", "room": room, "action": "join"})
		m := ws.waitFor2("call", "error")
		if m.str("type") == "call" || time.Now().After(deadline) {
			return m
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestClusterDeadNodesLeaveCalls kills nodes without goodbye with peers in
// a full call (call_limit 2): once a node is declared dead, a survivor
// takes its peers out of the call; and when no node that knew the dead
// one is left (here the only node crashes and another starts), the new
// node takes the peers of nodes it never hears from out of the call.
func TestClusterDeadNodesLeaveCalls(t *testing.T) {
	ns := testNATS(t, t.TempDir(), 0)
	limit := func(c *Config) { c.CallLimit = 2 }
	nodes := startNodes(t, ns.ClientURL(), 2, limit)
	a1 := dial(t, nodes[0])
	a2 := dial(t, nodes[0])
	b := dial(t, nodes[1])
	for _, ws := range []*wsConn{a1, a2} {
		ws.join("r")
		ws.send(map[string]any{"type": "call", "room": "r", "action": "join"})
		ws.waitFor("call")
	}
	joinSettle(t, b, "r", 3)
	b.send(map[string]any{"type": "call", "room": "r", "action": "join"})
	b.expectError(errCallFull, "call")

	crash(nodes[0])
	eventually(t, 20*time.Second, "the dead node's members to leave", func() bool {
		return len(nodes[1].hub.members.Nodes()) == 0
	})
	if m := callJoinWithin(t, b, "r", 5*time.Second); m.str("type") != "call" {
		t.Fatalf("a call join after the node of its peers was declared dead: %v", m)
	}
	b2 := dial(t, nodes[1])
	joinSettle(t, b2, "r", 2)
	b2.send(map[string]any{"type": "call", "room": "r", "action": "join"})
	b2.waitFor("call")

	// Now the only node with peers in the call dies, and a new one starts.
	crash(nodes[1])
	again := startServer(t, func(c *Config) { c.NATS = ns.ClientURL(); limit(c) })
	c := dial(t, again)
	c.join("r")
	if m := callJoinWithin(t, c, "r", 25*time.Second); m.str("type") != "call" {
		t.Fatalf("a call join when the call's peers are of nodes nobody hears from: %v", m)
	}
}
