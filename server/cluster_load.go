package main

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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
// room's publisher, which reads the room's settings and the subject's last
// messages; the joins wait for it outside the room (gated) and are checked
// against the settings once it is done (cluster_meetings.go). So a local
// member is always in a loaded room. Messages the consumer applies while a
// load is on its way are kept aside (early) and merged with what the load
// read.

// A room's lifetime. A room's seq lives in the stream only, so when
// retention has taken every message of a room, its sequence is lost (the
// node that happens to remember it in memory cannot vouch for the others,
// which may have started since): the room starts over, seq 1, under a new
// epoch, as PROTOCOL.md has it ("epoch changes only when the room's kept
// sequence is really lost (retention, ...)"). So that every node names the
// new lifetime alike, the node that finds the subject empty (a join's load,
// or a say after a compare-and-set conflict) first stores a start marker,
// a message with seq 0 and no text, by compare-and-set on an empty subject
// (one node wins; the others read the winner's). The lifetime's epoch is
// the stream's epoch and the marker's stream sequence, which no other
// lifetime can have; every message carries it (epochHeader), as the
// marker is soon dropped by the subject's -history limit. A node that
// reads a message of another epoch than its room's tells the room's
// members with a joined frame, and the room goes on from that message.
// Messages stored before the header existed are in the stream's epoch.

// lifetimeEpoch names the lifetime started by the marker at stream
// sequence markerSeq.
func (cl *cluster) lifetimeEpoch(markerSeq uint64) string {
	return cl.epoch + "." + strconv.FormatUint(markerSeq, 36)
}

// startLifetime stores a start marker on subj, a room's empty subject, and
// returns the new lifetime's state; if another node got there first (or a
// message is there after all), what the subject holds now. An error is
// JetStream's refusal, or no answer: nothing is known then.
func (cl *cluster) startLifetime(room, subj string) (published, error) {
	m := &nats.Msg{Subject: subj, Header: nats.Header{}}
	m.Header.Set(seqHeader, "0")
	m.Header.Set(nats.MsgIdHdr, room+"/start/"+cl.node+"."+strconv.FormatUint(cl.pubCount.Add(1), 36))
	ack, err := cl.publish(m, 0)
	switch {
	case err == nil:
		return published{streamSeq: ack.Sequence, epoch: cl.lifetimeEpoch(ack.Sequence)}, nil
	case isWrongLastSeq(err):
		return cl.lastMsg(subj)
	}
	return published{}, err
}

// gatedJoin is a local join that waits for the room's load before it is
// checked against the room's settings (cluster_meetings.go).
type gatedJoin struct {
	c  *client
	jr joinReq
}

// streamMsg is one message of a room, as the stream holds it.
type streamMsg struct {
	seq, streamSeq uint64
	epoch          string
	payload        []byte
}

// msgOf describes a message stored at stream sequence streamSeq: a seq
// of 0 is a lifetime's start marker.
func (cl *cluster) msgOf(hdr nats.Header, data []byte, streamSeq uint64) streamMsg {
	seq, _ := strconv.ParseUint(hdr.Get(seqHeader), 10, 64)
	epoch := hdr.Get(epochHeader)
	switch {
	case seq == 0:
		epoch = cl.lifetimeEpoch(streamSeq)
	case epoch == "": // stored before lifetimes had epochs of their own
		epoch = cl.epoch
	}
	return streamMsg{seq: seq, streamSeq: streamSeq, epoch: epoch, payload: data}
}

// load queues the load of r, if none is queued. It reports false if the
// room cannot be loaded now: NATS is out of reach, or the publisher's queue
// is full. The shard lock must be held.
func (cl *cluster) load(r *room) bool {
	if r.loading {
		return true
	}
	if !cl.online() || !cl.enqueue(pubReq{kind: reqLoad, room: r}) {
		return false
	}
	r.loading = true
	return true
}

