package main

import (
	"errors"
	"slices"

	"noom/server/broker"
)

// Changing a room's call list, the same way standalone and in a cluster:
// a join or leave is queued on the room's queue (roomq.go), decided there
// on the newest list and stored through the broker's call lists
// (broker.Calls: in memory standalone, the stream in a cluster) by
// compare-and-set, so that the call limit holds across nodes; then it is
// applied here at once (applyCall), and in a cluster on the other nodes as
// they read it from the stream.
//
// Peers that are gone must leave call lists, or their places are taken
// for good. A local member's leave is queued behind its join if the join
// is still on its way (room.callJoins, see leaveCall), and a join whose
// member left meanwhile is dropped. A leave the queue refused is found by
// the sweep (sweepCalls), which also, in a cluster, purges the peers of
// nodes that are gone (cluster_calls.go).

// changeCall queues a call join or leave of c in r. With reply it is c's
// own call request: c gets the call frame (or call_full) once it is
// decided, and c's next requests wait until then (held.go), so that a
// page's media and signals sent right after it asks to join find it in the
// call. c.mu is held.
func (h *hub) changeCall(r *room, c *client, join, reply bool) {
	if join {
		r.callJoins.Add(1)
	}
	if h.rq.enqueue(pubReq{kind: reqCall, room: r, c: c, join: join, reply: reply}) {
		if reply {
			h.holdBehind(c)
		}
		return
	}
	if join {
		r.callJoins.Add(-1)
	}
	if reply {
		c.replyError(errUnavailable, "the server is busy; try again", "call")
	}
}

// doCall decides a call change (reqCall, reqPurge) on the room's newest
// list and stores it. It runs on the room's queue, holding no lock.
func (h *hub) doCall(req pubReq) {
	r := req.room
	// Last: a room whose members all left while its call changes were on
	// their way stays in memory until they are decided (dropIfEmpty
	// counts the joins), and leaves it here.
	defer h.dropRoomIfEmpty(r)
	if req.kind == reqCall && req.reply {
		defer h.settled(req.c) // after the list is applied: c's next requests run
	}
	if req.kind == reqCall && req.join {
		// Counted down after the list is applied: see leaveCall. A member
		// that left or disconnected since it asked is not added.
		defer r.callJoins.Add(-1)
		if !req.c.inRoom(r) {
			return
		}
	}
	var next []callPeer
	var nextSFU, full bool
	final, stored, retries, err := broker.Change(h.calls, r.name, h.callOf(r), casPatience,
		func(cur broker.Call) ([]broker.Peer, bool, bool, bool) {
			list := h.callPeersOf(r.name, cur)
			full = false
			if req.kind == reqPurge {
				next = req.purge(r, list)
			} else {
				next, full = h.nextCall(list, req.c, req.join)
			}
			// Once through the SFU, a call stays there until it empties:
			// moving back to a mesh would have both pages of a two-peer
			// call offer.
			nextSFU = len(next) > 0 && (cur.SFU || h.sfuWanted(len(next)))
			if full || sameCall(list, next) && cur.SFU == nextSFU {
				// Nothing to store. A refusal, a leave or a purge that
				// finds nothing to take out may be decided on a list
				// that is behind (a change on another node not read
				// back yet): Change asks for the newest once.
				return nil, false, true, full || !req.join
			}
			return peersOf(next), nextSFU, false, false
		})
	h.callConflicts.Add(uint64(retries))
	switch {
	case err == nil && full:
		if req.reply {
			req.c.replyCallFull()
		}
	case err == nil && stored:
		h.applyCall(r.name, final.Version, next, nextSFU, req.callAsker(), h.callReplyOf(req, next, nextSFU))
	case err == nil:
		if reply := h.callReplyOf(req, next, nextSFU); reply != nil {
			req.c.send(reply)
		}
	case errors.Is(err, broker.ErrOffline) && req.kind == reqCall:
		// A cluster without NATS: the room's call carries on here alone,
		// as a mesh (the SFU's home may be out of reach).
		h.callAlone(req)
	default:
		h.log.Warn("call not changed", "room", r.name, "err", err)
		if req.reply {
			req.c.replyError(errUnavailable, "the call could not be changed; try again", "call")
		}
	}
}

// dropRoomIfEmpty takes r out of memory if nothing holds it there.
func (h *hub) dropRoomIfEmpty(r *room) {
	sh := h.shardOf(r.name)
	sh.mu.Lock()
	h.dropIfEmpty(sh, r)
	sh.mu.Unlock()
}

