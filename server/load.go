package main

import (
	"encoding/json"

	"noom/server/auth"
	"noom/server/broker"
)

// Loading a room into memory, one way whatever the broker. A join finds
// its room in memory, or waits for its load, on the room's queue
// (roomq.go), off the event loop: its messages' state is read from the
// broker (h.msgs.Room), and its settings too (broker.Settings.ReadSettings)
// or, for a room the broker has no trace of, created with the host key
// its creator gets (of two callers one wins), durable before anyone is
// told it is host, so a crash cannot hand the room to whoever comes next.
// Standalone both are reads of the store in this process, fractions of a
// millisecond; in a cluster, NATS round trips (cluster_load.go has what
// the consumer reads meanwhile).
//
// The joins wait outside the room (gated) and are checked against the
// settings once the load is done; the first, when the load created them,
// is the host. The requests their connections send meanwhile wait behind
// them (held.go), so a say sent right after join still finds its sender in
// the room.

// gatedJoin is a local join that waits for the room's load before it is
// checked against the room's settings.
type gatedJoin struct {
	c  *client
	jr joinReq
}

// gateJoin makes c's join wait for r's load, queued if none is. It reports
// false if the load cannot be queued (the room's queue is full). c.mu and
// the shard lock are held.
func (h *hub) gateJoin(r *room, c *client, jr joinReq) bool {
	if !r.loading {
		if !h.rq.enqueue(pubReq{kind: reqLoad, room: r}) {
			return false
		}
		r.loading = true
	}
	r.gated = append(r.gated, gatedJoin{c, jr})
	h.holdBehind(c)
	return true
}

// loadSlots is how many loads run at once on goroutines of their own.
// A load waits on the broker (a settings write and its sync, or NATS
// round trips); on the room queue's goroutine it would hold up every room
// of that queue, and a burst of new rooms would get one sync each. Run
// side by side, their settings writes share syncs (broker.Local batches
// them, up to 256 a sync): 2,000 rooms created at once take about ten
// syncs, not 2,000. The goroutines live only while their load does.
// Measured with the harness's rooms scenario (2,000 new rooms), connect
// p99 was 90-408 ms with 64 slots, 70-71 ms with 256.
const loadSlots = 256

// doLoad starts r's load, taken off r's queue: on a goroutine of its own
// while fewer than loadSlots run, else right here on the queue. Nothing
// else of r needs the load to be done first: whatever needs the room
// loaded comes from a join, and the joins wait for it (gated).
func (h *hub) doLoad(req pubReq) {
	select {
	case h.loadSem <- struct{}{}:
		h.loads.Add(1)
		go func() {
			defer h.loads.Done()
			defer func() { <-h.loadSem }()
			h.load(req.room)
		}()
	default:
		h.load(req.room)
	}
}

// load reads r's messages' state and its settings, creating them for a
// new room, then checks the joins that wait.
func (h *hub) load(r *room) {
	rs, err := h.msgs.Room(r.name, h.cfg.HistorySize)
	var set settingsEntry
	var key string
	if err == nil {
		set, key, err = h.readSettings(r.name, rs.Epoch, true)
	}
	if err != nil {
		h.log.Warn("room not loaded", "room", r.name, "err", err)
		h.refuseLoad(r)
		return
	}
	for _, g := range h.finishLoad(r, rs, set, key) {
		h.join(g.c, g.jr) // checked now, against the settings just read
		h.settled(g.c)
	}
	h.dropRoomIfEmpty(r) // its joiners may all have gone meanwhile
}

// readSettings returns room's settings and their version; with create,
// a room that has none gets its first (a new host key's hash), and key is
// that key in clear, for its creator. epoch is the room's (a new
// standalone room is stored with it).
func (h *hub) readSettings(room, epoch string, create bool) (e settingsEntry, key string, err error) {
	var first func() []byte
	if create {
		first = func() []byte {
			key = auth.NewHostKey()
			b, _ := json.Marshal(storedSettings{HostKey: auth.HashHostKey(key)})
			return b
		}
	}
	b, v, created, err := h.settings.ReadSettings(room, epoch, first)
	if err != nil {
		return e, "", err
	}
	if e.storedSettings, err = decodeSettings(b); err != nil {
		return e, "", err
	}
	e.V = v
	if !created {
		key = "" // another caller's settings won
	}
	return e, key, nil
}

// finishLoad gives r its messages' state (rs) and its settings (key: its
// host key, if this load created them), and returns the joins to check
// now.
func (h *hub) finishLoad(r *room, rs broker.RoomState, set settingsEntry, key string) []gatedJoin {
	sh := h.shardOf(r.name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	gated := r.gated
	r.gated = nil
	if sh.rooms[r.name] != r || !r.loading { // everyone left meanwhile, and the room was dropped
		return gated // they load it again
	}
	if m := &r.meet; set.V >= m.version { // else a newer put was applied meanwhile
		m.version = set.V
		m.set = set.storedSettings
	}
	r.meet.pendingKey = key
	h.applyLoaded(r, rs)
	r.loading, r.loaded = false, true
	return gated
}

// applyLoaded gives r the messages' state a load read, and then what a
// cluster's consumer read of r meanwhile (early) that is newer than it.
// The shard lock is held.
func (h *hub) applyLoaded(r *room, rs broker.RoomState) {
	r.epoch, r.seq, r.streamSeq = rs.Epoch, rs.Seq, rs.Mark
	r.history, r.histStart = nil, 0
	for _, m := range rs.Recent {
		r.addHistory(m.Payload, h.cfg.HistorySize)
	}
	early := r.early
	r.early = nil
	for _, m := range early {
		h.applyInOrder(r, m)
	}
}

// refuseLoad answers the joins waiting for r's load with unavailable.
func (h *hub) refuseLoad(r *room) {
	sh := h.shardOf(r.name)
	sh.mu.Lock()
	gated := r.gated
	r.gated, r.loading, r.early = nil, false, nil
	h.dropIfEmpty(sh, r)
	sh.mu.Unlock()
	for _, g := range gated {
		g.c.replyJoinError(errUnavailable, "the room could not be loaded; try again", r.name)
		h.settled(g.c)
	}
}
