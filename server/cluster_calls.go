package main

import (
	"time"
)

// Call lists across nodes (calls_change.go changes them, the same way as
// standalone): a room's list is the last message on noom.call.<room>
// (broker.JetStream's Calls), changed by compare-and-set, so the call
// limit holds across nodes. A node applies a list it stored itself at once
// (before it answers call), and every list it reads from the stream.
//
// What only a cluster has: nodes that go. A node declared dead, or that
// says goodbye, has its peers purged at once by every node that notices;
// and every node sweeps the lists of the rooms it has in memory for peers
// of nodes it does not hear from (also nodes that died before it started,
// which nobody will declare dead) and local peers that are no members.
// Several nodes purging the same list is one change: the first
// compare-and-set wins, the others find nothing left to purge.

// purgeNode queues a purge of r's call: node's peers, and the others that
// are gone (withoutGone).
func (cl *cluster) purgeNode(r *room, node string) {
	cl.h.rq.enqueue(pubReq{kind: reqPurge, room: r, purge: func(r *room, list []callPeer) []callPeer {
		return cl.withoutGone(r, list, node)
	}})
}

// withoutGone returns list without the peers that are gone: of node (just
// declared dead, or gone with a goodbye; "" for none), of this node and no
// member of r, or, once this node has been in the cluster long enough to
// have heard from every live node, of a node it does not hear from. The
// caller holds no lock (c.inRoom takes the client's).
func (cl *cluster) withoutGone(r *room, list []callPeer, node string) []callPeer {
	settled := cl.settled()
	out := make([]callPeer, 0, len(list))
	for _, p := range list {
		switch n := nodeOf(p.id); {
		case n == node && node != "":
		case n == cl.node:
			if p.c != nil && p.c.inRoom(r) {
				out = append(out, p)
			}
		case !settled || cl.members.Live(n):
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
	live := make(map[string]bool) // read first: the membership calls the room table under its lock
	for _, n := range cl.members.Nodes() {
		live[n] = true
	}
	cl.h.sweepCalls(func(r *room, p callPeer) bool {
		n := nodeOf(p.id)
		return cl.h.leftCall(r, p) || n != cl.node && !live[n]
	}, func(r *room, list []callPeer) []callPeer { return cl.withoutGone(r, list, "") })
}
