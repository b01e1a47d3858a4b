package main

import (
	"context"
	"encoding/json"
	"hash/maphash"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Publishing into the stream, by compare-and-set. Requests for one room go
// to one publisher goroutine, in order, so that a node never races itself
// for a room's next seq; different rooms publish in parallel. A publisher
// remembers what it published last per room, because its own messages reach
// the room's state only when the consumer reads them back.

// Publisher request kinds.
const (
	reqMsg   = iota // a say
	reqCall         // a call join or leave of a local member
	reqPurge        // take a dead node's peers out of a room's call
)

// pubReq is one request to a publisher.
type pubReq struct {
	kind  int
	room  *room
	c     *client
	text  string
	join  bool   // reqCall: join, else leave
	reply bool   // reqCall: answer c with a call frame
	node  string // reqPurge
}

// published is what a publisher last wrote for a subject.
type published struct {
	seq, streamSeq uint64
	call           []callPeer
}

var pubSeed = maphash.MakeSeed()

// enqueue hands req to its room's publisher. A full queue refuses the
// request (unavailable: the cluster is overloaded, the client may retry)
// rather than block the poller.
func (cl *cluster) enqueue(req pubReq) bool {
	q := cl.pubs[maphash.String(pubSeed, req.room.name)%uint64(len(cl.pubs))]
	select {
	case q <- req:
		return true
	default:
		return false
	}
}

// publishMsg queues a say of c in r.
func (cl *cluster) publishMsg(r *room, c *client, text string) {
	if !cl.enqueue(pubReq{kind: reqMsg, room: r, c: c, text: text}) {
		c.replyError(errUnavailable, "the cluster is busy; try again", "say")
	}
}

// changeCall queues a call join or leave of c in r; with reply, c gets the
// call frame (or call_full) once it is decided.
func (cl *cluster) changeCall(r *room, c *client, join, reply bool) {
	if !cl.enqueue(pubReq{kind: reqCall, room: r, c: c, join: join, reply: reply}) && reply {
		c.replyError(errUnavailable, "the cluster is busy; try again", "call")
	}
}

// publisher is one publishing goroutine.
func (cl *cluster) publisher(q chan pubReq) {
	defer cl.wg.Done()
	last := make(map[string]published) // by subject
	for req := range q {
		if len(last) > 10000 { // only a cache: forgetting costs a conflict at most
			clear(last)
		}
		switch req.kind {
		case reqMsg:
			cl.doMsg(req, last)
		default:
			cl.doCall(req, last)
		}
	}
}

// doMsg publishes a say with the room's next seq. Under contention the
// compare-and-set may fail many times; it goes on for casPatience, then
// gives up with an error to the sender. Only when NATS is out of reach does
// the message go to the room's island instead.
func (cl *cluster) doMsg(req pubReq, last map[string]published) {
	r := req.room
	subj := subjMsg + subjectRoom(r.name)
	nick := req.c.nickname()
	for deadline := time.Now().Add(casPatience); cl.online(); {
		seq, sseq := cl.msgState(r, last[subj])
		frame, at := encodeMsg(r.name, seq+1, req.c.idStr, nick, req.text, time.Now().UnixMilli())
		m := &nats.Msg{Subject: subj, Data: frame[at:], Header: nats.Header{}}
		m.Header.Set(seqHeader, strconv.FormatUint(seq+1, 10))
		ack, err := cl.publish(m, sseq)
		switch {
		case err == nil:
			last[subj] = published{seq: seq + 1, streamSeq: ack.Sequence}
			cl.published.Add(1)
			return
		case isWrongLastSeq(err):
			cl.casRetries.Add(1)
			last[subj] = cl.lastMsg(subj)
		case cl.nc.IsConnected():
			cl.log.Warn("publish", "room", r.name, "err", err)
			req.c.replyError(errUnavailable, "the message could not be stored; try again", "say")
			return
		}
		if time.Now().After(deadline) {
			cl.log.Warn("publish: gave up after conflicts", "room", r.name, "for", casPatience)
			req.c.replyError(errUnavailable, "the room is too busy; try again", "say")
			return
		}
	}
	// NATS is out of reach: the room carries on here alone.
	cl.h.sayLocal(r, req.c.idStr, nick, req.text)
}

// msgState returns r's last seq and its stream sequence: the newer of what
// the consumer applied and what this publisher wrote.
func (cl *cluster) msgState(r *room, mine published) (seq, streamSeq uint64) {
	sh := cl.h.shardOf(r.name)
	sh.mu.Lock()
	seq, streamSeq = r.seq, r.streamSeq
	if r.island != nil {
		seq, streamSeq = r.island.seq, r.island.streamSeq
	}
	sh.mu.Unlock()
	if mine.streamSeq > streamSeq {
		return mine.seq, mine.streamSeq
	}
	return seq, streamSeq
}

// lastMsg reads a subject's last message from the stream.
func (cl *cluster) lastMsg(subj string) published {
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	m, err := cl.stream.GetLastMsgForSubject(ctx, subj)
	if err != nil {
		return published{}
	}
	seq, _ := strconv.ParseUint(m.Header.Get(seqHeader), 10, 64)
	return published{seq: seq, streamSeq: m.Sequence, call: decodeCallList(m.Data, cl.h)}
}

// publish stores m if the subject's last message is still expect.
func (cl *cluster) publish(m *nats.Msg, expect uint64) (*jetstream.PubAck, error) {
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	ack, err := cl.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(expect))
	if err == nil && cl.lostAcks.Load() > 0 && cl.lostAcks.Add(-1) >= 0 {
		return nil, context.DeadlineExceeded // stored, but the answer "did not arrive"
	}
	return ack, err
}

