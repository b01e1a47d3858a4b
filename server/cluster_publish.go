package main

import (
	"context"
	"errors"
	"hash/maphash"
	"time"

	"noom/server/broker"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Publishing into the stream, by compare-and-set. Requests for one room go
// to one publisher goroutine, in order, so that a node never races itself
// for a room's next seq; different rooms publish in parallel. A publisher
// remembers the call list it published last per room, and the broker the
// message, because its own reach the room's state only when the consumer
// reads them back.

// Publisher request kinds.
const (
	reqMsg     = iota // a say
	reqCall           // a call join or leave of a local member
	reqPurge          // take a dead node's peers out of a room's call
	reqLoad           // read a room's messages for the joins that wait (cluster_load.go)
	reqHistory        // read a page of a room's messages for a history request
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
	// reqHistory: the page before seq before (0: the newest), at most limit
	before uint64
	limit  int
}

// published is a call list a publisher last wrote or read for a subject.
type published struct {
	streamSeq uint64
	call      []callPeer
	callSFU   bool
}

var pubSeed = maphash.MakeSeed()

// enqueue hands req to its room's publisher. A full queue refuses the
// request (unavailable: the cluster is overloaded, the client may retry)
// rather than block the poller.
func (cl *cluster) enqueue(req pubReq) bool {
	cl.pubsMu.RLock()
	defer cl.pubsMu.RUnlock()
	if cl.pubsClosed {
		return false
	}
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
			cl.doMsg(req)
		case reqLoad:
			cl.doLoad(req)
		case reqHistory:
			cl.doHistory(req)
		default:
			cl.doCall(req, last)
		}
	}
}

// doMsg publishes a say with the room's next seq, through the broker
// (server/broker, JetStream), which stores it by compare-and-set. Under
// contention a publish may find its seq taken many times (ErrSeq): each
// time the stream's head tells the next one, for casPatience, then the
// sender gets an error. Only when NATS is out of reach does the message go
// to the room's island instead.
func (cl *cluster) doMsg(req pubReq) {
	r := req.room
	nick := req.c.nickname()
	ts := time.Now().UnixMilli()
	cur := cl.msgState(r)
	err := errors.New("NATS is out of reach")
	for deadline := time.Now().Add(casPatience); cl.online(); {
		frame, at := encodeMsg(r.name, cur.Seq+1, req.c.idStr, nick, req.text, ts)
		err = cl.publishWait(r.name, cur.Epoch, broker.Message{Seq: cur.Seq + 1, TS: ts, Payload: frame[at:]})
		if errors.Is(err, broker.ErrSeq) {
			cl.casRetries.Add(1)
			var head broker.Position
			if head, err = cl.msgs.Head(r.name); err == nil {
				cur = head
				if time.Now().After(deadline) {
					cl.log.Warn("publish: gave up", "room", r.name, "for", casPatience)
					req.c.replyError(errUnavailable, "the room is too busy; try again", "say")
					return
				}
				continue
			}
		}
		switch {
		case err == nil:
			cl.published.Add(1)
			return
		case errors.Is(err, broker.ErrOffline):
		case errors.Is(err, broker.ErrBusy):
			req.c.replyError(errUnavailable, "the cluster is busy; try again", "say")
			return
		default:
			cl.log.Warn("publish", "room", r.name, "err", err)
			req.c.replyError(errUnavailable, "the message could not be stored; try again", "say")
			return
		}
		break
	}
	// NATS is out of reach: the room carries on here alone, unless the
	// node came back meanwhile.
	cl.log.Debug("publish: NATS out of reach", "room", r.name, "err", err)
	if !cl.islandSay(r, req.c.idStr, nick, req.text) {
		cl.doMsg(req)
	}
}

// historyPage queues a history request of c in r on r's publisher; false
// if the stream cannot be asked now (NATS out of reach, r an island, the
// queue full): then r's memory answers.
func (cl *cluster) historyPage(c *client, r *room, before uint64, limit int) bool {
	sh := cl.h.shardOf(r.name)
	sh.mu.Lock()
	island := r.island != nil
	sh.mu.Unlock()
	return !island && cl.online() && cl.enqueue(pubReq{kind: reqHistory, room: r, c: c, before: before, limit: limit})
}

// doHistory answers a history request from the stream: nothing past what
// the room's members have received (the consumer applied), nothing of
// another lifetime than theirs.
func (cl *cluster) doHistory(req pubReq) {
	r := req.room
	sh := cl.h.shardOf(r.name)
	sh.mu.Lock()
	last, epoch := r.seq, r.epoch
	sh.mu.Unlock()
	before := req.before
	if before == 0 || before > last+1 {
		before = last + 1
	}
	msgs, more, err := cl.msgs.HistoryIn(r.name, epoch, before, req.limit)
	if err != nil {
		cl.log.Warn("history not read", "room", r.name, "err", err)
		req.c.replyError(errUnavailable, "history could not be read; try again", "history")
		return
	}
	payloads := make([][]byte, len(msgs))
	for i, m := range msgs {
		payloads[i] = m.Payload
	}
	req.c.send(encodeHistory(r.name, payloads, more))
}

// publishWait publishes m through the broker and waits until it is stored
// or lost.
func (cl *cluster) publishWait(room, epoch string, m broker.Message) error {
	done := make(chan error, 1)
	if err := cl.msgs.Publish(room, epoch, m, func(err error) { done <- err }); err != nil {
		return err
	}
	return <-done
}

// msgState returns where r stands: the newer of what the consumer applied
// and what this node's broker published or read last (its own messages
// reach the room only when the consumer reads them back).
func (cl *cluster) msgState(r *room) broker.Position {
	sh := cl.h.shardOf(r.name)
	sh.mu.Lock()
	cur := broker.Position{Seq: r.seq, StreamSeq: r.streamSeq, Epoch: r.epoch}
	island := r.island != nil
	if island {
		cur = broker.Position{Seq: r.island.seq, StreamSeq: r.island.streamSeq, Epoch: r.island.epoch}
	}
	sh.mu.Unlock()
	if mine, ok := cl.msgs.Known(r.name); ok && mine.StreamSeq >= cur.StreamSeq {
		return mine
	}
	if cur.StreamSeq > 0 && !island {
		cl.msgs.Saw(r.name, cur) // another node's message, read back: no need to ask the stream
	}
	return cur
}

// lastMsg reads a call subject's last list from the stream.
func (cl *cluster) lastMsg(subj string) (published, error) {
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	m, err := cl.stream.GetLastMsgForSubject(ctx, subj)
	if err != nil {
		return published{}, err
	}
	return cl.publishedOf(m), nil
}

// publishedOf describes a stored call list.
func (cl *cluster) publishedOf(m *jetstream.RawStreamMsg) published {
	list, sfu := decodeCallList(m.Data, cl.h)
	return published{streamSeq: m.Sequence, call: list, callSFU: sfu}
}

// publish stores m if the subject's last message is still expect.
func (cl *cluster) publish(m *nats.Msg, expect uint64) (*jetstream.PubAck, error) {
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	return cl.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(expect))
}
