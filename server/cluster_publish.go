package main

import (
	"errors"
	"time"

	"noom/server/broker"
)

// Publishing into the stream, by compare-and-set, on the room's queue
// (roomq.go), so that a node never races itself for a room's next seq;
// the broker remembers the message it published last per room, because
// its own reach the room's state only when the consumer reads them back.

// enqueue hands req to its room's queue. A full queue refuses the request
// (unavailable: the cluster is overloaded, the client may retry) rather
// than block the poller.
func (cl *cluster) enqueue(req pubReq) bool { return cl.h.rq.enqueue(req) }

// publishMsg queues a say of c in r.
func (cl *cluster) publishMsg(r *room, c *client, text string) {
	if !cl.enqueue(pubReq{kind: reqMsg, room: r, c: c, text: text}) {
		c.replyError(errUnavailable, "the cluster is busy; try again", "say")
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
