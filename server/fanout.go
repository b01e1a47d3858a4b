package main

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"
)

// The fan-out: a fixed pool of writer goroutines ("workers"), GOMAXPROCS by
// default, each owning a fixed subset of the connections. Everything sent to
// a connection — replies, broadcasts, pings, close frames — is a job on its
// worker's FIFO queue, so a connection sees frames in the order they were
// queued, and a room's broadcasts, queued under the room's lock, reach every
// member in the room's order.
//
// A worker also owns, for each room, the list of that room's members it
// serves (room.parts[w.id]); joins and leaves are jobs in the same queue, so
// no lock protects those lists and one big room fans out on every core at
// once: a broadcast is one job per worker, not one per member.
//
// Writes are coalesced in rounds. A worker takes every queued job, links
// each job's frame into its recipients' lists for the round, then writes
// each recipient's frames with one write call. When idle, a job is written
// as soon as it arrives; under load, jobs pile up while the worker writes,
// and the next round sends them together. A write syscall costs about 4 µs
// on loopback whatever its size, so this is where throughput comes from; and
// nothing ever waits on a timer.
//
// Consecutive broadcasts to the same room in one round form a run: the
// run's frames are appended to one buffer that every member's list already
// points to, so the second and later messages of a run cost O(1) for the
// whole room instead of O(members), and a member with nothing else pending
// gets the run's buffer written as is, without a copy.

// jobOp says what a job does.
type jobOp uint8

const (
	jobSend       jobOp = iota // send frame to c
	jobBroadcast               // send frame to room's members on this worker, except c
	jobJoin                    // add c to room's part, then send frame (if any) to c
	jobLeave                   // remove c from room's part, then send frame (if any) to c
	jobRegister                // add c to the worker's connections and send frame (101 + hello)
	jobUnregister              // forget c: nothing more is written to it
	jobClose                   // send the close frame and end the connection (lifecycle.go)
	jobCloseAll                // send the close frame to every connection of the worker
	jobSweep                   // ping a share of the connections; drop those idle too long
	jobSettle                  // clear nbio's HTTP read deadline on connections upgraded a while ago
	jobRun                     // run fn on the worker: reads of worker-owned state (the console)
)

// maxQueuedJobs bounds a worker's queue. A producer that finds it full waits:
// that back-pressure slows the poller, which slows the readers that produce
// the traffic, instead of letting memory grow.
const maxQueuedJobs = 1 << 16

// job is one unit of work for a worker.
type job struct {
	op    jobOp
	room  *room
	c     *client
	frame []byte
	// more, for jobSend and jobJoin, continues frame: the rest of the same
	// WebSocket frame, in parts that are shared rather than copied (see
	// encodeJoined).
	more *[2][]byte
	// fn is jobRun's function.
	fn func()
}

// qnode links one blob (a frame, or a run of frames) into a connection's
// pending list for this round.
type qnode struct {
	blob, next int32
}

// maxRoundNodes bounds a round's links (8 bytes each); past it the worker
// writes what it has before taking the next job.
const maxRoundNodes = 1 << 20

// workerStats are a worker's counters, written once per round.
type workerStats struct {
	framesOut     atomic.Uint64
	bytesOut      atomic.Uint64
	deliveries    atomic.Uint64
	slowConsumers atomic.Uint64
	droppedFrames atomic.Uint64
	_             [24]byte // keep workers' counters on separate cache lines
}

// worker is one fan-out goroutine and its queue.
type worker struct {
	id  int
	hub *hub

	mu      sync.Mutex // guards jobs and spare
	notFull sync.Cond  // signalled when the worker takes the queue
	jobs    []job
	spare   []job
	wake    chan struct{}
	quit    chan struct{}
	done    chan struct{}

	// Owned by the worker goroutine.
	conns      []*client // every registered connection of this worker
	sweepPos   int       // next connection to ping (see sweep)
	fresh      []*client // registered since the last settle
	settling   []*client // registered before the last settle: settled at the next
	dirty      []*client // connections with frames pending this round
	nodes      []qnode   // this round's links, in per-connection lists
	blobs      [][]byte  // this round's frames and runs of frames
	blobFrames []int32   // frames in each blob
	blobOwned  []bool    // the blob is a worker buffer (a run), not a shared frame
	spareBufs  [][]byte  // run buffers to reuse
	runRoom    *room     // the last job was a broadcast to this room...
	runBlob    int32     // ...with this blob, which the next one may extend
	roundBytes int       // bytes of frames taken this round
	scratch    []byte    // one connection's blobs, concatenated for one write
	frames     uint64    // frames and bytes written, not yet in stats
	bytes      uint64

	stats workerStats
}

