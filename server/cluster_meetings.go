package main

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"noom/server/broker"
)

// Rooms that belong to someone, across a cluster (meetings.go has the
// rules):
//
//   - A room's settings (the passcode's hash, lobby, lock, listed, the host
//     key's hash) are one entry of the JetStream key-value bucket
//     noom_rooms (broker.KVSettings), with a version number in the value. A
//     node reads the entry when it loads the room, before any join of its
//     own is checked (the joins wait for the load), and creates it when
//     there is none: the join that made the load is the room's creator, the
//     one node whose create succeeds. A change is a compare-and-set
//     (settings.go, the same as standalone); every node hears every put on
//     the bucket's subject and applies a newer version to the room it
//     holds in memory at once, so the passcode, the lock and the lobby hold
//     everywhere from the moment the change is acknowledged.
//   - Roles belong to the node of the member that holds them, as
//     membership does: a node publishes its members' roles in their join
//     events and in role events, in order, and a node's snapshot carries
//     them. A room has one host: a node that hears of a host on another
//     node makes its own host a cohost.
//   - What a host does to a member or a waiting connection on another node
//     (role, remove, mute, admit, deny) goes to that node as a command in
//     the sender's membership events (evCmd, ordered and never waiting on
//     the network); knocks, ends and bars go to every node the same way. The
//     sender's node has checked the sender's role; nodes trust each other,
//     as they do for membership.
//
// Bars are kept by every node (the removed member's node computes who is
// barred, its address or token subject, and tells the others), and
// failed passcodes are counted per node.

// settingsBucket is the key-value bucket of rooms' settings.
const settingsBucket = "noom_rooms"

// roomCmd is a host's request carried to other nodes (see above).
type roomCmd struct {
	Op    string `json:"op"`
	Node  string `json:"node,omitempty"` // the node it is for; "" for every node
	ID    string `json:"id,omitempty"`   // the member or waiting connection
	To    string `json:"to,omitempty"`   // knock: the host it is for, "" for all
	By    string `json:"by,omitempty"`
	Role  string `json:"role,omitempty"`
	Nick  string `json:"nick,omitempty"`
	Who   string `json:"who,omitempty"`   // bar, lift: the barKey
	Until int64  `json:"until,omitempty"` // bar: Unix ms
	// IDs: speakers, the call's speakers, loudest first (calls_sfu.go).
	IDs []string `json:"ids,omitempty"`
}

// setupSettings creates or opens the bucket and follows its changes. Its
// entries live for twice the messages' retention, and a load refreshes an
// older one, so a room in use keeps its settings and host key, and one
// unused for that long is forgotten (PROTOCOL.md: an empty room with no
// kept messages is forgotten).
func (cl *cluster) setupSettings(ctx context.Context) error {
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	kv, err := cl.js.CreateOrUpdateKeyValue(sctx, jetstream.KeyValueConfig{
		Bucket: settingsBucket, History: 1, Storage: jetstream.FileStorage,
		TTL: cl.settingsTTL(),
	})
	if err != nil {
		return err
	}
	cl.kv = kv
	cl.h.settings = broker.NewKVSettings(kv, cl.settingsTTL(), publishTimeout)
	return nil
}

func (cl *cluster) settingsTTL() time.Duration { return 2*cl.h.cfg.NATSRetention + forgetAfter }

// subscribeSettings applies every put on the bucket, from any node.
func (cl *cluster) subscribeSettings() (*nats.Subscription, error) {
	return cl.nc.Subscribe("$KV."+settingsBucket+".>", func(m *nats.Msg) {
		if op := m.Header.Get("KV-Operation"); op != "" { // a delete or purge: nothing to apply
			return
		}
		var e settingsEntry
		if json.Unmarshal(m.Data, &e) != nil {
			return
		}
		cl.h.applySettingsEntry(roomOfSubject(m.Subject, "$KV."+settingsBucket+"."), e, false)
	})
}

// applyTo makes the change in s.
func (ch settingsChange) applyTo(s *storedSettings) {
	if ch.setPass {
		s.Passcode = ch.passHash
	}
	if ch.lobby != nil {
		s.Lobby = *ch.lobby
	}
	if ch.locked != nil {
		s.Locked = *ch.locked
	}
	if ch.listed != nil {
		s.Unlisted = !*ch.listed
	}
}

// applySettingsEntry makes e room name's settings if it is newer than what
// the room in memory has (or force, for the node that stored it), tells
// its members and, with the lobby off, lets in everyone waiting here.
func (h *hub) applySettingsEntry(name string, e settingsEntry, force bool) {
	sh := h.shardOf(name)
	sh.mu.Lock()
	r := sh.rooms[name]
	if r == nil || (!force && e.V <= r.meet.version) || e.V < r.meet.version {
		sh.mu.Unlock()
		return
	}
	m := &r.meet
	m.version = e.V
	m.set = e.storedSettings
	var admit []waiter
	if !m.set.Lobby {
		admit = slices.Clone(m.lobbyq)
	}
	if r.loaded {
		h.roomChanged(r)
	}
	sh.mu.Unlock()
	for _, w := range admit {
		h.admitWaiter(r, w.c, false)
	}
}

