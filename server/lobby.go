package main

import (
	"net"
	"slices"
	"time"

	"noom/server/auth"
)

// The way into a room (PROTOCOL.md, "Rooms that belong to someone"): a
// join passes the token's rooms, a bar, the lock, the passcode and the
// lobby, in that order, unless it carries the host key or a token's host
// grant, or creates the room. What waits in a lobby sees nothing of the
// room until a host or cohost admits it.

// slow runs fn on a goroutine of its own if fewer than slowChecks such
// goroutines run, and reports whether it did: passcode hashes, which must
// not run on the event loop nor queue without bound.
func (h *hub) slow(fn func()) bool {
	select {
	case h.slowSem <- struct{}{}:
	default:
		return false
	}
	go func() {
		defer func() { <-h.slowSem }()
		fn()
	}()
	return true
}

// barKey is who a bar applies to: the token's subject where the client
// has one, else its remote address.
func (c *client) barKey() string {
	if t := c.token(); t != nil {
		return "sub:" + t.claims.Sub
	}
	return "ip:" + c.remoteIP()
}

// remoteIP is the client's address without its port.
func (c *client) remoteIP() string {
	if c.nbc == nil { // a hub driven without sockets (benchmarks)
		return ""
	}
	a := c.nbc.RemoteAddr()
	if a == nil {
		return ""
	}
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// hostGrant reports whether jr makes c a host of r: the room's host key,
// or a token naming the room in host. The shard lock must be held.
func (h *hub) hostGrant(c *client, r *room, jr *joinReq) bool {
	if jr.hostKey != "" && r.meet.set.HostKey != "" && auth.HostKeyMatches(r.meet.set.HostKey, jr.hostKey) {
		return true
	}
	t := c.token()
	return t != nil && t.claims.IsHost(r.name)
}

// gate runs the checks of a join without a host grant. It reports true if
// c may join r now; otherwise it has answered c (an error, waiting) or
// started the passcode's check, which joins again when it is done. c.mu
// and the shard lock are held.
func (h *hub) gate(sh *shard, r *room, c *client, jr *joinReq) bool {
	m := &r.meet
	now := time.Now()
	barred := h.bars.Barred(r.name, c.barKey(), now)
	switch {
	case barred && !m.set.Lobby:
		c.replyJoinError(errBanned, "you were removed from room "+r.name+"; try again later", r.name)
		return false
	case m.set.Locked:
		c.replyJoinError(errRoomLocked, "room "+r.name+" is locked", r.name)
		return false
	}
	if m.set.Passcode != "" && jr.passHash != m.set.Passcode {
		if jr.passcode == "" {
			c.replyJoinError(errPasscodeRequired, "room "+r.name+" needs a passcode", r.name)
			return false
		}
		addr := auth.AddrKey(c.remoteIP()) // an IPv6 host has a /64 of addresses
		if !h.attempts.Allow(addr, r.name, now) {
			c.replyJoinError(errTooManyAttempts, "too many wrong passcodes for room "+r.name+"; wait a minute", r.name)
			return false
		}
		hash, try := m.set.Passcode, *jr
		if !h.slow(func() {
			defer h.settled(c)
			if !auth.CheckPasscode(hash, try.passcode) {
				h.attempts.Fail(addr, try.room, time.Now())
				c.replyJoinError(errBadPasscode, "wrong passcode for room "+try.room, try.room)
				return
			}
			try.passHash = hash
			h.join(c, try)
		}) {
			c.replyJoinError(errUnavailable, "the server is busy checking passcodes; try again", r.name)
			return false
		}
		h.holdBehind(c) // c's next requests wait for the answer (held.go)
		return false
	}
	if m.set.Lobby {
		h.wait(sh, r, c, jr)
		return false
	}
	return true
}

// wait puts c in r's lobby and tells r's hosts and cohosts. c.mu and the
// shard lock are held.
func (h *hub) wait(sh *shard, r *room, c *client, jr *joinReq) {
	m := &r.meet
	if len(m.lobbyq) >= lobbyLimit {
		c.replyJoinError(errUnavailable, "the lobby of room "+r.name+" is full; try again later", r.name)
		return
	}
	m.lobbyq = append(m.lobbyq, waiter{c, *jr})
	c.waits = append(c.waits, r)
	c.send(encodeWaiting(r.name))
	knock := encodeKnock(r.name, c.idStr, c.nickname())
	for _, t := range r.members {
		if m.isMod(t.idStr) {
			t.send(knock)
		}
	}
	h.command(r.name, roomCmd{Op: "knock", ID: c.idStr, Nick: c.nickname()}) // hosts elsewhere
}

// sendKnocks tells t, newly a host or cohost of r, who waits in r's lobby.
// The shard lock must be held.
func (h *hub) sendKnocks(r *room, t *client) {
	for _, w := range r.meet.lobbyq {
		t.send(encodeKnock(r.name, w.c.idStr, w.c.nickname()))
	}
}

// waitingIn returns the room by that name whose lobby c waits in. c.mu
// must be held.
func (c *client) waitingIn(name string) *room {
	for _, r := range c.waits {
		if r.name == name {
			return r
		}
	}
	return nil
}

// unwait takes c out of r's lobby; it reports whether c was in it. c.mu
// and the shard lock are held.
func (r *room) unwait(c *client) (waiter, bool) {
	if i := slices.Index(c.waits, r); i >= 0 {
		c.waits = slices.Delete(c.waits, i, i+1)
	}
	m := &r.meet
	i := slices.IndexFunc(m.lobbyq, func(w waiter) bool { return w.c == c })
	if i < 0 {
		return waiter{}, false
	}
	w := m.lobbyq[i]
	m.lobbyq = slices.Delete(m.lobbyq, i, i+1)
	return w, true
}

// leaveLobbies takes c out of every lobby it waits in: it left or
// disconnected. c.mu must not be held.
func (h *hub) leaveLobbies(c *client) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.waits) > 0 {
		r := c.waits[0]
		sh := h.shardOf(r.name)
		sh.mu.Lock()
		r.unwait(c) // takes r out of c.waits, and c out of r's lobby
		h.dropIfEmpty(sh, r)
		sh.mu.Unlock()
	}
}

