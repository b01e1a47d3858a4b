package main

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// Membership across nodes (see cluster.go for the design): each node
// publishes its members' events, numbered, with heartbeats; the others
// apply them in order, ask for a snapshot when they miss one, and drop a
// node that falls silent. Signals for a member on another node go to that
// node directly.

// eventQueue bounds the membership events waiting for the NATS socket.
// Normally the queue is empty within microseconds; it fills only while
// NATS does not read (a stalled server, a full socket), and then events
// are dropped rather than block: the others see the gap in the numbers
// (the next heartbeat carries the last number) and ask for a snapshot.
const eventQueue = 4096

// publishEvent numbers ev (a heartbeat repeats the last number) and queues
// it for sendEvents. It never waits on the network: callers hold room
// locks, on a poller goroutine. A full queue drops ev, numbered, so that
// its loss shows as a gap.
func (cl *cluster) publishEvent(ev nodeEvent) {
	cl.evMu.Lock()
	defer cl.evMu.Unlock()
	if cl.evClosed {
		return
	}
	if ev.Type != evHeartbeat && ev.Type != evBye {
		cl.evSeq++
	}
	ev.Seq = cl.evSeq
	select {
	case cl.evq <- ev:
		cl.evFull = false
	default:
		cl.evDropped.Add(1)
		if !cl.evFull { // once per overflow, not once per event
			cl.evFull = true
			cl.log.Warn("membership events dropped: NATS does not take them; the other nodes will resync", "queue", eventQueue)
		}
	}
}

// sendEvents publishes the queued events in order, until close ends the
// queue. nc.Publish buffers, and waits only when the socket is full: then
// it is this goroutine that waits, with no lock held.
func (cl *cluster) sendEvents() {
	defer close(cl.evDone)
	for ev := range cl.evq {
		b, _ := json.Marshal(ev)
		_ = cl.nc.Publish(subjEv+cl.node, b)
	}
}

// closeEvents queues a last event (the bye), ends the queue and waits, at
// most wait, for it to be sent.
func (cl *cluster) closeEvents(last nodeEvent, wait time.Duration) {
	cl.publishEvent(last)
	cl.evMu.Lock()
	if !cl.evClosed {
		cl.evClosed = true
		close(cl.evq)
	}
	cl.evMu.Unlock()
	select {
	case <-cl.evDone:
	case <-time.After(wait):
		cl.log.Warn("leaving the cluster: NATS did not take the last membership events")
	}
}

// memberEvent tells the cluster a local member joined (with its role) or
// left a room.
func (cl *cluster) memberEvent(typ, room, id, nick, role string) {
	if cl == nil || !cl.ready.Load() {
		return
	}
	cl.publishEvent(nodeEvent{Type: typ, Room: room, ID: id, Nick: nick, Role: role})
}

// nickEvent tells the cluster a local member has a new nick.
func (cl *cluster) nickEvent(id, nick string, rooms []string) {
	if cl == nil || !cl.ready.Load() || len(rooms) == 0 {
		return
	}
	cl.publishEvent(nodeEvent{Type: evNick, ID: id, Nick: nick, Rooms: rooms})
}

// heartbeats announces this node every heartbeatEvery and declares
// silent nodes dead.
func (cl *cluster) heartbeats() {
	defer cl.wg.Done()
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		select {
		case <-cl.stop:
			return
		case <-t.C:
		}
		if !cl.degraded.Load() {
			cl.publishEvent(nodeEvent{Type: evHeartbeat})
		}
		var dead []string
		cl.nodesMu.Lock()
		for name, n := range cl.nodes {
			if time.Since(n.lastSeen) > deadAfter {
				dead = append(dead, name)
				delete(cl.nodes, name)
			}
		}
		cl.nodesMu.Unlock()
		for _, name := range dead {
			cl.log.Warn("node silent: its members leave", "node", name, "after", deadAfter)
			cl.dropNode(name)
		}
		cl.sweepCalls()
	}
}

// isLive reports whether node is another node this one hears from; none
// standalone.
func (cl *cluster) isLive(node string) bool {
	if cl == nil {
		return false
	}
	cl.nodesMu.Lock()
	defer cl.nodesMu.Unlock()
	return cl.nodes[node] != nil
}

// liveNodes counts the other nodes heard from recently.
func (cl *cluster) liveNodes() int {
	if cl == nil {
		return 0
	}
	cl.nodesMu.Lock()
	defer cl.nodesMu.Unlock()
	return len(cl.nodes)
}

