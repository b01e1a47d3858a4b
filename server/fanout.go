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
// Writes are coalesced: a worker takes every queued job, appends the frames
// to each recipient's pending list, then writes each recipient's frames with
// one write call. When idle, a job is written as soon as it arrives; under
// load, frames pile up while the worker writes, and the next round sends them
// together. The cost is a write syscall (about 4 µs on loopback) per
// connection per round instead of per frame, and nothing waits on a timer.

// jobOp says what a job does.
type jobOp uint8

const (
	jobSend       jobOp = iota // send frame to c
	jobBroadcast               // send frame to room's members on this worker, except c
	jobJoin                    // add c to room's part, then send frame (if any) to c
	jobLeave                   // remove c from room's part, then send frame (if any) to c
	jobRegister                // add c to the worker's connections and send frame (101 + hello)
	jobUnregister              // forget c: nothing more is written to it
	jobClose                   // send the close frame and end the connection (see closeMode)
	jobCloseAll                // send the close frame to every connection of the worker
	jobSweep                   // ping every connection; drop those idle too long
)

// closeMode says when the TCP connection ends after a close frame.
type closeMode uint8

const (
	// closeAfterFlush ends it as soon as the close frame has left: used
	// when failing a connection and when answering the peer's close.
	closeAfterFlush closeMode = iota + 1
	// closeAwaitReply waits for the peer's close frame, at most closeGrace:
	// used for the server's own closes (shutdown, slow consumer).
	closeAwaitReply
)

// closeGrace bounds how long a connection lingers after its close frame.
const closeGrace = 3 * time.Second

// maxQueuedJobs bounds a worker's queue. A producer that finds it full waits:
// that back-pressure slows the poller, which slows the readers that produce
// the traffic, instead of letting memory grow.
const maxQueuedJobs = 1 << 16

// job is one unit of work for a worker.
type job struct {
	op    jobOp
	mode  closeMode
	room  *room
	c     *client
	frame []byte
}

// qnode links one frame into a connection's pending list for this round.
type qnode struct {
	frame []byte
	next  int32
}

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
	conns   []*client // every registered connection of this worker
	dirty   []*client // connections with frames pending this round
	nodes   []qnode   // this round's pending frames, linked per connection
	scratch []byte    // one connection's frames, concatenated for one write
	frames  uint64    // frames and bytes written this round
	bytes   uint64

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
	switch j.op {
	case jobSend:
		w.send(j.c, j.frame)
	case jobBroadcast:
		n := 0
		for _, m := range j.room.parts[w.id] {
			if m != j.c {
				w.send(m, j.frame)
				n++
			}
		}
		w.stats.deliveries.Add(uint64(n))
	case jobJoin:
		j.room.parts[w.id] = append(j.room.parts[w.id], j.c)
		if j.frame != nil {
			w.send(j.c, j.frame)
		}
	case jobLeave:
		j.room.parts[w.id] = removeClient(j.room.parts[w.id], j.c)
		if j.frame != nil {
			w.send(j.c, j.frame)
		}
	case jobRegister:
		j.c.widx = int32(len(w.conns))
		w.conns = append(w.conns, j.c)
		w.send(j.c, j.frame)
	case jobUnregister:
		w.unregister(j.c)
	case jobClose:
		w.close(j.c, j.frame, j.mode)
	case jobCloseAll:
		for _, c := range w.conns {
			w.close(c, j.frame, j.mode)
		}
	case jobSweep:
		w.sweep()
	}
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

func (w *worker) unregister(c *client) {
	if c.gone {
		return
	}
	c.gone = true
	i := int(c.widx)
	last := len(w.conns) - 1
	if i <= last && w.conns[i] == c {
		w.conns[i] = w.conns[last]
		w.conns[i].widx = int32(i)
		w.conns[last] = nil
		w.conns = w.conns[:last]
	}
}

