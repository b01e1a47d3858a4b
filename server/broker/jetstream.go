package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"noom/server/keyq"
)

// JetStream is the cluster's message broker: every node's rooms in one
// JetStream stream that all of them share, a subject per room. The stream
// is the only keeper of a room's seq, epoch and history, so a node asks it
// (Room) rather than trusting what it remembers, and it publishes by
// compare-and-set on the subject's last stream sequence: of two nodes that
// take the same seq, one is stored and the other gets ErrSeq.
//
// A room's lifetime. When retention has taken every message of a room its
// sequence is lost, and the room starts over, seq 1, under a new epoch
// (PROTOCOL.md: "epoch changes only when the room's kept sequence is really
// lost"). So that every node names the new lifetime alike, Room stores a
// start marker (seq 0, no payload) on an empty subject by compare-and-set
// on the empty subject: one node wins, the others read the winner's. The
// lifetime's epoch is the stream's epoch and the marker's stream sequence,
// which no other lifetime can have; every message carries it (EpochHeader).
//
// A publish that got no answer (a timeout, a connection lost before the
// ack) may have been stored: it is sent again as it was, same expected
// sequence and same Nats-Msg-Id. If it was stored, JetStream either drops
// the copy within its duplicate window or refuses it as a conflict (a
// single server checks the sequence first); then the message that follows
// the expected one is read, and if it carries the id the publish is done.
// Either way a message is stored once.
//
// Retention is the stream's own (MaxAge, MaxMsgsPerSubject: the caller
// creates the stream), so Expire has nothing to do. Settings are not kept
// here: the cluster keeps them in a key-value bucket, by compare-and-set
// across nodes (package main, cluster_meetings.go). JetStream implements
// Messages and Calls, not Broker.
type JetStream struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	prefix string
	// callPrefix starts every room's call subject (jetstream_calls.go).
	callPrefix string
	epoch      string
	node       string
	timeout    time.Duration
	// patience is how long a publish without an answer is retried.
	patience time.Duration

	mu   sync.Mutex // guards last
	last map[string]Position

	queues   *keyq.Queues[pubJob] // the publishers, by room
	count    atomic.Uint64        // numbers publishes for their Nats-Msg-Id
	lostAcks atomic.Int32
}

// Headers of a stored message.
const (
	// SeqHeader carries a message's room seq; 0 marks a lifetime's start.
	SeqHeader = "Noom-Seq"
	// EpochHeader carries the epoch of the lifetime a message belongs to.
	// Messages stored before it existed are in the stream's epoch.
	EpochHeader = "Noom-Epoch"
)

// ErrOffline: the stream is out of reach. The message is not known to be
// kept (one written just before the connection broke may be); a cluster
// node carries the room on alone meanwhile. The connection should not
// buffer publishes while it reconnects (nats.ReconnectBufSize(-1)):
// otherwise a publish reported lost is sent, and may be kept, later.
var ErrOffline = errors.New("broker: the stream is out of reach")

// JetStreamConfig says where a JetStream broker keeps rooms.
type JetStreamConfig struct {
	// JS and Stream: the connection's JetStream and the stream whose
	// subjects Prefix+">" hold the rooms' messages.
	JS     jetstream.JetStream
	Stream jetstream.Stream
	// Prefix starts every room's subject ("noom.msg."), CallPrefix its
	// call list's ("noom.call.", Calls); both under Stream.
	Prefix, CallPrefix string
	// Epoch is the stream's epoch; lifetimes are named after it.
	Epoch string
	// Node names this node in Nats-Msg-Ids.
	Node string
	// Timeout bounds each JetStream request; Patience how long a publish
	// without an answer is retried (at least Timeout).
	Timeout, Patience time.Duration
	// Workers publish, each for its share of the rooms (default 4).
	Workers int
}

// Position is where a room's sequence stands in the stream: its last seq,
// that message's stream sequence and its lifetime's epoch.
type Position struct {
	Seq, StreamSeq uint64
	Epoch          string
}

// StreamMsg is one stored message of a room as a node reads it from the
// stream: Seq 0 is a lifetime's start marker. TS is the stream's time
// (Unix ms) where it was read with it.
type StreamMsg struct {
	Position
	TS      int64
	Payload []byte
}

type pubJob struct {
	room, epoch string
	m           Message
	done        func(error)
}

// NewJetStream returns a broker over cfg's stream.
func NewJetStream(cfg JetStreamConfig) *JetStream {
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 3 * time.Second
	}
	cfg.Patience = max(cfg.Patience, cfg.Timeout)
	j := &JetStream{js: cfg.JS, stream: cfg.Stream, prefix: cfg.Prefix, callPrefix: cfg.CallPrefix, epoch: cfg.Epoch, node: cfg.Node,
		timeout: cfg.Timeout, patience: cfg.Patience, last: make(map[string]Position)}
	j.queues = keyq.New(cfg.Workers, 1024, func(job pubJob) { job.done(j.publish(job.room, job.epoch, job.m)) })
	return j
}