// dropNode takes every member of node out of every room, and its peers out
// of every call.
func (cl *cluster) dropNode(node string) {
	for _, r := range cl.h.dropRemote(node) {
		if cl.online() {
			cl.purgeNode(r, node)
		}
	}
}

// onEvent applies another node's member event, in that node's order.
func (cl *cluster) onEvent(m *nats.Msg) {
	node := strings.TrimPrefix(m.Subject, subjEv)
	if node == cl.node {
		return
	}
	var ev nodeEvent
	if json.Unmarshal(m.Data, &ev) != nil {
		return
	}
	if ev.Type == evBye {
		cl.nodesMu.Lock()
		delete(cl.nodes, node)
		cl.nodesMu.Unlock()
		cl.dropNode(node)
		return
	}
	cl.nodesMu.Lock()
	n := cl.nodes[node]
	if n == nil {
		n = &peerNode{}
		cl.nodes[node] = n
		// A node new to us: say who we are at once, rather than at the next
		// heartbeat, so that it learns of our members within milliseconds.
		cl.publishEvent(nodeEvent{Type: evHeartbeat})
	}
	n.lastSeen = time.Now()
	var apply, fetch bool
	switch {
	case n.syncing:
		if ev.Type != evHeartbeat {
			n.pending = append(n.pending, ev)
		}
	case !n.failed && (ev.Type == evHeartbeat && ev.Seq == n.seq || ev.Type != evHeartbeat && ev.Seq == n.seq+1):
		n.seq = ev.Seq
		apply = ev.Type != evHeartbeat
	case !n.failed && ev.Seq <= n.seq:
		// Queued before the snapshot that covered it: a node answers a
		// snapshot request at once, while its events wait in its queue.
	default: // a node new to us, a gap, or a snapshot that did not come: ask for its whole state
		n.syncing = true
		if ev.Type != evHeartbeat {
			n.pending = append(n.pending, ev)
		}
		fetch = true
	}
	cl.nodesMu.Unlock()
	if apply {
		cl.h.applyEvent(node, ev)
	}
	if fetch {
		go cl.fetchSnapshot(node)
	}
}

// snapshotChunk is one reply message of a snapshot: up to snapshotBatch
// members as [room, id, nick, role].
type snapshotChunk struct {
	Seq     uint64      `json:"s"`
	Last    bool        `json:"last"`
	Members [][4]string `json:"m"`
}

const snapshotBatch = 2000

// onSnapshotRequest answers with this node's members, in chunks.
func (cl *cluster) onSnapshotRequest(m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	cl.evMu.Lock()
	seq := cl.evSeq // the state read below includes at least every event up to seq
	cl.evMu.Unlock()
	all := cl.h.localMembers()
	for i := 0; ; i += snapshotBatch {
		end := min(i+snapshotBatch, len(all))
		b, _ := json.Marshal(snapshotChunk{Seq: seq, Last: end == len(all), Members: all[i:end]})
		_ = cl.nc.Publish(m.Reply, b)
		if end == len(all) {
			return
		}
	}
}

// fetchSnapshot asks node for its members, replaces what this node knows
// of them, and applies the events that came meanwhile.
func (cl *cluster) fetchSnapshot(node string) {
	members, seq, err := cl.requestSnapshot(node)
	cl.nodesMu.Lock()
	n := cl.nodes[node]
	if n == nil { // declared dead meanwhile
		cl.nodesMu.Unlock()
		return
	}
	if err != nil {
		n.syncing, n.pending = false, nil
		n.failed = true // so the next event or heartbeat asks again
		cl.nodesMu.Unlock()
		cl.log.Warn("snapshot", "node", node, "err", err)
		return
	}
	pending := n.pending
	n.syncing, n.failed, n.pending, n.seq = false, false, nil, seq
	cl.h.replaceRemote(node, members) // under nodesMu, so no event of node overtakes it
	for _, ev := range pending {
		if ev.Seq > n.seq {
			n.seq = ev.Seq
			cl.h.applyEvent(node, ev)
		}
	}
	cl.nodesMu.Unlock()
}

