package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// A call peer behaves as noom's page does in a call through the SFU
// (server/sfu/doc.go): a WebSocket client that joins the room, then its
// call, and answers every offer the server sends from peer id "sfu" with
// one pion peer connection. It publishes into the first offer's
// transceivers (addTrack audio, then camera, which take mids 0 and 1) and
// counts what it receives on the others. Media is synthetic and never
// decoded: a 1,200-byte VP8 "frame" (first byte 0x10, a keyframe's) every
// 33 ms, two RTP packets at pion's 1,200-byte MTU, and an 80-byte Opus
// packet every 20 ms with an RFC 6464 level.
//
// Unlike the chat clients (client.go) a call peer has goroutines of its
// own, a reader for its WebSocket among them: a call has at most a few
// dozen peers, and pion runs several goroutines per connection anyway.

// Synthetic media of a call peer.
const (
	callFrameEvery = 33 * time.Millisecond
	callFrameSize  = 1200
	callAudioEvery = 20 * time.Millisecond
	callAudioSize  = 80
	callMTU        = 1200 // pion's own outbound MTU
	callSFUPeer    = "sfu"
)

// Call peer states.
const (
	cpDialing int32 = iota // connecting, joining the room, then the call
	cpInCall               // the server answered `call` with sfu:true
	cpFailed
)

// callSignal is the data of a signal frame to or from the SFU.
type callSignal struct {
	Kind      string                   `json:"kind"`
	SDP       string                   `json:"sdp,omitempty"`
	Candidate *webrtc.ICECandidateInit `json:"candidate,omitempty"`
	Tracks    map[string]struct {
		ID    string `json:"id"`
		Media string `json:"media"`
	} `json:"tracks,omitempty"`
}

