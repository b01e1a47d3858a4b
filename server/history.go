package main

import (
	"errors"
	"time"

	"noom/server/broker"
)

// Rooms' messages, one way whatever the broker (h.msgs): a say gets the
// next seq this node knows of and is handed to the broker (publish), and
// it is broadcast only once the broker has kept it, so a message anyone
// received survives a crash. Standalone the broker is the store in -data
// (broker.Local), the room's only writer; in a cluster it is the stream
// (broker.JetStream, up to -history-keep per room and -nats-retention),
// which renumbers a message whose seq another node took, and whose
// consumer delivers what this node's publisher cannot (published). A room
// in memory keeps the newest -history messages for joined frames; older
// ones are read from the broker, for `since` beyond that ring and for
// history pages, on the room's queue. A room that empties leaves memory;
// its seq, epoch and messages stay with the broker, and the next join
// loads them.

// maxRecover is the most messages a joined frame carries to bring a client
// back after `since`: past it recovered is false, the client gets the
// newest -history and pages back with history requests.
const maxRecover = 1000

// maxHistoryPage is the largest limit a history request takes
// (PROTOCOL.md); defaultHistoryPage is the limit without one.
const (
	maxHistoryPage     = 100
	defaultHistoryPage = 50
)

// forgetAfter is how long an empty room with no kept messages keeps its
// seq and epoch before the store forgets it (PROTOCOL.md: a day).
const forgetAfter = 24 * time.Hour

