package main

// A connection's requests take effect in the order it sent them, also
// across a request the server decides off the event loop:
//
//   - a join of a room that must be loaded first (a cluster's room read
//     from the stream, or a new room whose settings are being created,
//     load.go), or whose since is beyond the ring (recovery.go), waits on
//     the room's queue; one with a passcode waits for the passcode's hash
//     (lobby.go);
//   - a call join or leave is decided on the room's queue
//     (calls_change.go).
//
// Whatever the connection sends meanwhile (a say to that room, a leave,
// the media and signals of a page that just asked to join the call) waits
// behind it here, and runs once every such request is settled: answered,
// or refused. Without this a client that sent join then say without
// waiting for joined got not_in_room, and a page's offer right after its
// call join got not_allowed.
//
// While nothing of a connection waits (nearly always), its requests run
// at once on the poller: c.held is 0 and nothing else is looked at.

// maxHeld is how many requests one connection may have waiting; past it a
// request is refused (unavailable). With the rate limit (-burst 40 by
// default) a client cannot send many more in the milliseconds a wait
// takes.
const maxHeld = 64

// heldReqs are the requests of a connection waiting behind the ones that
// wait off the event loop.
type heldReqs struct{ reqs []request }

// dispatchOrHold runs req of c, or queues it behind c's requests that wait.
// Called on the poller for each request.
func (h *hub) dispatchOrHold(c *client, req *request) {
	if c.held.Load() == 0 { // only c's own requests make it rise, on this goroutine
		h.dispatch(c, req)
		return
	}
	c.mu.Lock()
	if c.held.Load() == 0 { // settled meanwhile, and nothing left to replay
		c.mu.Unlock()
		h.dispatch(c, req)
		return
	}
	h.heldMu.Lock()
	hr := h.held[c]
	if hr == nil {
		hr = &heldReqs{}
		h.held[c] = hr
	}
	full := len(hr.reqs) >= maxHeld
	if !full {
		hr.reqs = append(hr.reqs, *req)
	}
	h.heldMu.Unlock()
	c.mu.Unlock()
	if full {
		c.replyError(errUnavailable, "too many requests waiting; try again", req.Type)
	}
}

// holdBehind marks that a request of c waits off the event loop: c's next
// requests are queued until settled is called for it. Call it once the
// wait is under way (queued), with c.mu held: settled takes c.mu, so it
// cannot run first, and a wait that could not start needs no undoing.
func (h *hub) holdBehind(c *client) { c.held.Add(1) }

// settled is called once a request of c that waited has been answered (or
// c is gone). When it was the last such request, the ones queued behind
// it run, here, in order, until one of them waits in turn.
func (h *hub) settled(c *client) {
	c.mu.Lock()
	if c.held.Load() > 1 {
		c.held.Add(-1)
		c.mu.Unlock()
		return
	}
	h.heldMu.Lock()
	hr := h.held[c]
	for {
		// c.held stays 1 while this runs, so the poller queues behind; a
		// request run here that waits makes it 2, and holds the rest.
		if hr == nil || len(hr.reqs) == 0 || c.getState() == connClosed || c.held.Load() > 1 {
			if hr != nil && (len(hr.reqs) == 0 || c.getState() == connClosed) {
				delete(h.held, c)
			}
			h.heldMu.Unlock()
			c.held.Add(-1)
			c.mu.Unlock()
			return
		}
		req := hr.reqs[0]
		hr.reqs[0] = request{}
		hr.reqs = hr.reqs[1:]
		h.heldMu.Unlock()
		c.mu.Unlock()
		h.dispatch(c, &req)
		c.mu.Lock()
		h.heldMu.Lock()
	}
}

// dropHeld forgets what c has waiting: it is gone (its joins that wait
// still settle, and find nothing). c.mu is held.
func (h *hub) dropHeld(c *client) {
	if c.held.Load() == 0 {
		return
	}
	h.heldMu.Lock()
	if hr := h.held[c]; hr != nil {
		hr.reqs = nil
	}
	h.heldMu.Unlock()
}
