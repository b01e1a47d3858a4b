package main

import (
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go"
)

// Call lists across nodes (see calls.go for a call on one node): a room's
// list is the last message on noom.call.<room>, changed by compare-and-set
// on the room's publisher, like messages, so the call limit holds across
// nodes. A node applies a list it stored itself at once (before it answers
// call), and every list it reads from the stream.

// changeCall queues a call join or leave of c in r; with reply, c gets the
// call frame (or call_full) once it is decided.
func (cl *cluster) changeCall(r *room, c *client, join, reply bool) {
	if !cl.enqueue(pubReq{kind: reqCall, room: r, c: c, join: join, reply: reply}) && reply {
		c.replyError(errUnavailable, "the cluster is busy; try again", "call")
	}
}

// doCall changes a room's call list by compare-and-set.
func (cl *cluster) doCall(req pubReq, last map[string]published) {
	r := req.room
	subj := subjCall + subjectRoom(r.name)
	for deadline := time.Now().Add(casPatience); cl.online(); {
		cur, sseq := cl.callState(r, last[subj])
		var next []callPeer
		full := false
		if req.kind == reqPurge {
			next = purgeNode(cur, req.node)
		} else {
			next, full = cl.h.nextCall(cur, req.c, req.join)
		}
		if full {
			if req.reply {
				req.c.replyCallFull()
			}
			return
		}
		if sameCall(cur, next) {
			cl.replyCall(req, next)
			return
		}
		ack, err := cl.publish(&nats.Msg{Subject: subj, Data: encodeCallList(next)}, sseq)
		switch {
		case err == nil:
			last[subj] = published{streamSeq: ack.Sequence, call: next}
			// Applied here at once, not when the consumer reads it back:
			// the newcomer offers as soon as it has the call frame, and
			// its signals are checked against this node's list.
			cl.h.applyCall(r.name, ack.Sequence, next)
			cl.replyCall(req, next)
			return
		case isWrongLastSeq(err):
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
			cl.replyCall(req, next)
			cl.h.setCall(r, next)
		}
		sh.mu.Unlock()
	}
}

func (cl *cluster) replyCall(req pubReq, list []callPeer) {
	if req.kind == reqCall && req.reply {
		req.c.send(callReply(req.room.name, list, req.c.idStr, req.join))
	}
}

// callState returns r's call list and its stream sequence, the newer of
// the applied one and this publisher's own.
func (cl *cluster) callState(r *room, mine published) ([]callPeer, uint64) {
	sh := cl.h.shardOf(r.name)
	sh.mu.Lock()
	cur, sseq := r.call, r.callSeq
	sh.mu.Unlock()
	if mine.streamSeq > sseq {
		return mine.call, mine.streamSeq
	}
	return cur, sseq
}

// purgeNode returns list without the peers of node.
func purgeNode(list []callPeer, node string) []callPeer {
	out := make([]callPeer, 0, len(list))
	for _, p := range list {
		if nodeOf(p.id) != node {
			out = append(out, p)
		}
	}
	return out
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

func encodeCallList(list []callPeer) []byte {
	entries := make([]callEntry, len(list))
	for i, p := range list {
		entries[i] = callEntry{p.id, p.nick}
	}
	b, _ := json.Marshal(entries)
	return b
}

// decodeCallList reads a stored call list, finding the local peers'
// connections.
func decodeCallList(b []byte, h *hub) []callPeer {
	var entries []callEntry
	if err := json.Unmarshal(b, &entries); err != nil {
		return nil
	}
	list := make([]callPeer, len(entries))
	for i, e := range entries {
		list[i] = callPeer{id: e.ID, nick: e.Nick, c: h.lookup(e.ID)}
	}
	return list
}
