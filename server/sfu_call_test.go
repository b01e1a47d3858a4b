package main

import (
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	pmedia "github.com/pion/webrtc/v4/pkg/media"
)

// Calls through the SFU, end to end: real pion peers as the pages, over
// the server's WebSocket signalling and its UDP port on loopback.

// rtcPeer is a pion peer that behaves as the page does with the SFU:
// joins the call, answers the server's offers, publishes audio and camera
// into the first offer's transceivers and counts what it receives, per
// publishing peer (the stream id) and track.
type rtcPeer struct {
	t        *testing.T
	ws       *wsConn
	room     string
	api      *webrtc.API
	pc       *webrtc.PeerConnection // replaced when the call moves: only read touches it
	sfuCalls int                    // call frames with sfu true seen

	audio, camera *webrtc.TrackLocalStaticSample
	offers        atomic.Int32

	mu      sync.Mutex
	got     map[string]*atomic.Int64 // "<publisher id>/<track id>" -> packets
	frames  chan msg                 // every other frame, for the test
	errs    []error
	stop    chan struct{}
	stopped sync.WaitGroup
}

// newRTCPeer connects a page-like peer to srv, in room, and joins the
// room and its call.
func newRTCPeer(t *testing.T, srv *server, room string) *rtcPeer {
	t.Helper()
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se))
	p := &rtcPeer{t: t, ws: dial(t, srv), room: room, api: api, got: map[string]*atomic.Int64{},
		frames: make(chan msg, 1024), stop: make(chan struct{})}
	p.audio, _ = webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "mine")
	p.camera, _ = webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "camera", "mine")
	if err := p.newPC(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.close)
	p.ws.join(room)
	p.ws.send(map[string]any{"type": "call", "room": room, "action": "join"})
	p.stopped.Add(2)
	go p.read()
	go p.publish()
	return p
}

// newPC makes the peer's connection to the SFU, as a page does for each
// call frame that says sfu (the first, and one per move of the call).
func (p *rtcPeer) newPC() error {
	pc, err := p.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return err
	}
	if p.pc != nil {
		_ = p.pc.Close()
	}
	p.pc = pc
	p.offers.Store(0)
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c != nil {
			init := c.ToJSON()
			p.signal(map[string]any{"kind": "ice", "candidate": init})
		}
	})
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		key := tr.StreamID() + "/" + tr.ID()
		p.mu.Lock()
		n := p.got[key]
		if n == nil {
			n = &atomic.Int64{}
			p.got[key] = n
		}
		p.mu.Unlock()
		go func() {
			for {
				if _, _, err := tr.ReadRTP(); err != nil {
					return
				}
				n.Add(1)
			}
		}()
	})
	return nil
}

// signal sends data to the SFU. Safe from pion's goroutines: net.Conn
// serialises whole writes.
func (p *rtcPeer) signal(data any) {
	b, _ := json.Marshal(map[string]any{"type": "signal", "room": p.room, "to": sfuPeerID, "data": data})
	_ = p.ws.writeFrame(opText, true, b)
}

func (p *rtcPeer) fail(err error) {
	p.mu.Lock()
	p.errs = append(p.errs, err)
	p.mu.Unlock()
}

// read handles the server's frames: the SFU's signals here, the rest to
// frames.
func (p *rtcPeer) read() {
	defer p.stopped.Done()
	for {
		f, err := p.ws.readFrame(time.Minute)
		if err != nil {
			return
		}
		if f.op != opText {
			continue
		}
		var m msg
		if json.Unmarshal(f.payload, &m) != nil {
			p.fail(fmt.Errorf("bad JSON %q", f.payload))
			continue
		}
		if m.str("type") == "call" && m["sfu"] == true {
			if p.sfuCalls++; p.sfuCalls > 1 { // the call moved: start over, as the page does
				if err := p.newPC(); err != nil {
					p.fail(err)
				}
			}
		}
		if m.str("type") == "signal" && m.str("from") == sfuPeerID {
			if err := p.onSignal(m["data"].(map[string]any)); err != nil {
				p.fail(err)
			}
			continue
		}
		select {
		case p.frames <- m:
		default:
		}
	}
}

