package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"noom/server/console"
)

// This node's side of the operator's console (server/console): what it
// reports of itself, its rooms and its connections, and the actions it
// carries out on its own connections. consoleSource (console_source.go)
// calls these for this node, and cluster_admin.go for the other nodes'
// consoles.
//
// Everything here runs on an admin goroutine (an HTTP request of the admin
// listener, or a NATS request), never on a poller or a worker. It takes
// the hub's locks one at a time, in the hub's order (client.mu, then
// shard.mu), copies what it needs and lets go before encoding anything.

// An operator acts as a room's host would (hostctl.go): Remove is a
// host's remove (removed, an hour's bar), End a host's end, Lock the
// room's locked setting. Frames name the operator as "operator".
const (
	// operatorID is the by of removed and ended frames an operator causes.
	operatorID = "operator"
	// mediaMesh and mediaSFU say how a call's media flows.
	mediaMesh = "mesh: WebRTC media goes between the peers; the server relays only signalling"
	mediaSFU  = "sfu: every peer sends its media once to the server (node %s), which forwards it"
	// maxDetailMembers bounds the members a room's page lists.
	maxDetailMembers = 1000
	// maxConsoleList bounds the rooms and connections one node lists.
	maxConsoleList = 1000
	// operatorClose is the close code and reason of a disconnect: a
	// policy decision, which a page meets by reconnecting (it is no ban).
	operatorClose       = closePolicy
	operatorCloseReason = "disconnected by an operator"
	// drainResend is when a drain sends its close frames again, to reach
	// connections that were upgrading while the first round went out.
	drainResend = 500 * time.Millisecond
)

// nodeName is this node's name: the cluster's name for it (connection ids
// start with it), or the host's name when standalone.
func (s *server) nodeName() string {
	if cl := s.hub.cl; cl != nil {
		return cl.node
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "noom"
}

// nodeState reports this node's numbers, as the console samples them.
func (s *server) nodeState() console.Node {
	st, h := s.stats, s.hub
	n := console.Node{
		Name:     s.nodeName(),
		Version:  buildVersion(),
		Addr:     s.addr,
		Uptime:   time.Since(s.adminState().started).Seconds(),
		Degraded: st.degraded.Load(),
		Draining: s.draining.Load(),
		Load: console.Load{
			Connections: st.connections.Load(),
			Rooms:       h.roomCount.Load(),
			FramesIn:    st.framesIn.Load(),
			Errors:      map[string]uint64{},
			Goroutines:  runtime.NumGoroutine(),
			CPUSeconds:  cpuSeconds(),
			RSS:         rss(),
		},
	}
	for _, w := range h.workers {
		n.FramesOut += w.stats.framesOut.Load()
		n.BytesOut += w.stats.bytesOut.Load()
		n.Deliveries += w.stats.deliveries.Load()
		n.SlowCloses += w.stats.slowConsumers.Load()
	}
	for i, code := range errorCodes {
		if v := st.errors[i].Load(); v > 0 {
			n.Errors[code] = v
		}
	}
	// Calls with a peer here. A walk of the room table under each shard's
	// lock in turn, like the rooms list's build: once a second per console.
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for _, r := range sh.rooms {
			local := 0
			for _, p := range r.call {
				if p.c != nil {
					local++
				}
			}
			if local > 0 {
				n.Calls++
				n.CallPeers += int64(local)
			}
		}
		sh.mu.Unlock()
	}
	return n
}

// localRooms lists the rooms this node knows with members or a call whose
// name contains q, any case: at most the maxConsoleList largest. In a
// cluster every node knows every room with members, from the others'
// membership events (cluster_events.go), so this is the cluster's list.
func (s *server) localRooms(q string) []console.Room {
	h, self := s.hub, s.nodeName()
	var all []roomCount
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for name, r := range sh.rooms {
			if (r.count() > 0 || len(r.call) > 0) && containsFold(name, q) {
				all = append(all, roomCount{name, r.count()})
			}
		}
		sh.mu.Unlock()
	}
	top := topRooms(all, maxConsoleList)
	out := make([]console.Room, 0, len(top))
	for _, rc := range top {
		sh := h.shardOf(rc.Room)
		sh.mu.Lock()
		if r := sh.rooms[rc.Room]; r != nil {
			cr := console.Room{Name: r.name, Members: r.count(), CallPeers: len(r.call), Nodes: map[string]int{}}
			if len(r.members) > 0 {
				cr.Nodes[self] = len(r.members)
			}
			for _, m := range r.remote {
				cr.Nodes[m.node]++
			}
			out = append(out, cr)
		}
		sh.mu.Unlock()
	}
	return out
}

