package main

import (
	"slices"
	"strconv"

	"noom/server/broker"
)

// The room table's side of the cluster: applying the stream and other
// nodes' members (memberView, cluster_events.go) to rooms, under the
// rooms' shard locks.

// applyMsg applies a message read from the stream to its room, if this
// node has the room in memory and loaded (cluster_load.go): the room's seq
// and history advance, and its members here get it. Of a room being
// loaded, the message is kept aside for the load to merge.
func (h *hub) applyMsg(name string, m streamMsg) {
	sh := h.shardOf(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r := sh.rooms[name]
	switch {
	case r == nil: // nobody here needs it: the stream keeps it
		return
	case r.loading:
		r.early = append(r.early, m)
		if n := len(r.early) - h.cfg.HistorySize; n > 0 { // what the load reads covers the older ones
			r.early = slices.Delete(r.early, 0, n)
		}
		return
	case !r.loaded:
		return
	}
	h.applyInOrder(r, m)
}

// applyInOrder applies m, read from the stream, to loaded room r: r's seq
// and history advance, and its members here get it, unless it is older
// than what r has (a load read it, or its publisher delivered it). The
// shard lock must be held.
func (h *hub) applyInOrder(r *room, m streamMsg) {
	name := r.name
	if is := r.island; is != nil { // only after an outage; keep the cluster state aside
		if m.StreamSeq <= is.streamSeq {
			return
		}
		is.streamSeq = m.StreamSeq
		if m.Epoch != is.epoch {
			is.epoch, is.seq, is.history = m.Epoch, 0, nil
		}
		if m.Seq > is.seq {
			is.seq = m.Seq
			is.history = append(is.history, m.Payload)
			if n := len(is.history) - h.cfg.HistorySize; n > 0 {
				is.history = is.history[n:]
			}
		}
		return
	}
	if m.StreamSeq <= r.streamSeq { // applied already: loaded, or read again after an outage
		return
	}
	r.streamSeq = m.StreamSeq
	if m.Epoch != r.epoch { // a new lifetime: the old one's messages all expired (cluster_load.go)
		r.epoch, r.seq, r.next, r.history, r.histStart = m.Epoch, 0, 0, nil, 0
		h.announce(r)
	}
	h.cl.msgs.Saw(name, m.Position) // so that this node's next publish expects it
	// A lifetime's start marker, or delivered by its publisher (published).
	if m.Seq <= r.seq {
		return
	}
	r.seq = m.Seq
	r.addHistory(m.Payload, h.cfg.HistorySize)
	if len(r.members) > 0 {
		b := append(newFrame(len(m.Payload)), m.Payload...)
		h.broadcast(r, frameOf(b), nil)
	}
}

// remoteJoin records member id of node in room, or its new nick; role,
// unless "" (a rename), is its role there (cluster_meetings.go).
func (h *hub) remoteJoin(node, name, id, nick, role string) {
	if !validRoom(name) || id == "" {
		return
	}
	sh := h.shardOf(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r := h.roomLocked(sh, name)
	if r.remote == nil {
		r.remote = make(map[string]remoteMember)
	}
	if m, ok := r.remote[id]; ok {
		if role != "" && role != m.role {
			h.remoteRoleLocked(r, id, role)
			m = r.remote[id]
		}
		if m.nick != nick {
			r.remote[id] = remoteMember{node, nick, m.role}
			r.listJSON = nil
			if r.count() <= h.cfg.PresenceLimit {
				h.presence(sh, r, "nick", id, nick, nil)
			}
		}
		return
	}
	h.countChange(r, +1)
	r.remote[id] = remoteMember{node, nick, roleMember}
	r.listJSON = nil
	h.presence(sh, r, "join", id, nick, nil)
	if role != "" && role != roleMember {
		h.remoteRoleLocked(r, id, role)
	}
}

// remoteLeave forgets member id of room name.
func (h *hub) remoteLeave(name, id string) {
	sh := h.shardOf(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if r := sh.rooms[name]; r != nil {
		h.remoteLeaveLocked(sh, r, id)
	}
}

func (h *hub) remoteLeaveLocked(sh *shard, r *room, id string) {
	m, ok := r.remote[id]
	if !ok {
		return
	}
	h.countChange(r, -1)
	delete(r.remote, id)
	r.listJSON = nil
	if !r.meet.ending {
		h.presence(sh, r, "leave", id, m.nick, nil)
	}
	if m.role != roleMember && m.role != "" {
		h.roomChanged(r)
	}
	h.checkOrphan(sh, r)
	h.dropIfEmpty(sh, r)
}

// dropRemote takes every member of node out of every room, and returns
// the rooms whose call has peers of node.
func (h *hub) dropRemote(node string) []*room {
	var calls []*room
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for _, r := range sh.rooms {
			if slices.ContainsFunc(r.call, func(p callPeer) bool { return nodeOf(p.id) == node }) {
				calls = append(calls, r)
			}
			for id, m := range r.remote {
				if m.node == node {
					h.remoteLeaveLocked(sh, r, id)
				}
			}
		}
		sh.mu.Unlock()
	}
	return calls
}

// replaceRemote makes members all that this node knows of node's
// members: a snapshot.
func (h *hub) replaceRemote(node string, members []broker.Member) {
	want := make(map[string]map[string][2]string) // room -> id -> nick, role
	for _, m := range members {
		if want[m.Room] == nil {
			want[m.Room] = make(map[string][2]string)
		}
		want[m.Room][m.ID] = [2]string{m.Nick, m.Role}
	}
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for name, r := range sh.rooms {
			for id, m := range r.remote {
				if _, ok := want[name][id]; m.node == node && !ok {
					h.remoteLeaveLocked(sh, r, id)
				}
			}
		}
		sh.mu.Unlock()
	}
	for name, ids := range want {
		for id, m := range ids {
			h.remoteJoin(node, name, id, m[0], m[1])
		}
	}
}

// localMembers lists this node's members.
func (h *hub) localMembers() []broker.Member {
	var out []broker.Member
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for name, r := range sh.rooms {
			for _, c := range r.members {
				out = append(out, broker.Member{Room: name, ID: c.idStr, Nick: c.nickname(), Role: r.meet.roleOf(c.idStr)})
			}
		}
		sh.mu.Unlock()
	}
	return out
}