// callFrame is the part of the server's frames a call peer reads.
type callFrame struct {
	Type    string          `json:"type"`
	ID      string          `json:"id"`
	From    string          `json:"from"`
	SFU     bool            `json:"sfu"`
	Code    string          `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
}

// callTrack is a track a peer receives: one other peer's audio or camera.
type callTrack struct {
	stream  string // msid stream id: the publisher's id
	packets atomic.Uint64
	bytes   atomic.Uint64
	ended   atomic.Bool
	atStart uint64 // packets when the window opened (callGen.markWindow)
}

// callPeer is one participant.
type callPeer struct {
	g     *callGen
	idx   int
	id    string // the server's id for this connection, from hello
	room  string
	ws    *websocket.Conn
	wmu   sync.Mutex // one writer at a time on ws
	pc    *webrtc.PeerConnection
	audio *webrtc.TrackLocalStaticRTP
	video *webrtc.TrackLocalStaticRTP
	inbox chan callSignal // the SFU's signals, handled in order by handle

	state     atomic.Int32
	dialStart int64
	fullAt    atomic.Int64 // unix ns when every wanted track first had packets
	offers    atomic.Int64
	sent      atomic.Uint64 // RTP packets written (audio and video)

	mu   sync.Mutex
	recv []*callTrack

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// callPacketsPerSecond is what one peer publishes a second on schedule:
// its audio packets and its camera frames' packets.
func callPacketsPerSecond() float64 {
	vp8 := rtp.NewPacketizer(callMTU, 96, 0, &codecs.VP8Payloader{}, rtp.NewRandomSequencer(), 90000)
	perFrame := len(vp8.Packetize(make([]byte, callFrameSize), 1))
	return float64(time.Second)/float64(callAudioEvery) + float64(perFrame)*float64(time.Second)/float64(callFrameEvery)
}

var (
	callAPIOnce sync.Once
	callAPIVal  *webrtc.API
	callAPIErr  error
)

// callAPI is the one pion API of this process's peers: the server's codecs
// and header extensions (server/sfu's mediaSetup), loopback UDP only, and
// no interceptors, so the harness spends nothing on RTCP reports or NACK
// buffers a browser would keep elsewhere.
func callAPI() (*webrtc.API, error) {
	callAPIOnce.Do(func() {
		m := &webrtc.MediaEngine{}
		video := []webrtc.RTCPFeedback{{Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"}}
		if err := m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: callOpus, PayloadType: 111}, webrtc.RTPCodecTypeAudio); err != nil {
			callAPIErr = err
			return
		}
		if err := m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: video}, PayloadType: 96}, webrtc.RTPCodecTypeVideo); err != nil {
			callAPIErr = err
			return
		}
		for _, e := range []struct {
			uri string
			k   webrtc.RTPCodecType
		}{{sdp.SDESMidURI, webrtc.RTPCodecTypeAudio}, {sdp.SDESMidURI, webrtc.RTPCodecTypeVideo}, {sdp.AudioLevelURI, webrtc.RTPCodecTypeAudio}} {
			if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: e.uri}, e.k); err != nil {
				callAPIErr = err
				return
			}
		}
		var se webrtc.SettingEngine
		se.SetIncludeLoopbackCandidate(true)
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
		se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
		callAPIVal = webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se),
			webrtc.WithInterceptorRegistry(&interceptor.Registry{}))
	})
	return callAPIVal, callAPIErr
}

// callOpus is Opus as browsers offer it, and as the server registers it.
var callOpus = webrtc.RTPCodecCapability{
	MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1",
}

func newCallPeer(g *callGen, idx int) *callPeer {
	room := g.plan.Room
	if room == "" {
		room = g.plan.roomName(0)
	}
	return &callPeer{g: g, idx: idx, room: room, inbox: make(chan callSignal, 1024), stop: make(chan struct{})}
}

// join dials the server, joins the room and its call and sets up the peer
// connection; the offers are answered from then on by handle. It returns
// once the server has answered `call`, or with the reason it could not.
func (c *callPeer) join(ctx context.Context) error {
	p := c.g.plan
	c.dialStart = time.Now().UnixNano()
	d := websocket.Dialer{HandshakeTimeout: p.Timeout, ReadBufferSize: 64 << 10, WriteBufferSize: 64 << 10,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: insecureTLS}} // -insecure, as for the chat clients
	ws, _, err := d.DialContext(ctx, p.URLs[c.idx%len(p.URLs)], nil)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	ws.SetReadLimit(4 << 20) // offers of a large call are tens of KB
	c.ws = ws
	deadline := time.Now().Add(p.Timeout)
	_ = ws.SetReadDeadline(deadline)
	hello, err := c.await("hello")
	if err != nil {
		return err
	}
	c.id = hello.ID
	if err := c.writeJSON(map[string]string{"type": "join", "room": c.room}); err != nil {
		return err
	}
	if _, err := c.await("joined"); err != nil {
		return err
	}
	if err := c.newPC(); err != nil {
		return err
	}
	c.wg.Add(1)
	go c.handle()
	if err := c.writeJSON(map[string]string{"type": "call", "room": c.room, "action": "join"}); err != nil {
		return err
	}
	call, err := c.await("call")
	if err != nil {
		return err
	}
	if !call.SFU {
		return errors.New("the call does not go through the SFU (a server without -sfu on?)")
	}
	_ = ws.SetReadDeadline(time.Time{})
	c.wg.Add(1)
	go c.read()
	return nil
}

// await reads frames until one of type want, handing signals on; an
// error frame ends it.
func (c *callPeer) await(want string) (*callFrame, error) {
	for {
		f, err := c.next()
		if err != nil {
			return nil, fmt.Errorf("waiting for %s: %w", want, err)
		}
		switch f.Type {
		case want:
			return f, nil
		case "error":
			return nil, fmt.Errorf("waiting for %s: error %s: %s", want, f.Code, f.Message)
		}
	}
}

// next reads one frame; a signal from the SFU goes to the inbox too.
func (c *callPeer) next() (*callFrame, error) {
	_, b, err := c.ws.ReadMessage()
	if err != nil {
		return nil, err
	}
	var f callFrame
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("bad frame: %w", err)
	}
	if f.Type == "signal" && f.From == callSFUPeer {
		var s callSignal
		if err := json.Unmarshal(f.Data, &s); err != nil {
			c.g.event("bad signal from the SFU: " + err.Error())
		} else {
			select {
			case c.inbox <- s:
			default:
				c.g.event("signal inbox full")
			}
		}
	}
	return &f, nil
}

// read reads the server's frames until the connection closes.
func (c *callPeer) read() {
	defer c.wg.Done()
	for {
		f, err := c.next()
		if err != nil {
			select {
			case <-c.stop:
			default:
				c.g.event("websocket closed during the run: " + closeReason(err))
			}
			return
		}
		if f.Type == "error" {
			c.g.event("error " + f.Code + ": " + f.Message)
		}
	}
}

func (c *callPeer) writeJSON(v any) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(c.g.plan.Timeout))
	return c.ws.WriteJSON(v)
}

// signal sends data to the SFU.
func (c *callPeer) signal(s callSignal) {
	err := c.writeJSON(map[string]any{"type": "signal", "room": c.room, "to": callSFUPeer, "data": s})
	if err != nil {
		c.g.event("signal: " + closeReason(err))
	}
}

// newPC makes the peer connection and the tracks it will publish.
func (c *callPeer) newPC() error {
	api, err := callAPI()
	if err != nil {
		return err
	}
	if c.pc, err = api.NewPeerConnection(webrtc.Configuration{}); err != nil {
		return err
	}
	if c.audio, err = webrtc.NewTrackLocalStaticRTP(callOpus, "audio", c.id); err != nil {
		return err
	}
	if c.video, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "camera", c.id); err != nil {
		return err
	}
	c.pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
		if cand != nil {
			init := cand.ToJSON()
			c.signal(callSignal{Kind: "ice", Candidate: &init})
		}
	})
	c.pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateFailed {
			c.g.event("peer connection failed")
		}
	})
	c.pc.OnTrack(c.onTrack)
	return nil
}

// handle answers the SFU's offers and takes its candidates, in order.
func (c *callPeer) handle() {
	defer c.wg.Done()
	for {
		select {
		case <-c.stop:
			return
		case s := <-c.inbox:
			var err error
			switch s.Kind {
			case "offer":
				err = c.answer(s)
			case "ice":
				if s.Candidate != nil && s.Candidate.Candidate != "" {
					err = c.pc.AddICECandidate(*s.Candidate)
				}
			default:
				err = fmt.Errorf("unexpected signal %q", s.Kind)
			}
			if err != nil {
				c.g.event(fmt.Sprintf("%s: %v", s.Kind, err))
			}
		}
	}
}

// answer answers one offer; the first one also starts publishing.
func (c *callPeer) answer(s callSignal) error {
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: s.SDP}); err != nil {
		return err
	}
	var audio *webrtc.RTPSender
	first := c.offers.Add(1) == 1
	if first { // addTrack in order takes the offer's transceivers 0 and 1
		var err error
		if audio, err = c.pc.AddTrack(c.audio); err != nil {
			return err
		}
		if _, err = c.pc.AddTrack(c.video); err != nil {
			return err
		}
	}
	ans, err := c.pc.CreateAnswer(nil)
	if err != nil {
		return err
	}
	if err := c.pc.SetLocalDescription(ans); err != nil {
		return err
	}
	c.signal(callSignal{Kind: "answer", SDP: ans.SDP})
	if first {
		var level uint8
		for _, e := range audio.GetParameters().HeaderExtensions {
			if e.URI == sdp.AudioLevelURI {
				level = uint8(e.ID)
			}
		}
		c.wg.Add(1)
		go c.publish(level)
	}
	return nil
}

// publish writes the synthetic audio and camera until stop.
func (c *callPeer) publish(levelID uint8) {
	defer c.wg.Done()
	frame := make([]byte, callFrameSize)
	frame[0] = 0x10
	vp8 := rtp.NewPacketizer(callMTU, 96, 0, &codecs.VP8Payloader{}, rtp.NewRandomSequencer(), 90000)
	samples := uint32(90000 * callFrameEvery / time.Second)
	audio := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: 1000}, Payload: make([]byte, callAudioSize)}
	var level []byte
	if levelID != 0 {
		level, _ = rtp.AudioLevelExtension{Level: 127, Voice: true}.Marshal() // silence
	}
	audioTick := time.NewTicker(callAudioEvery)
	defer audioTick.Stop()
	videoTick := time.NewTicker(callFrameEvery)
	defer videoTick.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-audioTick.C:
			audio.SequenceNumber++
			audio.Timestamp += 960
			if level != nil {
				_ = audio.SetExtension(levelID, level)
			}
			if c.audio.WriteRTP(&audio) == nil {
				c.sent.Add(1)
			}
		case <-videoTick.C:
			for _, pkt := range vp8.Packetize(frame, samples) {
				if c.video.WriteRTP(pkt) == nil {
					c.sent.Add(1)
				}
			}
		}
	}
}

// onTrack counts one forwarded track's packets until it ends.
func (c *callPeer) onTrack(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	t := &callTrack{stream: remote.StreamID()}
	c.mu.Lock()
	c.recv = append(c.recv, t)
	c.mu.Unlock()
	series := c.g.series
	buf := make([]byte, 1500)
	for {
		n, _, err := remote.Read(buf)
		if err != nil {
			t.ended.Store(true)
			return
		}
		t.packets.Add(1)
		t.bytes.Add(uint64(n))
		series.at(time.Now().UnixNano()).Deliveries.Add(1)
	}
}

// tracks returns the tracks received so far.
func (c *callPeer) tracks() []*callTrack {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*callTrack(nil), c.recv...)
}

// live counts the received tracks of other peers that have packets and
// have not ended.
func (c *callPeer) live() int {
	n := 0
	for _, t := range c.tracks() {
		if t.stream != c.id && !t.ended.Load() && t.packets.Load() > 0 {
			n++
		}
	}
	return n
}

// close leaves: the WebSocket first (the server takes the peer out of the
// call), then the peer connection.
func (c *callPeer) close() {
	c.stopOnce.Do(func() { close(c.stop) })
	if c.ws != nil {
		c.wmu.Lock()
		_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		c.wmu.Unlock()
		_ = c.ws.Close()
	}
	if c.pc != nil {
		_ = c.pc.Close()
	}
	c.wg.Wait()
}
