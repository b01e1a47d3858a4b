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

// publishEvent numbers ev (a heartbeat repeats the last number) and
// publishes it. The caller may hold room locks: it never waits on the
// network (nats buffers).
func (cl *cluster) publishEvent(ev nodeEvent) {
	cl.evMu.Lock()
	defer cl.evMu.Unlock()
	if ev.Type != evHeartbeat && ev.Type != evBye {
		cl.evSeq++
	}
	ev.Seq = cl.evSeq
	b, _ := json.Marshal(ev)
	_ = cl.nc.Publish(subjEv+cl.node, b)
}

// memberEvent tells the cluster a local member joined or left a room.
func (cl *cluster) memberEvent(typ, room, id, nick string) {
	if cl == nil || !cl.ready.Load() {
		return
	}
	cl.publishEvent(nodeEvent{Type: typ, Room: room, ID: id, Nick: nick})
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
	}
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
			cl.enqueue(pubReq{kind: reqPurge, room: r, node: node})
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
		go cl.publishEvent(nodeEvent{Type: evHeartbeat})
	}
	n.lastSeen = time.Now()
	switch {
	case n.syncing:
		if ev.Type != evHeartbeat {
			n.pending = append(n.pending, ev)
		}
		cl.nodesMu.Unlock()
		return
	case ev.Type == evHeartbeat && ev.Seq == n.seq, ev.Type != evHeartbeat && ev.Seq == n.seq+1:
		n.seq = ev.Seq
	default: // a node new to us, or a gap: ask for its whole state
		n.syncing = true
		if ev.Type != evHeartbeat {
			n.pending = append(n.pending, ev)
		}
		cl.nodesMu.Unlock()
		go cl.fetchSnapshot(node)
		return
	}
	cl.nodesMu.Unlock()
	if ev.Type != evHeartbeat {
		cl.h.applyEvent(node, ev)
	}
}

// snapshotChunk is one reply message of a snapshot: up to snapshotBatch
// members as [room, id, nick].
type snapshotChunk struct {
	Seq     uint64      `json:"s"`
	Last    bool        `json:"last"`
	Members [][3]string `json:"m"`
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
		n.seq = ^uint64(0) // so the next event or heartbeat asks again
		cl.nodesMu.Unlock()
		cl.log.Warn("snapshot", "node", node, "err", err)
		return
	}
	pending := n.pending
	n.syncing, n.pending, n.seq = false, nil, seq
	cl.h.replaceRemote(node, members) // under nodesMu, so no event of node overtakes it
	for _, ev := range pending {
		if ev.Seq > n.seq {
			n.seq = ev.Seq
			cl.h.applyEvent(node, ev)
		}
	}
	cl.nodesMu.Unlock()
}

func (cl *cluster) requestSnapshot(node string) ([][3]string, uint64, error) {
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
	var members [][3]string
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
}

// relaySignal sends a signal to member to of r on another node; false if
// no such member is known.
func (cl *cluster) relaySignal(r *room, to string, from *client, data []byte) bool {
	sh := cl.h.shardOf(r.name)
	sh.mu.Lock()
	m, ok := r.remote[to]
	sh.mu.Unlock()
	if !ok {
		return false
	}
	b, _ := json.Marshal(signalRelay{Room: r.name, To: to, From: from.idStr, Nick: from.nickname(), Data: data})
	return cl.nc.Publish(subjSig+m.node, b) == nil
}

// onSignal delivers a signal relayed from another node.
func (cl *cluster) onSignal(m *nats.Msg) {
	var s signalRelay
	if json.Unmarshal(m.Data, &s) != nil {
		return
	}
	t := cl.h.lookup(s.To)
	if t == nil {
		return
	}
	t.mu.Lock()
	in := t.roomOf(s.Room) != nil
	t.mu.Unlock()
	if in {
		t.send(encodeSignal(s.Room, s.From, s.Nick, s.Data))
	}
}