// doCall changes a room's call list by compare-and-set.
func (cl *cluster) doCall(req pubReq, last map[string]published) {
	r := req.room
	subj := subjCall + subjectRoom(r.name)
	for deadline := time.Now().Add(casPatience); cl.online(); {
		cur, sseq := cl.callState(r, last[subj])
		var next []callPeer
		full := false
		if req.kind == reqPurge {
			next = purgeNode(cur, req.node)
		} else {
			next, full = cl.h.nextCall(cur, req.c, req.join)
		}
		if full {
			if req.reply {
				req.c.replyCallFull()
			}
			return
		}
		if sameCall(cur, next) {
			cl.replyCall(req, next)
			return
		}
		ack, err := cl.publish(&nats.Msg{Subject: subj, Data: encodeCallList(next)}, sseq)
		switch {
		case err == nil:
			last[subj] = published{streamSeq: ack.Sequence, call: next}
			// Applied here at once, not when the consumer reads it back:
			// the newcomer offers as soon as it has the call frame, and
			// its signals are checked against this node's list.
			cl.h.applyCall(r.name, ack.Sequence, next)
			cl.replyCall(req, next)
			return
		case isWrongLastSeq(err):
			cl.casRetries.Add(1)
			last[subj] = cl.lastMsg(subj)
		case cl.nc.IsConnected():
			cl.log.Warn("publish call", "room", r.name, "err", err)
			if req.reply {
				req.c.replyError(errUnavailable, "the call could not be changed; try again", "call")
			}
			return
		}
		if time.Now().After(deadline) {
			if req.reply {
				req.c.replyError(errUnavailable, "the call is too busy; try again", "call")
			}
			return
		}
	}
	if req.kind == reqCall { // out of reach: change the call here alone
		sh := cl.h.shardOf(r.name)
		sh.mu.Lock()
		next, full := cl.h.nextCall(r.call, req.c, req.join)
		if full && req.reply {
			req.c.replyCallFull()
		} else if !full {
			cl.replyCall(req, next)
			cl.h.setCall(r, next)
		}
		sh.mu.Unlock()
	}
}

func (cl *cluster) replyCall(req pubReq, list []callPeer) {
	if req.kind == reqCall && req.reply {
		req.c.send(callReply(req.room.name, list, req.c.idStr, req.join))
	}
}

// callState returns r's call list and its stream sequence, the newer of
// the applied one and this publisher's own.
func (cl *cluster) callState(r *room, mine published) ([]callPeer, uint64) {
	sh := cl.h.shardOf(r.name)
	sh.mu.Lock()
	cur, sseq := r.call, r.callSeq
	sh.mu.Unlock()
	if mine.streamSeq > sseq {
		return mine.call, mine.streamSeq
	}
	return cur, sseq
}

// purgeNode returns list without the peers of node.
func purgeNode(list []callPeer, node string) []callPeer {
	out := make([]callPeer, 0, len(list))
	for _, p := range list {
		if nodeOf(p.id) != node {
			out = append(out, p)
		}
	}
	return out
}

func sameCall(a, b []callPeer) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].id != b[i].id {
			return false
		}
	}
	return true
}

// callEntry is a call peer as stored in the stream.
type callEntry struct {
	ID   string `json:"id"`
	Nick string `json:"nick"`
}

func encodeCallList(list []callPeer) []byte {
	entries := make([]callEntry, len(list))
	for i, p := range list {
		entries[i] = callEntry{p.id, p.nick}
	}
	b, _ := json.Marshal(entries)
	return b
}

// decodeCallList reads a stored call list, finding the local peers'
// connections.
func decodeCallList(b []byte, h *hub) []callPeer {
	var entries []callEntry
	if err := json.Unmarshal(b, &entries); err != nil {
		return nil
	}
	list := make([]callPeer, len(entries))
	for i, e := range entries {
		list[i] = callPeer{id: e.ID, nick: e.Nick, c: h.lookup(e.ID)}
	}
	return list
}
