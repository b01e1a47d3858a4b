package main

import "noom/server/keyq"

// Room requests that wait on the broker (a call change, a settings
// change, a history page, the messages after a join's since) run off the
// event loop, on a few queue goroutines:
// requests for one room go to one queue, in order, so that a node never
// races itself for a room's call list, settings or next seq; different
// rooms go on in parallel. A full queue refuses a request at once
// (unavailable) rather than block a poller. A room's load is queued too,
// but runs on a goroutine of its own (load.go): only joins need it done,
// and they wait for it.

// Room request kinds.
const (
	reqCall  = iota // a call join or leave of a local member (calls_change.go)
	reqPurge        // take the peers that are gone out of a room's call
	reqLoad         // load a room for the joins that wait (load.go)
	reqRun          // anything else: a history page, a settings change, a media or signal request
)

// pubReq is one room request.
type pubReq struct {
	kind  int
	room  *room
	c     *client
	join  bool // reqCall: join, else leave
	reply bool // reqCall: answer c with a call frame
	// reqPurge: the list without the peers that are gone.
	purge func(r *room, list []callPeer) []callPeer
	// reqRun: what to run.
	run func()
}

// roomQueues are the hub's queue goroutines (package keyq), keyed by room.
// They hold pointers: 4 queues of 4,096 requests held by value (about
// 100 bytes each then) were 1.7 MB of buffers from the start, which the
// garbage collector's target grows with (make compare showed about
// 0.1 KiB more per connection); pointers are 128 KB, one small
// allocation per request.
type roomQueues struct{ q *keyq.Queues[*pubReq] }

// newRoomQueues starts n queues of depth requests each, run by do.
func newRoomQueues(n, depth int, do func(pubReq)) *roomQueues {
	return &roomQueues{keyq.New(n, depth, func(req *pubReq) { do(*req) })}
}

// enqueue hands req to its room's queue; false if it is full or closed.
// The housekeeping and NATS's handlers may still queue a purge during a
// close: it is refused.
func (rq *roomQueues) enqueue(req pubReq) bool { return rq.q.Enqueue(req.room.name, &req) }

// close runs what is queued, then ends the queues; later requests are
// refused. Safe to call more than once.
func (rq *roomQueues) close() { rq.q.Close() }

// doRoomReq runs one room request on its queue.
func (h *hub) doRoomReq(req pubReq) {
	switch req.kind {
	case reqCall, reqPurge:
		h.doCall(req)
	case reqLoad:
		h.doLoad(req)
	case reqRun:
		req.run()
	}
}
