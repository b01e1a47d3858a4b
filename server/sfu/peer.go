package sfu

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
)

const (
	// negotiateDelay debounces renegotiation: every change within it (a
	// join of many peers, a peer leaving with its three tracks) makes one
	// offer per peer connection, not one per track. ion-sfu uses 250 ms.
	negotiateDelay = 150 * time.Millisecond
	// answerTimeout is how long a page has to answer an offer before its
	// peer is dropped. Pages answer at once (see the package doc), but a
	// loaded machine or a permission prompt in the way deserve slack.
	answerTimeout = 30 * time.Second
	// connectTimeout is how long after its first answer a peer has to
	// connect (ICE and DTLS) before it is dropped as unreachable: pion
	// alone can stay "checking" forever when no candidate pair exists.
	connectTimeout = 30 * time.Second
	// maxEarlyCandidates bounds the page's ICE candidates kept while its
	// first answer is not in yet.
	maxEarlyCandidates = 64
)

// Peer is one participant's peer connection to the SFU. The page sends
// its audio, camera and screen on three transceivers the server creates,
// and receives every other peer's tracks on transceivers the server adds.
type Peer struct {
	id   string
	call *Call
	send func(data []byte)
	pc   *webrtc.PeerConnection
	// up are the page's sending transceivers, by media (mids 0, 1, 2).
	up         [mediaCount]*webrtc.RTPTransceiver
	audioMuted atomic.Bool
	left       atomic.Bool
	connected  atomic.Bool // ICE and DTLS were up once
	reported   sync.Once   // the "never connected" warning
	done       chan struct{}

	// negMu serialises everything that touches the peer connection's
	// session descriptions and the downTrack set: an offer is created and
	// set, and its answer set, under negMu, so pion never sees two
	// SetLocal/SetRemote at once. It is never held while calling send,
	// and it is taken before Call.mu, never after.
	negMu    sync.Mutex
	closed   bool                    // left: no more negotiation
	awaiting bool                    // an offer is out, its answer not in
	again    bool                    // something changed while awaiting
	answered bool                    // the first answer is in
	noAnswer *time.Timer             // drops the peer if the answer is late
	downs    map[*upTrack]*downTrack // what this peer receives
	early    []webrtc.ICECandidateInit
	tried    []string // the page's candidates, for the failure log (a few)

	// schedMu guards scheduled, a debounced negotiation pending. A leaf
	// lock: taken under Call.mu.
	schedMu   sync.Mutex
	scheduled *time.Timer

	// outMu guards the outbox. Messages to the page are queued under it
	// and delivered by one goroutine at a time (flushing) without it, so
	// send sees them one by one and in order; candidates gathered before
	// the first offer is queued wait in held (a page cannot use a
	// candidate before it has the offer).
	outMu    sync.Mutex
	outbox   [][]byte
	held     [][]byte
	offered  bool
	flushing bool
}

func newPeer(c *Call, id string, send func([]byte)) (*Peer, error) {
	s := c.sfu
	pc, err := s.api.NewPeerConnection(webrtc.Configuration{
		ICEServers:   s.cfg.ICEServers,
		BundlePolicy: webrtc.BundlePolicyMaxBundle,
	})
	if err != nil {
		return nil, fmt.Errorf("sfu: new peer connection: %w", err)
	}
	p := &Peer{id: id, call: c, send: send, pc: pc, done: make(chan struct{}), downs: make(map[*upTrack]*downTrack)}
	kinds := [mediaCount]webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeVideo}
	for m, k := range kinds {
		tr, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
		if err != nil {
			_ = pc.Close()
			return nil, fmt.Errorf("sfu: add %s transceiver: %w", media(m), err)
		}
		p.up[m] = tr
	}
	pc.OnTrack(p.onTrack)
	pc.OnICECandidate(p.onCandidate)
	pc.OnConnectionStateChange(p.onState)
	return p, nil
}

// ID is the peer's id, as given to Join.
func (p *Peer) ID() string { return p.id }

// Done is closed when the peer has left: by Leave, or by the SFU because
// its connection failed, it did not answer an offer in time, or the SFU
// closed. The server then treats the page as out of the call.
func (p *Peer) Done() <-chan struct{} { return p.done }

