package main

import (
	"syscall"
	"time"
)

// connState is where a connection is in its life. It is one atomic word,
// client.state, that only moves forward; every transition is a
// compare-and-swap by the one party that owns it, so the reader (Parse, on
// the poller), the connection's worker and nbio's callbacks never need a
// lock between them to agree on it.
//
//	open ──reader: fail, or the peer's close frame──▶ readEnded
//	open ──worker: links a close frame of the server's (shutdown, slow
//	       consumer)──▶ closing
//	readEnded ──worker: links the close frame the reader asked for──▶ ending
//	closing ──reader: fail, or the peer's close frame before ours left──▶ ending
//	closing ──worker: the close frame handed to the socket──▶ closingSent
//	ending ──worker: the close frame handed to the socket──▶ endingSent
//	closingSent ──reader: fail──▶ endingSent
//	closingSent ──reader: the peer's close frame (the handshake is done)──▶
//	       the socket is closed
//	endingSent ──worker, or nbio's write report: the kernel took every
//	       byte──▶ lingering (the write side is shut down: the peer reads
//	       our close frame, then end of stream)
//	any ──nbio: the socket closed, CloseAndClean──▶ closed
//
// What each state means to the three parties:
//
//   - The reader handles requests only in open. In closing and closingSent
//     it still parses frames, for the peer's close frame, and ignores data.
//     In readEnded, ending, endingSent and lingering the peer's input is
//     over (it broke the protocol, or sent its close frame): the reader
//     discards it, up to lingerBytes, and closes the socket past that.
//   - The worker links frames for the connection only in open and
//     readEnded: once its close frame is linked nothing follows it. It
//     writes nothing in closed.
//   - Deadlines bound every state past open: a sent close frame waits
//     closeGrace for the peer's close or for the kernel to take it, and a
//     lingering connection lingerTime for the peer to end its stream.
//
// A closed connection may have been in any state before; nbio closes the
// socket on end of stream, a read deadline, a write error or an overflow.
type connState uint32

const (
	connOpen connState = iota
	connReadEnded
	connClosing
	connClosingSent
	connEnding
	connEndingSent
	connLingering
	connClosed
)

var connStateNames = [...]string{"open", "readEnded", "closing", "closingSent", "ending", "endingSent", "lingering", "closed"}

func (s connState) String() string {
	if int(s) < len(connStateNames) {
		return connStateNames[s]
	}
	return "invalid"
}

// Bounds on how a connection ends.
const (
	// closeGrace is how long a sent close frame waits for the peer's close
	// frame, or for the kernel to take it from a peer that does not read.
	closeGrace = 3 * time.Second
	// lingerTime is how long a connection whose write side is shut down
	// reads and discards its peer's input, waiting for the end of stream.
	// Closing with unread input would make the kernel send a reset, which
	// can overtake the close frame: the peer would see 1006 instead of the
	// code it was sent.
	lingerTime = 3 * time.Second
	// lingerBytes bounds what the reader discards after the peer's input
	// is over: enough for a browser to finish sending a message of a few
	// megabytes that was refused from its header.
	lingerBytes = 8 << 20
)

// getState is the connection's current state.
func (c *client) getState() connState { return connState(c.state.Load()) }

// move makes the transition from → to if the connection is in from.
func (c *client) move(from, to connState) bool {
	return c.state.CompareAndSwap(uint32(from), uint32(to))
}

// linkable reports whether the worker may still link frames for c: its
// close frame is not linked yet. Called by the worker.
func (c *client) linkable() bool {
	s := c.getState()
	return s == connOpen || s == connReadEnded
}

// discarding reports whether the peer's input is over, so that the reader
// drops whatever else it sends.
func (s connState) discarding() bool {
	return s == connReadEnded || s == connEnding || s == connEndingSent || s == connLingering
}