// publish gives a message of from (nick) in r the next seq this node
// knows of and hands it to the broker, which keeps it under that seq, or
// (a broker shared with other nodes, whose message took the seq) under
// the next free one. The shard lock is taken here. Publishes are
// pipelined: the next may start before this one is kept, and the broker
// keeps them in this order.
func (h *hub) publish(c *client, r *room, from, nick, text string, ts int64) {
	sh := h.shardOf(r.name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	m := pendingMsg{c: c, seq: max(r.next, r.seq) + 1, gen: r.pubGen, from: from, nick: nick, text: text, ts: ts}
	m.frame, m.at = encodeMsg(r.name, m.seq, from, nick, text, ts)
	renumber := func(seq uint64) []byte {
		f, at := encodeMsg(r.name, seq, m.from, m.nick, m.text, m.ts)
		return f[at:]
	}
	err := h.msgs.Publish(r.name, r.epoch, broker.Message{Seq: m.seq, TS: ts, Payload: m.frame[m.at:]}, renumber,
		func(k broker.Kept, err error) { h.published(r, m, k, err) })
	if err != nil {
		h.storeRefused(c, err)
		return
	}
	r.next = m.seq
	r.inflight++
}

// pendingMsg is a message of c on its way through the broker: the seq it
// was published with and the generation of r.next then, its frame as
// encoded for that seq, and what it takes to publish it again.
type pendingMsg struct {
	c                *client
	seq              uint64
	gen              uint32
	frame            []byte
	at               int
	from, nick, text string
	ts               int64
}

// published runs on the broker's goroutine once m is kept (k: its seq,
// payload and lifetime), or lost with err: then every message this node
// published after it fails too (the broker keeps a node's messages in
// order, or not at all), and r's next seq is its last delivered one's
// successor again; m.gen tells the first such failure from the ones that
// follow it, which must not undo a seq given out since.
//
// A message kept is delivered here if it follows what r's members have
// received; otherwise (its predecessor is another node's, which this
// node's consumer has not read yet) whoever reads the broker's order
// delivers it in that order: a cluster's consumer (applyMsg), which skips
// what was delivered here. A broker out of reach (ErrOffline) makes the
// room run alone meanwhile (islandSayLocked); if it is back already, the
// message is published again, after the ones that failed before it.
func (h *hub) published(r *room, m pendingMsg, k broker.Kept, err error) {
	sh := h.shardOf(r.name)
	sh.mu.Lock()
	r.inflight--
	if err != nil && m.gen == r.pubGen {
		r.next = r.seq
		r.pubGen++
	}
	again := false
	switch {
	case err == nil:
		if k.Epoch != r.epoch || k.Seq != r.seq+1 || r.island != nil {
			break // not next for r's members: the broker's order brings it
		}
		frame, at := m.frame, m.at
		if k.Seq != m.seq { // renumbered
			frame, at = finishFrame(append(newFrame(len(k.Payload)), k.Payload...))
		}
		r.seq = k.Seq
		r.addHistory(frame[at:], h.cfg.HistorySize)
		h.broadcast(r, frame, nil)
	case errors.Is(err, broker.ErrOffline):
		if again = !h.islandSayLocked(r, m); again {
			r.inflight++ // r stays in memory until it is published again
		}
	default:
		h.storeRefused(m.c, err)
	}
	h.dropIfEmpty(sh, r)
	sh.mu.Unlock()
	if again {
		h.publish(m.c, r, m.from, m.nick, m.text, m.ts)
		sh.mu.Lock()
		r.inflight--
		h.dropIfEmpty(sh, r)
		sh.mu.Unlock()
	}
}

// storeRefused answers a say the broker did not keep.
func (h *hub) storeRefused(c *client, err error) {
	h.stats.storeErrors.Add(1)
	if !errors.Is(err, broker.ErrBusy) {
		h.log.Warn("message not stored", "err", err)
	}
	c.replyError(errUnavailable, "the message could not be stored; try again", "say")
}

// history answers a history request: a page of r's kept messages before
// seq before (the newest without it).
func (h *hub) history(c *client, name string, before *int64, limit int) {
	c.mu.Lock()
	r := c.memberOf(name, "history")
	c.mu.Unlock()
	if r == nil {
		return
	}
	if limit == 0 {
		limit = defaultHistoryPage
	}
	var b uint64
	if before != nil {
		b = uint64(*before)
	}
	if h.msgs == nil || !h.rq.enqueue(pubReq{kind: reqRun, room: r, run: func() { h.historyPage(c, r, b, limit) }}) {
		h.historyFromRing(c, r, b, limit) // no broker, or too busy to ask it
	}
}

// historyPage answers a history request from the broker, on the room's
// queue (a cluster's stream is a round trip away; the queue keeps it off
// the event loop): nothing past what the room's members have received,
// nothing of another lifetime than theirs. A room that runs alone (a
// cluster node without NATS, cluster_rooms.go), or a broker out of reach,
// answers from memory.
func (h *hub) historyPage(c *client, r *room, before uint64, limit int) {
	sh := h.shardOf(r.name)
	sh.mu.Lock()
	last, epoch, alone := r.delivered(), r.epoch, r.island != nil
	sh.mu.Unlock()
	if before == 0 || before > last+1 {
		before = last + 1
	}
	if alone {
		h.historyFromRing(c, r, before, limit)
		return
	}
	msgs, more, err := h.msgs.HistoryIn(r.name, epoch, before, limit)
	switch {
	case errors.Is(err, broker.ErrOffline):
		h.historyFromRing(c, r, before, limit)
		return
	case err != nil:
		h.log.Warn("history not read", "room", r.name, "err", err)
		c.replyError(errUnavailable, "history could not be read; try again", "history")
		return
	}
	payloads := make([][]byte, len(msgs))
	for i, m := range msgs {
		payloads[i] = m.Payload
	}
	c.send(encodeHistory(r.name, payloads, more))
}

// delivered is the newest seq r's members have received (the seqs of
// publishes in flight, given out before they are kept, run ahead of it
// in next). The shard lock must be held.
func (r *room) delivered() uint64 { return r.seq }

// historyFromRing answers a history request from what r keeps in memory:
// without a broker, or while it is out of reach.
func (h *hub) historyFromRing(c *client, r *room, before uint64, limit int) {
	sh := h.shardOf(r.name)
	sh.mu.Lock()
	msgs, more := r.page(before, limit)
	sh.mu.Unlock()
	c.send(encodeHistory(r.name, msgs, more))
}

// page returns the ring's messages with seq < before (all for 0), at most
// limit of the newest, and whether older ones are in the ring or beyond
// it. The shard lock must be held.
func (r *room) page(before uint64, limit int) (msgs [][]byte, more bool) {
	kept := len(r.history)
	oldest := r.seq - uint64(kept) + 1
	end := kept // index after the last message to return
	if before != 0 && before <= r.seq {
		if before <= oldest {
			return nil, oldest > 1 && kept > 0
		}
		end = int(before - oldest)
	}
	start := max(0, end-limit)
	for i := start; i < end; i++ {
		msgs = append(msgs, r.history[(r.histStart+i)%kept])
	}
	return msgs, oldest+uint64(start) > 1
}

// expireHistory runs the broker's retention: messages past -retention or
// -history-keep go, and empty rooms with nothing kept for forgetAfter are
// forgotten (a cluster's stream applies its own: nothing to do). Called by
// the housekeeping goroutine, off the poller.
func (h *hub) expireHistory(now time.Time) {
	h.attempts.Expire(now) // both are bounded; this frees what ended
	h.bars.Expire(now)
	if h.msgs == nil {
		return
	}
	removed, err := h.msgs.Expire(now, forgetAfter, h.roomInMemory)
	if err != nil {
		h.log.Warn("history retention", "err", err)
	}
	if removed > 0 {
		h.log.Debug("history retention", "removed", removed)
	}
}

// roomInMemory reports whether room name is loaded (has members or
// messages on their way to the store): the broker must not forget it.
func (h *hub) roomInMemory(name string) bool {
	sh := h.shardOf(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.rooms[name] != nil
}
