package main

import (
	"hash/maphash"
	"sync"
)

// Room requests that wait on the broker (a call change, and in a cluster a
// say, a load, a history page) run off the event loop, on a few queue
// goroutines: requests for one room go to one queue, in order, so that a
// node never races itself for a room's call list or next seq; different
// rooms go on in parallel. A full queue refuses a request at once
// (unavailable) rather than block a poller.

// Room request kinds.
const (
	reqMsg      = iota // a say (cluster_publish.go)
	reqCall            // a call join or leave of a local member (calls_change.go)
	reqPurge           // take the peers that are gone out of a room's call
	reqLoad            // read a room's messages for the joins that wait (cluster_load.go)
	reqHistory         // read a page of a room's messages for a history request
	reqSettings        // change a room's settings (settings.go)
	reqRun             // run a request behind the room's queued ones (calls_change.go)
)

// pubReq is one room request.
type pubReq struct {
	kind  int
	room  *room
	c     *client
	text  string
	join  bool // reqCall: join, else leave
	reply bool // reqCall: answer c with a call frame
	// reqPurge: the list without the peers that are gone.
	purge func(r *room, list []callPeer) []callPeer
	// reqHistory: the page before seq before (0: the newest), at most limit
	before uint64
	limit  int
	// reqSettings: the change, and who waits for its outcome.
	change *settingsChange
	done   func(error)
	// reqRun: what to run.
	run func()
}

var roomQueueSeed = maphash.MakeSeed()

// roomQueues are the hub's queue goroutines. close ends them under mu,
// which enqueue holds for reading: the housekeeping and NATS's handlers
// may still queue a purge then.
type roomQueues struct {
	mu sync.RWMutex
	// qs hold pointers: 4 queues of 4,096 requests of about 100 bytes
	// would be 1.7 MB of buffers held from the start, which the garbage
	// collector's target grows with (it showed as 0.1 KiB more per
	// connection in make compare); pointers are 128 KB, one small
	// allocation per request.
	qs     []chan *pubReq
	closed bool
	wg     sync.WaitGroup
}

// newRoomQueues starts n queues of depth requests each, run by do.
func newRoomQueues(n, depth int, do func(pubReq)) *roomQueues {
	rq := &roomQueues{}
	for range n {
		q := make(chan *pubReq, depth)
		rq.qs = append(rq.qs, q)
		rq.wg.Add(1)
		go func() {
			defer rq.wg.Done()
			for req := range q {
				do(*req)
			}
		}()
	}
	return rq
}

// enqueue hands req to its room's queue; false if it is full or closed.
func (rq *roomQueues) enqueue(req pubReq) bool {
	rq.mu.RLock()
	defer rq.mu.RUnlock()
	if rq.closed {
		return false
	}
	q := rq.qs[maphash.String(roomQueueSeed, req.room.name)%uint64(len(rq.qs))]
	select {
	case q <- &req:
		return true
	default:
		return false
	}
}

// close runs what is queued, then ends the queues; later requests are
// refused. Safe to call more than once.
func (rq *roomQueues) close() {
	rq.mu.Lock()
	if !rq.closed {
		rq.closed = true
		for _, q := range rq.qs {
			close(q)
		}
	}
	rq.mu.Unlock()
	rq.wg.Wait()
}

// doRoomReq runs one room request on its queue.
func (h *hub) doRoomReq(req pubReq) {
	switch req.kind {
	case reqCall, reqPurge:
		h.doCall(req)
	case reqMsg:
		h.cl.doMsg(req)
	case reqLoad:
		h.cl.doLoad(req)
	case reqHistory:
		h.doHistory(req)
	case reqSettings:
		h.doSettings(req)
	case reqRun:
		req.run()
	}
}