// Subject is room's subject: NATS tokens cannot hold dots.
func (j *JetStream) Subject(room string) string {
	return j.prefix + strings.ReplaceAll(room, ".", "~")
}

// Decode describes the message stored at stream sequence streamSeq.
func (j *JetStream) Decode(hdr nats.Header, data []byte, streamSeq uint64) StreamMsg {
	seq, _ := strconv.ParseUint(hdr.Get(SeqHeader), 10, 64)
	epoch := hdr.Get(EpochHeader)
	switch {
	case seq == 0:
		epoch = j.lifetimeEpoch(streamSeq)
	case epoch == "":
		epoch = j.epoch
	}
	return StreamMsg{Position: Position{seq, streamSeq, epoch}, Payload: data}
}

func (j *JetStream) lifetimeEpoch(markerSeq uint64) string {
	return j.epoch + "." + strconv.FormatUint(markerSeq, 36)
}

// DropAcks makes the next n stored publishes report no answer, as a lost
// ack would: for fault tests.
func (j *JetStream) DropAcks(n int32) { j.lostAcks.Store(n) }

// Head returns where room stands in the stream, starting a lifetime on an
// empty subject, and remembers it for the next publish.
func (j *JetStream) Head(room string) (Position, error) {
	ctx, cancel := context.WithTimeout(context.Background(), j.timeout)
	defer cancel()
	subj := j.Subject(room)
	var p Position
	err := errNotYet
	for attempt := 0; err != nil && attempt < 3; attempt++ {
		var m *jetstream.RawStreamMsg
		m, err = j.stream.GetLastMsgForSubject(ctx, subj)
		switch {
		case err == nil:
			p = j.Decode(m.Header, m.Data, m.Sequence).Position
		case errors.Is(err, jetstream.ErrMsgNotFound):
			p, err = j.startLifetime(ctx, room)
		}
	}
	if err != nil {
		return Position{}, j.offline(err)
	}
	j.remember(room, p)
	return p, nil
}

var errNotYet = errors.New("not read yet")

// startLifetime stores a start marker on room's empty subject. A conflict
// (another node's marker or message got there first) is ErrMsgNotFound's
// opposite: the caller reads the subject again.
func (j *JetStream) startLifetime(ctx context.Context, room string) (Position, error) {
	m := &nats.Msg{Subject: j.Subject(room), Header: nats.Header{}}
	m.Header.Set(SeqHeader, "0")
	m.Header.Set(nats.MsgIdHdr, room+"/start/"+j.node+"."+strconv.FormatUint(j.count.Add(1), 36))
	ack, err := j.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(0))
	if err != nil {
		return Position{}, err
	}
	return Position{StreamSeq: ack.Sequence, Epoch: j.lifetimeEpoch(ack.Sequence)}, nil
}

// remember keeps p as room's position if it is newer than what is known.
func (j *JetStream) remember(room string, p Position) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.last) > 10000 { // only a cache: forgetting costs a read at most
		clear(j.last)
	}
	if old, ok := j.last[room]; !ok || p.StreamSeq >= old.StreamSeq {
		j.last[room] = p
	}
}

// Saw tells the broker where room stands as its caller read it from the
// stream (a node's consumer applies every node's messages): the next
// publish then expects that, instead of asking the stream first.
func (j *JetStream) Saw(room string, p Position) { j.remember(room, p) }

// Known returns where this broker last saw room stand (a publish of its
// own, or a read), if it remembers: no request.
func (j *JetStream) Known(room string) (Position, bool) { return j.known(room) }

func (j *JetStream) known(room string) (Position, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	p, ok := j.last[room]
	return p, ok
}

// offline maps "no answer, and the connection is down" onto ErrOffline.
func (j *JetStream) offline(err error) error {
	if err != nil && !j.js.Conn().IsConnected() {
		return fmt.Errorf("%w: %w", ErrOffline, err)
	}
	return err
}

// Room implements Messages: the room's position in the stream and its
// newest messages. A room the stream has nothing of gets a new lifetime.
func (j *JetStream) Room(room string, recent int) (RoomState, error) {
	p, msgs, err := j.Load(room, recent)
	if err != nil {
		return RoomState{}, err
	}
	return RoomState{Epoch: p.Epoch, Seq: p.Seq, Known: p.Seq > 0, Recent: messagesOf(msgs)}, nil
}

