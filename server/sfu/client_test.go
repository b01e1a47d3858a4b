package sfu

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	pmedia "github.com/pion/webrtc/v4/pkg/media"
)

// The test client is a pion peer that behaves as the page must: it
// answers the server's offers, publishes into the three transceivers of
// the first offer (addTrack in order audio, camera, screen), and sends
// synthetic media: a VP8 "frame" (first byte 0x10: a keyframe) every
// frameEvery and an 80-byte Opus packet every audioEvery carrying an RFC
// 6464 level.

// clientOpts says what a test client publishes and how often.
type clientOpts struct {
	audio, camera, screen bool
	frameEvery            time.Duration // default 33 ms
	audioEvery            time.Duration // default 20 ms
	frameSize             int           // bytes per video frame, default 1500 (two RTP packets)
	// ownSocket gives the client a UDP socket of its own, which vanish
	// closes under pion's feet: a page gone without a DTLS close.
	ownSocket bool
	// deaf drops every candidate both ways: the connection can never
	// come up (a page behind a firewall that blocks the media port).
	deaf bool
}

func (o clientOpts) withDefaults() clientOpts {
	if o.frameEvery == 0 {
		o.frameEvery = 33 * time.Millisecond
	}
	if o.audioEvery == 0 {
		o.audioEvery = 20 * time.Millisecond
	}
	if o.frameSize == 0 {
		o.frameSize = 1500
	}
	return o
}

var (
	clientAPIOnce sync.Once
	clientAPIVal  *webrtc.API
)

// clientAPI is one pion API for every test client of the process: the
// server's codecs and extensions, loopback only, no interceptors (pion's
// defaults would cost the benchmark's client process CPU and memory that
// a browser spends elsewhere).
func clientAPI() *webrtc.API {
	clientAPIOnce.Do(func() { clientAPIVal = newClientAPI(nil) })
	return clientAPIVal
}

// newClientAPI builds a client API; with mux, every connection of that
// API uses that one socket.
func newClientAPI(mux ice.UDPMux) *webrtc.API {
	m, _, err := mediaSetup()
	if err != nil {
		panic(err)
	}
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetICETimeouts(5*time.Second, 10*time.Second, time.Second)
	// TestNACK asks again for packets it had: SRTP's replay protection
	// would drop them (a real NACK asks for packets never received, which
	// it lets through).
	se.DisableSRTPReplayProtection(true)
	if mux != nil {
		se.SetICEUDPMux(mux)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se),
		webrtc.WithInterceptorRegistry(&interceptor.Registry{}))
}

// client is one test peer.
type client struct {
	id   string
	opts clientOpts
	pc   *webrtc.PeerConnection
	sock ice.UDPMux // with ownSocket
	// toServer hands a signal to the server (Peer.Signal, or a pipe to
	// the benchmark's server process). Set before start.
	toServer func(data []byte) error
	inbox    chan []byte

	audio          *webrtc.TrackLocalStaticRTP
	camera, screen *webrtc.TrackLocalStaticSample
	audioSender    *webrtc.RTPSender
	cameraSender   *webrtc.RTPSender

	level   atomic.Int32 // the audio level sent, 0..127
	plis    atomic.Int64 // picture-loss requests received for the camera
	offers  atomic.Int64
	errMu   sync.Mutex
	errs    []error
	started atomic.Bool

	mu     sync.Mutex
	recv   []*recvTrack
	tracks map[string]trackInfo // the last offer's track list, by mid

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// recvTrack is a track the client receives.
type recvTrack struct {
	remote   *webrtc.TrackRemote
	stream   string // msid stream id: the publisher
	id       string // msid track id: the media
	mid      string
	packets  atomic.Int64
	lastSeq  atomic.Uint32
	repeats  atomic.Int64 // packets not newer than the newest seen: retransmissions
	ended    atomic.Bool
	received chan struct{} // closed at the first packet
}

func newClient(id string, opts clientOpts) (*client, error) {
	api := clientAPI()
	var sock ice.UDPMux
	if opts.ownSocket {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return nil, err
		}
		sock = webrtc.NewICEUDPMux(nil, conn)
		api = newClientAPI(sock)
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	c := &client{id: id, opts: opts.withDefaults(), pc: pc, sock: sock, inbox: make(chan []byte, 4096),
		stop: make(chan struct{}), tracks: map[string]trackInfo{}}
	c.level.Store(127)
	if c.opts.audio {
		c.audio, err = webrtc.NewTrackLocalStaticRTP(opusCodec, "mic", id)
	}
	if err == nil && c.opts.camera {
		c.camera, err = webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "cam", id)
	}
	if err == nil && c.opts.screen {
		c.screen, err = webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "scr", id)
	}
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	pc.OnTrack(c.onTrack)
	pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
		if cand == nil || c.opts.deaf {
			return
		}
		init := cand.ToJSON()
		data, _ := json.Marshal(signalMsg{Kind: "ice", Candidate: &init})
		if err := c.toServer(data); err != nil && !errors.Is(err, ErrClosed) {
			c.fail(fmt.Errorf("signal candidate: %w", err))
		}
	})
	return c, nil
}

