package main

import (
	"context"
	"hash/maphash"
	"log/slog"
	"math/bits"
	"noom/server/auth"
	"noom/server/broker"
	"noom/server/sfu"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// hub is the room table: rooms sharded by name, each shard with its own lock,
// so unrelated rooms never contend; plus the fan-out workers that write to
// the members.
//
// Lock order: client.mu, then shard.mu, then worker.mu (inside push). The
// workers take none of the first two, so pushing a job while holding them
// cannot deadlock even when a queue is full.
type hub struct {
	cfg     *Config
	log     *slog.Logger
	stats   *stats
	clock   *clock
	seed    maphash.Seed
	shards  []shard
	workers []*worker

	// lobby is the pseudo-room of connections in no room: they get the
	// rooms list pushed. Its parts are kept by the workers like any room's.
	lobby *room

	// slowFrame is the close frame sent to slow consumers.
	slowFrame []byte
	// flushAt bounds the bytes of frames a worker takes in one round, and
	// so what any one connection can get in one write.
	flushAt int
	// sweepParts is how many sweeps make one ping interval: each pings
	// 1/sweepParts of the connections.
	sweepParts int

	roomsDirty atomic.Bool  // the rooms list changed since the last build
	roomCount  atomic.Int64 // rooms with members
	epochSeq   atomic.Uint64

	// list is the rooms list as the tick last built it (roomlist.go);
	// listMu and listScratch belong to the build.
	list        atomic.Pointer[roomsList]
	listMu      sync.Mutex
	listScratch []roomCount

	// release gives back a closed connection's place under the caps.
	release func(c *client)

	// cl links this node to the others through NATS (its connection,
	// consumer and outages, cluster*.go); nil when standalone. The hub's
	// rooms reach the broker through msgs, calls, settings and members
	// below, never through cl.
	cl *cluster
	// br is the standalone node's broker, which the server closes; nil in
	// a cluster, whose own parts are below.
	br broker.Broker
	// msgs keeps the rooms' messages (history.go, load.go): br
	// standalone, the stream in a cluster, nil for a hub without either
	// (benchmarks).
	msgs broker.Messages
	// calls keeps the rooms' call lists (calls_change.go): br standalone,
	// the stream in a cluster, memory for a hub without either. rq runs
	// the requests that wait on them, and on the cluster (roomq.go).
	// callConflicts counts call changes that found their list changed.
	calls broker.Calls
	// settings keeps the rooms' settings (settings.go): br standalone,
	// the cluster's bucket in a cluster.
	settings broker.Settings
	// members is the membership across nodes: broker.Alone standalone
	// (nobody else to tell), the cluster's (cluster_events.go) in one.
	members       broker.Membership
	rq            *roomQueues
	callConflicts atomic.Uint64
	// node is this node's name in a cluster, "" standalone; idPrefix
	// starts every connection id of this node: empty standalone, the
	// node's name and a dash in a cluster, so ids are unique there.
	node, idPrefix string

	clientsMu sync.RWMutex
	clients   map[uint64]*client // by connection id, for signal and call
	// held are the requests of connections waiting behind their joins
	// (held.go); heldMu is taken with the client's mu held.
	heldMu sync.Mutex
	held   map[*client]*heldReqs

	// Meetings (meetings.go, lobby.go, tokens.go): the token verifier (nil
	// without a key), failed passcodes per address and room, removed
	// members' bars, and the slots of the passcode hashes running.
	// sfu forwards calls' media (calls_sfu.go); nil with -sfu off or in a
	// cluster.
	sfu *sfuGlue
	// sfuLive is the SFU for /metrics, whose scrapes may come before
	// startSFU sets sfu (the admin listener starts first).
	sfuLive atomic.Pointer[sfu.SFU]

	verifier *auth.Verifier
	attempts *auth.Attempts
	bars     *auth.Bars
	slowSem  chan struct{}
	// loadSem holds a slot per load running on its own goroutine
	// (load.go); loads counts them, for drain.
	loadSem chan struct{}
	loads   sync.WaitGroup
}

// shard is one lock's worth of rooms.
type shard struct {
	mu    sync.Mutex
	rooms map[string]*room
	// folded lists rooms above the presence limit whose count changed since
	// the last count frame.
	folded []*room
	// orphans lists rooms left without a host or cohost (meetings.go).
	orphans []*room
	_       [32]byte // separate shards' locks onto their own cache lines
}

// room is one chat room. Fields are guarded by the shard's lock except
// parts, whose element w is owned by worker w.
type room struct {
	name  string
	epoch string
	seq   uint64
	// history is a ring of the last HistorySize msg payloads (JSON); the
	// oldest is at histStart.
	history   [][]byte
	histStart int
	// members lists the room's connections in join order, for
	// joined.members and the count; leaving keeps that order.
	members   []*client
	listJSON  []byte     // cached JSON of the first members, see memberList
	partCount []int32    // members served by each worker
	call      []callPeer // the room's video call
	sfu       bool       // its media goes through the SFU (calls_sfu.go)
	announced int        // last count sent in a presence or count frame
	inFolded  bool       // queued in shard.folded

	// callVersion is the version of the call list applied (broker.Calls).
	callVersion uint64
	// In a cluster (cluster.go): the room's members on other nodes by id,
	// the stream sequence of its newest message, its cluster state while
	// it runs alone, and signals from other nodes that wait for a newer
	// call list (cluster_events.go).
	remote         map[string]remoteMember
	streamSeq      uint64
	island         *islandState
	pendingSignals []pendingSignal
	// Whether it is loaded (its messages' state and settings read from the
	// broker, load.go; only then are joins let in), a load is on its way,
	// what a cluster's consumer read meanwhile (cluster_load.go) and the
	// joins that wait for the load.
	loaded, loading bool
	early           []streamMsg
	gated           []gatedJoin
	// callJoins counts this node's call joins queued and not yet decided
	// (calls_change.go); atomic, as they are queued under c.mu only.
	callJoins atomic.Int32

	// Publishing (history.go): the last seq this node gave out in this
	// lifetime (a publish takes the one after the larger of next and seq,
	// what members have received and the history ring holds: next runs
	// ahead while publishes are in flight, and is taken back to seq when
	// one is lost); how many are in flight (and settings changes), so the
	// room stays in memory until they land; and the generation of next,
	// bumped when a lost publish takes it back.
	next     uint64
	inflight int
	pubGen   uint32

	// meet is its settings, roles and lobby (meetings.go).
	meet meeting

	parts [][]*client // parts[w]: members served by worker w; worker-owned
}

func newHub(cfg *Config, log *slog.Logger, st *stats, clk *clock) *hub {
	nw := cfg.Workers
	if nw <= 0 {
		nw = max(1, runtime.GOMAXPROCS(0)/2)
	}
	ns := cfg.Shards
	if ns <= 0 {
		ns = 8 * runtime.GOMAXPROCS(0)
	}
	ns = 1 << bits.Len(uint(ns-1)) // a power of two, so a mask picks the shard
	h := &hub{
		cfg:        cfg,
		log:        log,
		stats:      st,
		clock:      clk,
		seed:       maphash.MakeSeed(),
		shards:     make([]shard, ns),
		clients:    make(map[uint64]*client),
		held:       make(map[*client]*heldReqs),
		slowFrame:  closeFrame(closeTryAgainLater, "slow consumer"),
		flushAt:    min(64<<10, cfg.SendBuffer/2),
		sweepParts: max(1, int(cfg.PingInterval/sweepEvery(cfg))),
		attempts:   auth.NewAttempts(passAttempts, passWindow),
		bars:       auth.NewBars(),
		slowSem:    make(chan struct{}, slowChecks),
		loadSem:    make(chan struct{}, loadSlots),
	}
	for i := range h.shards {
		h.shards[i].rooms = make(map[string]*room)
	}
	for i := 0; i < nw; i++ {
		h.workers = append(h.workers, newWorker(i, h))
	}
	h.lobby = h.newRoom("")
	h.list.Store(newRoomsList(nil))
	h.calls = broker.NewMemCalls()
	h.members = broker.Alone{}
	h.rq = newRoomQueues(4, 4096, h.doRoomReq)
	return h
}

func (h *hub) start() {
	for _, w := range h.workers {
		go w.run()
	}
}

// drain runs what the room queues hold, refuses what comes after, and
// waits for the loads on their way: before the broker closes, which they
// need.
func (h *hub) drain() {
	h.rq.close()
	h.loads.Wait()
}

func (h *hub) stop() {
	h.rq.close() // first: what is queued answers through the workers
	for _, w := range h.workers {
		w.stop()
	}
}

// count is the room's number of members, on every node.
func (r *room) count() int { return len(r.members) + len(r.remote) }

func (h *hub) newRoom(name string) *room {
	return &room{
		name: name,
		// Its lifetime until a load reads the broker's (load.go); a hub
		// without a broker (benchmarks) keeps it.
		epoch:     strconv.FormatInt(time.Now().UnixMilli(), 36) + "." + strconv.FormatUint(h.epochSeq.Add(1), 36),
		parts:     make([][]*client, len(h.workers)),
		partCount: make([]int32, len(h.workers)),
	}
}

func (h *hub) shardOf(name string) *shard {
	return &h.shards[maphash.String(h.seed, name)&uint64(len(h.shards)-1)]
}

// worker picks the worker that serves connection id.
func (h *hub) worker(id uint64) *worker {
	return h.workers[id%uint64(len(h.workers))]
}

// broadcast queues frame for every member of r except skip, one job per
// worker that serves members of r. The shard lock of r must be held: that
// is what orders a room's broadcasts the same way on every worker.
func (h *hub) broadcast(r *room, frame []byte, skip *client) {
	for i, n := range r.partCount {
		if n > 0 {
			h.workers[i].push(job{op: jobBroadcast, room: r, c: skip, frame: frame})
		}
	}
}

// register adds a new connection: to the id table, and to its worker with
// its handshake and in no room. It adds nothing if the connection was
// disconnected already (its socket closed during the upgrade): under c.mu,
// disconnect either ran before and marked it closed, or runs after and
// undoes what is queued here, in order.
func (h *hub) register(c *client, handshake []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.getState() == connClosed {
		return
	}
	h.clientsMu.Lock()
	h.clients[c.id] = c
	h.clientsMu.Unlock()
	c.w.push(job{op: jobRegister, c: c, frame: handshake})
	c.w.push(job{op: jobJoin, room: h.lobby, c: c})
}

// lookup finds a connection of this node by its protocol id.
func (h *hub) lookup(id string) *client {
	if !strings.HasPrefix(id, h.idPrefix) {
		return nil
	}
	n, err := strconv.ParseUint(id[len(h.idPrefix):], 36, 64)
	if err != nil {
		return nil
	}
	h.clientsMu.RLock()
	c := h.clients[n]
	h.clientsMu.RUnlock()
	return c
}

// disconnected takes a closed connection out of every room, forgets it and
// frees its place under the connection caps.
func (h *hub) disconnected(c *client, err error) {
	if !h.disconnect(c) {
		return
	}
	h.release(c)
	if h.log.Enabled(context.Background(), slog.LevelDebug) {
		h.log.Debug("disconnected", "conn", c.idStr, "err", err)
	}
}

// disconnect takes c out of every room and forgets it. It reports false if
// that was done already.
func (h *hub) disconnect(c *client) bool {
	c.mu.Lock()
	if !c.markClosed() {
		c.mu.Unlock()
		return false
	}
	h.dropHeld(c)
	c.mu.Unlock()
	// Closed now, so no join can add a room after leaveRooms took them.
	if h.leaveRooms(c) == 0 { // in no room: it was in the lobby, if anywhere
		c.w.push(job{op: jobLeave, room: h.lobby, c: c})
	}
	c.w.push(job{op: jobUnregister, c: c})
	c.stopAuthClock()
	h.clientsMu.Lock()
	delete(h.clients, c.id)
	h.clientsMu.Unlock()
	return true
}

// leaveRooms takes c out of every room it is in, as a leave would but
// without the answer, and reports how many that was. It runs when c's
// socket closes (disconnect) and, earlier, when the reader ends c's input
// (lifecycle.go): a connection that is failed, or that sent its close
// frame, gets nothing more, so its rooms see it leave at once rather than
// when its socket closes, up to closeGrace later. c.mu must not be held.
func (h *hub) leaveRooms(c *client) int {
	h.leaveLobbies(c)
	c.mu.Lock()
	rooms := c.rooms
	c.rooms = nil
	c.mu.Unlock()
	for _, r := range rooms {
		h.leaveLocked(c, r, nil)
	}
	return len(rooms)
}

// roomOf returns the room c is in by that name. c.mu must be held.
func (c *client) roomOf(name string) *room {
	for _, r := range c.rooms {
		if r.name == name {
			return r
		}
	}
	return nil
}

// memberOf returns the room c is in by that name, or answers the request
// ref with not_in_room and returns nil. c.mu must be held.
func (c *client) memberOf(name, ref string) *room {
	r := c.roomOf(name)
	if r == nil {
		c.replyError(errNotInRoom, "not in room "+name, ref)
	}
	return r
}

// inRoom reports whether c is a member of r.
func (c *client) inRoom(r *room) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.roomOf(r.name) == r
}

