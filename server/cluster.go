package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"math/big"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"noom/server/broker"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The cluster: several noom nodes act as one service through NATS.
//
// Where each piece of state lives, and why:
//
//   - A room's messages live in one JetStream stream, subject
//     noom.msg.<room>, keeping the last -history messages per room for
//     -nats-retention. A node publishes a message with the room's next seq
//     in it and a compare-and-set on the subject's last stream sequence
//     (Nats-Expected-Last-Subject-Sequence): if another node published first
//     the publish is refused, the broker learns the new last message and
//     tries again with the seq after it, renumbered. So seq is one total
//     order per room, with no gaps, decided without a leader. A publish that
//     got no answer is sent again as it was, with the same Nats-Msg-Id, and
//     stored once (broker.JetStream). Every node reads the stream through
//     one ordered consumer, in stream order, and delivers each message to
//     its local members, unless its publisher delivered it already because
//     it followed what they had (history.go): every member on every node
//     sees the same order.
//   - The stream is the only keeper of a room's seq, history and epoch: a
//     node keeps a room in memory only while someone is in it, on any node,
//     or it has a call, and loads it from the stream when one of its own
//     connections joins it (cluster_load.go). When retention has taken every
//     message of a room, its sequence is lost: it starts over at seq 1
//     under a new epoch, named by a start marker that one node stores.
//   - A room's call is a list of peers stored the same way under
//     noom.call.<room> (the last list is the current one), changed by
//     compare-and-set, so the call limit holds across nodes. Peers that are
//     gone (their node dead, or never heard from; local ones no longer
//     members) are purged by whichever node notices (cluster_calls.go).
//   - Membership is each node's own business (broker.NATSMembers): a node
//     publishes its members' joins, leaves and renames on noom.ev.<node>,
//     numbered, with a heartbeat every two seconds, through a bounded
//     queue that never makes a join wait for NATS. Others apply them to
//     their view of the room (counts, presence, joined.members). A node
//     that sees a gap in the numbers (events the queue dropped, too), or a
//     node it does not know, asks that node for a snapshot of its members
//     (noom.snap.<node>). A node not heard from for 8 seconds is dead: its
//     members leave every room everywhere.
//   - Signals go straight to the node of the target (noom.sig.<node>),
//     through the same Membership: connection ids start with their node's
//     name.
//
// While NATS is out of reach a node keeps serving its own members: remote
// members time out and leave, a room where someone speaks runs as an island
// under an epoch of its own (announced with a joined frame), and calls and
// signals work among local members; a join of a room it has not loaded is
// unavailable. When NATS is back the node catches up with the stream,
// announces itself again, exchanges snapshots, and its island rooms go back
// to the cluster's epoch and history (another joined frame). Messages sent
// on an island stay on it: they were seen only by the members who were
// there.

// Subject prefixes; room names, which may hold dots, are escaped into one
// subject token (see subjectRoom).
const (
	subjMsg  = "noom.msg."
	subjCall = "noom.call."
	// subjMembers starts the subjects of membership (broker.NATSMembers):
	// noom.ev.<node>, noom.snap.<node>, noom.sig.<node>.
	subjMembers = "noom."
	// streamName is the JetStream stream of messages and call lists.
	streamName = "NOOM"
)

// Cluster timing. deadAfter must be several heartbeats, and within the
// 15 seconds in which a dead node's members must have left everywhere.
const (
	heartbeatEvery = 2 * time.Second
	deadAfter      = 8 * time.Second
	publishTimeout = 3 * time.Second
	// casPatience bounds how long a publisher retries a compare-and-set
	// that others keep winning.
	casPatience = 5 * time.Second
)

// remoteMember is a member of a room on another node.
type remoteMember struct{ node, nick, role string }

// islandState is a room's cluster state, kept while the room runs alone.
type islandState struct {
	epoch     string
	seq       uint64
	streamSeq uint64
	history   [][]byte
}