// doLoad reads r's messages from the stream, on r's publisher, and
// completes the joins that wait for them.
func (cl *cluster) doLoad(req pubReq) {
	r := req.room
	var msgs []streamMsg
	var set settingsEntry
	var key string
	err := errors.New("NATS is out of reach")
	if cl.online() {
		if set, key, err = cl.readSettings(r.name); err == nil {
			msgs, err = cl.readRoom(r.name)
		}
	}
	if err != nil {
		cl.log.Warn("room not loaded", "room", r.name, "err", err)
		cl.h.refuseLoad(r)
		return
	}
	for _, g := range cl.h.finishLoad(r, msgs, set, key) {
		cl.h.join(g.c, g.jr) // checked now, against the settings just read
	}
}

// readRoom returns the messages the stream keeps of room, oldest first:
// the last one, and if its seq says there are older ones in its lifetime,
// all the subject keeps (at most -history). An empty subject gets a start
// marker first: the room has a lifetime, named alike on every node, from
// its first join on.
func (cl *cluster) readRoom(room string) ([]streamMsg, error) {
	subj := subjMsg + subjectRoom(room)
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	last, err := cl.stream.GetLastMsgForSubject(ctx, subj)
	for attempt := 0; errors.Is(err, jetstream.ErrMsgNotFound) && attempt < 3; attempt++ {
		var p published
		if p, err = cl.startLifetime(room, subj); err == nil && p.seq == 0 {
			return []streamMsg{{streamSeq: p.streamSeq, epoch: p.epoch}}, nil
		}
		if err == nil || errors.Is(err, jetstream.ErrMsgNotFound) { // others' messages: read them all
			last, err = cl.stream.GetLastMsgForSubject(ctx, subj)
		}
	}
	if err != nil {
		return nil, err
	}
	newest := cl.msgOf(last.Header, last.Data, last.Sequence)
	if newest.seq <= 1 {
		return []streamMsg{newest}, nil
	}
	cons, err := cl.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subj}, InactiveThreshold: 10 * time.Second})
	if err != nil {
		return nil, err
	}
	defer func() {
		dctx, dcancel := context.WithTimeout(context.Background(), publishTimeout)
		defer dcancel()
		_ = cl.stream.DeleteConsumer(dctx, cons.CachedInfo().Name)
	}()
	n := int(cons.CachedInfo().NumPending)
	if n == 0 { // gone meanwhile (retention): the newest is all there is
		return []streamMsg{newest}, nil
	}
	batch, err := cons.Fetch(n, jetstream.FetchMaxWait(publishTimeout))
	if err != nil {
		return nil, err
	}
	msgs := make([]streamMsg, 0, n)
	for m := range batch.Messages() {
		meta, err := m.Metadata()
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, cl.msgOf(m.Headers(), m.Data(), meta.Sequence.Stream))
	}
	if err := batch.Error(); err != nil {
		return nil, err
	}
	return msgs, nil
}

// finishLoad gives r the message state read from the stream (msgs, oldest
// first) merged with what the consumer applied meanwhile, and its
// settings (key: its host key, if this load created it), and returns the
// joins to check now.
func (h *hub) finishLoad(r *room, msgs []streamMsg, set settingsEntry, key string) []gatedJoin {
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
	all := append(msgs, r.early...)
	slices.SortStableFunc(all, func(a, b streamMsg) int { return cmp.Compare(a.streamSeq, b.streamSeq) })
	all = slices.CompactFunc(all, func(a, b streamMsg) bool { return a.streamSeq == b.streamSeq })
	r.loading, r.loaded, r.early = false, true, nil
	r.epoch, r.seq, r.streamSeq = h.cl.epoch, 0, 0
	r.history, r.histStart = nil, 0
	if len(all) > 0 {
		newest := all[len(all)-1]
		r.epoch, r.streamSeq = newest.epoch, newest.streamSeq
		for _, m := range all {
			if m.epoch == newest.epoch && m.seq > r.seq {
				r.seq = m.seq
				r.addHistory(m.payload, h.cfg.HistorySize)
			}
		}
	}
	return gated
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
	}
}
