package main

import (
	"context"
	"errors"
	"hash/maphash"
	"strconv"
	"strings"
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
	reqLoad         // read a room's messages for the joins that wait (cluster_load.go)
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
	epoch          string // a message's
	call           []callPeer
	callSFU        bool
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
			cl.doMsg(req, last)
		case reqLoad:
			cl.doLoad(req)
		default:
			cl.doCall(req, last)
		}
	}
}

// doMsg publishes a say with the room's next seq. Under contention the
// compare-and-set may fail many times; it goes on for casPatience, then
// gives up with an error to the sender. Only when NATS is out of reach does
// the message go to the room's island instead.
//
// A publish that got no answer (a timeout, a connection lost before the
// ack) may have been stored: it is sent again as it was, same seq, same
// expected sequence and same Nats-Msg-Id. If it was stored, JetStream
// either drops the copy within its duplicate window (a clustered stream
// checks the id first) or refuses it as a conflict (a single server checks
// the sequence first); then storedAfter finds it, the message that follows
// the expected one, by its id. Either way it is stored once.
func (cl *cluster) doMsg(req pubReq, last map[string]published) {
	r := req.room
	subj := subjMsg + subjectRoom(r.name)
	nick := req.c.nickname()
	ts := time.Now().UnixMilli()
	n := cl.pubCount.Add(1)
	cur := cl.msgState(r, last[subj])
	uncertain := false // a publish of this request may be stored unbeknown
	for deadline := time.Now().Add(casPatience); cl.online(); {
		if cur.streamSeq == 0 { // the subject is empty: the room's sequence is lost (cluster_load.go)
			p, err := cl.startLifetime(r.name, subj)
			switch {
			case err == nil:
				last[subj], cur = p, p
				continue
			case isAPIError(err):
				cl.log.Warn("publish", "room", r.name, "err", err)
				req.c.replyError(errUnavailable, "the message could not be stored; try again", "say")
				return
			}
			if time.Now().After(deadline) {
				req.c.replyError(errUnavailable, "the room is too busy; try again", "say")
				return
			}
			continue
		}
		frame, at := encodeMsg(r.name, cur.seq+1, req.c.idStr, nick, req.text, ts)
		m := &nats.Msg{Subject: subj, Data: frame[at:], Header: nats.Header{}}
		m.Header.Set(seqHeader, strconv.FormatUint(cur.seq+1, 10))
		m.Header.Set(epochHeader, cur.epoch)
		id := cl.msgID(r.name, cur.epoch, cur.seq+1, n)
		m.Header.Set(nats.MsgIdHdr, id)
		ack, err := cl.publish(m, cur.streamSeq)
		switch {
		case err == nil: // ack.Duplicate too: the id is this request's alone
			last[subj] = published{seq: cur.seq + 1, streamSeq: ack.Sequence, epoch: cur.epoch}
			cl.published.Add(1)
			return
		case isWrongLastSeq(err):
			if uncertain {
				if p, ok := cl.storedAfter(subj, cur.streamSeq, id); ok {
					last[subj] = p
					cl.published.Add(1)
					return
				}
			}
			uncertain = false // from here on, a new seq and a new id
			cl.casRetries.Add(1)
			switch p, err := cl.lastMsg(subj); {
			case err == nil: // read after the conflict: newer than anything else known
				last[subj], cur = p, p
			case errors.Is(err, jetstream.ErrMsgNotFound): // retention took every message
				delete(last, subj)
				cur = published{}
			default:
				cur = cl.msgState(r, last[subj])
			}
		case isAPIError(err): // refused: nothing was stored
			cl.log.Warn("publish", "room", r.name, "err", err)
			req.c.replyError(errUnavailable, "the message could not be stored; try again", "say")
			return
		default:
			uncertain = true
		}
		if time.Now().After(deadline) {
			cl.log.Warn("publish: gave up", "room", r.name, "for", casPatience, "err", err)
			req.c.replyError(errUnavailable, "the room is too busy; try again", "say")
			return
		}
	}
	// NATS is out of reach: the room carries on here alone, unless the
	// node came back meanwhile.
	if !cl.islandSay(r, req.c.idStr, nick, req.text) {
		cl.doMsg(req, last)
	}
}

// msgID is the Nats-Msg-Id of a message: the room, its epoch and seq, and
// this node's number for the say (n), so that two different says never
// share an id, even if this node wrongly took the same seq for both.
func (cl *cluster) msgID(room, epoch string, seq, n uint64) string {
	return room + "/" + epoch + "/" + strconv.FormatUint(seq, 10) + "/" + cl.node + "." + strconv.FormatUint(n, 36)
}

// storedAfter reports whether the message on subj that follows stream
// sequence after is the one with Nats-Msg-Id id, and returns it.
func (cl *cluster) storedAfter(subj string, after uint64, id string) (published, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	m, err := cl.stream.GetMsg(ctx, after+1, jetstream.WithGetMsgSubject(subj))
	if err != nil || m.Header.Get(nats.MsgIdHdr) != id {
		return published{}, false
	}
	return cl.publishedOf(m), true
}

// msgState returns r's last seq, its stream sequence and epoch: the newer
// of what the consumer applied and what this publisher wrote or read.
func (cl *cluster) msgState(r *room, mine published) published {
	sh := cl.h.shardOf(r.name)
	sh.mu.Lock()
	cur := published{seq: r.seq, streamSeq: r.streamSeq, epoch: r.epoch}
	if r.island != nil {
		cur = published{seq: r.island.seq, streamSeq: r.island.streamSeq, epoch: r.island.epoch}
	}
	sh.mu.Unlock()
	if mine.streamSeq > cur.streamSeq {
		return mine
	}
	return cur
}

// lastMsg reads a subject's last message from the stream.
func (cl *cluster) lastMsg(subj string) (published, error) {
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	m, err := cl.stream.GetLastMsgForSubject(ctx, subj)
	if err != nil {
		return published{}, err
	}
	return cl.publishedOf(m), nil
}

// publishedOf describes a stored message or call list.
func (cl *cluster) publishedOf(m *jetstream.RawStreamMsg) published {
	if strings.HasPrefix(m.Subject, subjCall) {
		list, sfu := decodeCallList(m.Data, cl.h)
		return published{streamSeq: m.Sequence, call: list, callSFU: sfu}
	}
	e := cl.msgOf(m.Header, m.Data, m.Sequence)
	return published{seq: e.seq, streamSeq: e.streamSeq, epoch: e.epoch}
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