// deliver is the server's send: it must not block.
func (c *client) deliver(data []byte) {
	select {
	case c.inbox <- append([]byte(nil), data...):
	default:
		c.fail(errors.New("inbox full"))
	}
}

// start runs the client's signal loop.
func (c *client) start() {
	c.wg.Add(1)
	go c.run()
}

func (c *client) fail(err error) {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	if len(c.errs) < 10 {
		c.errs = append(c.errs, fmt.Errorf("client %s: %w", c.id, err))
	}
}

// err is the first error the client met, if any.
func (c *client) err() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return errors.Join(c.errs...)
}

func (c *client) run() {
	defer c.wg.Done()
	for {
		select {
		case <-c.stop:
			return
		case data := <-c.inbox:
			var m signalMsg
			if err := json.Unmarshal(data, &m); err != nil {
				c.fail(err)
				continue
			}
			switch m.Kind {
			case "offer":
				if err := c.answer(m); err != nil {
					c.fail(fmt.Errorf("answer: %w", err))
				}
			case "ice":
				if m.Candidate != nil && !c.opts.deaf {
					if err := c.pc.AddICECandidate(*m.Candidate); err != nil {
						c.fail(fmt.Errorf("candidate: %w", err))
					}
				}
			default:
				c.fail(fmt.Errorf("unexpected signal %q", m.Kind))
			}
		}
	}
}