// roomDetail describes room name as this node knows it. loaded is false
// when, in a cluster, the node holds the room only for members elsewhere
// and has not read its messages from the stream: then another node can
// tell them (consoleSource.Room asks one, remoteNode).
func (s *server) roomDetail(name string) (d console.RoomDetail, found, loaded bool, remoteNode string) {
	h, self := s.hub, s.nodeName()
	sh := h.shardOf(name)
	sh.mu.Lock()
	r := sh.rooms[name]
	if r == nil {
		sh.mu.Unlock()
		return d, false, false, ""
	}
	d = console.RoomDetail{Name: r.name, Epoch: r.epoch, Seq: r.delivered(), MembersTotal: r.count(),
		Lobby: []console.Member{}, Settings: map[string]any{}, Members: []console.Member{}, Call: []console.Member{}}
	for _, c := range r.members {
		if len(d.Members) == maxDetailMembers {
			break
		}
		d.Members = append(d.Members, console.Member{ID: c.idStr, Nick: c.nickname(), Role: r.meet.roleOf(c.idStr), Node: self})
	}
	local := len(d.Members)
	for id, m := range r.remote {
		if len(d.Members) == maxDetailMembers {
			break
		}
		d.Members = append(d.Members, console.Member{ID: id, Nick: m.nick, Role: r.roleOfAny(id), Node: m.node})
		if remoteNode == "" || m.node < remoteNode {
			remoteNode = m.node
		}
	}
	for _, p := range r.call {
		node := nodeOf(p.id)
		if p.c != nil || node == "" {
			node = self
		}
		d.Call = append(d.Call, console.Member{ID: p.id, Nick: p.nick, Role: r.roleOfAny(p.id), Node: node})
	}
	switch {
	case len(r.call) > 0 && r.sfu:
		home := sfuHome(r.call)
		if home == "" {
			home = self
		}
		d.Media = fmt.Sprintf(mediaSFU, home)
	case len(r.call) > 0:
		d.Media = mediaMesh
	}
	for _, w := range r.meet.lobbyq {
		d.Lobby = append(d.Lobby, console.Member{ID: w.c.idStr, Nick: w.c.nickname(), Role: roleMember, Node: self})
	}
	st := r.meet.settings()
	d.Settings = map[string]any{"passcode": st.passcode, "lobby": st.lobby, "locked": st.locked, "listed": st.listed}
	loaded = r.loaded
	kept := make([][]byte, 0, len(r.history)) // payloads are never modified: referencing them is enough
	for i := range r.history {
		kept = append(kept, r.history[(r.histStart+i)%len(r.history)])
	}
	sh.mu.Unlock()

	// Local members in join order, then the others (a map) by id.
	slices.SortFunc(d.Members[local:], func(a, b console.Member) int { return strings.Compare(a.ID, b.ID) })
	d.Messages = make([]console.Message, 0, len(kept))
	for _, p := range kept {
		var m console.Message
		if json.Unmarshal(p, &m) == nil {
			d.Messages = append(d.Messages, m)
		}
	}
	return d, true, loaded, remoteNode
}

