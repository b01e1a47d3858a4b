package main

import (
	"bytes"

	"noom/server/broker"
)

// Recovery beyond the ring. A join with `since` is answered from the
// room's ring of the newest -history messages when it reaches back far
// enough. When it does not, the messages after since are read from the
// broker (the store, or the stream) on the room's queue, off the event
// loop, and the join runs again with them, its connection's later
// requests waiting behind it (held.go). Both modes do this one way.
//
// What the broker returns may run ahead of what members have received
// (a message on its way to the store, or one the consumer has not applied
// yet), and in a cluster it may even be of a newer lifetime of the room
// than the one in memory. So it is used only where it meets the ring: the
// newest message read that members have received must be in the ring,
// byte for byte; the ring supplies what came after it. Otherwise the join
// gets the ring and recovered false, as beyond maxRecover, and the client
// pages back with history requests.

// recovery is what a join read from the broker after its since.
type recovery struct {
	msgs     []broker.Message // oldest first, from since+1
	complete bool             // every message after since, at most maxRecover
}

// wantsRecovery reports whether jr's since is beyond r's ring, and the
// broker may still have what follows it. The shard lock must be held.
func (h *hub) wantsRecovery(r *room, jr *joinReq) bool {
	if jr.recovery != nil || h.msgs == nil || jr.since == nil || (jr.epoch != "" && jr.epoch != r.epoch) {
		return false
	}
	since, last := uint64(*jr.since), r.delivered()
	return since < last && since+1 < last-uint64(len(r.history))+1
}

// readRecovery queues the read of what follows jr's since on r's queue;
// the join runs again once it is read. It reports false if the queue is
// full: then the join goes on from the ring. c.mu and the shard lock are
// held.
func (h *hub) readRecovery(r *room, c *client, jr joinReq) bool {
	since := uint64(*jr.since)
	ok := h.rq.enqueue(pubReq{kind: reqRun, room: r, run: func() {
		msgs, complete, err := h.msgs.Since(r.name, since, maxRecover)
		if err != nil {
			h.log.Warn("messages after since not read", "room", r.name, "err", err)
		}
		jr.recovery = &recovery{msgs: msgs, complete: complete && err == nil}
		h.join(c, jr)
		h.settled(c)
	}})
	if ok {
		h.holdBehind(c)
	}
	return ok
}

// recovered returns the messages after since, up to last (what members
// have received), from rec where it meets the ring, and true; otherwise
// ring (the newest) and false. The shard lock must be held.
func (r *room) recovered(rec *recovery, since, last uint64, ring [][]byte) ([][]byte, bool) {
	if !rec.complete || len(rec.msgs) == 0 || rec.msgs[0].Seq != since+1 {
		return ring, false
	}
	kept := len(r.history)
	oldest := last - uint64(kept) + 1 // seq of the ring's oldest
	n := 0                            // rec's messages that members have received
	for n < len(rec.msgs) && rec.msgs[n].Seq <= last {
		n++
	}
	if n == 0 || kept == 0 {
		return ring, false
	}
	top := rec.msgs[n-1]
	if top.Seq < oldest || !bytes.Equal(r.history[(r.histStart+int(top.Seq-oldest))%kept], top.Payload) {
		return ring, false // too much came since the read, or another lifetime
	}
	out := make([][]byte, 0, n+int(last-top.Seq))
	for _, m := range rec.msgs[:n] {
		out = append(out, m.Payload)
	}
	for s := top.Seq + 1; s <= last; s++ {
		out = append(out, r.history[(r.histStart+int(s-oldest))%kept])
	}
	return out, true
}