func (p *rtcPeer) onSignal(d map[string]any) error {
	switch d["kind"] {
	case "offer":
		if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: d["sdp"].(string)}); err != nil {
			return err
		}
		if p.offers.Add(1) == 1 { // the first offer's transceivers: audio, camera, screen
			if _, err := p.pc.AddTrack(p.audio); err != nil {
				return err
			}
			if _, err := p.pc.AddTrack(p.camera); err != nil {
				return err
			}
		}
		ans, err := p.pc.CreateAnswer(nil)
		if err != nil {
			return err
		}
		if err := p.pc.SetLocalDescription(ans); err != nil {
			return err
		}
		p.signal(map[string]any{"kind": "answer", "sdp": ans.SDP})
	case "ice":
		b, _ := json.Marshal(d["candidate"])
		var c webrtc.ICECandidateInit
		if json.Unmarshal(b, &c) == nil && c.Candidate != "" {
			return p.pc.AddICECandidate(c)
		}
	}
	return nil
}

// publish sends synthetic media: a VP8 keyframe-flagged frame every 33 ms
// and 80 bytes of Opus every 20 ms (the SFU never decodes them).
func (p *rtcPeer) publish() {
	defer p.stopped.Done()
	frame := make([]byte, 1200)
	frame[0] = 0x10
	opus := make([]byte, 80)
	audio := time.NewTicker(20 * time.Millisecond)
	video := time.NewTicker(33 * time.Millisecond)
	defer audio.Stop()
	defer video.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-audio.C:
			_ = p.audio.WriteSample(pmedia.Sample{Data: opus, Duration: 20 * time.Millisecond})
		case <-video.C:
			_ = p.camera.WriteSample(pmedia.Sample{Data: frame, Duration: 33 * time.Millisecond})
		}
	}
}

// packets returns how many packets of publisher's track came.
func (p *rtcPeer) packets(publisher, track string) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := p.got[publisher+"/"+track]; n != nil {
		return n.Load()
	}
	return 0
}

// waitFrame waits for a frame of typ.
func (p *rtcPeer) waitFrame(typ string) msg {
	p.t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case m := <-p.frames:
			if m.str("type") == typ {
				return m
			}
		case <-deadline:
			p.t.Fatalf("no %s frame", typ)
		}
	}
}

func (p *rtcPeer) close() {
	select {
	case <-p.stop:
		return
	default:
	}
	close(p.stop)
	_ = p.ws.c.Close()
	p.stopped.Wait()
	_ = p.pc.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, err := range p.errs {
		p.t.Errorf("peer %s: %v", p.ws.id, err)
	}
}

// flowing waits until every peer receives audio and camera from every
// other peer.
func flowing(t *testing.T, peers []*rtcPeer) {
	t.Helper()
	eventually(t, 30*time.Second, "every track to reach every peer", func() bool {
		for _, p := range peers {
			for _, q := range peers {
				if p != q && (p.packets(q.ws.id, "audio") < 10 || p.packets(q.ws.id, "camera") < 10) {
					return false
				}
			}
		}
		return true
	})
}

// TestSFUCall: three peers (-sfu auto moves the call to the SFU at the
// third) each get the other two's audio and camera, with the publisher's
// id as stream id; a host's mute stops one peer's audio until it turns it
// on itself; a peer that leaves stops reaching the others.
func TestSFUCall(t *testing.T) {
	srv := startServer(t, nil)
	if srv.hub.sfu == nil {
		t.Fatal("no SFU")
	}
	host := newRTCPeer(t, srv, "sfu-room")
	b := newRTCPeer(t, srv, "sfu-room")
	c := newRTCPeer(t, srv, "sfu-room")
	for _, p := range []*rtcPeer{host, b, c} {
		for m := p.waitFrame("call"); m["sfu"] != true; m = p.waitFrame("call") {
		}
	}
	peers := []*rtcPeer{host, b, c}
	flowing(t, peers)

	// mute: b's audio stops at the server, its camera goes on.
	host.ws.send(map[string]any{"type": "mute", "room": "sfu-room", "id": b.ws.id})
	b.waitFrame("mute")
	// Measured against b's camera, which goes on: once it moved on (the
	// audio on its way before the mute has landed), b's audio stays put
	// while the camera moves on further.
	video := c.packets(b.ws.id, "camera")
	eventually(t, 10*time.Second, "b's camera to go on", func() bool { return c.packets(b.ws.id, "camera") > video+10 })
	audio, video := c.packets(b.ws.id, "audio"), c.packets(b.ws.id, "camera")
	eventually(t, 10*time.Second, "b's camera to go on", func() bool { return c.packets(b.ws.id, "camera") > video+30 })
	if got := c.packets(b.ws.id, "audio"); got > audio+1 {
		t.Fatalf("b's audio reached c while muted: %d packets after the mute", got-audio)
	}
	b.ws.send(map[string]any{"type": "media", "room": "sfu-room", "audio": true, "video": true, "screen": false})
	eventually(t, 10*time.Second, "b's audio to come back", func() bool { return c.packets(b.ws.id, "audio") > audio+20 })

	// b leaves the call: the others get call_peer leave, and its media stops.
	b.ws.send(map[string]any{"type": "call", "room": "sfu-room", "action": "leave"})
	for m := c.waitFrame("call_peer"); m.str("event") != "leave" || m.str("id") != b.ws.id; m = c.waitFrame("call_peer") {
	}
	// Measured against the host's camera, as above.
	hv := c.packets(host.ws.id, "camera")
	eventually(t, 10*time.Second, "the host's camera to go on", func() bool { return c.packets(host.ws.id, "camera") > hv+10 })
	left, hv := c.packets(b.ws.id, "camera"), c.packets(host.ws.id, "camera")
	eventually(t, 10*time.Second, "the host's camera to go on", func() bool { return c.packets(host.ws.id, "camera") > hv+30 })
	if got := c.packets(b.ws.id, "camera"); got > left+1 {
		t.Fatalf("b's camera still reaches c after it left: %d more packets", got-left)
	}
	if st := srv.hub.sfu.s.Stats(); st.Peers != 2 {
		t.Fatalf("SFU peers %d after a leave, want 2", st.Peers)
	}
}