// roomNodes lists the other nodes with members in room name, as this node
// knows them; found is false if it knows no such room.
func (s *server) roomNodes(name string) (nodes []string, found bool) {
	sh := s.hub.shardOf(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r := sh.rooms[name]
	if r == nil {
		return nil, false
	}
	for _, m := range r.remote {
		if !slices.Contains(nodes, m.node) {
			nodes = append(nodes, m.node)
		}
	}
	return nodes, true
}

// localConns lists this node's connections whose id, nick or address
// contains q, any case: at most maxConsoleList.
func (s *server) localConns(q string) []console.Conn {
	h, self := s.hub, s.nodeName()
	h.clientsMu.RLock()
	cs := make([]*client, 0, len(h.clients))
	for _, c := range h.clients {
		cs = append(cs, c)
	}
	h.clientsMu.RUnlock()
	now := h.clock.now()
	var out []console.Conn
	sent := h.framesOut(cs)
	for _, c := range cs {
		addr, nick := c.nbc.RemoteAddr().String(), c.nickname()
		if !containsFold(c.idStr, q) && !containsFold(nick, q) && !containsFold(addr, q) {
			continue
		}
		if len(out) == maxConsoleList {
			break
		}
		c.mu.Lock()
		rooms := make([]string, len(c.rooms))
		for i, r := range c.rooms {
			rooms[i] = r.name
		}
		c.mu.Unlock()
		age := float64(now-c.since) / 1000
		in := c.framesIn.Load()
		cc := console.Conn{ID: c.idStr, Nick: nick, Node: self, Addr: addr, Rooms: rooms,
			State: c.getState().String(), Unsent: int64(max(0, c.pending())), BytesOut: c.handed.Load(),
			Idle: float64(now-c.lastRead.Load()) / 1000, Age: &age, FramesIn: &in}
		if n, ok := sent[c]; ok {
			cc.FramesOut = &n
		}
		out = append(out, cc)
	}
	return out
}

// framesOut reads the frames written to each of cs from the connections'
// workers, which own the counts: a job on each worker, waited for at most
// a second (a worker that busy leaves its connections' counts out).
func (h *hub) framesOut(cs []*client) map[*client]uint64 {
	byWorker := make(map[*worker][]*client)
	for _, c := range cs {
		byWorker[c.w] = append(byWorker[c.w], c)
	}
	var mu sync.Mutex
	out := make(map[*client]uint64, len(cs))
	var wg sync.WaitGroup
	for w, list := range byWorker {
		wg.Add(1)
		w.push(job{op: jobRun, fn: func() {
			defer wg.Done()
			mu.Lock()
			defer mu.Unlock()
			for _, c := range list {
				out[c] = c.framesOut
			}
		}})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
	}
	mu.Lock()
	defer mu.Unlock()
	return maps.Clone(out)
}

// disconnectLocal closes connection id of this node with operatorClose,
// as a shutdown closes every one: the close frame goes after what is
// queued, the peer answers, the socket closes and the connection leaves
// its rooms. It reports false if no such connection is here.
func (s *server) disconnectLocal(id string) bool {
	c := s.hub.lookup(id)
	if c == nil {
		return false
	}
	c.w.push(job{op: jobClose, c: c, frame: closeFrame(operatorClose, operatorCloseReason)})
	return true
}

// removeLocal takes connection id of this node out of room name; false if
// it is not a member here.
func (s *server) removeLocal(name, id string) bool {
	c := s.hub.lookup(id)
	return c != nil && s.removeMember(c, name)
}

// removeMember is hub.leave for someone else's request: c leaves room name
// and is answered left, the others get presence leave, c's part in the
// call ends and the cluster is told, all through the leave path
// (leaveLocked). It differs from hub.leave only in answering nothing when
// c is not in the room: the request was not c's. It reports whether c was.
func (s *server) removeMember(c *client, name string) bool {
	c.mu.Lock()
	r := c.roomOf(name)
	c.mu.Unlock()
	if r == nil {
		return false
	}
	s.hub.removeLocal(c, r, operatorID)
	return true
}

// endLocal takes every member of room name on this node out of it, and
// reports how many that was. Who joins meanwhile stays: ending is not
// locking.
func (s *server) endLocal(name string) int {
	sh := s.hub.shardOf(name)
	sh.mu.Lock()
	r := sh.rooms[name]
	n := 0
	if r != nil {
		n = len(r.members)
	}
	sh.mu.Unlock() // endLocal takes the members' locks, which come before the shard's
	if r != nil {
		s.hub.endLocal(r, operatorID)
	}
	return n
}

// lockRoom sets room name's locked setting, as a host's settings request
// would: kept through the broker (or the cluster's bucket, which every
// node applies), and told to the members. found is false for a room not
// in memory here.
func (s *server) lockRoom(name string, locked bool) (found bool, err error) {
	h := s.hub
	sh := h.shardOf(name)
	sh.mu.Lock()
	r := sh.rooms[name]
	sh.mu.Unlock()
	if r == nil {
		return false, nil
	}
	done := make(chan error, 1)
	h.queueSettings(nil, r, settingsChange{locked: &locked}, func(err error) { done <- err })
	return true, <-done
}

// drain is the first half of a graceful shutdown without the exit:
// /healthz answers 503, so a load balancer stops sending people here;
// upgrades are refused with 503; every connection gets close 1001, upon
// which pages reconnect, through the load balancer, to another node. The
// process keeps running with its admin listener (and, in a cluster, its
// place in it), for the operator to watch it empty and then stop it. There
// is no way back but a restart.
func (s *server) drain(by string) {
	if s.draining.Swap(true) {
		return
	}
	s.log.Warn("draining: /healthz answers 503, upgrades are refused, connections are closed with 1001",
		"by", by, "connections", s.stats.connections.Load())
	s.hub.closeAll(closeGoingAway, "server draining")
	time.AfterFunc(drainResend, func() {
		if s.stats.connections.Load() > 0 {
			s.hub.closeAll(closeGoingAway, "server draining")
		}
	})
}

// containsFold reports whether s contains q, ignoring case; "" is in
// everything.
func containsFold(s, q string) bool {
	return q == "" || strings.Contains(strings.ToLower(s), strings.ToLower(q))
}

// buildVersion names the build: its module version, else its commit
// (marked +dirty when built from a modified tree), and the Go version.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	if v == "" || v == "(devel)" {
		v = "devel"
		var rev string
		dirty := false
		for _, kv := range bi.Settings {
			switch kv.Key {
			case "vcs.revision":
				rev = kv.Value
			case "vcs.modified":
				dirty = kv.Value == "true"
			}
		}
		if len(rev) >= 12 {
			v = rev[:12]
			if dirty {
				v += "+dirty"
			}
		}
	}
	return v + " " + bi.GoVersion
}

// cpuSeconds is the CPU time the process has used, user and system.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// rss is the process's resident memory in bytes, from /proc (0 elsewhere).
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}