// roomLocked returns room name, creating it. The shard lock must be held.
func (h *hub) roomLocked(sh *shard, name string) *room {
	r := sh.rooms[name]
	if r == nil {
		r = h.newRoom(name)
		sh.rooms[name] = r
	}
	return r
}

// countChange accounts for a member joining (+1) or leaving (-1) r: the
// rooms gauge counts rooms with members, and the rooms list changed. It is
// called before the change. The shard lock must be held.
func (h *hub) countChange(r *room, delta int) {
	switch n := r.count(); {
	case delta > 0 && n == 0:
		h.roomCount.Add(1)
	case delta < 0 && n == 1:
		h.roomCount.Add(-1)
	}
	h.roomsDirty.Store(true)
}

// dropIfEmpty forgets r once nobody is in it, no message of its is on
// its way to the store and it has no call; its seq, epoch and history live
// on in the store (history.go) or, in a cluster, in the stream, from which
// the next join loads them (load.go). The shard lock must be held.
func (h *hub) dropIfEmpty(sh *shard, r *room) {
	if r.count() == 0 && r.inflight == 0 && len(r.call) == 0 && r.callJoins.Load() == 0 &&
		len(r.meet.lobbyq) == 0 && len(r.gated) == 0 && sh.rooms[r.name] == r {
		delete(sh.rooms, r.name)
	}
}

