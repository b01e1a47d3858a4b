package main

import (
	"encoding/json"
	"errors"
	"time"

	"noom/server/auth"
)

// Rooms that belong to someone (PROTOCOL.md): every room has settings
// (passcode, lobby, locked, listed), kept through the broker with its
// history, and roles (host, cohost, member) held by the connections in it.
// The connection whose join creates a room is its host and gets the host
// key, which makes any later join a host's. Every request is checked here
// against the sender's role, under the room's shard lock, so a check and
// what it guards are one step: a role changed by another request is seen
// by the next one, never halfway.
//
// What is slow is kept off the event loop: a passcode is a salted scrypt
// hash (server/auth), tens of milliseconds to check, so joins with a
// passcode and settings that set one run that hash on a goroutine of their
// own (at most slowChecks at once; past that the request is answered
// unavailable instead of queueing without bound), then come back here and
// check everything again, since the room may have changed meanwhile.
//
// Settings are kept through the broker's contract (broker.Settings: the
// store in -data standalone, the cluster's bucket in a cluster) and
// changed the same way in both (settings.go). In a cluster roles travel
// with membership (cluster_meetings.go).

// meeting is a room's settings, roles and lobby. Guarded by the shard lock.
type meeting struct {
	// set is its settings as kept (the passcode's and host key's hashes,
	// lobby, lock, listed), the very value stored through the broker.
	set storedSettings
	// roles maps the ids of the present hosts and cohosts to their role;
	// everyone else is a member.
	roles map[string]string
	// lobbyq are the connections waiting to be admitted, oldest first.
	lobbyq []waiter
	// orphanSince is when the room was last left with members but no host
	// or cohost (clock ms), 0 while one is present or nobody is;
	// orphaned says it is queued in its shard's orphans.
	orphanSince int64
	orphaned    bool
	// ending is set while end takes everyone out: no presence frames.
	ending bool
	// The version of the settings applied (broker.Settings), and a new
	// room's host key, created by its load, while its creator's join is on
	// its way (load.go).
	version    uint64
	pendingKey string
}

// waiter is a connection in a room's lobby and the join it made.
type waiter struct {
	c  *client
	jr joinReq
}

// joinReq is a join request as it goes through the checks, perhaps twice:
// once before its passcode is hashed, once after.
type joinReq struct {
	room     string
	since    *int64
	epoch    string
	passcode string
	hostKey  string
	// passHash is the hash passcode was found to match, off the event
	// loop; it counts only while it is still the room's.
	passHash string
	// recovery is what the broker keeps after since, read on the room's
	// queue when since is beyond the room's ring (recovery.go).
	recovery *recovery
}

// storedSettings is a room's settings as the broker keeps them.
// (Listed is the default, so Unlisted is kept: the zero value is a public
// room.)
type storedSettings struct {
	Passcode string `json:"passcode,omitempty"` // the salted hash
	Lobby    bool   `json:"lobby,omitempty"`
	Locked   bool   `json:"locked,omitempty"`
	Unlisted bool   `json:"unlisted,omitempty"`
	HostKey  string `json:"host_key,omitempty"` // its SHA-256
}

// Bounds of the meeting state.
const (
	// lobbyLimit is the most connections waiting in one room's lobby;
	// past it a join is answered unavailable. A lobby is for the few who
	// knock on a meeting, not a queue anyone can fill.
	lobbyLimit = 100
	// barTime is how long a removed member is barred (PROTOCOL.md).
	barTime = time.Hour
	// slowChecks is how many passcode hashes run at once: each costs a
	// core for tens of milliseconds and 16 MiB (server/auth).
	slowChecks = 2
	// passAttempts failed passcodes from one address for one room in
	// passWindow, and its next join is refused unchecked.
	passAttempts = 5
	passWindow   = time.Minute
)

// settings returns the settings as the protocol shows them.
func (m *meeting) settings() roomSettings {
	return roomSettings{passcode: m.set.Passcode != "", lobby: m.set.Lobby, locked: m.set.Locked, listed: !m.set.Unlisted}
}

