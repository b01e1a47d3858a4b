// Package broker is the contract between the rooms of a noom node and
// whatever keeps their shared state: the per-room ordered publish (seq and
// epoch), the kept history and its pages, recovery after a seq, call lists
// (calls.go) and room settings (settings_cas.go). The hub calls it and
// never asks what is behind it.
//
// Local (local.go) is the standalone node's broker, durable by default: an
// embedded store (package store) in the -data directory. JetStream
// (jetstream.go) is the cluster's: one stream shared by every node, a
// subject per room, published by compare-and-set. It keeps messages and
// call lists (Messages, Calls); a cluster's settings are in its key-value
// bucket (KVSettings). Who is in which room on the other nodes is
// Membership (members.go): Alone standalone, NATSMembers in a cluster.
// A cluster node reads its rooms' messages and lists
// back from the stream to apply them, so that every node sees one order.
//
// The rules every implementation keeps (the contract tests check them):
//
//   - A room's messages are numbered 1, 2, 3... under one epoch, a name for
//     this lifetime of the room's sequence. Publish keeps a message under
//     the seq that follows the room's last one: a seq already taken is
//     refused (ErrSeq), or, where other writers share the room and the
//     caller lets it, the message is renumbered to the next free one.
//   - done is called once a message is kept for good (durable), in publish
//     order per room, and only then may anyone receive it. A refused or
//     failed publish is not kept, and the room's next seq is its last
//     kept one + 1 again.
//   - A room that empties keeps its seq, epoch and history; Room reports
//     them to whoever loads it next, on this process or after a restart on
//     the same data. The epoch changes only when the kept sequence is
//     really lost.
//   - History, newest first in pages, oldest first within a page; Since
//     reports whether every message after a seq is still kept.
//   - A call list is replaced only from the version it is at (Calls):
//     every change is decided on the newest list, so a limit checked on
//     it holds across nodes, and no change is lost to another.
//   - A room's settings are created once and then changed only from the
//     version they are at (Settings); a change returns once durable.
package broker

import (
	"errors"
	"time"
)

// Message is one chat message as rooms keep it: its seq, its server time
// (Unix ms) and the msg frame's JSON payload exactly as broadcast, so that
// history and recovery cost no encoding. Payloads handed out are shared:
// read-only.
type Message struct {
	Seq     uint64
	TS      int64
	Payload []byte
}

// Kept is a message as a broker kept it: its seq and payload (as given
// or renumbered) and the lifetime it is in.
type Kept struct {
	Message
	Epoch string
}

// RoomState is what a room starts from when it is loaded into memory.
type RoomState struct {
	// Epoch names this lifetime of the room's sequence.
	Epoch string
	// Seq is the room's last kept seq, 0 for a room with none yet.
	Seq uint64
	// Recent are its newest kept messages, oldest first.
	Recent []Message
	// Known is false for a room the broker had no trace of: Epoch is new.
	Known bool
	// Mark is where the room stood in the broker's order when it was
	// read: the stream sequence of its last message (JetStream), which a
	// node that follows the stream compares what it reads meanwhile with;
	// 0 where the room has no other writer (Local).
	Mark uint64
}

// Messages is the contract's part about messages: what every broker does,
// the standalone node's (Local) and the cluster's (JetStream). Its methods
// are safe for concurrent use; none blocks for long except Close.
type Messages interface {
	// Room returns room's kept state with at most recent newest messages.
	// A room it does not know gets a new epoch and seq 0.
	Room(room string, recent int) (RoomState, error)
	// Publish keeps m as the room's next message. epoch is the room's,
	// from Room, and m.Seq follows the last seq its caller knows of. A
	// broker that is the room's only writer (Local) refuses any other seq
	// than the one that follows the room's last (ErrSeq). One that shares
	// the room with other writers (JetStream) finds m.Seq taken when
	// another got there first: then, if renumber is set, it keeps m as the
	// message after the room's last, in whatever lifetime the room is in
	// now, with the payload renumber returns for that seq (else ErrSeq).
	// done is called once m is durable, with m as kept (Kept), or with the
	// error that lost it, in publish order per room, never on the
	// caller's goroutine. An error returned instead means m was refused at
	// once (ErrBusy: retry later) and done is not called.
	Publish(room, epoch string, m Message, renumber func(seq uint64) []byte, done func(Kept, error)) error
	// History returns up to limit kept messages with seq < before (the
	// newest ones for before 0), oldest first, and whether older ones are
	// kept.
	History(room string, before uint64, limit int) (msgs []Message, more bool, err error)
	// HistoryIn is History within the lifetime epoch: nothing if the room
	// is in another, as for a room in memory that has not seen a new
	// lifetime yet (its members must not get another lifetime's messages
	// under their epoch); "" for whichever it is in.
	HistoryIn(room, epoch string, before uint64, limit int) (msgs []Message, more bool, err error)
	// Since returns the kept messages after seq, oldest first, if there
	// are at most limit and none of them is lost; otherwise complete is
	// false and msgs nil.
	Since(room string, seq uint64, limit int) (msgs []Message, complete bool, err error)
	// Expire drops messages past the retention period or the per-room
	// count, and forgets rooms that have had nothing kept for idle unless
	// inUse says the room is loaded (its seq lives on in memory). A broker
	// whose store applies its retention itself (JetStream) does nothing.
	Expire(now time.Time, idle time.Duration, inUse func(room string) bool) (removed int, err error)
	// Close keeps what was published (calling each done) and releases the
	// broker.
	Close() error
}

// Broker keeps the rooms' messages, call lists and settings: the
// standalone node's (whose Membership is Alone).
type Broker interface {
	Messages
	Calls
	Settings
}

// Errors of the contract; implementations wrap them with detail.
var (
	// ErrBusy: the broker cannot take a publish right now. Nothing was
	// kept; the client may retry (error code unavailable).
	ErrBusy = errors.New("broker: busy")
	// ErrSeq: a publish whose seq does not follow the room's last.
	ErrSeq = errors.New("broker: out-of-sequence publish")
)
