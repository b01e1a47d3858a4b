package main

import (
	"slices"
	"time"
)

// Host controls (PROTOCOL.md, "Requests"): remove, mute and end, and each
// call peer's own media state. The sender's role is checked under the
// room's shard lock; the target's room list is changed under its own lock,
// taken first (the lock order is client.mu, then shard.mu), and the
// sender's lock is not held meanwhile, so two hosts acting on each other
// cannot deadlock.

// remove handles remove: the member gets removed, is out of the room and
// its call, and is barred for barTime.
func (h *hub) remove(c *client, name, id string) {
	r := h.modOf(c, name, "remove", false)
	if r == nil {
		return
	}
	if id == c.idStr {
		c.replyError(errNotAllowed, "to leave a room, send leave", "remove")
		return
	}
	sh := h.shardOf(name)
	sh.mu.Lock()
	mine, theirs := r.meet.roleOf(c.idStr), r.roleOfAny(id)
	rm, remote := r.remote[id]
	sh.mu.Unlock()
	if mine == roleMember || (theirs == roleHost && mine != roleHost) {
		c.replyError(errNotAllowed, "you may not remove "+id+" from room "+name, "remove")
		return
	}
	if remote { // its node removes it, bars it everywhere
		h.command(name, roomCmd{Op: "remove", Node: rm.node, ID: id, By: c.idStr})
		return
	}
	t := h.lookup(id)
	if t == nil || !t.inRoom(r) {
		c.replyError(errNoSuchMember, "no member "+id+" in room "+name, "remove")
		return
	}
	h.removeLocal(t, r, c.idStr)
}

// removeLocal takes local member t out of r, as removed by by, and bars it
// here and on every other node. Neither t.mu nor the shard lock may be
// held.
func (h *hub) removeLocal(t *client, r *room, by string) {
	who, until := t.barKey(), time.Now().Add(barTime)
	h.bars.Bar(r.name, who, until)
	h.command(r.name, roomCmd{Op: "bar", Who: who, Until: until.UnixMilli()})
	t.mu.Lock()
	defer t.mu.Unlock()
	h.dropMember(t, r, encodeRoomBy("removed", r.name, by))
}

// dropMember takes t out of r, sending it frame (removed, ended) once it
// is out. t.mu is held.
func (h *hub) dropMember(t *client, r *room, frame []byte) {
	i := slices.Index(t.rooms, r)
	if i < 0 {
		return
	}
	t.rooms = slices.Delete(t.rooms, i, i+1)
	h.leaveLocked(t, r, frame)
	if len(t.rooms) == 0 {
		t.w.push(job{op: jobJoin, room: h.lobby, c: t})
	}
}

// mute handles mute: the member's page turns its microphone off, and its
// audio is not forwarded (by the SFU) until it announces audio on again
// itself. Nobody can turn another's microphone or camera on.
func (h *hub) mute(c *client, name, id string) {
	r := h.modOf(c, name, "mute", false)
	if r == nil {
		return
	}
	sh := h.shardOf(name)
	sh.mu.Lock()
	t := r.localMember(id)
	rm, remote := r.remote[id]
	sh.mu.Unlock()
	switch {
	case remote:
		h.command(name, roomCmd{Op: "mute", Node: rm.node, ID: id, By: c.idStr})
	case t == nil:
		c.replyError(errNoSuchMember, "no member "+id+" in room "+name, "mute")
	default:
		h.muteLocal(r, t, c.idStr)
	}
}

// muteLocal mutes local member t of r, as asked by by.
func (h *hub) muteLocal(r *room, t *client, by string) {
	sh := h.shardOf(r.name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if r.localMember(t.idStr) == nil {
		return
	}
	if i := indexPeer(r.call, t.idStr); i >= 0 {
		r.call[i].muted = true
		r.call[i].media.audio = false
		h.callMuted(r, t.idStr, true)
	}
	t.send(encodeRoomBy("mute", r.name, by))
}

// end handles end: every member, the host too, gets ended and is out of
// the room and its call; those waiting are denied. Settings, host key and
// history stay.
func (h *hub) end(c *client, name string) {
	r := h.modOf(c, name, "end", true)
	if r == nil {
		return
	}
	h.command(name, roomCmd{Op: "end", By: c.idStr})
	h.endLocal(r, c.idStr)
}

// endLocal ends r for its members and lobby on this node, as by asked.
func (h *hub) endLocal(r *room, by string) {
	name := r.name
	sh := h.shardOf(name)
	sh.mu.Lock()
	members := slices.Clone(r.members)
	r.meet.ending = true
	sh.mu.Unlock()
	h.denyAll(r)
	frame := encodeRoomBy("ended", name, by)
	for _, t := range members {
		t.mu.Lock()
		if t.roomOf(name) == r {
			h.dropMember(t, r, frame)
		}
		t.mu.Unlock()
	}
	sh.mu.Lock()
	r.meet.ending = false
	h.dropIfEmpty(sh, r)
	sh.mu.Unlock()
}

// media handles media: a call peer announces what it sends; the other
// peers get call_peer media. Announcing audio on lifts a host's mute.
func (h *hub) media(c *client, name string, audio, video, screen bool) {
	c.mu.Lock()
	r := c.memberOf(name, "media")
	c.mu.Unlock()
	if r != nil {
		h.mediaIn(c, r, audio, video, screen)
	}
}

// mediaIn is media for c, a member of r.
func (h *hub) mediaIn(c *client, r *room, audio, video, screen bool) {
	name := r.name
	sh := h.shardOf(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	i := indexPeer(r.call, c.idStr)
	if i < 0 {
		c.replyError(errNotAllowed, "media is for peers of the room's call", "media")
		return
	}
	p := &r.call[i]
	p.media = mediaState{known: true, audio: audio, video: video, screen: screen}
	if audio && p.muted {
		p.muted = false
		h.callMuted(r, c.idStr, false)
	}
	frame := encodeCallMedia(name, c.idStr, c.nickname(), p.media)
	for _, q := range r.call {
		if q.c != nil && q.id != c.idStr {
			q.c.send(frame)
		}
	}
}

// callMuted is where a host's mute reaches the media: nothing to do in a
// mesh, where each page sends its own; the SFU stops forwarding. The
// shard lock is held.
func (h *hub) callMuted(r *room, id string, muted bool) {
	switch home := sfuHome(r.call); {
	case !r.sfu:
	case home != h.thisNode(): // the call's media is on another node
		on := "off"
		if muted {
			on = "on"
		}
		h.command(r.name, roomCmd{Op: "sfumute", Node: home, ID: id, Role: on})
	case h.sfu != nil:
		h.sfu.push(sfuOp{kind: sfuMute, room: r.name, id: id, muted: muted})
	}
}
