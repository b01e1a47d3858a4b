package main

import (
	"cmp"
	"strconv"

	"noom/server/broker"
)

// Joining a room: the checks (lobby.go has those of a room that belongs to
// someone), the membership, and the joined frame with its members and the
// history a client needs.

// join adds c to room jr.room and answers joined, or waiting, or why not
// (lobby.go); see PROTOCOL.md for since and recovered, and the README for
// epoch.
func (h *hub) join(c *client, jr joinReq) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h.joinLocked(c, jr)
}

// joinLocked is join with c.mu held.
func (h *hub) joinLocked(c *client, jr joinReq) {
	if c.getState() == connClosed { // disconnect has run: add no room
		return
	}
	name := jr.room
	if r := c.roomOf(name); r != nil { // already in: just send the state again
		sh := h.shardOf(name)
		sh.mu.Lock()
		if h.wantsRecovery(r, &jr) && h.readRecovery(r, c, jr) {
			sh.mu.Unlock()
			return
		}
		head, members, tail := encodeJoined(h.joinedFor(r, c, jr.since, jr.epoch, jr.recovery))
		c.w.push(job{op: jobSend, c: c, frame: head, more: &[2][]byte{members, tail}})
		sh.mu.Unlock()
		return
	}
	if c.waitingIn(name) != nil {
		c.send(encodeWaiting(name))
		return
	}
	if len(c.rooms)+len(c.waits) >= h.cfg.MaxRooms {
		c.replyJoinError(errTooManyRooms, "already in "+strconv.Itoa(h.cfg.MaxRooms)+" rooms", name)
		return
	}
	if t := c.token(); t != nil && !t.claims.MayJoin(name) {
		c.replyJoinError(errNotAllowed, "your token does not let you join room "+name, name)
		return
	}
	sh := h.shardOf(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r := sh.rooms[name]
	if r == nil {
		r = h.newRoom(name)
		r.loaded = h.msgs == nil // a hub that keeps nothing (benchmarks) has nothing to load
		sh.rooms[name] = r
	}
	if !r.loaded { // the join is checked once it is loaded (load.go)
		if !h.gateJoin(r, c, jr) {
			c.replyJoinError(errUnavailable, "the room could not be loaded; try again", name)
			h.dropIfEmpty(sh, r)
		}
		return
	}
	if h.wantsRecovery(r, &jr) && h.readRecovery(r, c, jr) {
		return // checked once the messages after since are read
	}
	created := r.meet.pendingKey != "" // its load created the room: this join is its first
	role := roleMember
	switch {
	case created, h.hostGrant(c, r, &jr):
		role = roleHost
	case !h.gate(sh, r, c, &jr):
		h.dropIfEmpty(sh, r)
		return
	}
	h.addMember(sh, r, c, &jr, role, created)
}

// addMember makes c a member of r with role and answers joined; created
// says c's join created r, which makes the host key. c.mu and the shard
// lock are held.
func (h *hub) addMember(sh *shard, r *room, c *client, jr *joinReq, role string, created bool) {
	m := &r.meet
	var hostKey string
	switch {
	case created: // stored by the load (load.go)
		hostKey, m.pendingKey = m.pendingKey, ""
	}
	rolesChanged := false
	if role == roleHost {
		for id, rl := range m.roles { // a room has one host: the one present steps down
			if rl == roleHost {
				h.setLocalRole(r, id, roleCohost)
				rolesChanged = true
			}
		}
		m.setRole(c.idStr, roleHost) // told to the cluster with the join below
	}
	h.countChange(r, +1)
	r.members = append(r.members, c)
	if len(r.members) <= maxListMembers {
		r.listJSON = nil
	}
	r.partCount[c.w.id]++
	c.rooms = append(c.rooms, r)
	if len(c.rooms) == 1 {
		c.w.push(job{op: jobLeave, room: h.lobby, c: c})
	}
	j := h.joinedFor(r, c, jr.since, jr.epoch, jr.recovery) // r is loaded: joins wait for that (gateJoin)
	j.hostKey = hostKey
	head, members, tail := encodeJoined(j)
	c.w.push(job{op: jobJoin, room: r, c: c, frame: head, more: &[2][]byte{members, tail}})
	h.presence(sh, r, "join", c.idStr, c.nickname(), c)
	h.members.Joined(broker.Member{Room: r.name, ID: c.idStr, Nick: c.nickname(), Role: role})
	if rolesChanged || (role != roleMember && r.count() > 1) {
		h.roomChanged(r)
	}
	if role != roleMember {
		h.announceMod(r, c)
	}
	h.checkOrphan(sh, r)
}

// joinedInfo describes r for a joined frame. The shard lock must be held.
func (h *hub) joinedInfo(r *room, since *int64, epoch string, rec *recovery) *joinedInfo {
	j := &joinedInfo{room: r.name, epoch: r.epoch, count: r.count(), members: r.memberList(),
		role: roleMember, settings: r.meet.settings()}
	last := r.delivered() // seq may run ahead of what members have received
	j.history, j.recovered = r.historySince(since, epoch, last)
	if !j.recovered && rec != nil && since != nil && (epoch == "" || epoch == r.epoch) {
		j.history, j.recovered = r.recovered(rec, uint64(*since), last, j.history)
	}
	j.withRecovered = since != nil
	for _, p := range j.history {
		j.historyPayload += len(p) + 1
	}
	return j
}

// joinedFor is joinedInfo for c's own joined frame: with its role. The
// shard lock must be held.
func (h *hub) joinedFor(r *room, c *client, since *int64, epoch string, rec *recovery) *joinedInfo {
	j := h.joinedInfo(r, since, epoch, rec)
	j.role = r.meet.roleOf(c.idStr)
	return j
}

// memberList returns the JSON array of the room's first maxListMembers
// members for joined frames. It is cached: in a big room every join would
// otherwise encode the same hundred members again. The shard lock must be
// held.
func (r *room) memberList() []byte {
	if r.listJSON == nil {
		n := min(len(r.members), maxListMembers)
		ms := make([]member, n, min(r.count(), maxListMembers))
		roles := make([]string, n, cap(ms))
		for i, m := range r.members[:n] {
			ms[i] = member{m.idStr, m.nickname()}
			roles[i] = r.meet.roleOf(m.idStr)
		}
		for id, m := range r.remote { // members on other nodes fill the rest
			if len(ms) == cap(ms) {
				break
			}
			ms = append(ms, member{id, m.nick})
			roles = append(roles, cmp.Or(m.role, roleMember))
		}
		r.listJSON = appendMemberRoles(make([]byte, 0, 2+len(ms)*56), ms, roles)
	}
	return r.listJSON
}

// historySince returns the kept messages a client needs: all of them without
// since, those after since otherwise. recovered is false when messages after
// since are no longer kept, or since belongs to another epoch of the room
// (the room was emptied, or the server restarted), in which case all kept
// messages are returned. last is the seq of the newest message in the
// ring.
func (r *room) historySince(since *int64, epoch string, last uint64) (msgs [][]byte, recovered bool) {
	kept := len(r.history)
	from := 0 // index, oldest first, of the first message to return
	recovered = true
	switch {
	case since == nil:
	case epoch != "" && epoch != r.epoch, uint64(*since) > last:
		recovered = false
	default:
		oldest := last - uint64(kept) + 1 // seq of the oldest kept message
		s := uint64(*since)
		if s+1 < oldest {
			recovered = false
		} else {
			from = int(s + 1 - oldest)
		}
	}
	msgs = make([][]byte, 0, kept-from)
	for i := from; i < kept; i++ {
		msgs = append(msgs, r.history[(r.histStart+i)%kept])
	}
	return msgs, recovered
}

// addHistory keeps payload as the newest message, dropping the oldest past
// HistorySize.
func (r *room) addHistory(payload []byte, size int) {
	if len(r.history) < size {
		r.history = append(r.history, payload)
		return
	}
	r.history[r.histStart] = payload
	r.histStart = (r.histStart + 1) % size
}
