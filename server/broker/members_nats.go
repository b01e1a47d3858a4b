package broker

import (
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// NATSMembers is the cluster's Membership, over core NATS: each node
// publishes its members' changes on <prefix>ev.<node>, numbered, with a
// heartbeat that repeats the last number; the others apply them in
// order, ask for a snapshot (<prefix>snap.<node>) when they miss one or
// first hear of a node, and declare a node dead when it falls silent.
// Relayed signals go to <prefix>sig.<node>.
//
// Changes wait in a bounded queue for the NATS socket, so that a join
// never waits for the network: normally the queue is empty within
// microseconds. It fills only while NATS does not read (a stalled server,
// a full socket); then changes are dropped, numbered, so that the others
// see the gap (the next heartbeat carries the last number) and resync.
type NATSMembers struct {
	cfg NATSMembersConfig
	nc  *nats.Conn

	// evMu orders numbering and queueing; evFull and evClosed are under it.
	evMu     sync.Mutex
	evSeq    uint64
	evq      chan nodeEvent
	evDone   chan struct{} // closed when sendEvents has sent the last
	evFull   bool
	evClosed bool
	dropped  atomic.Uint64

	// nodesMu guards nodes. Lock order: nodesMu, then whatever the View
	// takes (fetchSnapshot calls Replace under it).
	nodesMu sync.Mutex
	nodes   map[string]*peerNode

	subs []*nats.Subscription // Start's; Start and Close are the owner's, never at once
	stop chan struct{}
	wg   sync.WaitGroup
}

// NATSMembersConfig configures a NATSMembers.
type NATSMembersConfig struct {
	// Conn is the node's NATS connection; Node its name, unique per run.
	Conn *nats.Conn
	Node string
	// Prefix starts every subject: "noom." gives noom.ev.<node> ...
	Prefix string
	// View is told of the other nodes' members.
	View View
	// Heartbeat is how often the node announces itself; a node not heard
	// from for DeadAfter (several heartbeats) is gone.
	Heartbeat, DeadAfter time.Duration
	// Paused, if set, reports whether the node is out of the cluster for
	// now (NATS out of reach, or catching up after it): no heartbeats and
	// no relays meanwhile. Its members' changes are still numbered, and
	// what NATS does not take shows as a gap.
	Paused func() bool
	// Queue bounds the changes waiting for the NATS socket (4096 if 0).
	Queue int
	Log   *slog.Logger
}

// Change types on <prefix>ev.<node>.
const (
	evJoin      = "j"
	evLeave     = "l"
	evNick      = "n"
	evHeartbeat = "h"
	evBye       = "b"
	evRole      = "r"
	evCmd       = "c"
)

// nodeEvent is one message on <prefix>ev.<node>.
type nodeEvent struct {
	Seq   uint64          `json:"s"`            // the node's change number; a heartbeat repeats the last
	Type  string          `json:"t"`            // evJoin ...
	Room  string          `json:"r,omitempty"`  // evJoin, evLeave, evRole, evCmd
	Rooms []string        `json:"rs,omitempty"` // evNick: the member's rooms
	ID    string          `json:"i,omitempty"`
	Nick  string          `json:"n,omitempty"`
	Role  string          `json:"o,omitempty"` // evJoin, evRole
	Cmd   json.RawMessage `json:"c,omitempty"` // evCmd
}

// peerNode is what this node knows of another.
type peerNode struct {
	seq      uint64      // last change applied
	lastSeen time.Time   // last message of any kind
	syncing  bool        // a snapshot is on its way
	failed   bool        // the last one did not come: ask again
	pending  []nodeEvent // changes received while syncing
}

// snapshotChunk is one reply message of a snapshot: up to snapshotBatch
// members as [room, id, nick, role].
type snapshotChunk struct {
	Seq     uint64      `json:"s"`
	Last    bool        `json:"last"`
	Members [][4]string `json:"m"`
}

const snapshotBatch = 2000

// NewNATSMembers returns the Membership of node cfg.Node. Nothing is
// exchanged before Start; Close releases it either way.
func NewNATSMembers(cfg NATSMembersConfig) (*NATSMembers, error) {
	if cfg.Conn == nil || cfg.Node == "" || cfg.View == nil || cfg.Heartbeat <= 0 || cfg.DeadAfter <= cfg.Heartbeat {
		return nil, errors.New("broker: NATSMembers needs a connection, a node, a view and a dead time past the heartbeat")
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 4096
	}
	if cfg.Paused == nil {
		cfg.Paused = func() bool { return false }
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	m := &NATSMembers{cfg: cfg, nc: cfg.Conn, evq: make(chan nodeEvent, cfg.Queue), evDone: make(chan struct{}),
		nodes: make(map[string]*peerNode), stop: make(chan struct{})}
	go m.sendEvents()
	return m, nil
}

// Start subscribes to the other nodes' changes, announces this node (the
// others answer with theirs, and ask for its snapshot) and starts its
// heartbeats. Call it once.
func (m *NATSMembers) Start() error {
	for _, s := range []struct {
		subj string
		f    nats.MsgHandler
	}{{m.cfg.Prefix + "ev.*", m.onEvent}, {m.cfg.Prefix + "snap." + m.cfg.Node, m.onSnapshotRequest},
		{m.cfg.Prefix + "sig." + m.cfg.Node, func(msg *nats.Msg) { m.cfg.View.Signal(msg.Data) }}} {
		sub, err := m.nc.Subscribe(s.subj, s.f)
		if err != nil {
			return err
		}
		_ = sub.SetPendingLimits(-1, 256<<20) // a snapshot can be large; memory is bounded by bytes
		m.subs = append(m.subs, sub)
	}
	m.Announce()
	m.wg.Add(1)
	go m.heartbeats()
	return nil
}

// Joined tells the other nodes that local member mb joined.
func (m *NATSMembers) Joined(mb Member) {
	m.publish(nodeEvent{Type: evJoin, Room: mb.Room, ID: mb.ID, Nick: mb.Nick, Role: mb.Role})
}

// Left tells the other nodes that local member id left room.
func (m *NATSMembers) Left(room, id string) { m.publish(nodeEvent{Type: evLeave, Room: room, ID: id}) }

// Renamed tells the other nodes local member id's new nick.
func (m *NATSMembers) Renamed(id, nick string, rooms []string) {
	if len(rooms) > 0 {
		m.publish(nodeEvent{Type: evNick, ID: id, Nick: nick, Rooms: rooms})
	}
}

// Role tells the other nodes local member id's role in room.
func (m *NATSMembers) Role(room, id, role string) {
	m.publish(nodeEvent{Type: evRole, Room: room, ID: id, Role: role})
}

// Command sends cmd about room to every other node, in order with this
// node's membership changes.
func (m *NATSMembers) Command(room string, cmd []byte) {
	m.publish(nodeEvent{Type: evCmd, Room: room, Cmd: cmd})
}

// Relay sends data to node; false while paused or if NATS did not take it.
func (m *NATSMembers) Relay(node string, data []byte) bool {
	return !m.cfg.Paused() && m.nc.Publish(m.cfg.Prefix+"sig."+node, data) == nil
}

// Live reports whether node is another node heard from recently.
func (m *NATSMembers) Live(node string) bool {
	m.nodesMu.Lock()
	defer m.nodesMu.Unlock()
	return m.nodes[node] != nil
}

// Nodes lists the other nodes heard from recently, sorted.
func (m *NATSMembers) Nodes() []string {
	m.nodesMu.Lock()
	defer m.nodesMu.Unlock()
	return slices.Sorted(maps.Keys(m.nodes))
}

// Dropped counts the changes the queue dropped because NATS did not take
// them.
func (m *NATSMembers) Dropped() uint64 { return m.dropped.Load() }

// Announce sends a heartbeat now: after an outage, so that the others see
// this node again (and ask for its snapshot).
func (m *NATSMembers) Announce() { m.publish(nodeEvent{Type: evHeartbeat}) }

// Close says goodbye, so that the others drop this node's members at once
// instead of after their dead time; it waits at most wait for NATS to take
// it. Later changes are dropped. Safe to call more than once.
func (m *NATSMembers) Close(wait time.Duration) {
	select {
	case <-m.stop:
		return
	default:
	}
	close(m.stop)
	m.wg.Wait()
	m.publish(nodeEvent{Type: evBye})
	m.evMu.Lock()
	if !m.evClosed {
		m.evClosed = true
		close(m.evq)
	}
	m.evMu.Unlock()
	select {
	case <-m.evDone:
	case <-time.After(wait):
		m.cfg.Log.Warn("leaving the cluster: NATS did not take the last membership changes")
	}
	for _, s := range m.subs {
		_ = s.Unsubscribe()
	}
}

// publish numbers ev (a heartbeat or a bye repeats the last number) and
// queues it for sendEvents. It never waits on the network: callers hold
// room locks, on a poller goroutine. A full queue drops ev, numbered, so
// that its loss shows as a gap.
func (m *NATSMembers) publish(ev nodeEvent) {
	m.evMu.Lock()
	defer m.evMu.Unlock()
	if m.evClosed {
		return
	}
	if ev.Type != evHeartbeat && ev.Type != evBye {
		m.evSeq++
	}
	ev.Seq = m.evSeq
	select {
	case m.evq <- ev:
		m.evFull = false
	default:
		m.dropped.Add(1)
		if !m.evFull { // once per overflow, not once per change
			m.evFull = true
			m.cfg.Log.Warn("membership changes dropped: NATS does not take them; the other nodes will resync", "queue", m.cfg.Queue)
		}
	}
}

// sendEvents publishes the queued changes in order, until Close ends the
// queue. nc.Publish buffers, and waits only when the socket is full: then
// it is this goroutine that waits, with no lock held.
func (m *NATSMembers) sendEvents() {
	defer close(m.evDone)
	subj := m.cfg.Prefix + "ev." + m.cfg.Node
	for ev := range m.evq {
		b, _ := json.Marshal(ev)
		_ = m.nc.Publish(subj, b)
	}
}

// heartbeats announces this node every Heartbeat and declares silent
// nodes gone.
func (m *NATSMembers) heartbeats() {
	defer m.wg.Done()
	t := time.NewTicker(m.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		if !m.cfg.Paused() {
			m.Announce()
		}
		var dead []string
		m.nodesMu.Lock()
		for name, n := range m.nodes {
			if time.Since(n.lastSeen) > m.cfg.DeadAfter {
				dead = append(dead, name)
				delete(m.nodes, name)
			}
		}
		m.nodesMu.Unlock()
		for _, name := range dead {
			m.cfg.Log.Warn("node silent: its members leave", "node", name, "after", m.cfg.DeadAfter)
			m.cfg.View.Gone(name)
		}
	}
}

// onEvent applies another node's change, in that node's order. NATS calls
// it on one goroutine: changes of one node are handled one at a time.
func (m *NATSMembers) onEvent(msg *nats.Msg) {
	node := strings.TrimPrefix(msg.Subject, m.cfg.Prefix+"ev.")
	if node == m.cfg.Node {
		return
	}
	var ev nodeEvent
	if json.Unmarshal(msg.Data, &ev) != nil {
		return
	}
	if ev.Type == evBye {
		m.nodesMu.Lock()
		delete(m.nodes, node)
		m.nodesMu.Unlock()
		m.cfg.View.Gone(node)
		return
	}
	m.nodesMu.Lock()
	n := m.nodes[node]
	if n == nil {
		n = &peerNode{}
		m.nodes[node] = n
		// A node new to us: say who we are at once, rather than at the next
		// heartbeat, so that it learns of our members within milliseconds.
		m.Announce()
	}
	n.lastSeen = time.Now()
	var apply, fetch bool
	switch {
	case n.syncing:
		if ev.Type != evHeartbeat {
			n.pending = append(n.pending, ev)
		}
	case !n.failed && (ev.Type == evHeartbeat && ev.Seq == n.seq || ev.Type != evHeartbeat && ev.Seq == n.seq+1):
		n.seq = ev.Seq
		apply = ev.Type != evHeartbeat
	case !n.failed && ev.Seq <= n.seq:
		// Queued before the snapshot that covered it: a node answers a
		// snapshot request at once, while its changes wait in its queue.
	default: // a node new to us, a gap, or a snapshot that did not come: ask for its whole state
		n.syncing = true
		if ev.Type != evHeartbeat {
			n.pending = append(n.pending, ev)
		}
		fetch = true
	}
	m.nodesMu.Unlock()
	if apply {
		m.apply(node, ev)
	}
	if fetch {
		go m.fetchSnapshot(node)
	}
}

// apply hands one change of node to the View.
func (m *NATSMembers) apply(node string, ev nodeEvent) {
	v := m.cfg.View
	switch ev.Type {
	case evJoin:
		v.Join(node, Member{Room: ev.Room, ID: ev.ID, Nick: ev.Nick, Role: ev.Role})
	case evLeave:
		v.Leave(node, ev.Room, ev.ID)
	case evNick:
		for _, room := range ev.Rooms {
			v.Join(node, Member{Room: room, ID: ev.ID, Nick: ev.Nick})
		}
	case evRole:
		v.Role(node, ev.Room, ev.ID, ev.Role)
	case evCmd:
		v.Command(node, ev.Room, ev.Cmd)
	}
}

// onSnapshotRequest answers with this node's members, in chunks.
func (m *NATSMembers) onSnapshotRequest(msg *nats.Msg) {
	if msg.Reply == "" {
		return
	}
	m.evMu.Lock()
	seq := m.evSeq // the state read below includes at least every change up to seq
	m.evMu.Unlock()
	local := m.cfg.View.Local()
	all := make([][4]string, len(local))
	for i, mb := range local {
		all[i] = [4]string{mb.Room, mb.ID, mb.Nick, mb.Role}
	}
	for i := 0; ; i += snapshotBatch {
		end := min(i+snapshotBatch, len(all))
		b, _ := json.Marshal(snapshotChunk{Seq: seq, Last: end == len(all), Members: all[i:end]})
		_ = m.nc.Publish(msg.Reply, b)
		if end == len(all) {
			return
		}
	}
}

// fetchSnapshot asks node for its members, replaces what the View knows
// of them, and applies the changes that came meanwhile.
func (m *NATSMembers) fetchSnapshot(node string) {
	members, seq, err := m.requestSnapshot(node)
	m.nodesMu.Lock()
	defer m.nodesMu.Unlock()
	n := m.nodes[node]
	if n == nil { // declared dead meanwhile
		return
	}
	if err != nil {
		n.syncing, n.pending = false, nil
		n.failed = true // so the next change or heartbeat asks again
		m.cfg.Log.Warn("snapshot", "node", node, "err", err)
		return
	}
	pending := n.pending
	n.syncing, n.failed, n.pending, n.seq = false, false, nil, seq
	m.cfg.View.Replace(node, members) // under nodesMu, so no change of node overtakes it
	for _, ev := range pending {
		if ev.Seq > n.seq {
			n.seq = ev.Seq
			m.apply(node, ev)
		}
	}
}

func (m *NATSMembers) requestSnapshot(node string) ([]Member, uint64, error) {
	inbox := m.nc.NewRespInbox()
	sub, err := m.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, 0, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	_ = sub.SetPendingLimits(-1, 256<<20)
	if err := m.nc.PublishRequest(m.cfg.Prefix+"snap."+node, inbox, nil); err != nil {
		return nil, 0, err
	}
	var members []Member
	for {
		msg, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			return nil, 0, err
		}
		var ch snapshotChunk
		if err := json.Unmarshal(msg.Data, &ch); err != nil {
			return nil, 0, err
		}
		for _, mb := range ch.Members {
			members = append(members, Member{Room: mb[0], ID: mb[1], Nick: mb[2], Role: mb[3]})
		}
		if ch.Last {
			return members, ch.Seq, nil
		}
	}
}
