package main

import "noom/server/broker"

// Rooms in and out of memory, in a cluster. The stream keeps every room's
// messages, so a node keeps a room in memory only while someone is in it
// (here or on another node) or it has a call: then it follows the room's
// messages, membership and call list. A room nobody is in leaves memory on
// every node (dropIfEmpty), whatever it said; otherwise a node's memory
// would grow with every room ever spoken in.
//
// A room is loaded once its message state (seq, epoch, history, the last
// stream sequence) is read from the stream, which a node needs as soon as
// one of its own connections joins the room. A room in memory for other
// nodes' members or a call only is not: the consumer skips its messages.
// The first local join of a room that is not loaded queues a load
// (load.go, as on a standalone node), which reads the subject's last
// messages and the room's settings; the joins wait for it outside the
// room (gated) and are checked against the settings once it is done. So a
// local member is always in a loaded room. Messages the consumer reads
// while a load is on its way are kept aside (early); those newer than
// what the load read (its Mark, a stream sequence) follow it.

// A room's lifetime. A room's seq lives in the stream only, so when
// retention has taken every message of a room, its sequence is lost (the
// node that happens to remember it in memory cannot vouch for the others,
// which may have started since): the room starts over, seq 1, under a new
// epoch, named alike on every node by a start marker that one of them
// stores (broker.JetStream). A node that reads a message of another epoch
// than its room's tells the room's members with a joined frame, and the
// room goes on from that message.

// streamMsg is one message of a room as the stream holds it, with its
// stream sequence: seq 0 is a lifetime's start marker.
type streamMsg = broker.StreamMsg
