package sfu

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

// Call is one room's call: its peers and the tracks they publish. Every
// published track is forwarded to every other peer of the call.
type Call struct {
	sfu        *SFU
	id         string
	onSpeakers func(ids []string)

	// mu guards peers, tracks, removed and stop. Lock order: SFU.mu, then
	// Call.mu; Peer.negMu is taken before Call.mu (a negotiation reads
	// the track list), never after.
	mu      sync.Mutex
	peers   map[string]*Peer
	tracks  []*upTrack // published tracks, in order of arrival
	removed bool       // not in sfu.calls: no peers left, or the SFU closed
	stop    chan struct{}
}

// Join adds the peer peerID to the call and starts negotiating with it:
// after a short debounce, the server sends its first offer through send.
// A peer already joined under that id is left first (a page that
// reconnects replaces its old peer connection).
//
// send is called from pion's and the SFU's goroutines, never with a lock
// of the SFU held, with the JSON data of a signal frame from "sfu" to the
// peer; calls for one peer are never concurrent and come in order (an
// offer before its candidates). It must not block for long: the caller
// only enqueues.
func (c *Call) Join(peerID string, send func(data []byte)) (*Peer, error) {
	if old := c.peer(peerID); old != nil {
		old.Leave()
	}
	p, err := newPeer(c, peerID, send)
	if err != nil {
		return nil, err
	}

	s := c.sfu
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		p.closePC()
		return nil, ErrClosed
	}
	if c.removed {
		if cur := s.calls[c.id]; cur != nil {
			// Another *Call took the name after this one emptied.
			s.mu.Unlock()
			p.closePC()
			return cur.Join(peerID, send)
		}
		s.addCallLocked(c)
	}
	c.mu.Lock()
	old := c.peers[peerID]
	c.peers[peerID] = p
	c.mu.Unlock()
	s.mu.Unlock()
	if old != nil { // joined concurrently under the same id
		old.leave(true)
	}
	s.stats.peers.Add(1)
	p.schedule()
	return p, nil
}

// peer returns the peer joined as id, or nil.
func (c *Call) peer(id string) *Peer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peers[id]
}

// publish adds a track that p started sending and has every other peer
// renegotiate to receive it. False if p has left meanwhile.
func (c *Call) publish(p *Peer, t *upTrack) bool {
	c.mu.Lock()
	if c.peers[p.id] != p {
		c.mu.Unlock()
		return false
	}
	c.tracks = append(c.tracks, t)
	others := c.othersLocked(p)
	c.mu.Unlock()
	c.sfu.stats.published.Add(1)
	for _, o := range others {
		o.schedule()
	}
	return true
}

// unpublish removes a track (its publisher stopped or left) and has the
// others renegotiate it away.
func (c *Call) unpublish(t *upTrack) {
	c.mu.Lock()
	i := slices.Index(c.tracks, t)
	if i < 0 {
		c.mu.Unlock()
		return
	}
	c.tracks = slices.Delete(c.tracks, i, i+1)
	others := c.othersLocked(t.pub)
	c.mu.Unlock()
	c.sfu.stats.published.Add(-1)
	for _, o := range others {
		o.schedule()
	}
}

// remove takes p out of the call with its tracks, has the others
// renegotiate, and drops the call if p was the last peer. False if p was
// not (or no longer) in the call.
func (c *Call) remove(p *Peer) bool {
	c.mu.Lock()
	if c.peers[p.id] != p {
		c.mu.Unlock()
		return false
	}
	delete(c.peers, p.id)
	n := len(c.tracks)
	c.tracks = slices.DeleteFunc(c.tracks, func(t *upTrack) bool { return t.pub == p })
	gone := n - len(c.tracks)
	others := c.othersLocked(p)
	empty := len(c.peers) == 0
	c.mu.Unlock()

	c.sfu.stats.peers.Add(-1)
	c.sfu.stats.published.Add(int64(-gone))
	for _, o := range others {
		o.schedule()
	}
	if empty {
		c.sfu.removeCall(c)
	}
	return true
}

// othersLocked lists the peers but p. c.mu must be held.
func (c *Call) othersLocked(p *Peer) []*Peer {
	others := make([]*Peer, 0, len(c.peers))
	for _, o := range c.peers {
		if o != p {
			others = append(others, o)
		}
	}
	return others
}

// tracksFor lists the tracks peer p should receive: everyone's but its
// own.
func (c *Call) tracksFor(p *Peer) []*upTrack {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.peers[p.id] != p {
		return nil
	}
	ts := make([]*upTrack, 0, len(c.tracks))
	for _, t := range c.tracks {
		if t.pub != p {
			ts = append(ts, t)
		}
	}
	return ts
}

// String names the call in logs.
func (c *Call) String() string { return fmt.Sprintf("call %q", c.id) }

// speakerInterval is the window over which audio levels are judged, and
// how often onSpeakers may be called (LiveKit's UpdateInterval).
const speakerInterval = 400 * time.Millisecond

// speakers runs for the call's life: every speakerInterval it ranks the
// peers whose audio was active and calls onSpeakers if the list changed.
func (c *Call) speakers(stop <-chan struct{}) {
	defer c.sfu.wg.Done()
	tick := time.NewTicker(speakerInterval)
	defer tick.Stop()
	var last []string
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		c.mu.Lock()
		var ranked []speaker
		for _, t := range c.tracks {
			if t.kind != webrtc.RTPCodecTypeAudio {
				continue
			}
			level, ok := t.level.window()
			if ok && !t.pub.audioMuted.Load() {
				ranked = append(ranked, speaker{id: t.pub.id, level: level})
			}
		}
		c.mu.Unlock()
		ids := rank(ranked)
		if !slices.Equal(ids, last) && c.onSpeakers != nil {
			c.onSpeakers(ids)
		}
		last = ids
	}
}