func (cl *cluster) requestSnapshot(node string) ([][4]string, uint64, error) {
	inbox := cl.nc.NewRespInbox()
	sub, err := cl.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, 0, err
	}
	defer sub.Unsubscribe()
	_ = sub.SetPendingLimits(-1, 256<<20)
	if err := cl.nc.PublishRequest(subjSnap+node, inbox, nil); err != nil {
		return nil, 0, err
	}
	var members [][4]string
	for {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			return nil, 0, err
		}
		var ch snapshotChunk
		if err := json.Unmarshal(m.Data, &ch); err != nil {
			return nil, 0, err
		}
		members = append(members, ch.Members...)
		if ch.Last {
			return members, ch.Seq, nil
		}
	}
}

// signalRelay is a signal on its way to another node.
type signalRelay struct {
	Room string          `json:"r"`
	To   string          `json:"t"`
	From string          `json:"f"`
	Nick string          `json:"n"`
	Data json.RawMessage `json:"d"`
	// CallSeq is the stream sequence of the call list the sender's node
	// checked the signal against; the target's node waits until it has
	// applied that list before checking and delivering it.
	CallSeq uint64 `json:"s,omitempty"`
}

// Limits on signals that wait for this node to catch up with a call list.
// They wait only as long as this node's consumer lags the sender's node,
// milliseconds normally; the cap bounds memory if it lags long.
const (
	maxPendingSignals = 256 // per room
	pendingSignalTTL  = 5 * time.Second
)

// pendingSignal is a relayed signal that came before the call list its
// sender's node had checked it against.
type pendingSignal struct {
	s  signalRelay
	at time.Time
}

// relaySignal sends s to node, the node of its target; false if NATS did
// not take it.
func (cl *cluster) relaySignal(node string, s signalRelay) bool {
	if !cl.online() {
		return false
	}
	b, _ := json.Marshal(s)
	return cl.nc.Publish(subjSig+node, b) == nil
}

// onSignal delivers a signal relayed from another node, if sender and
// target are peers of the room's call as this node sees it. The sender's
// node checked that already; this check sees the target's own leaves, and
// waiting for the same call list keeps the order a page relies on:
// call_peer join before the newcomer's offer.
func (cl *cluster) onSignal(m *nats.Msg) {
	var s signalRelay
	if json.Unmarshal(m.Data, &s) != nil || !validRoom(s.Room) {
		return
	}
	h := cl.h
	sh := h.shardOf(s.Room)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r := sh.rooms[s.Room]
	switch {
	case r == nil:
	case r.callVersion < s.CallSeq: // this node has not applied that call list yet
		if len(r.pendingSignals) < maxPendingSignals {
			r.pendingSignals = append(r.pendingSignals, pendingSignal{s, time.Now()})
		}
	default:
		h.deliverSignal(r, s)
	}
}

// deliverSignal sends s to its target, a local peer of r's call, if its
// sender is a peer of that call too. The shard lock must be held.
func (h *hub) deliverSignal(r *room, s signalRelay) {
	switch {
	case s.To == sfuPeerID: // for this node's SFU, the call's home
		if h.sfu != nil && r.sfu && sfuHome(r.call) == h.thisNode() && indexPeer(r.call, s.From) >= 0 {
			h.sfu.push(sfuOp{kind: sfuSignal, room: r.name, id: s.From, data: s.Data})
		}
		return
	case s.From == sfuPeerID: // from the SFU of the call's home
		if i := indexPeer(r.call, s.To); i >= 0 && r.call[i].c != nil && r.sfu {
			r.call[i].c.send(encodeSignal(r.name, sfuPeerID, sfuPeerID, s.Data))
		}
		return
	}
	i := indexPeer(r.call, s.To)
	if i < 0 || r.call[i].c == nil || indexPeer(r.call, s.From) < 0 {
		return
	}
	r.call[i].c.send(encodeSignal(r.name, s.From, s.Nick, s.Data))
}

// flushSignals delivers the waiting signals of r whose call list has been
// applied, and drops those that waited too long. The shard lock must be
// held.
func (h *hub) flushSignals(r *room) {
	if len(r.pendingSignals) == 0 {
		return
	}
	now := time.Now()
	keep := r.pendingSignals[:0]
	for _, p := range r.pendingSignals {
		switch {
		case now.Sub(p.at) > pendingSignalTTL:
		case p.s.CallSeq <= r.callVersion:
			h.deliverSignal(r, p.s)
		default:
			keep = append(keep, p)
		}
	}
	clear(r.pendingSignals[len(keep):])
	r.pendingSignals = keep
	if len(keep) == 0 {
		r.pendingSignals = nil
	}
}
