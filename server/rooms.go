package main

import (
	"context"
	"hash/maphash"
	"log/slog"
	"math/bits"
	"runtime"
	"slices"
	"strconv"
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

	roomsDirty atomic.Bool  // the rooms list changed since the last push
	roomCount  atomic.Int64 // rooms with members
	epochSeq   atomic.Uint64

	// release gives back a closed connection's place under the caps.
	release func(c *client)

	clientsMu sync.RWMutex
	clients   map[uint64]*client // by connection id, for signal and call
}

// shard is one lock's worth of rooms.
type shard struct {
	mu    sync.Mutex
	rooms map[string]*room
	// folded lists rooms above the presence limit whose count changed since
	// the last count frame.
	folded []*room
	_      [32]byte // separate shards' locks onto their own cache lines
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
	// joined.members and the count.
	members   []*client
	listJSON  []byte    // cached JSON of the first members, see memberList
	partCount []int32   // members served by each worker
	call      []*client // peers in the room's video call
	announced int       // last count sent in a presence or count frame
	inFolded  bool      // queued in shard.folded

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
		cfg:       cfg,
		log:       log,
		stats:     st,
		clock:     clk,
		seed:      maphash.MakeSeed(),
		shards:    make([]shard, ns),
		clients:   make(map[uint64]*client),
		slowFrame: closeFrame(closeTryAgainLater, "slow consumer"),
		flushAt:   min(64<<10, cfg.SendBuffer/2),
	}
	for i := range h.shards {
		h.shards[i].rooms = make(map[string]*room)
	}
	for i := 0; i < nw; i++ {
		h.workers = append(h.workers, newWorker(i, h))
	}
	h.lobby = h.newRoom("")
	return h
}

func (h *hub) start() {
	for _, w := range h.workers {
		go w.run()
	}
}

func (h *hub) stop() {
	for _, w := range h.workers {
		w.stop()
	}
}

