package main

import (
	"cmp"
	"errors"
	"slices"

	"noom/server/broker"
)

// Rooms in and out of memory, in a cluster. The stream keeps every room's
// messages, so a node keeps a room in memory only while someone is in it
// (here or on another node) or it has a call: then it follows the room's
// messages, membership and call list. A room nobody is in leaves memory on
// every node (dropIfEmpty), whatever it said; otherwise a node's memory
// would grow with every room ever spoken in.
//
// A room is loaded once its message state (seq, epoch, history, the last
// stream sequence) is read from the stream, which a node needs as soon as
// one of its own connections joins the room. A room in memory for other
// nodes' members or a call only is not: the consumer skips its messages.
// The first local join of a room that is not loaded queues a load on the
// room's queue (load.go, as a standalone node's new room does), which
// reads the room's settings and, here, the subject's last messages; the
// joins wait for it outside the room (gated) and are checked against the
// settings once it is done. So a local member is always in a loaded room. Messages the consumer applies while a
// load is on its way are kept aside (early) and merged with what the load
// read.

// A room's lifetime. A room's seq lives in the stream only, so when
// retention has taken every message of a room, its sequence is lost (the
// node that happens to remember it in memory cannot vouch for the others,
// which may have started since): the room starts over, seq 1, under a new
// epoch, named alike on every node by a start marker that one of them
// stores (broker.JetStream). A node that reads a message of another epoch
// than its room's tells the room's members with a joined frame, and the
// room goes on from that message.

// streamMsg is one message of a room as the stream holds it, with its
// stream sequence: seq 0 is a lifetime's start marker.
type streamMsg = broker.StreamMsg

// loadMessages reads r's messages' state from the stream for its load
// (load.go): the subject's last messages and its head, the start marker
// if that is all. An empty subject gets a start marker first: the room has
// a lifetime, named alike on every node, from its first join on.
func (cl *cluster) loadMessages(r *room) ([]streamMsg, error) {
	if !cl.online() {
		return nil, errors.New("NATS is out of reach")
	}
	head, msgs, err := cl.msgs.Load(r.name, cl.h.cfg.HistorySize)
	if err != nil {
		return nil, err
	}
	return append(msgs, streamMsg{Position: head}), nil
}

// applyLoaded gives r the message state read from the stream (msgs,
// oldest first) merged with what the consumer applied meanwhile. The
// shard lock is held.
func (h *hub) applyLoaded(r *room, msgs []streamMsg) {
	all := append(msgs, r.early...)
	// Sorted by stream sequence, the first of equal ones kept: a message
	// the load read is also the head it read, without its payload.
	slices.SortStableFunc(all, func(a, b streamMsg) int { return cmp.Compare(a.StreamSeq, b.StreamSeq) })
	all = slices.CompactFunc(all, func(a, b streamMsg) bool { return a.StreamSeq == b.StreamSeq })
	r.early = nil
	r.epoch, r.seq, r.next, r.streamSeq = h.cl.epoch, 0, 0, 0
	r.history, r.histStart = nil, 0
	if len(all) > 0 {
		newest := all[len(all)-1]
		r.epoch, r.streamSeq = newest.Epoch, newest.StreamSeq
		for _, m := range all {
			if m.Epoch == newest.Epoch && m.Seq > r.seq {
				r.seq, r.next = m.Seq, m.Seq
				if m.Payload != nil {
					r.addHistory(m.Payload, h.cfg.HistorySize)
				}
			}
		}
	}
}