// callAlone changes r's call on this node only (NATS out of reach).
func (h *hub) callAlone(req pubReq) {
	sh := h.shardOf(req.room.name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r := req.room
	next, full := h.nextCall(r.call, req.c, req.join)
	switch {
	case full && req.reply:
		req.c.replyCallFull()
	case !full:
		if reply := h.callReplyOf(req, next, false); reply != nil {
			req.c.send(reply)
		}
		h.setCallSFU(r, next, false, "")
	}
}

// callAsker is the peer a call reply answers, nil for none.
func (req pubReq) callAsker() *client {
	if req.kind == reqCall && req.reply {
		return req.c
	}
	return nil
}

// callReplyOf is the call frame that answers req, nil for none.
func (h *hub) callReplyOf(req pubReq, list []callPeer, sfu bool) []byte {
	if req.callAsker() == nil {
		return nil
	}
	return callReply(req.room.name, list, req.c.idStr, req.join, sfu)
}

// applyCall applies the call list stored at version: read from the stream
// (another node's), or just stored by this node (doCall), whichever comes
// first; a list not newer than the one applied is old news. asker, if any,
// is the peer whose call reply is reply: it goes out under the shard lock
// before the list is applied, so that the SFU's offer follows it, and
// before the asker's first signal can be checked against the list. Then
// signals that waited for this list go out.
func (h *hub) applyCall(name string, version uint64, list []callPeer, sfu bool, asker *client, reply []byte) {
	sh := h.shardOf(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if asker != nil && reply != nil {
		asker.send(reply)
	}
	r := sh.rooms[name]
	if r == nil && len(list) == 0 { // no call in a room nobody is in
		return
	}
	if r == nil {
		r = h.newRoom(name)
		sh.rooms[name] = r
	}
	if version <= r.callVersion {
		return
	}
	r.callVersion = version
	answered := ""
	if asker != nil {
		answered = asker.idStr
	}
	h.setCallSFU(r, list, sfu, answered)
	h.flushSignals(r)
	h.dropIfEmpty(sh, r)
}

// callOf is r's call as this node applied it.
func (h *hub) callOf(r *room) broker.Call {
	sh := h.shardOf(r.name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return broker.Call{Peers: peersOf(r.call), SFU: r.sfu, Version: r.callVersion}
}

// callPeersOf is call's peers with what this node knows of them: their
// connection if they are here, and the media they announced if the room's
// applied list has them.
func (h *hub) callPeersOf(room string, call broker.Call) []callPeer {
	sh := h.shardOf(room)
	sh.mu.Lock()
	var applied []callPeer
	if r := sh.rooms[room]; r != nil {
		applied = r.call
	}
	sh.mu.Unlock()
	list := make([]callPeer, len(call.Peers))
	for i, p := range call.Peers {
		if j := indexPeer(applied, p.ID); j >= 0 {
			list[i] = applied[j]
			continue
		}
		list[i] = callPeer{id: p.ID, nick: p.Nick, c: h.lookup(p.ID)}
	}
	return list
}

// peersOf is list as the broker keeps it.
func peersOf(list []callPeer) []broker.Peer {
	out := make([]broker.Peer, len(list))
	for i, p := range list {
		out[i] = broker.Peer{ID: p.id, Nick: p.nick}
	}
	return out
}

func sameCall(a, b []callPeer) bool {
	return slices.EqualFunc(a, b, func(p, q callPeer) bool { return p.id == q.id })
}

// sweepCalls queues a purge of every call list, among the rooms in memory,
// that holds a peer that is gone: gone(p) says, and purge takes them out.
// Standalone that is a local peer that is no member (its leave was refused
// by a full queue); a cluster adds the peers of nodes it does not hear
// from (cluster_calls.go).
func (h *hub) sweepCalls(gone func(r *room, p callPeer) bool, purge func(r *room, list []callPeer) []callPeer) {
	var stale []*room
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for _, r := range sh.rooms {
			if slices.ContainsFunc(r.call, func(p callPeer) bool { return gone(r, p) }) {
				stale = append(stale, r)
			}
		}
		sh.mu.Unlock()
	}
	for _, r := range stale {
		h.rq.enqueue(pubReq{kind: reqPurge, room: r, purge: purge})
	}
}

// leftCall reports a local peer of r that is no member of it. The shard
// lock is held.
func (h *hub) leftCall(r *room, p callPeer) bool {
	return nodeOf(p.id) == h.thisNode() && (p.c == nil || !slices.Contains(r.members, p.c))
}

// withoutLeft is list without the local peers that are no members of r.
// The caller holds no lock (c.inRoom takes the client's).
func (h *hub) withoutLeft(r *room, list []callPeer) []callPeer {
	return slices.DeleteFunc(slices.Clone(list), func(p callPeer) bool {
		return nodeOf(p.id) == h.thisNode() && (p.c == nil || !p.c.inRoom(r))
	})
}