// listed reports whether the room may appear in rooms and /api/rooms: a
// room with a passcode never does.
func (m *meeting) listed() bool { return !m.set.Unlisted && m.set.Passcode == "" }

// roleOf returns the role of the member with id.
func (m *meeting) roleOf(id string) string {
	if r, ok := m.roles[id]; ok {
		return r
	}
	return roleMember
}

// isMod reports whether id is a host or cohost.
func (m *meeting) isMod(id string) bool {
	_, ok := m.roles[id]
	return ok
}

func (m *meeting) setRole(id, role string) {
	if role == roleMember {
		delete(m.roles, id)
		return
	}
	if m.roles == nil {
		m.roles = make(map[string]string)
	}
	m.roles[id] = role
}

// settingsEntry is a room's settings as the broker keeps them, with their
// version (broker.Settings; the cluster's bucket and the store alike).
type settingsEntry struct {
	storedSettings
	// V orders the versions: nodes apply only a newer one.
	V uint64 `json:"v"`
}

// decodeSettings reads settings as the broker keeps them; none (nil) are
// the defaults.
func decodeSettings(b []byte) (storedSettings, error) {
	var s storedSettings
	if len(b) == 0 {
		return s, nil
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, errors.New("room settings unreadable")
	}
	return s, nil
}

// roleEntries lists r's hosts and cohosts in join order. The shard lock
// must be held.
func (r *room) roleEntries() []roleEntry {
	out := make([]roleEntry, 0, len(r.meet.roles))
	for _, c := range r.members {
		if role, ok := r.meet.roles[c.idStr]; ok {
			out = append(out, roleEntry{c.idStr, role})
		}
	}
	return r.remoteRoles(out)
}

// roleOfAny returns the role of member id, here or on another node. The
// shard lock must be held.
func (r *room) roleOfAny(id string) string {
	if m, ok := r.remote[id]; ok && m.role != "" {
		return m.role
	}
	return r.meet.roleOf(id)
}

// roomChanged tells r's members its settings or roles changed. The shard
// lock must be held.
func (h *hub) roomChanged(r *room) {
	r.listJSON = nil // joined.members shows roles
	h.roomsDirty.Store(true)
	h.broadcast(r, encodeRoom(r.name, r.meet.settings(), r.roleEntries()), nil)
}

// modOf returns the room c is in by name if c is a host or cohost there
// (host only with hostOnly); otherwise it answers ref and returns nil.
// c.mu must not be held; the shard lock is not held on return.
func (h *hub) modOf(c *client, name, ref string, hostOnly bool) *room {
	c.mu.Lock()
	r := c.memberOf(name, ref)
	c.mu.Unlock()
	if r == nil {
		return nil
	}
	sh := h.shardOf(name)
	sh.mu.Lock()
	role := r.meet.roleOf(c.idStr)
	sh.mu.Unlock()
	if role == roleHost || (!hostOnly && role == roleCohost) {
		return r
	}
	who := "hosts and cohosts"
	if hostOnly {
		who = "the host"
	}
	c.replyError(errNotAllowed, ref+" is for "+who+" of room "+name, ref)
	return nil
}

// changeSettings handles a settings request: a host or cohost changes any
// of passcode, lobby, locked, listed. A new passcode is hashed first, off
// the event loop.
func (h *hub) changeSettings(c *client, req *request) {
	r := h.modOf(c, req.Room, "settings", false)
	if r == nil {
		return
	}
	ch := settingsChange{lobby: req.Lobby, locked: req.Locked, listed: req.Listed}
	if req.Passcode == nil || *req.Passcode == "" {
		ch.setPass = req.Passcode != nil
		h.queueSettings(c, r, ch, nil)
		return
	}
	pass := *req.Passcode
	if !h.slow(func() {
		hash, err := auth.HashPasscode(pass)
		if err != nil {
			h.log.Error("passcode not hashed", "err", err)
			c.replyError(errUnavailable, "the passcode could not be set; try again", "settings")
			return
		}
		ch.setPass, ch.passHash = true, hash
		h.queueSettings(c, r, ch, nil)
	}) {
		c.replyError(errUnavailable, "the server is busy checking passcodes; try again", "settings")
	}
}