func newWorker(id int, h *hub) *worker {
	w := &worker{id: id, hub: h, wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	w.notFull.L = &w.mu
	return w
}

// push queues j. It blocks while the queue is full. It must never be called
// from the worker's own goroutine.
func (w *worker) push(j job) {
	w.mu.Lock()
	for len(w.jobs) >= maxQueuedJobs {
		w.notFull.Wait()
	}
	w.jobs = append(w.jobs, j)
	first := len(w.jobs) == 1
	w.mu.Unlock()
	if first {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// run is the worker goroutine.
func (w *worker) run() {
	defer close(w.done)
	for {
		select {
		case <-w.wake:
		case <-w.quit:
			return
		}
		w.mu.Lock()
		batch := w.jobs
		w.jobs = w.spare[:0]
		w.spare = nil
		w.notFull.Broadcast()
		w.mu.Unlock()

		for i := range batch {
			w.do(&batch[i])
			batch[i] = job{}
			// A round is bounded: every connection's share of it stays under
			// flushAt bytes, so a burst is not mistaken for a slow reader,
			// and the links it needs stay few.
			if w.roundBytes >= w.hub.flushAt || len(w.nodes) >= maxRoundNodes {
				w.flush()
			}
		}
		w.flush()

		w.mu.Lock()
		if w.spare == nil && cap(batch) <= maxQueuedJobs {
			w.spare = batch[:0]
		}
		w.mu.Unlock()
	}
}

// stop ends the worker goroutine; queued jobs are dropped.
func (w *worker) stop() {
	close(w.quit)
	<-w.done
}

func (w *worker) do(j *job) {
	if j.op != jobBroadcast {
		w.runRoom = nil // only back-to-back broadcasts to one room form a run
	}
	switch j.op {
	case jobSend:
		w.send(j.c, j.frame)
		w.sendMore(j)
	case jobBroadcast:
		w.broadcast(j)
	case jobJoin:
		j.room.parts[w.id] = append(j.room.parts[w.id], j.c)
		if j.frame != nil {
			w.send(j.c, j.frame)
			w.sendMore(j)
		}
	case jobLeave:
		j.room.parts[w.id] = removeClient(j.room.parts[w.id], j.c)
		if j.frame != nil {
			w.send(j.c, j.frame)
		}
	case jobRegister:
		j.c.widx = int32(len(w.conns))
		w.conns = append(w.conns, j.c)
		w.fresh = append(w.fresh, j.c)
		w.send(j.c, j.frame)
	case jobUnregister:
		w.unregister(j.c)
	case jobClose:
		w.close(j.c, j.frame)
	case jobCloseAll:
		for _, c := range w.conns {
			w.close(c, j.frame)
		}
	case jobSweep:
		w.sweep()
	case jobSettle:
		w.settle()
	case jobRun:
		j.fn()
	}
}

// broadcast links a room's frame to the room's members on this worker.
func (w *worker) broadcast(j *job) {
	part := j.room.parts[w.id]
	if j.c == nil && w.runRoom == j.room {
		// Every member here is linked to the run already (any membership
		// change in between would have ended it): extend the run's buffer.
		w.extend(w.runBlob, j.frame)
		w.stats.deliveries.Add(uint64(len(part)))
		return
	}
	b := w.addBlob(j.frame)
	n := 0
	for _, m := range part {
		if m != j.c {
			w.link(m, b)
			n++
		}
	}
	w.stats.deliveries.Add(uint64(n))
	if j.c == nil {
		w.runRoom, w.runBlob = j.room, b
	}
}

// addBlob registers a frame for this round.
func (w *worker) addBlob(frame []byte) int32 {
	w.blobs = append(w.blobs, frame)
	w.blobFrames = append(w.blobFrames, 1)
	w.blobOwned = append(w.blobOwned, false)
	w.roundBytes += len(frame)
	return int32(len(w.blobs) - 1)
}

// extend appends frame to blob b. A blob starts as a room's shared frame,
// which other workers read too, so the first extension copies it into a
// buffer of the worker's own.
func (w *worker) extend(b int32, frame []byte) {
	buf := w.blobs[b]
	if !w.blobOwned[b] {
		var own []byte
		if n := len(w.spareBufs); n > 0 {
			own, w.spareBufs = w.spareBufs[n-1][:0], w.spareBufs[:n-1]
		}
		buf = append(own, buf...)
		w.blobOwned[b] = true
	}
	w.blobs[b] = append(buf, frame...)
	w.blobFrames[b]++
	w.roundBytes += len(frame)
}

// removeClient deletes c from s by swapping in the last element. Order in a
// part does not matter, and a linear scan is cheap next to the writes a part
// of that size costs on every broadcast.
func removeClient(s []*client, c *client) []*client {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == c {
			last := len(s) - 1
			s[i] = s[last]
			s[last] = nil
			return s[:last]
		}
	}
	return s
}

// unregister takes c out of the worker's connections; its state is closed
// already, so nothing more is written to it.
func (w *worker) unregister(c *client) {
	i := int(c.widx)
	last := len(w.conns) - 1
	if i < 0 || i > last || w.conns[i] != c {
		return
	}
	w.conns[i] = w.conns[last]
	w.conns[i].widx = int32(i)
	w.conns[last] = nil
	w.conns = w.conns[:last]
	c.widx = -1
}

// send queues frame for c in this round.
func (w *worker) send(c *client, frame []byte) {
	if !c.linkable() {
		return
	}
	w.link(c, w.addBlob(frame))
}

// sendMore queues the continuation parts of j's frame, if any. They are
// blobs of no frame of their own, so the frame counts once.
func (w *worker) sendMore(j *job) {
	if j.more == nil || !j.c.linkable() {
		return
	}
	for _, part := range j.more {
		b := w.addBlob(part)
		w.blobFrames[b] = 0
		w.link(j.c, b)
	}
}

// link appends blob b to c's list of this round.
func (w *worker) link(c *client, b int32) {
	if !c.linkable() {
		return
	}
	n := int32(len(w.nodes))
	w.nodes = append(w.nodes, qnode{blob: b, next: -1})
	if !c.dirty {
		c.dirty = true
		c.qhead = n
		w.dirty = append(w.dirty, c)
	} else {
		w.nodes[c.qtail].next = n
	}
	c.qtail = n
}

// close queues a close frame for c as its last frame, unless one is
// queued already or c is closed.
func (w *worker) close(c *client, frame []byte) {
	if !c.linkable() {
		return
	}
	w.link(c, w.addBlob(frame))
	if !c.closeLinked() {
		// The socket closed meanwhile (nothing links a close frame but
		// this worker): the link goes nowhere, flush skips closed ones.
		return
	}
	if len(frame) >= 4 { // count by the code in the frame's first payload bytes
		w.hub.stats.countClose(int(binary.BigEndian.Uint16(frame[2:4])))
	}
}

// sweep pings a share of the worker's connections and drops those of them
// silent past the idle timeout. Each connection's turn comes once per ping
// interval; the housekeeping asks every second for 1/sweepParts of them,
// so that 19,000 pings never go out in one round and stall the messages
// behind them. One sweep like this costs a small write per connection per
// interval, instead of a timer per connection.
func (w *worker) sweep() {
	n := len(w.conns)
	if n == 0 {
		return
	}
	share := (n + w.hub.sweepParts - 1) / w.hub.sweepParts
	idle := w.hub.cfg.IdleTimeout.Milliseconds()
	now := w.hub.clock.now()
	for i := 0; i < share; i++ {
		if w.sweepPos >= len(w.conns) {
			w.sweepPos = 0
		}
		c := w.conns[w.sweepPos]
		w.sweepPos++
		if now-c.lastRead.Load() > idle {
			w.hub.log.Debug("idle timeout", "conn", c.idStr)
			_ = c.nbc.Close() // the unregister job comes later: w.conns stays as it is
			continue
		}
		w.send(c, pingFrame)
	}
}

// flush ends the round: each dirty connection's frames go out in one write
// call, unless they would take its unsent bytes over the cap, in which case
// they are dropped and the connection is closed with 1013 (slow consumer):
// what its socket already holds still reaches it, then the close frame.
func (w *worker) flush() {
	limit := w.hub.cfg.SendBuffer
	for _, c := range w.dirty {
		c.dirty = false
		st := c.getState()
		if st == connClosed {
			continue
		}
		total, frames := 0, 0
		for i := c.qhead; i >= 0; i = w.nodes[i].next {
			b := w.nodes[i].blob
			total += len(w.blobs[b])
			frames += int(w.blobFrames[b])
		}
		closeSent := st == connClosingSent || st == connEndingSent || st == connLingering
		if !closeSent && c.pending()+total > limit {
			w.slowConsumer(c, frames)
			continue
		}
		if w.nodes[c.qhead].next < 0 { // one blob: write it as it is
			c.write(w.blobs[w.nodes[c.qhead].blob])
		} else {
			buf := w.scratch[:0]
			for i := c.qhead; i >= 0; i = w.nodes[i].next {
				buf = append(buf, w.blobs[w.nodes[i].blob]...)
			}
			c.write(buf)
			if cap(buf) <= 1<<20 { // keep the scratch buffer unless it grew huge
				w.scratch = buf[:0]
			}
		}
		w.frames += uint64(frames)
		w.bytes += uint64(total)
		c.framesOut += uint64(frames) // worker-owned: an atomic here cost 15% at 10,000 members
		if st == connClosing || st == connEnding {
			c.closeWritten()
		}
	}
	for i, own := range w.blobOwned {
		if own && cap(w.blobs[i]) <= 2*w.hub.flushAt && len(w.spareBufs) < 64 {
			w.spareBufs = append(w.spareBufs, w.blobs[i])
		}
	}
	clear(w.dirty)
	w.dirty = w.dirty[:0]
	clear(w.blobs) // drop the frames' references so the GC can take them
	w.blobs, w.blobFrames, w.blobOwned = w.blobs[:0], w.blobFrames[:0], w.blobOwned[:0]
	w.nodes = w.nodes[:0]
	w.runRoom = nil
	w.roundBytes = 0
	if w.frames > 0 {
		w.stats.framesOut.Add(w.frames)
		w.stats.bytesOut.Add(w.bytes)
		w.frames, w.bytes = 0, 0
	}
}

// slowConsumer closes c with 1013 instead of writing its frames of this
// round, which would take its unsent bytes over the cap. If a close frame
// was queued already (a shutdown), that one is sent instead.
func (w *worker) slowConsumer(c *client, frames int) {
	w.stats.droppedFrames.Add(uint64(frames))
	frame := w.hub.slowFrame
	if !c.linkable() {
		frame = w.blobs[w.nodes[c.qtail].blob] // the close frame queued already
	} else if c.closeLinked() {
		w.stats.slowConsumers.Add(1)
		w.hub.stats.countClose(closeTryAgainLater)
	} else {
		return // closed meanwhile
	}
	c.write(frame)
	c.closeWritten()
}

// settle clears the HTTP read deadline nbio put on connections upgraded one
// to two seconds ago. The upgrade clears it too, but nbio's accept path arms
// it after handing the socket to the poller, so on a fast upgrade it can be
// armed again after it was cleared; by now that path has long finished.
func (w *worker) settle() {
	for _, c := range w.settling {
		if c.getState() == connOpen { // a closing connection's deadline is its grace period
			_ = c.nbc.SetReadDeadline(time.Time{})
		}
	}
	clear(w.settling)
	w.settling, w.fresh = w.fresh, w.settling[:0]
}

// pingFrame is an empty ping; browsers answer it by themselves.
var pingFrame = appendFrame(nil, opPing, nil)
