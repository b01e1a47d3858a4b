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

	mu   sync.Mutex // guards last and broken
	last map[string]Position
	// broken holds the rooms whose publishes queued before a failure fail
	// too (run).
	broken map[string]brokenRoom
	// pubMu makes tickets follow the queues' order.
	pubMu   sync.Mutex
	tickets atomic.Uint64

	queues   *keyq.Queues[pubJob] // the publishers, by room
	count    atomic.Uint64        // numbers publishes for their Nats-Msg-Id
	lostAcks atomic.Int32
	paused   func() bool

	published, retries atomic.Uint64
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
	// Paused, if set, reports whether the node is out of the cluster for
	// now (NATS out of reach, or catching up after it): publishes meanwhile
	// fail with ErrOffline at once, rather than be stored in a stream the
	// node is not following yet.
	Paused func() bool
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
	renumber    func(uint64) []byte
	done        func(Kept, error)
	ticket      uint64 // the order publishes were queued in
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
		timeout: cfg.Timeout, patience: cfg.Patience, paused: cfg.Paused, last: make(map[string]Position),
		broken: make(map[string]brokenRoom)}
	if j.paused == nil {
		j.paused = func() bool { return false }
	}
	j.queues = keyq.New(cfg.Workers, 1024, j.run)
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

// position returns where room stands in the stream, starting a lifetime
// on an empty subject, and remembers it for the next publish.
func (j *JetStream) position(room string) (Position, error) {
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
// Mark is the stream sequence of the room's last message: a node that
// follows the stream applies what it reads after it.
func (j *JetStream) Room(room string, recent int) (RoomState, error) {
	p, err := j.position(room)
	if err != nil {
		return RoomState{}, err
	}
	rs := RoomState{Epoch: p.Epoch, Seq: p.Seq, Known: p.Seq > 0, Mark: p.StreamSeq}
	if recent > 0 && p.Seq > 0 {
		msgs, _, err := j.page(room, p.Epoch, p.Seq+1, recent)
		if err != nil {
			return RoomState{}, err
		}
		rs.Recent = messagesOf(msgs)
	}
	return rs, nil
}

// Publish implements Messages. Publishes of one room go to one worker, in
// order, so a node never races itself for a room's next seq, and a
// node's messages are kept in the order it published them: one whose
// seq another node took is renumbered (with renumber) before the next
// one is tried.
//
// A publish that fails fails every publish of its room queued behind it
// (before its done was called) with the same error, as the store does:
// a node's messages are kept in the order it published them, or not at
// all, and its publisher publishes them again, in order, if it wants.
func (j *JetStream) Publish(room, epoch string, m Message, renumber func(uint64) []byte, done func(Kept, error)) error {
	j.pubMu.Lock() // tickets in queue order
	defer j.pubMu.Unlock()
	if !j.queues.Enqueue(room, pubJob{room, epoch, m, renumber, done, j.tickets.Add(1)}) {
		return fmt.Errorf("%w: %d publishes queued, or closed", ErrBusy, j.queues.Depth())
	}
	return nil
}

// run publishes job on its room's worker, unless a publish queued before
// it failed.
func (j *JetStream) run(job pubJob) {
	j.mu.Lock()
	cut, broken := j.broken[job.room]
	if broken && job.ticket > cut.ticket { // everything queued before the failure is done
		delete(j.broken, job.room)
		broken = false
	}
	j.mu.Unlock()
	if broken {
		job.done(Kept{}, cut.err)
		return
	}
	k, err := j.publishJob(job)
	if err != nil {
		j.mu.Lock()
		if len(j.broken) > 10000 { // rooms that failed and were never published into again
			clear(j.broken)
		}
		j.broken[job.room] = brokenRoom{j.tickets.Load(), err}
		j.mu.Unlock()
	}
	job.done(k, err)
}

// brokenRoom: the publishes of a room queued up to ticket fail with err.
type brokenRoom struct {
	ticket uint64
	err    error
}

// publishJob keeps job's message as its room's next. Each time another
// node took the seq (ErrSeq), the stream's head says which is next, and
// with a renumber the message is tried again as that one, for patience;
// a room that busy gets ErrBusy.
func (j *JetStream) publishJob(job pubJob) (Kept, error) {
	if j.paused() {
		return Kept{}, fmt.Errorf("%w: out of the cluster for now", ErrOffline)
	}
	k := Kept{Message: job.m, Epoch: job.epoch}
	for deadline := time.Now().Add(j.patience); ; {
		err := j.publish(job.room, &k, job.renumber)
		if !errors.Is(err, ErrSeq) || job.renumber == nil {
			return k, err
		}
		j.retries.Add(1)
		if time.Now().After(deadline) {
			return Kept{}, fmt.Errorf("%w: room %s: others kept taking the next seq for %s", ErrBusy, job.room, j.patience)
		}
	}
}

// publish stores k if it follows its room's last message in its epoch;
// with a renumber, a k that does not (another node's message is newer
// than this node knew, or the room is in a new lifetime) becomes the one
// that does.
func (j *JetStream) publish(room string, k *Kept, renumber func(uint64) []byte) error {
	cur, ok := j.known(room)
	if !ok || cur.Epoch != k.Epoch || cur.Seq+1 != k.Seq {
		// What this node knows is not k's predecessor: the stream says.
		var err error
		if cur, err = j.position(room); err != nil {
			return err
		}
		if cur.Epoch != k.Epoch || cur.Seq+1 != k.Seq {
			if renumber == nil {
				return fmt.Errorf("%w: room %s is at %d in %s", ErrSeq, room, cur.Seq, cur.Epoch)
			}
			k.Epoch, k.Seq, k.Payload = cur.Epoch, cur.Seq+1, renumber(cur.Seq+1)
		}
	}
	epoch, m := k.Epoch, k.Message
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
			j.published.Add(1)
			return nil
		case WrongLastSeq(err):
			if uncertain {
				if p, ok := j.storedAfter(room, cur.StreamSeq, id); ok {
					j.remember(room, p)
					j.published.Add(1)
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

// Published counts the messages this broker stored.
func (j *JetStream) Published() uint64 { return j.published.Load() }

// Retries counts the publishes tried again because another node took
// their seq first.
func (j *JetStream) Retries() uint64 { return j.retries.Load() }

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