// presence tells r's local members but skip that member id joined, left or
// was renamed, or, above the presence limit, schedules a count frame. The
// shard lock must be held.
func (h *hub) presence(sh *shard, r *room, event, id, nick string, skip *client) {
	count := r.count()
	if len(r.members) == 0 {
		return
	}
	if count <= h.cfg.PresenceLimit {
		r.announced = count
		h.broadcast(r, encodePresence(r.name, event, id, nick, count), skip)
		return
	}
	if !r.inFolded && count != r.announced {
		r.inFolded = true
		sh.folded = append(sh.folded, r)
	}
}

// leave takes c out of room name and answers left.
func (h *hub) leave(c *client, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if w := c.waitingIn(name); w != nil { // waiting in its lobby: wait no more
		sh := h.shardOf(name)
		sh.mu.Lock()
		w.unwait(c)
		h.dropIfEmpty(sh, w)
		sh.mu.Unlock()
		c.send(encodeLeft(name))
		return
	}
	r := c.memberOf(name, "leave")
	if r == nil {
		return
	}
	for i, x := range c.rooms {
		if x == r {
			c.rooms = slices.Delete(c.rooms, i, i+1)
			break
		}
	}
	h.leaveLocked(c, r, encodeLeft(name))
	if len(c.rooms) == 0 {
		c.w.push(job{op: jobJoin, room: h.lobby, c: c})
	}
}