// send appends frame to c's pending frames for this round.
func (w *worker) send(c *client, frame []byte) {
	if c.gone || c.closeQueued {
		return
	}
	if !c.dirty {
		c.dirty = true
		c.qhead, c.qtail, c.qbytes = -1, -1, 0
		c.base = c.pending()
		w.dirty = append(w.dirty, c)
	}
	if c.qbytes > 0 && c.qbytes+len(frame) > w.hub.flushAt {
		// A burst of broadcasts in one round: write what this round has so
		// far rather than hold it, so the cap below measures what the
		// client has not read, not how much arrived at once.
		w.writeOut(c)
		c.base = c.pending()
	}
	if c.base+c.qbytes+len(frame) > w.hub.cfg.SendBuffer {
		w.slowConsumer(c)
		return
	}
	w.link(c, frame)
}

// link appends frame to c's list of this round.
func (w *worker) link(c *client, frame []byte) {
	n := int32(len(w.nodes))
	w.nodes = append(w.nodes, qnode{frame: frame, next: -1})
	if c.qtail < 0 {
		c.qhead = n
	} else {
		w.nodes[c.qtail].next = n
	}
	c.qtail = n
	c.qbytes += len(frame)
}

// slowConsumer drops what c has pending this round and closes it with 1013:
// its unsent bytes went over the cap. What the socket already holds still
// reaches the client, then the close frame.
func (w *worker) slowConsumer(c *client) {
	dropped := 0
	for i := c.qhead; i >= 0; i = w.nodes[i].next {
		dropped++
	}
	w.stats.droppedFrames.Add(uint64(dropped) + 1)
	w.stats.slowConsumers.Add(1)
	c.qhead, c.qtail, c.qbytes = -1, -1, 0
	w.close(c, w.hub.slowFrame, closeAwaitReply)
}

// close queues a close frame for c as its last frame.
func (w *worker) close(c *client, frame []byte, mode closeMode) {
	if c.gone || c.closeQueued {
		return
	}
	if !c.dirty {
		c.dirty = true
		c.qhead, c.qtail, c.qbytes = -1, -1, 0
		w.dirty = append(w.dirty, c)
	}
	w.link(c, frame)
	if len(frame) >= 4 { // count by the code in the frame's first payload bytes
		w.hub.stats.countClose(int(binary.BigEndian.Uint16(frame[2:4])))
	}
	c.closeQueued = true
	c.closeMode = mode
	c.closing.Store(true)
}

// sweep pings every connection and drops those silent past the idle timeout.
// One sweep per ping interval costs one small write per connection, instead
// of a timer per connection.
func (w *worker) sweep() {
	idle := w.hub.cfg.IdleTimeout.Milliseconds()
	now := w.hub.clock.now()
	for _, c := range w.conns {
		if now-c.lastRead.Load() > idle {
			w.hub.log.Debug("idle timeout", "conn", c.id)
			_ = c.nbc.Close()
			continue
		}
		w.send(c, pingFrame)
	}
}

// flush writes each dirty connection's frames with one write call.
func (w *worker) flush() {
	for _, c := range w.dirty {
		c.dirty = false
		if c.gone {
			continue
		}
		w.writeOut(c)
		if c.closeQueued && !c.closeSent {
			c.closeSent = true
			c.afterCloseFrame()
		}
	}
	clear(w.dirty)
	w.dirty = w.dirty[:0]
	clear(w.nodes) // drop the frames' references so the GC can take them
	w.nodes = w.nodes[:0]
	if w.frames > 0 {
		w.stats.framesOut.Add(w.frames)
		w.stats.bytesOut.Add(w.bytes)
		w.frames, w.bytes = 0, 0
	}
}

// writeOut writes c's pending frames of this round in one write call.
func (w *worker) writeOut(c *client) {
	buf := w.scratch[:0]
	for i := c.qhead; i >= 0; i = w.nodes[i].next {
		buf = append(buf, w.nodes[i].frame...)
		w.frames++
	}
	c.qhead, c.qtail, c.qbytes = -1, -1, 0
	if len(buf) > 0 {
		c.write(buf)
		w.bytes += uint64(len(buf))
	}
	if cap(buf) <= 1<<20 { // keep the scratch buffer unless one round made it huge
		w.scratch = buf[:0]
	}
}

// pingFrame is an empty ping; browsers answer it by themselves.
var pingFrame = appendFrame(nil, opPing, nil)