// SetAudioMuted sets the host mute: while true, the peer's audio is
// dropped at the server, reaching nobody, and the peer is never listed as
// a speaker. It takes effect with the next packet.
func (p *Peer) SetAudioMuted(muted bool) { p.audioMuted.Store(muted) }

// Leave removes the peer from its call: its tracks are renegotiated away
// from every other peer and its peer connection is closed (in the
// background: Leave does not wait for pion). Idempotent.
func (p *Peer) Leave() { p.leave(false) }

// leave does Leave; with wait, it also waits for the peer connection to
// close (SFU.Close).
func (p *Peer) leave(wait bool) {
	if !p.left.CompareAndSwap(false, true) {
		return
	}
	close(p.done)
	p.call.remove(p)

	p.negMu.Lock()
	p.closed = true
	if p.noAnswer != nil {
		p.noAnswer.Stop()
	}
	for up, d := range p.downs {
		up.removeDown(d)
	}
	p.downs = nil
	p.negMu.Unlock()

	p.schedMu.Lock()
	if p.scheduled != nil {
		p.scheduled.Stop()
		p.scheduled = nil
	}
	p.schedMu.Unlock()

	s := p.call.sfu
	if wait || !s.enter() {
		p.closePC()
		return
	}
	go func() {
		defer s.wg.Done()
		p.closePC()
	}()
}

func (p *Peer) closePC() {
	if err := p.pc.Close(); err != nil {
		p.call.sfu.log.Debug("sfu: close peer connection", "peer", p.id, "call", p.call.id, "err", err)
	}
}

// signalMsg is the data of a signal frame, both ways.
type signalMsg struct {
	Kind      string                   `json:"kind"`
	SDP       string                   `json:"sdp,omitempty"`
	Candidate *webrtc.ICECandidateInit `json:"candidate,omitempty"`
	// Tracks, in offers only, describes each forwarded track by the mid
	// of its transceiver (see the package doc).
	Tracks map[string]trackInfo `json:"tracks,omitempty"`
}

// trackInfo describes one forwarded track in an offer.
type trackInfo struct {
	ID    string `json:"id"`    // the publishing peer
	Media string `json:"media"` // "audio", "camera" or "screen"
}

// Signal handles a signal frame's data from the page to "sfu": an answer
// to the server's offer, or an ICE candidate. An error means the data was
// bad (the caller answers bad_field); ErrClosed that the peer has left.
// Signals of one peer must be given in the order the page sent them.
func (p *Peer) Signal(data []byte) error {
	if p.left.Load() {
		return ErrClosed
	}
	var m signalMsg
	if err := json.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("sfu: signal: %w", err)
	}
	switch m.Kind {
	case "answer":
		if m.SDP == "" {
			return errors.New("sfu: signal: answer without sdp")
		}
		return p.answer(m.SDP)
	case "ice":
		if m.Candidate == nil || m.Candidate.Candidate == "" {
			return nil // end of candidates: nothing to do
		}
		return p.addCandidate(*m.Candidate)
	case "offer":
		return errors.New("sfu: signal: the server makes every offer; answer it")
	default:
		return fmt.Errorf("sfu: signal: unknown kind %q", m.Kind)
	}
}

// schedule asks for a negotiation after negotiateDelay, unless one is
// already pending. Called under Call.mu; takes only schedMu.
func (p *Peer) schedule() {
	p.schedMu.Lock()
	defer p.schedMu.Unlock()
	if p.scheduled != nil || p.left.Load() {
		return
	}
	p.scheduled = time.AfterFunc(negotiateDelay, p.negotiate)
}

// negotiate brings the downTrack set up to date with the call's tracks
// and sends an offer, unless an offer is out: then it is done again when
// the answer comes.
func (p *Peer) negotiate() {
	p.schedMu.Lock()
	p.scheduled = nil
	p.schedMu.Unlock()
	s := p.call.sfu
	if !s.enter() {
		return
	}
	defer s.wg.Done()

	p.negMu.Lock()
	if p.closed {
		p.negMu.Unlock()
		return
	}
	if p.awaiting {
		p.again = true
		p.negMu.Unlock()
		return
	}
	err := p.offerLocked()
	p.negMu.Unlock()
	if err != nil {
		if !p.left.Load() {
			s.log.Warn("sfu: cannot offer; dropping the peer", "peer", p.id, "call", p.call.id, "err", err)
		}
		p.Leave()
		return
	}
	p.flush()
}