// endReading is the reader's end of the peer's input: it broke the protocol
// (frame is the close frame that says how) or sent its close frame (frame
// answers it). The worker sends frame after what is queued for c already,
// unless a close frame of the server's is queued or sent: then that one
// stands and the connection lingers after it. Called by the reader.
func (c *client) endReading(frame []byte) {
	c.part = nil
	for {
		switch c.getState() {
		case connOpen:
			if c.move(connOpen, connReadEnded) {
				c.w.push(job{op: jobClose, c: c, frame: frame})
				// It takes no request from now on (message) and is sent
				// nothing after the close frame: out of its rooms now.
				c.w.hub.leaveRooms(c)
				return
			}
		case connClosing:
			if c.move(connClosing, connEnding) {
				return
			}
		case connClosingSent:
			if c.move(connClosingSent, connEndingSent) {
				c.lingerWhenWritten()
				return
			}
		default: // ended already, or closed
			return
		}
	}
}

// closeLinked records that the worker linked c's close frame, the last
// frame c gets. It reports false if a close frame was linked already or c
// is closed, and then frame must not be sent. Called by the worker.
func (c *client) closeLinked() bool {
	for {
		switch c.getState() {
		case connOpen:
			if c.move(connOpen, connClosing) {
				return true
			}
		case connReadEnded:
			if c.move(connReadEnded, connEnding) {
				return true
			}
		default:
			return false
		}
	}
}

// closeWritten runs once the worker has handed c's close frame to the
// socket. Called by the worker.
func (c *client) closeWritten() {
	for {
		switch c.getState() {
		case connClosing:
			if c.move(connClosing, connClosingSent) {
				// Wait for the peer's close frame, but not forever.
				_ = c.nbc.SetReadDeadline(time.Now().Add(closeGrace))
				return
			}
		case connEnding:
			if c.move(connEnding, connEndingSent) {
				_ = c.nbc.SetReadDeadline(time.Now().Add(closeGrace))
				c.lingerWhenWritten()
				return
			}
		default:
			return
		}
	}
}

// lingerWhenWritten starts the lingering close if the kernel has taken
// every byte; otherwise onWritten starts it when that happens. The state is
// stored before written is read here, and written is added before the state
// is read there, so one of the two sees the other's change.
func (c *client) lingerWhenWritten() {
	if c.pending() <= 0 && c.move(connEndingSent, connLingering) {
		c.linger()
	}
}

// onWritten is nbio's report that the kernel took n more bytes of c's.
// nbio calls it with the connection's lock held, so the lingering close,
// which takes that lock, starts elsewhere.
func (c *client) onWritten(n int) {
	w := c.written.Add(int64(n))
	if c.getState() == connEndingSent && w >= c.handed.Load() && c.move(connEndingSent, connLingering) {
		go c.linger()
	}
}

// linger shuts down the write side, so the peer reads the close frame and
// then the end of the stream, and gives it lingerTime to end its side; the
// reader discards its input meanwhile (Parse). It is what HTTP servers do
// before closing a connection with input still coming.
func (c *client) linger() {
	_ = c.nbc.SetReadDeadline(time.Now().Add(lingerTime))
	// Under nbio's lock, so the descriptor cannot have been closed (and
	// reused by another connection) between the check and the call.
	c.nbc.Lock()
	if closed, _ := c.nbc.IsClosed(); !closed {
		if rc, err := c.nbc.SyscallConn(); err == nil {
			_ = rc.Control(func(fd uintptr) { _ = syscall.Shutdown(int(fd), syscall.SHUT_WR) })
		}
	}
	c.nbc.Unlock()
}

// discard drops input that arrives after the peer's input is over, and
// closes the socket once more than lingerBytes came. Called by the reader.
func (c *client) discard(n int) {
	c.discarded += int64(n)
	if c.discarded > lingerBytes {
		_ = c.nbc.Close()
	}
}

// markClosed moves c to closed and reports whether it was not closed
// already. Called by CloseAndClean's disconnect, with c.mu held.
func (c *client) markClosed() bool {
	return connState(c.state.Swap(uint32(connClosed))) != connClosed
}
