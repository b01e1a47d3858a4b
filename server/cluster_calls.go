package main

import (
	"encoding/json"
	"slices"
	"time"

	"noom/server/broker"

	"github.com/nats-io/nats.go"
)

// Call lists across nodes (see calls.go for a call on one node): a room's
// list is the last message on noom.call.<room>, changed by compare-and-set
// on the room's publisher, like messages, so the call limit holds across
// nodes. A node applies a list it stored itself at once (before it answers
// call), and every list it reads from the stream.

// Peers that are gone must leave call lists, or their places are taken
// for good. A local member's leave is queued behind its join if the join
// is still on its way (room.callJoins, see leaveCall), and a join whose
// member left meanwhile is dropped. A node declared dead, or that says
// goodbye, has its peers purged at once by every node that notices; and
// every node sweeps the lists of the rooms it has in memory (sweepCalls)
// for peers of nodes it does not hear from (also nodes that died before it
// started, which nobody will declare dead) and local peers that are no
// members. Several nodes purging the same list is one change: the first
// compare-and-set wins, the others find nothing left to purge.

// changeCall queues a call join or leave of c in r; with reply, c gets the
// call frame (or call_full) once it is decided.
func (cl *cluster) changeCall(r *room, c *client, join, reply bool) {
	if join {
		r.callJoins.Add(1)
	}
	if !cl.enqueue(pubReq{kind: reqCall, room: r, c: c, join: join, reply: reply}) {
		if join {
			r.callJoins.Add(-1)
		}
		if reply {
			c.replyError(errUnavailable, "the cluster is busy; try again", "call")
		}
	}
}

// doCall changes a room's call list by compare-and-set.
func (cl *cluster) doCall(req pubReq, last map[string]published) {
	r := req.room
	subj := subjCall + subjectRoom(r.name)
	if req.kind == reqCall && req.join {
		// Counted down after the list is applied: see leaveCall. A member
		// that left or disconnected since it asked is not added.
		defer r.callJoins.Add(-1)
		if !req.c.inRoom(r) {
			return
		}
	}
	checked := false // a refusal was checked against the stream's list
	for deadline := time.Now().Add(casPatience); cl.online(); {
		cur, curSFU, sseq := cl.callState(r, last[subj])
		var next []callPeer
		full := false
		if req.kind == reqPurge {
			next = cl.withoutGone(r, cur, req.node)
		} else {
			next, full = cl.h.nextCall(cur, req.c, req.join)
		}
		if full && !checked {
			// The list here may be behind the stream's (a leave on another
			// node not read back yet): a join is refused only on the
			// newest list, read once.
			checked = true
			if p, err := cl.lastMsg(subj); err == nil && p.streamSeq > sseq {
				last[subj] = p
				continue
			}
		}
		if full {
			if req.reply {
				req.c.replyCallFull()
			}
			return
		}
		nextSFU := len(next) > 0 && (curSFU || cl.h.sfuWanted(len(next)))
		if sameCall(cur, next) && curSFU == nextSFU {
			cl.replyCall(req, next, nextSFU)
			return
		}
		ack, err := cl.publish(&nats.Msg{Subject: subj, Data: encodeCallList(next, nextSFU)}, sseq)
		switch {
		case err == nil:
			last[subj] = published{streamSeq: ack.Sequence, call: next, callSFU: nextSFU}
			// Applied here at once, not when the consumer reads it back:
			// the newcomer offers as soon as it has the call frame, and
			// its signals are checked against this node's list.
			cl.replyCall(req, next, nextSFU) // first: the SFU's offer follows it
			cl.h.applyCall(r.name, ack.Sequence, next, nextSFU, req.c)
			return
		case broker.WrongLastSeq(err):
			cl.casRetries.Add(1)
			if p, err := cl.lastMsg(subj); err == nil {
				last[subj] = p
			} else {
				delete(last, subj)
			}
		case cl.nc.IsConnected():
			cl.log.Warn("publish call", "room", r.name, "err", err)
			if req.reply {
				req.c.replyError(errUnavailable, "the call could not be changed; try again", "call")
			}
			return
		}
		if time.Now().After(deadline) {
			if req.reply {
				req.c.replyError(errUnavailable, "the call is too busy; try again", "call")
			}
			return
		}
	}
	if req.kind == reqCall { // out of reach: change the call here alone
		sh := cl.h.shardOf(r.name)
		sh.mu.Lock()
		next, full := cl.h.nextCall(r.call, req.c, req.join)
		if full && req.reply {
			req.c.replyCallFull()
		} else if !full {
			cl.replyCall(req, next, false)
			cl.h.setCallSFU(r, next, false, "") // an island's call is a mesh: the SFU's home may be out of reach
		}
		sh.mu.Unlock()
	}
}

