package main

import (
	"encoding/json"
	"time"

	"noom/server/broker"
)

// Membership across nodes is the broker's (broker.NATSMembers): this
// node's members' changes go out through h.members, and the others' come
// back to memberView, which applies them to the room table
// (cluster_rooms.go). Signals for a member on another node go to that
// node directly, through the same Membership (Relay).

// memberView is the hub's broker.View in a cluster.
type memberView struct{ cl *cluster }

// Join records another node's member, or its new nick or role.
func (v memberView) Join(node string, m broker.Member) {
	v.cl.h.remoteJoin(node, m.Room, m.ID, m.Nick, m.Role)
}

// Leave forgets another node's member.
func (v memberView) Leave(_, room, id string) { v.cl.h.remoteLeave(room, id) }

// Role records another node's member's role.
func (v memberView) Role(_, room, id, role string) { v.cl.h.remoteRole(room, id, role) }

// Command runs a host's request about room sent by another node, if it is
// for every node or this one (cluster_meetings.go).
func (v memberView) Command(_, room string, b []byte) {
	var cmd roomCmd
	if json.Unmarshal(b, &cmd) != nil {
		return
	}
	if cmd.Node == "" || cmd.Node == v.cl.node {
		v.cl.h.roomCommand(room, &cmd)
	}
}

// Signal delivers a signal relayed from another node.
func (v memberView) Signal(b []byte) { v.cl.onSignal(b) }

// Replace makes members all that this node knows of node's.
func (v memberView) Replace(node string, members []broker.Member) {
	v.cl.h.replaceRemote(node, members)
}

// Gone takes node's members out of every room, and its peers out of every
// call.
func (v memberView) Gone(node string) { v.cl.dropNode(node) }

// Local lists this node's members, for another node's snapshot.
func (v memberView) Local() []broker.Member { return v.cl.h.localMembers() }

// sweeps purges the call lists of peers that are gone, every heartbeat,
// until the cluster closes.
func (cl *cluster) sweeps() {
	defer cl.wg.Done()
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		select {
		case <-cl.stop:
			return
		case <-t.C:
		}
		cl.sweepCalls()
	}
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

// relaySignal sends s to node, the node of its target; false if it could
// not be sent (standalone: there is no other node).
func (h *hub) relaySignal(node string, s signalRelay) bool {
	b, _ := json.Marshal(s)
	return h.members.Relay(node, b)
}

// onSignal delivers a signal relayed from another node, if sender and
// target are peers of the room's call as this node sees it. The sender's
// node checked that already; this check sees the target's own leaves, and
// waiting for the same call list keeps the order a page relies on:
// call_peer join before the newcomer's offer.
func (cl *cluster) onSignal(data []byte) {
	var s signalRelay
	if json.Unmarshal(data, &s) != nil || !validRoom(s.Room) {
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