func (h *hub) newRoom(name string) *room {
	return &room{
		name:      name,
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

// register makes c known by id and queues its handshake response.
func (h *hub) register(c *client, handshake []byte) {
	h.clientsMu.Lock()
	h.clients[c.id] = c
	h.clientsMu.Unlock()
	c.w.push(job{op: jobRegister, c: c, frame: handshake})
	c.w.push(job{op: jobJoin, room: h.lobby, c: c})
}

// lookup finds a connection by its protocol id.
func (h *hub) lookup(id string) *client {
	n, err := strconv.ParseUint(id, 36, 64)
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
	if c.closed {
		c.mu.Unlock()
		return false
	}
	c.closed = true
	rooms := c.rooms
	c.rooms = nil
	c.mu.Unlock()

	for _, r := range rooms {
		h.leaveLocked(c, r, nil)
	}
	if len(rooms) == 0 {
		c.w.push(job{op: jobLeave, room: h.lobby, c: c})
	}
	c.w.push(job{op: jobUnregister, c: c})
	h.clientsMu.Lock()
	delete(h.clients, c.id)
	h.clientsMu.Unlock()
	return true
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

// inRoom reports whether c is a member of r.
func (c *client) inRoom(r *room) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.roomOf(r.name) == r
}

// join adds c to room name and answers joined; see PROTOCOL.md for since
// and recovered, and the README for epoch.
func (h *hub) join(c *client, name string, since *int64, epoch string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if r := c.roomOf(name); r != nil { // already in: just send the state again
		sh := h.shardOf(name)
		sh.mu.Lock()
		head, members, tail := encodeJoined(h.joinedInfo(r, since, epoch))
		c.w.push(job{op: jobSend, c: c, frame: head, more: &[2][]byte{members, tail}})
		sh.mu.Unlock()
		return
	}
	if len(c.rooms) >= h.cfg.MaxRooms {
		c.replyError(errTooManyRooms, "already in "+strconv.Itoa(h.cfg.MaxRooms)+" rooms", "join")
		return
	}
	sh := h.shardOf(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r := sh.rooms[name]
	if r == nil {
		r = h.newRoom(name)
		sh.rooms[name] = r
		h.roomCount.Add(1)
	}
	r.members = append(r.members, c)
	if len(r.members) <= maxListMembers {
		r.listJSON = nil
	}
	r.partCount[c.w.id]++
	c.rooms = append(c.rooms, r)
	if len(c.rooms) == 1 {
		c.w.push(job{op: jobLeave, room: h.lobby, c: c})
	}
	head, members, tail := encodeJoined(h.joinedInfo(r, since, epoch))
	c.w.push(job{op: jobJoin, room: r, c: c, frame: head, more: &[2][]byte{members, tail}})
	h.presence(sh, r, "join", c)
	h.roomsDirty.Store(true)
}

// joinedInfo describes r for a joined frame. The shard lock must be held.
func (h *hub) joinedInfo(r *room, since *int64, epoch string) *joinedInfo {
	j := &joinedInfo{room: r.name, epoch: r.epoch, count: len(r.members), members: r.memberList()}
	j.history, j.recovered = r.historySince(since, epoch)
	j.withRecovered = since != nil
	for _, p := range j.history {
		j.historyPayload += len(p) + 1
	}
	return j
}

// memberList returns the JSON array of the room's first maxListMembers
// members for joined frames. It is cached: in a big room every join would
// otherwise encode the same hundred members again. The shard lock must be
// held.
func (r *room) memberList() []byte {
	if r.listJSON == nil {
		n := min(len(r.members), maxListMembers)
		ms := make([]member, n)
		for i, m := range r.members[:n] {
			ms[i] = member{m.idStr, m.nickname()}
		}
		r.listJSON = appendMemberArray(make([]byte, 0, 2+n*40), ms)
	}
	return r.listJSON
}

// historySince returns the kept messages a client needs: all of them without
// since, those after since otherwise. recovered is false when messages after
// since are no longer kept, or since belongs to another epoch of the room
// (the room was emptied, or the server restarted), in which case all kept
// messages are returned.
func (r *room) historySince(since *int64, epoch string) (msgs [][]byte, recovered bool) {
	kept := len(r.history)
	from := 0 // index, oldest first, of the first message to return
	recovered = true
	switch {
	case since == nil:
	case epoch != "" && epoch != r.epoch, uint64(*since) > r.seq:
		recovered = false
	default:
		oldest := r.seq - uint64(kept) + 1 // seq of the oldest kept message
		s := uint64(*since)
		if s+1 < oldest {
			recovered = false
		} else {
			from = int(s + 1 - oldest)
		}
	}
	msgs = make([][]byte, 0, kept-from)
	for i := from; i < kept; i++ {
		msgs = append(msgs, r.history[(r.histStart+i)%kept])
	}
	return msgs, recovered
}

// addHistory keeps payload as the newest message, dropping the oldest past
// HistorySize.
func (r *room) addHistory(payload []byte, size int) {
	if len(r.history) < size {
		r.history = append(r.history, payload)
		return
	}
	r.history[r.histStart] = payload
	r.histStart = (r.histStart + 1) % size
}

// presence tells r's other members that c joined, left or was renamed, or,
// above the presence limit, schedules a count frame. The shard lock must be
// held.
func (h *hub) presence(sh *shard, r *room, event string, c *client) {
	count := len(r.members)
	if count == 0 {
		return
	}
	if count <= h.cfg.PresenceLimit {
		r.announced = count
		h.broadcast(r, encodePresence(r.name, event, c.idStr, c.nickname(), count), c)
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
	r := c.roomOf(name)
	if r == nil {
		c.replyError(errNotInRoom, "not in room "+name, "leave")
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
	if i := slices.Index(r.members, c); i >= 0 {
		if i < maxListMembers { // the last member moves into the listed part
			r.listJSON = nil
		}
		last := len(r.members) - 1
		r.members[i] = r.members[last]
		r.members[last] = nil
		r.members = r.members[:last]
	}
	r.partCount[c.w.id]--
	c.w.push(job{op: jobLeave, room: r, c: c, frame: reply})
	h.leaveCall(r, c)
	if len(r.members) == 0 {
		if sh.rooms[r.name] == r {
			delete(sh.rooms, r.name)
			h.roomCount.Add(-1)
		}
	} else {
		h.presence(sh, r, "leave", c)
	}
	h.roomsDirty.Store(true)
}

// say publishes text to room name: the message gets the room's next seq,
// joins the history and goes to every member, the sender too.
func (h *hub) say(c *client, name, text string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.roomOf(name)
	if r == nil {
		c.replyError(errNotInRoom, "not in room "+name, "say")
		return
	}
	sh := h.shardOf(name)
	sh.mu.Lock()
	r.seq++
	frame, at := encodeMsg(r.name, r.seq, c.idStr, c.nickname(), text, time.Now().UnixMilli())
	r.addHistory(frame[at:], h.cfg.HistorySize)
	h.broadcast(r, frame, nil)
	sh.mu.Unlock()
}

// rename sets c's nick, answers nick and tells c's rooms.
func (h *hub) rename(c *client, nick string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setNickname(nick)
	c.send(encodeNick(nick))
	for _, r := range c.rooms {
		sh := h.shardOf(r.name)
		sh.mu.Lock()
		r.listJSON = nil
		if len(r.members) <= h.cfg.PresenceLimit {
			h.presence(sh, r, "nick", c)
		}
		sh.mu.Unlock()
	}
}

// callAction handles call join and leave in room name.
func (h *hub) callAction(c *client, name, action string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.roomOf(name)
	if r == nil {
		c.replyError(errNotInRoom, "not in room "+name, "call")
		return
	}
	sh := h.shardOf(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	in := slices.Contains(r.call, c)
	switch {
	case action == "leave":
		h.leaveCall(r, c)
		c.send(encodeCall(name, []member{}))
	case in:
		c.send(encodeCall(name, callPeers(r, c)))
	case len(r.call) >= h.cfg.CallLimit:
		c.replyError(errCallFull, "the call has "+strconv.Itoa(h.cfg.CallLimit)+" peers already", "call")
	default:
		c.send(encodeCall(name, callPeers(r, c)))
		frame := encodeCallPeer(name, "join", c.idStr, c.nickname())
		for _, p := range r.call {
			p.send(frame)
		}
		r.call = append(r.call, c)
	}
}

// callPeers lists r's call peers other than c.
func callPeers(r *room, c *client) []member {
	peers := make([]member, 0, len(r.call))
	for _, p := range r.call {
		if p != c {
			peers = append(peers, member{p.idStr, p.nickname()})
		}
	}
	return peers
}

// leaveCall takes c out of r's call, if it is in, and tells the other peers.
// The shard lock must be held.
func (h *hub) leaveCall(r *room, c *client) {
	i := slices.Index(r.call, c)
	if i < 0 {
		return
	}
	r.call = slices.Delete(r.call, i, i+1)
	frame := encodeCallPeer(r.name, "leave", c.idStr, c.nickname())
	for _, p := range r.call {
		p.send(frame)
	}
}

// signal relays data from c to member to of room name.
func (h *hub) signal(c *client, name, to string, data []byte) {
	c.mu.Lock()
	r := c.roomOf(name)
	c.mu.Unlock()
	if r == nil {
		c.replyError(errNotInRoom, "not in room "+name, "signal")
		return
	}
	t := h.lookup(to)
	if t != nil && !t.inRoom(r) {
		t = nil
	}
	if t == nil {
		c.replyError(errNoSuchMember, "no member "+to+" in room "+name, "signal")
		return
	}
	t.send(encodeSignal(name, c.idStr, c.nickname(), data))
}

// roomList returns rooms by member count, largest first, at most limit.
func (h *hub) roomList(limit int) []roomCount {
	var all []roomCount
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for name, r := range sh.rooms {
			all = append(all, roomCount{name, len(r.members)})
		}
		sh.mu.Unlock()
	}
	slices.SortFunc(all, func(a, b roomCount) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		if a.Room < b.Room {
			return -1
		}
		return 1
	})
	if limit > 0 && len(all) > limit {
		all = all[:limit]
	}
	return all
}

// tick runs once a second: count frames for folded rooms, and the rooms list
// for connections in no room while it changes.
func (h *hub) tick() {
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for _, r := range sh.folded {
			r.inFolded = false
			if n := len(r.members); n > 0 && n != r.announced {
				r.announced = n
				h.broadcast(r, encodeCount(r.name, n), nil)
			}
		}
		clear(sh.folded)
		sh.folded = sh.folded[:0]
		sh.mu.Unlock()
	}
	if h.roomsDirty.Swap(false) {
		frame := encodeRooms(h.roomList(maxListRooms))
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

// sweep asks every worker to ping its connections and drop the idle ones.
func (h *hub) sweep() {
	for _, w := range h.workers {
		w.push(job{op: jobSweep})
	}
}

// closeAll sends every connection a close frame with code and reason.
func (h *hub) closeAll(code int, reason string) {
	frame := closeFrame(code, reason)
	for _, w := range h.workers {
		w.push(job{op: jobCloseAll, frame: frame, mode: closeAwaitReply})
	}
}