// cluster is this node's link to the others.
type cluster struct {
	h      *hub
	log    *slog.Logger
	node   string // this run of this node: a short random name
	url    string // -nats as given, credentials included: never log it as is (cluster_conn.go)
	nc     *nats.Conn
	js     jetstream.JetStream
	kv     jetstream.KeyValue // rooms' settings (cluster_meetings.go)
	stream jetstream.Stream
	epoch  string // the stream's creation time: the epoch of every room
	// msgs keeps the rooms' messages in the stream (server/broker): the
	// compare-and-set publish, lifetimes, pages.
	msgs *broker.JetStream

	ready    atomic.Bool   // the stream replay is done
	degraded atomic.Bool   // NATS is out of reach
	applied  atomic.Uint64 // stream sequence of the last message applied

	consMu sync.Mutex
	cons   jetstream.ConsumeContext
	// rejoinMu is held by regained: one catch-up at a time.
	rejoinMu sync.Mutex

	// members is the membership across nodes (server/broker): this
	// node's members' changes out, the others' in (to memberView).
	members *broker.NATSMembers

	// joinedAt is when this node joined the cluster, or came back to it
	// (Unix nanoseconds): see settled.
	joinedAt atomic.Int64

	islandSeq atomic.Uint64
	subs      []*nats.Subscription
	stop      chan struct{}
	wg        sync.WaitGroup
}

// newNodeName returns six random base-36 characters.
func newNodeName() string {
	n, _ := rand.Int(rand.Reader, big.NewInt(36*36*36*36*36*36))
	s := strconv.FormatInt(n.Int64()+36*36*36*36*36*36, 36) // 7 digits, the first always 1
	return s[1:]
}

// subjectRoom escapes a room name into one subject token: '.' separates
// tokens, and '~' is not allowed in room names.
func subjectRoom(room string) string { return strings.ReplaceAll(room, ".", "~") }

// roomOfSubject undoes subjectRoom on subject's last part after prefix.
func roomOfSubject(subject, prefix string) string {
	return strings.ReplaceAll(strings.TrimPrefix(subject, prefix), "~", ".")
}

// nodeOf returns the node name an id starts with, or "".
func nodeOf(id string) string {
	if i := strings.IndexByte(id, '-'); i > 0 {
		return id[:i]
	}
	return ""
}

// startCluster connects to NATS at url with the options extra adds
// (credentials, TLS), sets up the stream, replays it and starts exchanging
// membership. The hub must be started; nothing is served before this
// returns. url may hold a password or token: errors show it redacted.
func startCluster(ctx context.Context, h *hub, url string, extra []nats.Option, log *slog.Logger) (*cluster, error) {
	cl := &cluster{h: h, log: log.With("component", "cluster"), node: newNodeName(), url: url, stop: make(chan struct{})}
	opts := append([]nats.Option{
		nats.Name("noom " + cl.node),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		// Nothing is kept to be sent on reconnect: a say published while
		// NATS is gone goes to the room's island at once, and must not be
		// stored in the stream too when the connection is back; membership
		// is announced again then anyway (regained).
		nats.ReconnectBufSize(-1),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { cl.lost(err) }),
		nats.ReconnectHandler(func(*nats.Conn) { go cl.regained() }),
	}, extra...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("nats %s: %w", redactURL(url), redactErr(err, url))
	}
	cl.nc = nc
	if err := cl.setup(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	cl.members, err = broker.NewNATSMembers(broker.NATSMembersConfig{Conn: nc, Node: cl.node, Prefix: subjMembers,
		View: memberView{cl}, Heartbeat: heartbeatEvery, DeadAfter: deadAfter, Paused: cl.outside,
		Log: cl.log})
	if err != nil {
		nc.Close()
		return nil, err
	}
	h.cl = cl
	h.node, h.idPrefix = cl.node, cl.node+"-"
	h.calls, h.msgs, h.members = cl.msgs, cl.msgs, cl.members
	if err := cl.replay(ctx); err != nil {
		cl.close()
		return nil, err
	}
	sub, err := cl.subscribeSettings()
	if err != nil {
		cl.close()
		return nil, err
	}
	cl.subs = append(cl.subs, sub)
	cl.joinedAt.Store(time.Now().UnixNano())
	cl.ready.Store(true)
	if err := cl.members.Start(); err != nil { // the others answer with theirs, and ask for this node's members
		cl.close()
		return nil, err
	}
	cl.wg.Add(1)
	go cl.sweeps()
	cl.log.Info("joined the cluster", "node", cl.node, "nats", redactURL(nc.ConnectedUrl()), "epoch", cl.epoch)
	return cl, nil
}