// leaveLocked removes c from r, which c has already dropped from c.rooms;
// reply, if any, is sent to c after its removal.
func (h *hub) leaveLocked(c *client, r *room, reply []byte) {
	sh := h.shardOf(r.name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	h.countChange(r, -1)
	if i := slices.Index(r.members, c); i >= 0 {
		if i < maxListMembers { // the listed part loses c and gains the next member
			r.listJSON = nil
		}
		// An ordered delete keeps the join order that joined.members
		// promises. It copies the pointers after c: in a room of 10,000
		// that is under 80 KB, a few microseconds, and the search above is
		// O(n) already.
		r.members = slices.Delete(r.members, i, i+1)
	}
	r.partCount[c.w.id]--
	c.w.push(job{op: jobLeave, room: r, c: c, frame: reply})
	h.leaveCall(r, c)
	if !r.meet.ending {
		h.presence(sh, r, "leave", c.idStr, c.nickname(), c)
	}
	h.members.Left(r.name, c.idStr)
	if r.meet.isMod(c.idStr) {
		r.meet.setRole(c.idStr, roleMember)
		if !r.meet.ending {
			h.roomChanged(r)
		}
	}
	h.checkOrphan(sh, r)
	h.dropIfEmpty(sh, r)
}

// say publishes text to room name: the message gets the room's next seq,
// joins the history and goes to every member, the sender too.
func (h *hub) say(c *client, name, text string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.memberOf(name, "say")
	if r == nil {
		return
	}
	if h.msgs == nil { // a hub that keeps nothing (benchmarks)
		h.sayLocal(r, c.idStr, c.nickname(), text)
		return
	}
	h.publish(c, r, c.idStr, c.nickname(), text, time.Now().UnixMilli())
}

// sayLocal gives a message r's next seq on this node, keeps it in memory
// and sends it to r's members here: a hub without a broker (benchmarks).
// A room that runs alone while its broker is out of reach does the same
// (islandSayLocked).
func (h *hub) sayLocal(r *room, from, nick, text string) {
	sh := h.shardOf(r.name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	h.sayLocked(r, from, nick, text)
}

// sayLocked is sayLocal with the shard lock held.
func (h *hub) sayLocked(r *room, from, nick, text string) {
	r.seq++
	frame, at := encodeMsg(r.name, r.seq, from, nick, text, time.Now().UnixMilli())
	r.addHistory(frame[at:], h.cfg.HistorySize)
	h.broadcast(r, frame, nil)
}

// rename sets c's nick, answers nick and tells c's rooms.
func (h *hub) rename(c *client, nick string) {
	if t := c.token(); t != nil && t.claims.Name != "" {
		c.replyError(errNotAllowed, "your token sets your nick", "nick")
		return
	}
	c.mu.Lock()
	c.send(encodeNick(nick))
	c.mu.Unlock()
	h.renameQuiet(c, nick)
}

// renameQuiet sets c's nick and tells c's rooms, without answering c.
func (h *hub) renameQuiet(c *client, nick string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setNickname(nick)
	names := make([]string, 0, len(c.rooms))
	for _, r := range c.rooms {
		sh := h.shardOf(r.name)
		sh.mu.Lock()
		r.listJSON = nil
		if r.count() <= h.cfg.PresenceLimit {
			h.presence(sh, r, "nick", c.idStr, nick, c)
		}
		sh.mu.Unlock()
		names = append(names, r.name)
	}
	h.members.Renamed(c.idStr, nick, names)
}

// tick runs once a second: count frames for folded rooms, and, while it
// changes, the rooms list (roomlist.go), pushed to connections in no room.
func (h *hub) tick() {
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for _, r := range sh.folded {
			r.inFolded = false
			if n := r.count(); len(r.members) > 0 && n != r.announced {
				r.announced = n
				h.broadcast(r, encodeCount(r.name, n), nil)
			}
		}
		clear(sh.folded)
		sh.folded = sh.folded[:0]
		if len(sh.orphans) > 0 {
			h.promoteOrphans(sh, h.clock.now())
		}
		sh.mu.Unlock()
	}
	if h.roomsDirty.Swap(false) {
		h.rebuildRooms()
		frame := h.list.Load().frame
		for _, w := range h.workers {
			w.push(job{op: jobBroadcast, room: h.lobby, frame: frame})
		}
	}
}

// settle asks every worker to clear nbio's HTTP read deadline on the
// connections it registered before the previous settle (see worker.settle).
func (h *hub) settle() {
	for _, w := range h.workers {
		w.push(job{op: jobSettle})
	}
}

// sweepEvery is how often the housekeeping sweeps: every second, or every
// ping interval if that is shorter.
func sweepEvery(cfg *Config) time.Duration { return min(time.Second, cfg.PingInterval) }

// sweep asks every worker to ping its share of connections and drop the
// idle ones among them.
func (h *hub) sweep() {
	for _, w := range h.workers {
		w.push(job{op: jobSweep})
	}
}

// closeAll sends every connection a close frame with code and reason.
func (h *hub) closeAll(code int, reason string) {
	frame := closeFrame(code, reason)
	for _, w := range h.workers {
		w.push(job{op: jobCloseAll, frame: frame})
	}
}