// admit handles admit and deny: a host or cohost lets a waiting
// connection in, or sends it away.
func (h *hub) admit(c *client, name, id string, let bool) {
	ref := "admit"
	if !let {
		ref = "deny"
	}
	r := h.modOf(c, name, ref, false)
	if r == nil {
		return
	}
	if node := nodeOf(id); node != h.thisNode() && h.members.Live(node) { // waits on another node
		h.command(name, roomCmd{Op: ref, Node: node, ID: id, By: c.idStr})
		return
	}
	t := h.lookup(id)
	if t == nil || !h.admitWaiter(r, t, !let) {
		c.replyError(errNoSuchMember, "nobody "+id+" waits in room "+name, ref)
	}
}

// admitWaiter takes t out of r's lobby and lets it in (an admit lifts a
// bar) or, with deny, answers its join denied. It reports false if t was
// not waiting there. Neither t.mu nor the shard lock may be held.
func (h *hub) admitWaiter(r *room, t *client, deny bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	sh := h.shardOf(r.name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	w, ok := r.unwait(t)
	switch {
	case !ok:
		return false
	case deny:
		t.replyJoinError(errDenied, "a host of room "+r.name+" did not let you in", r.name)
	case t.getState() == connClosed:
		return false // gone: nobody to let in
	default:
		// A room with a lobby queue stays in memory (dropIfEmpty), so r is
		// still the room by its name.
		who := t.barKey()
		if h.bars.Barred(r.name, who, time.Now()) {
			h.bars.Lift(r.name, who)
			h.command(r.name, roomCmd{Op: "lift", Who: who})
		}
		h.addMember(sh, r, t, &w.jr, roleMember, false)
	}
	h.dropIfEmpty(sh, r)
	return true
}

// denyAll answers every connection waiting in r's lobby denied: the room
// ended. Neither the shard lock nor a client lock may be held.
func (h *hub) denyAll(r *room) {
	sh := h.shardOf(r.name)
	sh.mu.Lock()
	ws := slices.Clone(r.meet.lobbyq)
	sh.mu.Unlock()
	for _, w := range ws {
		h.admitWaiter(r, w.c, true)
	}
}