// enterIsland starts r's life alone while NATS is out of reach: its
// cluster state is kept aside, and its members here are told, with a
// joined frame, that the room now has an epoch of its own. Messages go on
// with the next seq. The shard lock must be held.
func (cl *cluster) enterIsland(r *room) {
	kept := make([][]byte, 0, len(r.history))
	for i := range r.history {
		kept = append(kept, r.history[(r.histStart+i)%len(r.history)])
	}
	r.island = &islandState{epoch: r.epoch, seq: r.seq, streamSeq: r.streamSeq, history: kept}
	r.epoch = cl.epoch + "~" + cl.node + "." + strconv.FormatUint(cl.islandSeq.Add(1), 36)
	cl.h.announce(r)
}

// islandSayLocked answers a publish of r that found the broker out of
// reach (ErrOffline): r runs as an island, made one if it is not yet, and
// m is said there, unless the node is back in the cluster already: then
// it reports false, does nothing, and the message is to be published
// again. Deciding under the shard lock, which must be held, is what keeps
// an island from starting after leaveIslands went past r (see regained).
// A hub with no cluster has no island to run: it is refused.
func (h *hub) islandSayLocked(r *room, m pendingMsg) bool {
	cl := h.cl
	switch {
	case cl == nil:
		h.storeRefused(m.c, broker.ErrOffline)
		return true
	case cl.online():
		return false
	}
	if r.island == nil {
		cl.enterIsland(r)
	}
	h.sayLocked(r, m.from, m.nick, m.text)
	return true
}

// leaveIslands brings every island room back to its cluster state, and
// tells its members here with a joined frame in the cluster's epoch. The
// stream replay that follows delivers what the cluster said meanwhile.
func (h *hub) leaveIslands() {
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for _, r := range sh.rooms {
			is := r.island
			if is == nil {
				continue
			}
			r.island = nil
			r.epoch, r.seq, r.next, r.streamSeq = is.epoch, is.seq, is.seq, is.streamSeq
			r.history, r.histStart = is.history, 0
			h.announce(r)
		}
		sh.mu.Unlock()
	}
}

// announce sends r's members here a joined frame with r's current state,
// unasked: its epoch changed. recovered is false: what was said elsewhere
// meanwhile may be missing. The shard lock must be held.
func (h *hub) announce(r *room) {
	if len(r.members) == 0 {
		return
	}
	j := h.joinedInfo(r, nil, "", nil)
	j.withRecovered, j.recovered = true, false
	head, members, tail := encodeJoined(j)
	frame := append(append(append(make([]byte, 0, len(head)+len(members)+len(tail)), head...), members...), tail...)
	h.broadcast(r, frame, nil)
}
