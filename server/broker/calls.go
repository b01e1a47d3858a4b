package broker

import (
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"time"
)

// Calls is the contract's part about call lists: who is in each room's
// video call, in join order, and whether its media go through the SFU.
// A list is replaced whole, by compare-and-set on its version, so that the
// call limit, which the caller checks on the list it replaces, holds
// across every node that shares the lists: of two joins that both saw the
// last free place, one is stored and the other gets ErrSeq and the newer
// list, on which it is refused.
//
// Call lists are live state, not history: the standalone node keeps them in
// memory (after a restart nobody is in a call), the cluster in its stream,
// where every node reads them back in order. Methods are safe for
// concurrent use; JetStream's wait for the NATS server (never call them on
// an event loop).
type Calls interface {
	// Call returns room's newest list (Version 0 and no peers for a room
	// without one).
	Call(room string) (Call, error)
	// SetCall replaces room's list by peers and sfu if its version is
	// still version, and returns the list stored with its new version. If
	// another change came first it returns ErrSeq with the newest list, if
	// it could read it (Version 0 otherwise). ErrOffline: the store is out
	// of reach, and the change may or may not have been kept.
	SetCall(room string, version uint64, peers []Peer, sfu bool) (Call, error)
}

// Peer is one peer of a call as kept: its connection id (in a cluster it
// starts with its node's name, "node-…") and nick.
type Peer struct {
	ID   string `json:"id"`
	Nick string `json:"nick"`
}

// Call is a room's call list. Version grows with every change stored (any
// room's, in one sequence), so a node that applies lists as they come can
// tell an older one from a newer one.
type Call struct {
	Peers   []Peer
	SFU     bool
	Version uint64
}

// Change stores change's answer to room's list, starting from cur (what
// the caller has applied, possibly behind), until it is stored or patience
// runs out: on ErrSeq it calls change again on the newest list. change
// returns the next peers and media mode, or keep true to leave the list
// as it is (a join refused by the call limit, nothing to change); when a
// keep is answered on a list that may be stale (a refusal), recheck true
// asks for the newest list once and asks change again. stored reports
// whether a new list was kept; final is the list the answer was decided
// on.
func Change(c Calls, room string, cur Call, patience time.Duration,
	change func(cur Call) (peers []Peer, sfu, keep, recheck bool)) (final Call, stored bool, retries int, err error) {
	checked := false
	for deadline := time.Now().Add(patience); ; {
		peers, sfu, keep, recheck := change(cur)
		if keep && recheck && !checked {
			checked = true
			if newest, err := c.Call(room); err == nil && newest.Version > cur.Version {
				cur = newest
				continue
			}
		}
		if keep {
			return cur, false, retries, nil
		}
		next, err := c.SetCall(room, cur.Version, peers, sfu)
		switch {
		case err == nil:
			return next, true, retries, nil
		case !errors.Is(err, ErrSeq):
			return cur, false, retries, err
		}
		retries++
		if next.Version > cur.Version {
			cur = next
		} else if newest, rerr := c.Call(room); rerr == nil {
			cur = newest
		} else {
			return cur, false, retries, rerr
		}
		if time.Now().After(deadline) {
			return cur, false, retries, err
		}
	}
}

// callRecord is a call list as stored: its peers, and whether its media go
// through the SFU. Lists stored before the SFU existed are a bare array.
type callRecord struct {
	Peers []Peer `json:"p"`
	SFU   bool   `json:"sfu,omitempty"`
}

// encodeCall is the stored form of a list.
func encodeCall(peers []Peer, sfu bool) []byte {
	if peers == nil {
		peers = []Peer{}
	}
	b, _ := json.Marshal(callRecord{peers, sfu})
	return b
}

// DecodeCall reads a list stored at version; a record it cannot read is
// an empty list (the next change replaces it).
func DecodeCall(b []byte, version uint64) Call {
	var rec callRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		rec = callRecord{}
		if json.Unmarshal(b, &rec.Peers) != nil {
			rec.Peers = nil
		}
	}
	return Call{Peers: rec.Peers, SFU: rec.SFU, Version: version}
}

// MemCalls keeps call lists in memory: the standalone node's (Local embeds
// one). An empty list is forgotten, so memory holds only the calls going
// on; versions come from one counter, so a list created again after that
// is still newer than any before it.
type MemCalls struct {
	mu      sync.Mutex // guards lists and version
	lists   map[string]Call
	version uint64
}

// NewMemCalls returns an empty MemCalls.
func NewMemCalls() *MemCalls { return &MemCalls{lists: make(map[string]Call)} }

// Call implements Calls.
func (m *MemCalls) Call(room string) (Call, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lists[room], nil
}

// SetCall implements Calls.
func (m *MemCalls) SetCall(room string, version uint64, peers []Peer, sfu bool) (Call, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.lists[room]
	if cur.Version != version {
		return cur, ErrSeq
	}
	m.version++
	next := Call{Peers: slices.Clone(peers), SFU: sfu, Version: m.version}
	if len(peers) == 0 {
		delete(m.lists, room)
		next.SFU = false
	} else {
		m.lists[room] = next
	}
	return next, nil
}