func (cl *cluster) replyCall(req pubReq, list []callPeer, sfu bool) {
	if req.kind == reqCall && req.reply {
		req.c.send(callReply(req.room.name, list, req.c.idStr, req.join, sfu))
	}
}

// callState returns r's call list and its stream sequence, the newer of
// the applied one and this publisher's own.
func (cl *cluster) callState(r *room, mine published) ([]callPeer, bool, uint64) {
	sh := cl.h.shardOf(r.name)
	sh.mu.Lock()
	cur, sfu, sseq := r.call, r.sfu, r.callSeq
	sh.mu.Unlock()
	if mine.streamSeq > sseq {
		return mine.call, mine.callSFU, mine.streamSeq
	}
	return cur, sfu, sseq
}

// withoutGone returns list without the peers that are gone: of node (just
// declared dead, or gone with a goodbye), of this node and no member of r,
// or, once this node has been in the cluster long enough to have heard
// from every live node, of a node it does not hear from. The caller holds
// no lock (c.inRoom takes the client's).
func (cl *cluster) withoutGone(r *room, list []callPeer, node string) []callPeer {
	settled := cl.settled()
	out := make([]callPeer, 0, len(list))
	for _, p := range list {
		switch n := nodeOf(p.id); {
		case n == node:
		case n == cl.node:
			if p.c != nil && p.c.inRoom(r) {
				out = append(out, p)
			}
		case !settled || cl.isLive(n):
			out = append(out, p)
		}
	}
	return out
}

// settled reports whether this node has been in the cluster (since it
// started or last came back) for deadAfter: long enough to have heard
// every live node's heartbeat.
func (cl *cluster) settled() bool {
	return cl.online() && time.Since(time.Unix(0, cl.joinedAt.Load())) > deadAfter
}

// sweepCalls queues a purge of every call list, among the rooms this node
// has in memory, that holds a peer that is gone (see withoutGone). It runs
// with the heartbeats.
func (cl *cluster) sweepCalls() {
	if !cl.settled() {
		return
	}
	live := make(map[string]bool) // read first: fetchSnapshot takes shard locks under nodesMu
	cl.nodesMu.Lock()
	for n := range cl.nodes {
		live[n] = true
	}
	cl.nodesMu.Unlock()
	var stale []*room
	for i := range cl.h.shards {
		sh := &cl.h.shards[i]
		sh.mu.Lock()
		for _, r := range sh.rooms {
			if slices.ContainsFunc(r.call, func(p callPeer) bool {
				n := nodeOf(p.id)
				return n == cl.node && (p.c == nil || !slices.Contains(r.members, p.c)) || n != cl.node && !live[n]
			}) {
				stale = append(stale, r)
			}
		}
		sh.mu.Unlock()
	}
	for _, r := range stale {
		cl.enqueue(pubReq{kind: reqPurge, room: r})
	}
}

func sameCall(a, b []callPeer) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].id != b[i].id {
			return false
		}
	}
	return true
}

// callEntry is a call peer as stored in the stream.
type callEntry struct {
	ID   string `json:"id"`
	Nick string `json:"nick"`
}

// callRecord is a call list as stored: its peers, and whether its media go
// through the SFU (decided by the node that stored it, so that every node
// agrees; calls_sfu.go). Lists stored before it existed are a bare array.
type callRecord struct {
	Peers []callEntry `json:"p"`
	SFU   bool        `json:"sfu,omitempty"`
}

func encodeCallList(list []callPeer, sfu bool) []byte {
	entries := make([]callEntry, len(list))
	for i, p := range list {
		entries[i] = callEntry{p.id, p.nick}
	}
	b, _ := json.Marshal(callRecord{entries, sfu})
	return b
}

// decodeCallList reads a stored call list, finding the local peers'
// connections.
func decodeCallList(b []byte, h *hub) ([]callPeer, bool) {
	var rec callRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		if json.Unmarshal(b, &rec.Peers) != nil {
			return nil, false
		}
	}
	list := make([]callPeer, len(rec.Peers))
	for i, e := range rec.Peers {
		list[i] = callPeer{id: e.ID, nick: e.Nick, c: h.lookup(e.ID)}
	}
	return list, rec.SFU
}