// offerLocked syncs the downTracks and queues an offer. p.negMu held.
func (p *Peer) offerLocked() error {
	want := p.call.tracksFor(p)
	keep := make(map[*upTrack]bool, len(want))
	for _, up := range want {
		keep[up] = true
	}
	for up, d := range p.downs {
		if !keep[up] {
			// The transceiver stays, inactive: pion v4.2.26 cannot reject
			// an m-section or reuse one the page answered inactive.
			_ = p.pc.RemoveTrack(d.sender)
			up.removeDown(d)
			delete(p.downs, up)
		}
	}
	s := p.call.sfu
	for _, up := range want {
		if p.downs[up] != nil {
			continue
		}
		d, err := newDownTrack(up, p)
		if err != nil {
			return err
		}
		tr, err := p.pc.AddTransceiverFromTrack(d, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			return fmt.Errorf("add %s of %s: %w", up.media, up.pub.id, err)
		}
		d.tr, d.sender = tr, tr.Sender()
		p.downs[up] = d
		up.addDown(d)
		if s.enter() {
			go d.readRTCP()
		}
	}

	offer, err := p.pc.CreateOffer(nil)
	if err != nil {
		return fmt.Errorf("create offer: %w", err)
	}
	if err := p.pc.SetLocalDescription(offer); err != nil {
		return fmt.Errorf("set offer: %w", err)
	}
	msg := signalMsg{Kind: "offer", SDP: offer.SDP, Tracks: make(map[string]trackInfo, len(p.downs))}
	if ld := p.pc.LocalDescription(); ld != nil {
		msg.SDP = ld.SDP // with the candidates gathered so far
	}
	for up, d := range p.downs {
		if mid := d.tr.Mid(); mid != "" {
			msg.Tracks[mid] = trackInfo{ID: up.pub.id, Media: up.media.String()}
		}
	}
	data, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	p.awaiting = true
	p.noAnswer = time.AfterFunc(answerTimeout, p.answerLate)
	p.queue(data, true)
	return nil
}

// answerLate drops a peer whose page did not answer an offer in time.
func (p *Peer) answerLate() {
	p.negMu.Lock()
	late := p.awaiting && !p.closed
	p.negMu.Unlock()
	if late {
		p.call.sfu.log.Warn("sfu: no answer to the offer; dropping the peer (does the page answer signals from \"sfu\"?)",
			"peer", p.id, "call", p.call.id, "waited", answerTimeout)
		p.Leave()
	}
}

// answer applies the page's answer to the offer that is out.
func (p *Peer) answer(sdp string) error {
	p.negMu.Lock()
	if p.closed {
		p.negMu.Unlock()
		return ErrClosed
	}
	if !p.awaiting {
		p.negMu.Unlock()
		return errors.New("sfu: signal: an answer, but no offer is out")
	}
	p.noAnswer.Stop()
	p.awaiting = false
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}); err != nil {
		// Back to stable, so the next change can offer again.
		_ = p.pc.SetLocalDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeRollback})
		p.negMu.Unlock()
		return fmt.Errorf("sfu: signal: answer: %w", err)
	}
	var firstErr error
	if !p.answered {
		p.answered = true
		wait := p.call.sfu.cfg.connectTimeout
		if wait == 0 {
			wait = connectTimeout
		}
		time.AfterFunc(wait, func() {
			if !p.connected.Load() {
				p.unreachable(fmt.Sprintf("not connected %v after the answer", wait))
			}
		})
		for _, c := range p.early {
			if err := p.pc.AddICECandidate(c); err != nil && firstErr == nil {
				firstErr = fmt.Errorf("sfu: signal: candidate: %w", err)
			}
		}
		p.early = nil
	}
	var fresh []*upTrack
	for up, d := range p.downs {
		if d.fresh {
			d.fresh = false
			fresh = append(fresh, up)
		}
	}
	again := p.again
	p.again = false
	p.negMu.Unlock()

	for _, up := range fresh {
		up.keyframe() // so the new subscriber need not wait for one
	}
	if again {
		p.schedule()
	}
	return firstErr
}