// setup creates or updates the stream.
func (cl *cluster) setup(ctx context.Context) error {
	js, err := jetstream.New(cl.nc)
	if err != nil {
		return err
	}
	cl.js = js
	cfg := jetstream.StreamConfig{
		Name:              streamName,
		Subjects:          []string{subjMsg + ">", subjCall + ">"},
		MaxMsgsPerSubject: int64(max(cl.h.cfg.HistoryKeep, cl.h.cfg.HistorySize)),
		MaxAge:            cl.h.cfg.NATSRetention,
		Storage:           jetstream.FileStorage,
		Discard:           jetstream.DiscardOld,
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := js.CreateOrUpdateStream(sctx, cfg)
	if err != nil {
		return fmt.Errorf("jetstream stream %s (does the NATS server run with JetStream?): %w", streamName, err)
	}
	cl.stream = st
	cl.epoch = "c" + strconv.FormatInt(st.CachedInfo().Created.UnixMilli(), 36)
	cl.msgs = broker.NewJetStream(broker.JetStreamConfig{JS: js, Stream: st, Prefix: subjMsg, CallPrefix: subjCall, Epoch: cl.epoch,
		Node: cl.node, Timeout: publishTimeout, Patience: casPatience, Paused: cl.outside})
	if err := cl.setupSettings(ctx); err != nil {
		return fmt.Errorf("jetstream bucket %s: %w", settingsBucket, err)
	}
	return nil
}

// replay reads the stream (at the start, each subject's last message,
// which is all a node that has no room in memory yet needs: call lists;
// after an outage, everything after the last message applied) and returns
// once it has caught up, leaving the consumer running.
//
// Caught up means the consumer applied the stream's last message, or that
// message is gone: retention may remove it, or every message, before the
// consumer gets there, and the stream's last sequence stays where it was.
func (cl *cluster) replay(ctx context.Context) error {
	cl.consMu.Lock()
	defer cl.consMu.Unlock()
	if cl.cons != nil {
		cl.cons.Stop()
		cl.cons = nil
	}
	ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	info, err := cl.stream.Info(ictx)
	if err != nil {
		return fmt.Errorf("stream info: %w", err)
	}
	target := info.State.LastSeq
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subjMsg + ">", subjCall + ">"},
		DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy}
	if from := cl.applied.Load(); from > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = from + 1
	}
	cons, err := cl.stream.OrderedConsumer(ictx, cfg)
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	cc, err := cons.Consume(cl.apply)
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	cl.cons = cc
	gone := func(st jetstream.StreamState) bool { return st.Msgs == 0 || st.FirstSeq > target }
	for recheck := time.Now().Add(250 * time.Millisecond); cl.applied.Load() < target && !gone(info.State); {
		select {
		case <-ictx.Done():
			return fmt.Errorf("replaying the stream: %d of %d: %w", cl.applied.Load(), target, ictx.Err())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(recheck) {
			recheck = time.Now().Add(250 * time.Millisecond)
			if i, err := cl.stream.Info(ictx); err == nil {
				info = i
			}
		}
	}
	return nil
}

