package main

import (
	"errors"
	"net"
	"sync"
	"syscall"

	"github.com/pion/webrtc/v4"

	"noom/server/sfu"
)

// Calls through the server's selective forwarding unit (server/sfu;
// PROTOCOL.md, "Calls: who may signal whom"). With -sfu auto a call starts
// as a mesh and moves to the SFU when a third peer joins; with -sfu on it
// starts there. It stays on the SFU until it empties, rather than moving
// back and forth as peers come and go. Moving a running call sends every
// peer a new call frame (sfu: true) and the SFU's offer; the pages close
// their mesh connections and answer it.
//
// Every use of a pion peer goes through one goroutine (sfuGlue.run), in
// the order the hub queued it under the room's lock: a join is answered by
// the SFU's offer before any signal of the peer's reaches it, and a leave
// comes after. pion's calls take milliseconds (a peer connection, a remote
// description), which must not run on the event loop nor under a room's
// lock.

// SFU modes (-sfu).
const (
	sfuAuto = "auto"
	sfuOn   = "on"
	sfuOff  = "off"
	// defaultRTCUDP is -rtc-udp's default. Left at it, the SFU is optional
	// (as the admin listener is): a second server on the machine starts
	// with mesh calls and a warning instead of failing.
	defaultRTCUDP = ":7882"
	// sfuPeerID is the reserved peer id of the server's side of a call.
	sfuPeerID = "sfu"
	// sfuQueue bounds the operations waiting for the SFU goroutine.
	sfuQueue = 8192
)

// sfuGlue connects the hub's calls to the SFU.
type sfuGlue struct {
	h    *hub
	s    *sfu.SFU
	q    chan sfuOp
	done chan struct{}
	// peers are the SFU's peers by room and connection id; only run
	// touches it.
	peers map[sfuKey]*sfu.Peer

	mu     sync.Mutex // guards closed, and q's closing against push
	closed bool
}

type sfuKey struct{ room, id string }

// sfuOp is one queued operation on a pion peer.
type sfuOp struct {
	kind  sfuOpKind
	room  string
	id    string
	c     *client   // join: where its signals go; signal: who to answer (nil: on another node)
	data  []byte    // signal
	muted bool      // mute
	seq   uint64    // join: the call list's stream sequence, for relayed signals
	peer  *sfu.Peer // gone: the peer the SFU dropped
}

type sfuOpKind uint8

const (
	sfuJoin sfuOpKind = iota
	sfuLeave
	sfuSignal
	sfuMute
	sfuGone // the SFU dropped a peer by itself (its ICE failed, it never answered)
)

// startSFU opens the SFU's port unless -sfu off. A default port that is taken leaves the SFU
// off with a warning; an explicit one must bind.
func (s *server) startSFU() error {
	cfg := &s.cfg
	if cfg.SFU == sfuOff {
		return nil
	}
	ice := make([]webrtc.ICEServer, 0, len(cfg.ICEServers))
	for _, is := range cfg.ICEServers {
		ice = append(ice, webrtc.ICEServer{URLs: is.URLs, Username: is.Username, Credential: is.Credential})
	}
	sf, err := sfu.New(sfu.Config{
		UDPAddr:    cfg.RTCUDP,
		TCPAddr:    cfg.RTCTCP,
		PublicIPs:  cfg.RTCPublicIPs,
		ICEServers: ice,
		Loopback:   isLoopbackAddr(cfg.RTCUDP) || len(cfg.RTCPublicIPs) == 0 && isLoopbackAddr(cfg.Addr),
		Log:        s.log.With("component", "sfu"),
	})
	if err != nil {
		if cfg.RTCUDP == defaultRTCUDP && errors.Is(err, syscall.EADDRINUSE) {
			s.log.Warn("SFU off: its default UDP port is taken; calls are a mesh of at most 6 (give each server its own -rtc-udp)",
				"addr", cfg.RTCUDP, "err", err)
			if cfg.CallLimit > 6 {
				cfg.CallLimit = 6
			}
			return nil
		}
		return err
	}
	g := &sfuGlue{h: s.hub, s: sf, q: make(chan sfuOp, sfuQueue), done: make(chan struct{}), peers: make(map[sfuKey]*sfu.Peer)}
	s.hub.sfu = g
	s.hub.sfuLive.Store(sf)
	go g.run()
	s.log.Info("SFU listening", "udp", sf.UDPAddr().String(), "tcp", cfg.RTCTCP, "public", cfg.RTCPublicIPs, "mode", cfg.SFU)
	return nil
}