// Load is Room for a node that follows the stream: where the room stands
// and its newest messages (at most recent) with their stream sequences,
// oldest first, so that it can merge them with what it reads meanwhile.
func (j *JetStream) Load(room string, recent int) (Position, []StreamMsg, error) {
	p, err := j.Head(room)
	if err != nil || recent <= 0 || p.Seq == 0 {
		return p, nil, err
	}
	msgs, _, err := j.page(room, p.Epoch, p.Seq+1, recent)
	return p, msgs, err
}

// Publish implements Messages. Publishes of one room go to one worker, in
// order, so a node never races itself for a room's next seq.
func (j *JetStream) Publish(room, epoch string, m Message, done func(error)) error {
	if !j.queues.Enqueue(room, pubJob{room, epoch, m, done}) {
		return fmt.Errorf("%w: %d publishes queued, or closed", ErrBusy, j.queues.Depth())
	}
	return nil
}

// publish stores m if it follows room's last message in epoch.
func (j *JetStream) publish(room, epoch string, m Message) error {
	cur, ok := j.known(room)
	if !ok || cur.Epoch != epoch || cur.Seq+1 != m.Seq {
		// What this node knows is not m's predecessor: the stream says.
		var err error
		if cur, err = j.Head(room); err != nil {
			return err
		}
		if cur.Epoch != epoch || cur.Seq+1 != m.Seq {
			return fmt.Errorf("%w: room %s is at %d in %s", ErrSeq, room, cur.Seq, cur.Epoch)
		}
	}
	msg := &nats.Msg{Subject: j.Subject(room), Data: m.Payload, Header: nats.Header{}}
	msg.Header.Set(SeqHeader, strconv.FormatUint(m.Seq, 10))
	msg.Header.Set(EpochHeader, epoch)
	// The id names the room, lifetime and seq, and this node's count, so
	// that two different messages never share one.
	id := room + "/" + epoch + "/" + strconv.FormatUint(m.Seq, 10) + "/" + j.node + "." + strconv.FormatUint(j.count.Add(1), 36)
	msg.Header.Set(nats.MsgIdHdr, id)
	uncertain := false
	for deadline := time.Now().Add(j.patience); ; {
		ack, err := j.send(msg, cur.StreamSeq)
		switch {
		case err == nil: // ack.Duplicate too: the id is this message's alone
			j.remember(room, Position{m.Seq, ack.Sequence, epoch})
			return nil
		case WrongLastSeq(err):
			if uncertain {
				if p, ok := j.storedAfter(room, cur.StreamSeq, id); ok {
					j.remember(room, p)
					return nil
				}
			}
			j.forget(room)
			return fmt.Errorf("%w: %w", ErrSeq, err)
		case isAPIError(err): // refused: nothing was stored
			return err
		}
		uncertain = true
		if !j.js.Conn().IsConnected() || time.Now().After(deadline) {
			j.forget(room) // it may be kept after all: the stream says, later
			return j.offline(fmt.Errorf("publish with no answer: %w", err))
		}
	}
}

func (j *JetStream) forget(room string) {
	j.mu.Lock()
	delete(j.last, room)
	j.mu.Unlock()
}

func (j *JetStream) send(m *nats.Msg, expect uint64) (*jetstream.PubAck, error) {
	ctx, cancel := context.WithTimeout(context.Background(), j.timeout)
	defer cancel()
	ack, err := j.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(expect))
	if err == nil && j.lostAcks.Load() > 0 && j.lostAcks.Add(-1) >= 0 {
		return nil, context.DeadlineExceeded // stored, but the answer "did not arrive"
	}
	return ack, err
}

// storedAfter reports whether room's message that follows stream sequence
// after carries Nats-Msg-Id id, and where it stands.
func (j *JetStream) storedAfter(room string, after uint64, id string) (Position, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), j.timeout)
	defer cancel()
	m, err := j.stream.GetMsg(ctx, after+1, jetstream.WithGetMsgSubject(j.Subject(room)))
	if err != nil || m.Header.Get(nats.MsgIdHdr) != id {
		return Position{}, false
	}
	return j.Decode(m.Header, m.Data, m.Sequence).Position, true
}

// Expire implements Messages: the stream's MaxAge and MaxMsgsPerSubject
// are its retention, applied by the NATS server.
func (j *JetStream) Expire(time.Time, time.Duration, func(string) bool) (int, error) { return 0, nil }

// Close implements Messages: queued publishes are done first.
func (j *JetStream) Close() error {
	j.queues.Close()
	return nil
}

func isAPIError(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr)
}

// WrongLastSeq reports JetStream's refusal of a compare-and-set publish:
// the subject's last message is not the one expected.
func WrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
