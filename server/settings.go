package main

import (
	"encoding/json"
	"errors"
	"slices"

	"noom/server/broker"
)

// Changing a room's settings, the same way standalone and in a cluster: a
// settings request (or the operator's lock) is queued on the room's queue
// (roomq.go), applied there to the settings the room has, and kept through
// the broker by compare-and-set on their version (broker.Settings: the
// store standalone, the cluster's bucket in a cluster); then applied here
// at once and told to the members, and in a cluster applied by every node
// as it hears the put. A change that finds the settings changed since
// (another request, another node) reads them, applies them, and is decided
// again on them: two changes never undo each other.

// settingsPatience is how many times a change is decided again after a
// conflict before the sender is told to try again.
const settingsPatience = 5

// queueSettings queues ch to r's settings as c asked (nil: the operator,
// whose role is not checked); done, if any, gets the outcome.
func (h *hub) queueSettings(c *client, r *room, ch settingsChange, done func(error)) {
	if done == nil {
		done = func(error) {}
	}
	if !h.rq.enqueue(pubReq{kind: reqRun, room: r, run: func() { done(h.changeSettingsNow(c, r, ch)) }}) {
		if c != nil {
			c.replyError(errUnavailable, "the server is busy; try again", "settings")
		}
		done(errBusy)
	}
}

var (
	errBusy        = errors.New("the server is busy")
	errNoLongerMod = errors.New("no longer a host or cohost")
)

// changeSettingsNow keeps a settings change of c (nil: the operator), on
// the room's queue, answers c if it failed, and returns the outcome. The
// room stays in memory meanwhile (inflight), so that a join cannot load
// older settings.
func (h *hub) changeSettingsNow(c *client, r *room, ch settingsChange) error {
	err := h.keepSettings(c, r, ch)
	switch {
	case errors.Is(err, errNoLongerMod):
		c.replyError(errNotAllowed, "settings is for hosts and cohosts of room "+r.name, "settings")
	case err != nil && c != nil:
		h.log.Warn("room settings not stored", "room", r.name, "err", err)
		c.replyError(errUnavailable, "the settings could not be stored; try again", "settings")
	}
	return err
}

// keepSettings applies ch to r's settings if c (nil: the operator) is
// still a host or cohost of r, keeps them by compare-and-set and applies
// them here.
func (h *hub) keepSettings(c *client, r *room, ch settingsChange) error {
	sh := h.shardOf(r.name)
	sh.mu.Lock()
	r.inflight++
	sh.mu.Unlock()
	defer func() {
		sh.mu.Lock()
		r.inflight--
		h.dropIfEmpty(sh, r)
		sh.mu.Unlock()
	}()
	for range settingsPatience {
		sh.mu.Lock()
		if c != nil && (!r.meet.isMod(c.idStr) || !slices.Contains(r.members, c)) {
			sh.mu.Unlock()
			return errNoLongerMod
		}
		set, version, epoch := r.meet.set, r.meet.version, r.epoch
		sh.mu.Unlock()
		ch.applyTo(&set)
		b, _ := json.Marshal(set)
		v, err := h.settings.UpdateSettings(r.name, epoch, version, b)
		switch {
		case err == nil:
			h.applySettingsEntry(r.name, settingsEntry{storedSettings: set, V: v}, true)
			return nil
		case !errors.Is(err, broker.ErrSeq):
			return err
		}
		// Changed since: take the newest, then decide again on them.
		e, _, err := h.readSettings(r.name, epoch, false)
		if err != nil {
			return err
		}
		h.applySettingsEntry(r.name, e, false)
	}
	return errors.New("room settings: too many conflicts")
}