func (c *client) answer(m signalMsg) error {
	if c.opts.deaf {
		var lines []string
		for _, l := range strings.Split(m.SDP, "\r\n") {
			if !strings.HasPrefix(l, "a=candidate") {
				lines = append(lines, l)
			}
		}
		m.SDP = strings.Join(lines, "\r\n")
	}
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: m.SDP}); err != nil {
		return err
	}
	c.mu.Lock()
	c.tracks = m.Tracks
	c.mu.Unlock()
	first := c.offers.Add(1) == 1
	if first {
		// addTrack in order takes the offer's transceivers 0, 1, 2.
		var err error
		if c.audio != nil {
			c.audioSender, err = c.pc.AddTrack(c.audio)
		}
		if err == nil && c.camera != nil {
			c.cameraSender, err = c.pc.AddTrack(c.camera)
		}
		if err == nil && c.screen != nil {
			_, err = c.pc.AddTrack(c.screen)
		}
		if err != nil {
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
	data, _ := json.Marshal(signalMsg{Kind: "answer", SDP: ans.SDP})
	if err := c.toServer(data); err != nil {
		return err
	}
	if first {
		c.started.Store(true)
		c.wg.Add(1)
		go c.publish()
		if c.cameraSender != nil {
			c.wg.Add(1)
			go c.readCameraRTCP()
		}
	}
	return nil
}

// publish writes the synthetic media until stop.
func (c *client) publish() {
	defer c.wg.Done()
	frame := make([]byte, c.opts.frameSize)
	frame[0] = 0x10
	opus := make([]byte, 80)
	audioTick := time.NewTicker(c.opts.audioEvery)
	defer audioTick.Stop()
	videoTick := time.NewTicker(c.opts.frameEvery)
	defer videoTick.Stop()
	var levelID uint8
	if c.audioSender != nil {
		for _, e := range c.audioSender.GetParameters().HeaderExtensions {
			if e.URI == sdp.AudioLevelURI {
				levelID = uint8(e.ID)
			}
		}
	}
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: 1000}, Payload: opus}
	for {
		select {
		case <-c.stop:
			return
		case <-audioTick.C:
			if c.audio == nil {
				continue
			}
			pkt.SequenceNumber++
			pkt.Timestamp += 960
			if levelID != 0 {
				ext, _ := rtp.AudioLevelExtension{Level: uint8(c.level.Load()), Voice: true}.Marshal()
				_ = pkt.SetExtension(levelID, ext)
			}
			_ = c.audio.WriteRTP(&pkt)
		case <-videoTick.C:
			s := pmedia.Sample{Data: frame, Duration: c.opts.frameEvery}
			if c.camera != nil {
				_ = c.camera.WriteSample(s)
			}
			if c.screen != nil {
				_ = c.screen.WriteSample(s)
			}
		}
	}
}

// readCameraRTCP counts the picture-loss requests the server sends for
// the camera.
func (c *client) readCameraRTCP() {
	defer c.wg.Done()
	for {
		pkts, _, err := c.cameraSender.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			if _, ok := p.(*rtcp.PictureLossIndication); ok {
				c.plis.Add(1)
			}
		}
	}
}

func (c *client) onTrack(remote *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	t := &recvTrack{remote: remote, stream: remote.StreamID(), id: remote.ID(), received: make(chan struct{})}
	if tr := recv.RTPTransceiver(); tr != nil {
		t.mid = tr.Mid()
	}
	c.mu.Lock()
	c.recv = append(c.recv, t)
	c.mu.Unlock()
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	for {
		n, _, err := remote.Read(buf)
		if err != nil {
			t.ended.Store(true)
			return
		}
		if pkt.Unmarshal(buf[:n]) == nil {
			last := uint16(t.lastSeq.Load())
			if t.packets.Load() > 0 && int16(pkt.SequenceNumber-last) <= 0 {
				t.repeats.Add(1)
			} else {
				t.lastSeq.Store(uint32(pkt.SequenceNumber))
			}
		}
		if t.packets.Add(1) == 1 {
			close(t.received)
		}
	}
}

// live lists the received tracks that have not ended, with packets.
func (c *client) live() []*recvTrack {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*recvTrack
	for _, t := range c.recv {
		if !t.ended.Load() && t.packets.Load() > 0 {
			out = append(out, t)
		}
	}
	return out
}

// liveFrom lists the live tracks published by id.
func (c *client) liveFrom(id string) []*recvTrack {
	var out []*recvTrack
	for _, t := range c.live() {
		if t.stream == id {
			out = append(out, t)
		}
	}
	return out
}

// offerTracks returns the last offer's track list.
func (c *client) offerTracks() map[string]trackInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tracks
}

// close stops the client, closing its peer connection without a word to
// the server through signalling (as a page closing its tab would).
func (c *client) close() {
	c.stopOnce.Do(func() { close(c.stop) })
	_ = c.pc.Close()
	if c.sock != nil {
		_ = c.sock.Close()
	}
	c.wg.Wait()
}

// vanish closes the client's own socket and stops its media, leaving
// its peer connection open: to the server the page is just gone.
func (c *client) vanish() {
	c.stopOnce.Do(func() { close(c.stop) })
	_ = c.sock.Close()
}