// isLoopbackAddr reports whether addr ("host:port") is on a loopback IP.
func isLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// stopSFU closes every peer and the port.
func (s *server) stopSFU() {
	g := s.hub.sfu
	if g == nil {
		return
	}
	g.mu.Lock()
	g.closed = true
	close(g.q)
	g.mu.Unlock()
	<-g.done
	if err := g.s.Close(); err != nil {
		s.log.Warn("SFU close", "err", err)
	}
}

// push queues op. A full queue drops it and says so: the peer's page sees
// its call fail and can join again; the event loop must not wait.
func (g *sfuGlue) push(op sfuOp) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	select {
	case g.q <- op:
		return true
	default:
		g.h.log.Warn("SFU queue full: a call operation was dropped", "room", op.room, "peer", op.id)
		return false
	}
}

func (g *sfuGlue) run() {
	defer close(g.done)
	for op := range g.q {
		k := sfuKey{op.room, op.id}
		switch op.kind {
		case sfuJoin:
			if old := g.peers[k]; old != nil { // joined again: a fresh connection
				old.Leave()
			}
			room, c, id, seq := op.room, op.c, op.id, op.seq
			call := g.s.Call(room, func(ids []string) { g.h.speakers(room, ids, true) })
			send := func(data []byte) { c.send(encodeSignal(room, sfuPeerID, sfuPeerID, data)) }
			if c == nil { // a peer on another node: its signals go through NATS
				send = func(data []byte) {
					g.h.relaySignal(nodeOf(id), signalRelay{Room: room, To: id, From: sfuPeerID, Nick: sfuPeerID, Data: data, CallSeq: seq})
				}
			}
			p, err := call.Join(op.id, send)
			if err != nil {
				g.h.log.Warn("SFU join", "room", room, "peer", op.id, "err", err)
				if c != nil {
					c.replyError(errUnavailable, "the call's media could not be set up; join the call again", "call")
				}
				continue
			}
			g.peers[k] = p
			go func() { // the SFU may drop it by itself: take it out of the call then
				<-p.Done()
				g.push(sfuOp{kind: sfuGone, room: room, id: id, peer: p})
			}()
		case sfuGone:
			if g.peers[k] == op.peer { // not left through the hub
				delete(g.peers, k)
				g.h.sfuDropped(op.room, op.id)
			}
		case sfuLeave:
			if p := g.peers[k]; p != nil {
				delete(g.peers, k)
				p.Leave()
			}
		case sfuSignal:
			p := g.peers[k]
			var err error
			switch {
			case p == nil:
				err = errors.New("no media connection to the SFU in room " + op.room + "; join the call")
			default:
				if err = p.Signal(op.data); errors.Is(err, sfu.ErrClosed) {
					err = nil
				}
			}
			switch {
			case err == nil:
			case op.c != nil:
				op.c.replyError(errBadField, "signal for the SFU: "+err.Error(), "signal")
			default:
				g.h.log.Debug("relayed signal for the SFU", "room", op.room, "peer", op.id, "err", err)
			}
		case sfuMute:
			if p := g.peers[k]; p != nil {
				p.SetAudioMuted(op.muted)
			}
		}
	}
	for _, p := range g.peers {
		p.Leave()
	}
}

// sfuWanted reports whether a call of n peers goes through the SFU.
func (h *hub) sfuWanted(n int) bool {
	return h.sfu != nil && (h.cfg.SFU == sfuOn || n > 2)
}

// sfuHome is the node whose SFU carries a call's media: the node of its
// first peer, the one in it longest ("" standalone, where ids name no
// node). Every node computes the same from the same list.
func sfuHome(call []callPeer) string {
	if len(call) == 0 {
		return ""
	}
	return nodeOf(call[0].id)
}

// thisNode is this node's name in a cluster, "" standalone.
func (h *hub) thisNode() string { return h.node }