// command sends cmd about room to its node (cmd.Node), or to every other
// node (nowhere standalone: broker.Alone). Commands are a host's actions
// and the SFU's speaker changes: a few a second at most.
func (h *hub) command(room string, cmd roomCmd) {
	b, _ := json.Marshal(cmd)
	h.members.Command(room, b)
}

// setLocalRole gives local member id of r role and tells the cluster. The
// shard lock must be held.
func (h *hub) setLocalRole(r *room, id, role string) {
	r.meet.setRole(id, role)
	h.members.Role(r.name, id, role)
}

// remoteRole applies another node's role event.
func (h *hub) remoteRole(name, id, role string) {
	sh := h.shardOf(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if r := sh.rooms[name]; r != nil {
		if _, ok := r.remote[id]; ok {
			h.remoteRoleLocked(r, id, role)
			h.checkOrphan(sh, r)
		}
	}
}

// remoteRoleLocked records remote member id's role; a host elsewhere makes
// the host here a cohost (one host per room). The shard lock must be held.
func (h *hub) remoteRoleLocked(r *room, id, role string) {
	m := r.remote[id]
	if m.role == role {
		return // an event seen twice (a load and its event): nothing to tell
	}
	m.role = role
	r.remote[id] = m
	if role == roleHost {
		for lid, rl := range r.meet.roles {
			if rl == roleHost {
				h.setLocalRole(r, lid, roleCohost)
			}
		}
	}
	h.roomChanged(r)
}

// remoteMods reports whether a member on another node is a host or cohost
// of r. The shard lock must be held.
func (r *room) remoteMods() bool {
	for _, m := range r.remote {
		if m.role == roleHost || m.role == roleCohost {
			return true
		}
	}
	return false
}

// remoteRoles appends r's hosts and cohosts on other nodes to out, by id.
// The shard lock must be held.
func (r *room) remoteRoles(out []roleEntry) []roleEntry {
	start := len(out)
	for id, m := range r.remote {
		if m.role == roleHost || m.role == roleCohost {
			out = append(out, roleEntry{id, m.role})
		}
	}
	slices.SortFunc(out[start:], func(a, b roleEntry) int { return strings.Compare(a.id, b.id) })
	return out
}

// roomCommand carries out another node's command about room name.
func (h *hub) roomCommand(name string, cmd *roomCmd) {
	sh := h.shardOf(name)
	sh.mu.Lock()
	r := sh.rooms[name]
	sh.mu.Unlock()
	switch cmd.Op {
	case "bar":
		h.bars.Bar(name, cmd.Who, time.UnixMilli(cmd.Until))
		return
	case "lift":
		h.bars.Lift(name, cmd.Who)
		return
	}
	if r == nil {
		return
	}
	t := h.lookup(cmd.ID)
	switch cmd.Op {
	case "role":
		sh.mu.Lock()
		if r.localMember(cmd.ID) != nil {
			if cmd.Role == roleHost {
				for id, rl := range r.meet.roles {
					if rl == roleHost && id != cmd.ID {
						h.setLocalRole(r, id, roleCohost)
					}
				}
			}
			wasMod := r.meet.isMod(cmd.ID)
			h.setLocalRole(r, cmd.ID, cmd.Role)
			h.roomChanged(r)
			if !wasMod && cmd.Role != roleMember {
				h.announceMod(r, t)
			}
			h.checkOrphan(sh, r)
		}
		sh.mu.Unlock()
	case "remove":
		if t != nil {
			h.removeLocal(t, r, cmd.By)
		}
	case "mute":
		if t != nil {
			h.muteLocal(r, t, cmd.By)
		}
	case "admit", "deny":
		if t != nil {
			h.admitWaiter(r, t, cmd.Op == "deny")
		}
	case "knock":
		sh.mu.Lock()
		frame := encodeKnock(name, cmd.ID, cmd.Nick)
		for _, m := range r.members {
			if (cmd.To == "" && r.meet.isMod(m.idStr)) || m.idStr == cmd.To {
				m.send(frame)
			}
		}
		sh.mu.Unlock()
	case "knocks": // a host or cohost elsewhere wants to know who waits here
		sh.mu.Lock()
		for _, w := range r.meet.lobbyq {
			h.command(name, roomCmd{Op: "knock", Node: nodeOf(cmd.To), To: cmd.To, ID: w.c.idStr, Nick: w.c.nickname()})
		}
		sh.mu.Unlock()
	case "end":
		h.endLocal(r, cmd.By)
	case "speakers":
		h.speakers(name, cmd.IDs, false)
	case "sfudrop": // the call's home dropped this node's peer's media
		h.sfuDropped(name, cmd.ID)
	case "sfumute": // this node is the call's home
		if h.sfu != nil {
			h.sfu.push(sfuOp{kind: sfuMute, room: name, id: cmd.ID, muted: cmd.Role == "on"})
		}
	}
}

// announceMod tells t, newly a host or cohost of r, who waits in the lobby
// here and, in a cluster, on the other nodes. Only a room with its lobby
// on can have anyone waiting: the others cost no event to every node (a
// room's creator is a new host, every time). The shard lock must be held.
func (h *hub) announceMod(r *room, t *client) {
	if t == nil {
		return
	}
	h.sendKnocks(r, t)
	if r.meet.set.Lobby {
		h.command(r.name, roomCmd{Op: "knocks", To: t.idStr})
	}
}
