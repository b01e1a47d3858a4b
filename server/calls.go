package main

import (
	"slices"
	"strconv"
)

// Video calls and their signalling. A room's call is a list of peers, and it
// changes by replacing the list: applying a new list tells the room's local
// call peers who joined and who left (call_peer). The broker keeps the
// lists (broker.Calls), and a list is replaced by compare-and-set
// (calls_change.go); in a cluster every node applies each new list as it
// arrives from the stream, so all agree on who is in the call, and the
// call limit holds across nodes.

// callPeer is one peer of a room's video call.
type callPeer struct {
	id, nick string
	c        *client // the connection, when it is on this node
	// media is what the peer last announced it sends (media request);
	// muted is a host's mute in force until it announces audio on.
	media mediaState
	muted bool
}

// callAction handles call join and leave in room name.
func (h *hub) callAction(c *client, name, action string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.memberOf(name, "call")
	if r == nil {
		return
	}
	h.changeCall(r, c, action == "join", true) // calls_change.go
}

// replyCallFull refuses a call join.
func (c *client) replyCallFull() {
	c.replyError(errCallFull, "the call has "+strconv.Itoa(c.w.hub.cfg.CallLimit)+" peers already", "call")
}

// nextCall returns the call list after c joins or leaves cur; full reports a
// join refused by the call limit. cur is not modified.
func (h *hub) nextCall(cur []callPeer, c *client, join bool) (next []callPeer, full bool) {
	i := indexPeer(cur, c.idStr)
	switch {
	case join == (i >= 0): // already in, or already out
		return cur, false
	case !join:
		return slices.Delete(slices.Clone(cur), i, i+1), false
	case len(cur) >= h.cfg.CallLimit:
		return cur, true
	}
	return append(slices.Clone(cur), callPeer{id: c.idStr, nick: c.nickname(), c: c}), false
}

// callReply is the call frame that answers id: after a join, the other
// peers, whom the newcomer then offers to; after a leave, none.
func callReply(room string, list []callPeer, id string, joined, sfu bool) []byte {
	if !joined {
		list, sfu = nil, false
	}
	return encodeCall(room, list, id, sfu)
}

func indexPeer(list []callPeer, id string) int {
	return slices.IndexFunc(list, func(p callPeer) bool { return p.id == id })
}

// setCallSFU makes next r's call, its media through the SFU if sfu, and
// tells r's local call peers who left and who joined, and the SFU
// (calls_sfu.go; answered is the peer whose call reply went out already).
// The shard lock must be held.
func (h *hub) setCallSFU(r *room, next []callPeer, sfu bool, answered string) {
	prev, prevSFU := r.call, r.sfu
	r.call, r.sfu = next, sfu
	defer h.sfuSetCall(r, prev, prevSFU, answered)
	for _, p := range prev {
		if indexPeer(next, p.id) < 0 {
			h.notifyCall(r, "leave", p)
		}
	}
	for _, p := range next {
		if indexPeer(prev, p.id) < 0 {
			h.notifyCall(r, "join", p)
		}
	}
}

// notifyCall sends call_peer about p to r's other local call peers.
func (h *hub) notifyCall(r *room, event string, p callPeer) {
	frame := encodeCallPeer(r.name, event, p.id, p.nick)
	for _, q := range r.call {
		if q.c != nil && q.id != p.id {
			q.c.send(frame)
		}
	}
}

// leaveCall takes c out of r's call, if it is in, or may be about to be
// (its join is queued: the leave queues behind it): c left the room or
// disconnected. The shard lock must be held.
func (h *hub) leaveCall(r *room, c *client) {
	if indexPeer(r.call, c.idStr) < 0 && r.callJoins.Load() == 0 {
		return
	}
	h.changeCall(r, c, false, false)
}

// signal relays data from c to member to of room name, on this node or,
// in a cluster, on the node that holds it, if both are peers of the room's
// call (PROTOCOL.md, "Calls: who may signal whom"): a page answers an offer
// with its camera and microphone, so nobody outside the call may reach it.
// A target that is no member gets no_such_member; a sender or target that
// is a member but not in the call, not_allowed.
//
// In a cluster r.call is the cluster-wide list as this node applied it
// (cluster.go); the target's node checks again against its own copy, once
// it has applied at least the same list (cluster_events.go).
func (h *hub) signal(c *client, name, to string, data []byte) {
	c.mu.Lock()
	r := c.memberOf(name, "signal")
	c.mu.Unlock()
	if r != nil {
		h.signalIn(c, r, to, data)
	}
}

// signalIn is signal for c, a member of r.
func (h *hub) signalIn(c *client, r *room, to string, data []byte) {
	name := r.name
	if to == sfuPeerID {
		h.sfuSignal(c, r, data)
		return
	}
	t := h.lookup(to)
	local := t != nil && t.inRoom(r) // takes t.mu: not under the shard lock
	sh := h.shardOf(name)
	sh.mu.Lock()
	rm, remote := r.remote[to]
	inCall := indexPeer(r.call, c.idStr) >= 0 && indexPeer(r.call, to) >= 0
	callSeq := r.callVersion
	sh.mu.Unlock()
	switch {
	case !local && !remote:
		c.replyError(errNoSuchMember, "no member "+to+" in room "+name, "signal")
	case !inCall:
		c.replyError(errNotAllowed, "signal goes only between peers of the room's call", "signal")
	case local:
		t.send(encodeSignal(name, c.idStr, c.nickname(), data))
	case !h.relaySignal(rm.node, signalRelay{Room: name, To: to, From: c.idStr, Nick: c.nickname(), Data: data, CallSeq: callSeq}):
		c.replyError(errUnavailable, "the signal could not be relayed to "+to+"'s node; try again", "signal")
	}
}