// sfuSetCall brings the SFU in step with r's call going from prev (through
// the SFU if prevSFU) to r.call (if r.sfu): the call moves to the SFU, or
// to another node's SFU when its first peer left, and every local peer
// but answered, whose call reply said so already, gets a new call frame;
// this node's SFU, if it is the call's home, gets a pion peer for each
// peer that joined (on any node) and drops those that left. The shard
// lock must be held.
func (h *hub) sfuSetCall(r *room, prev []callPeer, prevSFU bool, answered string) {
	me := h.thisNode()
	prevHome, home := sfuHome(prev), sfuHome(r.call)
	moving := r.sfu && (!prevSFU || home != prevHome)
	if h.sfu != nil && prevSFU && prevHome == me {
		for _, p := range prev {
			if !r.sfu || home != me || indexPeer(r.call, p.id) < 0 {
				h.sfu.push(sfuOp{kind: sfuLeave, room: r.name, id: p.id})
			}
		}
	}
	if !r.sfu {
		return
	}
	if moving {
		for _, p := range r.call {
			if p.c != nil && p.id != answered {
				p.c.send(encodeCall(r.name, r.call, p.id, true))
			}
		}
	}
	if h.sfu == nil || home != me {
		return
	}
	for _, p := range r.call {
		if !moving && prevHome == me && indexPeer(prev, p.id) >= 0 {
			continue
		}
		h.sfu.push(sfuOp{kind: sfuJoin, room: r.name, id: p.id, c: p.c, seq: r.callVersion})
		if p.muted {
			h.sfu.push(sfuOp{kind: sfuMute, room: r.name, id: p.id, muted: true})
		}
	}
}

// sfuDropped takes peer id out of room's call: the SFU dropped its media
// connection (ICE failed, or it never answered an offer). On another node
// the peer's own node does it.
func (h *hub) sfuDropped(room, id string) {
	if node := nodeOf(id); node != h.thisNode() {
		h.command(room, roomCmd{Op: "sfudrop", Node: node, ID: id})
		return
	}
	if c := h.lookup(id); c != nil {
		c.replyError(errUnavailable, "the call's media connection failed; join the call again", "call")
		h.callAction(c, room, "leave")
	}
}

// sfuSignal passes a signal from call peer c to the SFU of the call's
// home: here, or through NATS on another node.
func (h *hub) sfuSignal(c *client, r *room, data []byte) {
	sh := h.shardOf(r.name)
	sh.mu.Lock()
	ok := r.sfu && indexPeer(r.call, c.idStr) >= 0
	home, seq := sfuHome(r.call), r.callVersion
	sh.mu.Unlock()
	switch {
	case !ok:
		c.replyError(errNotAllowed, "the call in room "+r.name+" does not go through the server", "signal")
	case home != h.thisNode():
		if !h.relaySignal(home, signalRelay{Room: r.name, To: sfuPeerID, From: c.idStr, Nick: c.nickname(), Data: data, CallSeq: seq}) {
			c.replyError(errUnavailable, "the signal could not reach the call's node; try again", "signal")
		}
	case h.sfu == nil:
		c.replyError(errNotAllowed, "this server forwards no media", "signal")
	case !h.sfu.push(sfuOp{kind: sfuSignal, room: r.name, id: c.idStr, c: c, data: data}):
		c.replyError(errUnavailable, "the server is busy; try again", "signal")
	}
}

// speakers tells room's local call peers who speaks, loudest first, and
// with tell, the other nodes' (cluster_meetings.go).
func (h *hub) speakers(room string, ids []string, tell bool) {
	if tell {
		h.command(room, roomCmd{Op: "speakers", IDs: ids})
	}
	sh := h.shardOf(room)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r := sh.rooms[room]
	if r == nil {
		return
	}
	frame := encodeSpeakers(room, ids)
	for _, p := range r.call {
		if p.c != nil {
			p.c.send(frame)
		}
	}
}

func encodeSpeakers(room string, ids []string) []byte {
	b := startObject(newFrame(48+len(room)+len(ids)*16), "speakers")
	b = appendStrField(b, "room", room)
	b = append(appendKey(b, "ids"), '[')
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, id)
	}
	return frameOf(append(b, ']', '}'))
}