// apply handles one stream message, in stream order.
func (cl *cluster) apply(m jetstream.Msg) {
	meta, err := m.Metadata()
	if err != nil {
		return
	}
	sseq := meta.Sequence.Stream
	subj := m.Subject()
	switch {
	case strings.HasPrefix(subj, subjMsg):
		cl.h.applyMsg(roomOfSubject(subj, subjMsg), cl.msgs.Decode(m.Headers(), m.Data(), sseq))
	case strings.HasPrefix(subj, subjCall):
		room := roomOfSubject(subj, subjCall)
		call := broker.DecodeCall(m.Data(), sseq)
		cl.h.applyCall(room, sseq, cl.h.callPeersOf(room, call), call.SFU, nil, nil)
	}
	if sseq > cl.applied.Load() {
		cl.applied.Store(sseq)
	}
}

// online reports whether the node works as part of the cluster now; false
// standalone, before the replay and while NATS is out of reach.
func (cl *cluster) online() bool {
	return cl != nil && cl.ready.Load() && !cl.degraded.Load()
}

// outside is !online: the broker's Paused, for messages and membership
// alike (no publishes, heartbeats or relays while it holds).
func (cl *cluster) outside() bool { return !cl.online() }

// close leaves the cluster: a bye event, so the others drop this node's
// members at once instead of after deadAfter.
func (cl *cluster) close() {
	if cl == nil {
		return
	}
	select {
	case <-cl.stop:
		return
	default:
	}
	cl.ready.Store(false)
	cl.members.Close(time.Second)
	close(cl.stop)
	cl.h.rq.close() // the call changes queued are published first
	cl.wg.Wait()
	_ = cl.msgs.Close()
	cl.consMu.Lock()
	if cl.cons != nil {
		cl.cons.Stop()
	}
	cl.consMu.Unlock()
	_ = cl.nc.Drain()
	cl.nc.Close()
}

// lost runs when the connection to NATS drops.
func (cl *cluster) lost(err error) {
	if !cl.ready.Load() || cl.degraded.Swap(true) {
		return
	}
	cl.h.stats.degraded.Store(true)
	cl.log.Warn("NATS unreachable: serving local members alone", "err", redactErr(err, cl.url))
}

// regained runs when the connection to NATS is back: catch up with the
// stream, then bring island rooms back to the cluster's epoch. One runs at
// a time; a reconnect during it is its business.
//
// The order matters. The node stays degraded while it replays, so a say
// meanwhile goes to an island (a new one, perhaps), and the replay updates
// each island's cluster state aside. Only then does the node stop being
// degraded, and only after that are islands left: a say checks under the
// room's lock whether the node is degraded before it makes the room an
// island (islandSayLocked), and leaveIslands takes that lock after the flag
// changed, so no island is made that leaveIslands does not see.
func (cl *cluster) regained() {
	if !cl.rejoinMu.TryLock() {
		return
	}
	defer cl.rejoinMu.Unlock()
	if !cl.degraded.Load() {
		return
	}
	for attempt := 0; cl.degraded.Load(); attempt++ {
		select {
		case <-cl.stop:
			return
		default:
		}
		if err := cl.replay(context.Background()); err != nil {
			cl.log.Warn("rejoining the cluster", "err", redactErr(err, cl.url), "attempt", attempt)
			time.Sleep(time.Second)
			continue
		}
		cl.degraded.Store(false)
		if !cl.nc.IsConnected() { // lost again meanwhile: lost saw the flag set, and did nothing
			cl.degraded.Store(true)
			continue
		}
	}
	cl.joinedAt.Store(time.Now().UnixNano()) // nodes declared dead meanwhile may be back
	cl.h.stats.degraded.Store(false)
	cl.h.leaveIslands()
	cl.members.Announce() // others see this node again and ask for a snapshot
	cl.log.Info("NATS reachable again: back in the cluster")
}