// TestSFUSignalRules: only call peers of an SFU call signal "sfu".
func TestSFUSignalRules(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	a := dial(t, srv)
	a.join("r")
	a.send(map[string]any{"type": "signal", "room": "r", "to": "sfu", "data": map[string]any{"kind": "answer", "sdp": "x"}})
	a.expectError(errNotAllowed, "signal")
	a.send(map[string]any{"type": "call", "room": "r", "action": "join"})
	if m := a.expect("call"); m["sfu"] != nil {
		t.Fatalf("a call of one under -sfu auto: %v, want the mesh", m)
	}
	a.send(map[string]any{"type": "signal", "room": "r", "to": "sfu", "data": map[string]any{"kind": "answer", "sdp": "x"}})
	a.expectError(errNotAllowed, "signal")
	var cfg map[string]any
	_, body := httpGet(t, srv, "/api/config")
	if err := json.Unmarshal([]byte(body), &cfg); err != nil || cfg["sfu"] != "auto" || cfg["callLimit"] != float64(25) {
		t.Fatalf("/api/config %s", body)
	}
}

// TestClusterSFUCall: a call's media lives on the node of its first peer;
// peers on the other nodes reach it through signals relayed over NATS.
// When that peer leaves, the call moves to the next one's node and every
// peer connects there.
func TestClusterSFUCall(t *testing.T) {
	ns := testNATS(t, t.TempDir(), 0)
	nodes := startNodes(t, ns.ClientURL(), 3, func(c *Config) { c.Rate, c.Burst = 1000, 1000 })
	a := newRTCPeer(t, nodes[0], "media")
	a.waitFrame("call")
	b := newRTCPeer(t, nodes[1], "media")
	b.waitFrame("call")
	c := newRTCPeer(t, nodes[2], "media")
	for _, p := range []*rtcPeer{a, b, c} {
		for m := p.waitFrame("call"); m["sfu"] != true; m = p.waitFrame("call") {
		}
	}
	flowing(t, []*rtcPeer{a, b, c})
	if st := nodes[0].hub.sfu.s.Stats(); st.Peers != 3 {
		t.Fatalf("the first peer's node has %d SFU peers, want all 3", st.Peers)
	}
	if st := nodes[1].hub.sfu.s.Stats(); st.Peers != 0 {
		t.Fatalf("another node has %d SFU peers, want 0", st.Peers)
	}
	a.ws.send(map[string]any{"type": "call", "room": "media", "action": "leave"})
	for _, p := range []*rtcPeer{b, c} { // moved to b's node
		for m := p.waitFrame("call"); m["sfu"] != true; m = p.waitFrame("call") {
		}
	}
	eventually(t, 30*time.Second, "b and c to reach each other through b's node", func() bool {
		bb, cb := b.packets(c.ws.id, "camera"), c.packets(b.ws.id, "camera")
		return nodes[1].hub.sfu.s.Stats().Peers == 2 && bb > 0 && cb > 0 && nodes[0].hub.sfu.s.Stats().Peers == 0
	})
	cv := c.packets(b.ws.id, "camera")
	eventually(t, 30*time.Second, "media to flow through the new home", func() bool { return c.packets(b.ws.id, "camera") > cv+30 })
}