// addCandidate adds one of the page's ICE candidates, or keeps it until
// the first answer is in.
func (p *Peer) addCandidate(c webrtc.ICECandidateInit) error {
	p.negMu.Lock()
	defer p.negMu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if len(p.tried) < 8 {
		p.tried = append(p.tried, c.Candidate)
	}
	if !p.answered {
		if len(p.early) >= maxEarlyCandidates {
			return errors.New("sfu: signal: too many candidates before the answer")
		}
		p.early = append(p.early, c)
		return nil
	}
	if err := p.pc.AddICECandidate(c); err != nil {
		return fmt.Errorf("sfu: signal: candidate: %w", err)
	}
	return nil
}

// onCandidate sends the server's candidates to the page as they are
// gathered (trickle ICE).
func (p *Peer) onCandidate(c *webrtc.ICECandidate) {
	if c == nil {
		return
	}
	data, err := json.Marshal(signalMsg{Kind: "ice", Candidate: ptr(c.ToJSON())})
	if err != nil {
		return
	}
	p.queue(data, false)
	p.flush()
}

func ptr[T any](v T) *T { return &v }

// queue appends a message to the outbox; an offer also releases the
// candidates held until the first one. Takes only outMu.
func (p *Peer) queue(data []byte, offer bool) {
	p.outMu.Lock()
	defer p.outMu.Unlock()
	switch {
	case offer:
		p.outbox = append(p.outbox, data)
		if !p.offered {
			p.offered = true
			p.outbox = append(p.outbox, p.held...)
			p.held = nil
		}
	case !p.offered:
		p.held = append(p.held, data)
	default:
		p.outbox = append(p.outbox, data)
	}
}

// flush delivers the outbox through send, with no lock held, unless
// another goroutine is already doing it (then that one delivers these
// too, in order).
func (p *Peer) flush() {
	p.outMu.Lock()
	if p.flushing {
		p.outMu.Unlock()
		return
	}
	p.flushing = true
	for len(p.outbox) > 0 {
		batch := p.outbox
		p.outbox = nil
		p.outMu.Unlock()
		for _, m := range batch {
			if !p.left.Load() {
				p.send(m)
			}
		}
		p.outMu.Lock()
	}
	p.flushing = false
	p.outMu.Unlock()
}

// onTrack starts forwarding a track the page began to send. It runs on
// the goroutine pion starts per track, which becomes the forwarder.
func (p *Peer) onTrack(remote *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	m := mediaCount
	for i, tr := range p.up {
		if tr.Receiver() == recv {
			m = media(i)
		}
	}
	s := p.call.sfu
	if m == mediaCount || !s.enter() {
		return // not on a sending transceiver: nothing can arrive there
	}
	defer s.wg.Done()
	t := newUpTrack(p, m, remote, recv)
	if !p.call.publish(p, t) {
		return
	}
	if s.enter() {
		go t.drainRTCP(recv)
	}
	t.forward()
	p.call.unpublish(t)
}

// onState drops a peer whose connection failed for good, saying what to
// check, or that the page closed (pion closes the connection when the
// page's DTLS close arrives). pion calls it on a goroutine of its own.
func (p *Peer) onState(st webrtc.PeerConnectionState) {
	if p.left.Load() {
		return
	}
	s := p.call.sfu
	switch st {
	case webrtc.PeerConnectionStateConnected:
		p.connected.Store(true)
		return
	case webrtc.PeerConnectionStateClosed:
		s.log.Debug("sfu: the page closed its peer connection", "peer", p.id, "call", p.call.id)
	case webrtc.PeerConnectionStateFailed:
		if p.connected.Load() {
			s.log.Info("sfu: lost the page's connection (no packets); dropping the peer", "peer", p.id, "call", p.call.id)
			break
		}
		p.unreachable("ICE failed")
		return
	default:
		return
	}
	p.Leave()
}

// unreachable logs, once, why a peer never connected and what to check,
// and drops it.
func (p *Peer) unreachable(why string) {
	if p.left.Load() {
		return
	}
	p.reported.Do(func() {
		s := p.call.sfu
		p.negMu.Lock()
		tried := append([]string(nil), p.tried...)
		p.negMu.Unlock()
		s.log.Warn("sfu: peer connection never connected; dropping the peer. Check that the page can reach the media port "+
			"over UDP (or TCP), and -rtc-public-ip if the server is behind NAT or in a container",
			"peer", p.id, "call", p.call.id, "why", why, "media_port", s.udpAt.String(), "public_ips", s.cfg.PublicIPs,
			"page_candidates", tried)
	})
	p.Leave()
}
