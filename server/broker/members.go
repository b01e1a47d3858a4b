package broker

import "time"

// Membership across nodes: who is in which room on the other nodes, the
// contract's last part. A node tells its Membership about its own
// members (Joined, Left, Renamed, Role); the Membership tells the node's
// View about every other node's, in that node's order, and when a node is
// gone. It also carries what one node asks of another: a host's command
// about a room (Command) and a call signal for a peer on another node
// (Relay). Both are opaque here: the hub's JSON.
//
// The rules every implementation keeps (members_test.go checks them):
//
//   - A node's own members are never reported back to it.
//   - Another node's changes reach the View in the order that node made
//     them. One that is missed (a gap in its numbers, a node first heard
//     of) is made good by a snapshot of that node's members (Replace),
//     which the changes made after it follow.
//   - A node that says goodbye (Close), or is not heard from for its dead
//     time, is Gone: its members leave every room.
//   - No method waits on the network: callers hold room locks on the
//     event loop. What cannot be sent is dropped, and the loss shows up
//     as a gap on the other nodes.
//
// Alone is the standalone node's: there is nobody else to tell.
// NATSMembers (members_nats.go) is the cluster's.

// Member is one member of a room.
type Member struct {
	Room, ID, Nick string
	// Role is the member's role in the room (the hub's names); "" in a
	// View's Join for a rename, which keeps the role.
	Role string
}

// Membership is what a node tells about its own members and asks of the
// others. Its methods are safe for concurrent use.
type Membership interface {
	// Joined: local member m joined m.Room, with its role.
	Joined(m Member)
	// Left: local member id left room.
	Left(room, id string)
	// Renamed: local member id, in rooms, is now nick.
	Renamed(id, nick string, rooms []string)
	// Role: local member id has role in room now.
	Role(room, id, role string)
	// Command sends a request about room to every other node (the hub's
	// JSON, which names the node it is for, if one).
	Command(room string, cmd []byte)
	// Relay sends data to node (the hub's JSON: a call signal); false if
	// it could not be sent.
	Relay(node string, data []byte) bool
	// Live reports whether node is another node heard from recently.
	Live(node string) bool
	// Nodes lists the other nodes heard from recently, sorted.
	Nodes() []string
	// Close says goodbye, waiting at most wait for it to be sent; later
	// changes are dropped.
	Close(wait time.Duration)
}

// View is the node's side: what its Membership tells it of the other
// nodes. Its methods are called on the Membership's goroutines, each
// node's changes in order. Replace, and the changes that waited for it,
// are called with the Membership's node lock held (so that no later
// change overtakes them): a View must not call Live or Nodes from them,
// nor hold a lock that a caller of Live or Nodes holds.
type View interface {
	// Join: member m of node joined m.Room, or changed its nick there
	// (Role "": a rename keeps the role).
	Join(node string, m Member)
	// Leave: member id of node left room.
	Leave(node, room, id string)
	// Role: member id of node has role in room now.
	Role(node, room, id, role string)
	// Command: node sent a request about room.
	Command(node, room string, cmd []byte)
	// Signal: a relayed signal for a member of this node.
	Signal(data []byte)
	// Replace: members are all that node has now.
	Replace(node string, members []Member)
	// Gone: node left or fell silent; its members leave every room.
	Gone(node string)
	// Local lists this node's own members, for a snapshot another node
	// asked for.
	Local() []Member
}

// Alone is the Membership of a node that is the only one: there is
// nobody to tell, and no other node is ever live.
type Alone struct{}

// Joined does nothing: no other node.
func (Alone) Joined(Member) {}

// Left does nothing: no other node.
func (Alone) Left(string, string) {}

// Renamed does nothing: no other node.
func (Alone) Renamed(string, string, []string) {}

// Role does nothing: no other node.
func (Alone) Role(string, string, string) {}

// Command does nothing: no other node.
func (Alone) Command(string, []byte) {}

// Relay reports false: no node to relay to.
func (Alone) Relay(string, []byte) bool { return false }

// Live reports false: no other node.
func (Alone) Live(string) bool { return false }

// Nodes is empty: no other node.
func (Alone) Nodes() []string { return nil }

// Close does nothing.
func (Alone) Close(time.Duration) {}