// settingsChange is what one settings request changes.
type settingsChange struct {
	setPass               bool
	passHash              string
	lobby, locked, listed *bool
}

// changeRole handles a role request. A host may give any role to another
// member; giving host hands it over (the former host becomes cohost). A
// cohost may only make a member cohost.
func (h *hub) changeRole(c *client, name, id, role string) {
	c.mu.Lock()
	r := c.memberOf(name, "role")
	c.mu.Unlock()
	if r == nil {
		return
	}
	sh := h.shardOf(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	t := r.localMember(id)
	rm, remote := r.remote[id]
	if t == nil && !remote {
		c.replyError(errNoSuchMember, "no member "+id+" in room "+name, "role")
		return
	}
	m := &r.meet
	mine, theirs := m.roleOf(c.idStr), r.roleOfAny(id)
	switch {
	case mine == roleHost && id == c.idStr:
		c.replyError(errNotAllowed, "a host hands the host role to another member", "role")
		return
	case mine == roleHost, mine == roleCohost && theirs == roleMember && role == roleCohost:
	default:
		c.replyError(errNotAllowed, "that role change is not yours to make", "role")
		return
	}
	if mine == roleHost && role == roleHost {
		h.setLocalRole(r, c.idStr, roleCohost)
	}
	if remote { // its node gives it the role, and tells everyone
		h.command(name, roomCmd{Op: "role", Node: rm.node, ID: id, Role: role, By: c.idStr})
		h.roomChanged(r)
		return
	}
	h.setLocalRole(r, id, role)
	h.roomChanged(r)
	if theirs == roleMember && role != roleMember {
		h.announceMod(r, t)
	}
	h.checkOrphan(sh, r)
}

// localMember returns r's member with id on this node. The shard lock must
// be held.
func (r *room) localMember(id string) *client {
	for _, c := range r.members {
		if c.idStr == id {
			return c
		}
	}
	return nil
}

// checkOrphan notes when r is left with members but no host or cohost, so
// that the tick makes its longest-present member cohost after HostGrace.
// The shard lock must be held.
func (h *hub) checkOrphan(sh *shard, r *room) {
	m := &r.meet
	if len(m.roles) > 0 || len(r.members) == 0 || r.remoteMods() {
		m.orphanSince = 0
		return
	}
	if m.orphanSince == 0 {
		m.orphanSince = h.clock.now()
	}
	if !m.orphaned {
		m.orphaned = true
		sh.orphans = append(sh.orphans, r)
	}
}

// promoteOrphans runs in the tick with the shard lock held: rooms without
// a host or cohost for HostGrace get their longest-present member as
// cohost (PROTOCOL.md: nobody is stranded in a lobby).
func (h *hub) promoteOrphans(sh *shard, now int64) {
	keep := sh.orphans[:0]
	for _, r := range sh.orphans {
		m := &r.meet
		switch {
		case m.orphanSince == 0 || len(m.roles) > 0 || len(r.members) == 0 || r.remoteMods() || sh.rooms[r.name] != r:
			m.orphaned, m.orphanSince = false, 0
		case now-m.orphanSince >= h.cfg.HostGrace.Milliseconds():
			m.orphaned, m.orphanSince = false, 0
			// Members are in join order. In a cluster each node promotes
			// its own longest-present member: two cohosts rather than none.
			first := r.members[0]
			h.setLocalRole(r, first.idStr, roleCohost)
			h.roomChanged(r)
			h.announceMod(r, first)
		default:
			keep = append(keep, r)
		}
	}
	clear(sh.orphans[len(keep):])
	sh.orphans = keep
}
