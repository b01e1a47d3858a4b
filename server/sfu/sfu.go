package sfu

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Config configures an SFU. The zero value of every optional field means
// off.
type Config struct {
	// UDPAddr is the one UDP address every peer connection's media uses,
	// e.g. ":7882". Tests use "127.0.0.1:0". Required.
	UDPAddr string
	// PublicIPs are advertised in ICE candidates instead of the local
	// address (the -rtc-public-ip flag: a server behind 1:1 NAT or in
	// Docker). Default none: the local addresses are advertised.
	PublicIPs []string
	// TCPAddr, if set, also accepts ICE over TCP on this address, for
	// clients whose network blocks UDP. Default "" (off).
	TCPAddr string
	// ICEServers are handed to pion for gathering (TURN/STUN). Default
	// none: a server with a reachable address needs none.
	ICEServers []webrtc.ICEServer
	// Loopback includes loopback candidates: needed by tests and by a
	// server listening on 127.0.0.1, which otherwise offers no candidate
	// at all. Default false.
	Loopback bool
	// Log receives the SFU's and pion's warnings. Default slog.Default().
	Log *slog.Logger

	// iceDisconnected and iceFailed shorten pion's ICE timeouts in tests
	// (zero: iceDisconnectedTimeout and iceFailedTimeout).
	iceDisconnected, iceFailed time.Duration
	// connectTimeout shortens the package's connectTimeout in tests.
	connectTimeout time.Duration
}

const (
	// iceDisconnectedTimeout is how long without a packet before a peer's
	// ICE is "disconnected" (pion's default, 5 s). Disconnected may heal;
	// nothing is done then.
	iceDisconnectedTimeout = 5 * time.Second
	// iceFailedTimeout is how long after "disconnected" ICE is "failed"
	// and the peer is dropped (pion's default is 25 s; a page that lost
	// the network for 15 s rejoins faster than it would get media back).
	iceFailedTimeout = 10 * time.Second
	// iceKeepalive is how often a quiet connection is pinged; it must be
	// well under iceDisconnectedTimeout.
	iceKeepalive = 2 * time.Second
)

// ErrClosed is returned by Join and Signal once the SFU, or the peer, is
// closed.
var ErrClosed = errors.New("sfu: closed")

// SFU forwards the media of calls between the peers of each call. It owns
// one pion API, one UDP port (and optionally one TCP port) shared by every
// peer connection. All methods are safe for concurrent use.
type SFU struct {
	api   *webrtc.API
	log   *slog.Logger
	udp   ice.UDPMux
	udpAt net.Addr
	tcp   ice.TCPMux // nil when Config.TCPAddr is ""
	cfg   Config

	// mu guards calls and closed. Lock order: SFU.mu, then Call.mu.
	mu     sync.Mutex
	calls  map[string]*Call
	closed bool
	// wg counts the goroutines the SFU starts (forwarders, RTCP readers,
	// negotiations, speaker tickers, peer-connection closers); Close waits
	// for it. Add only through enter, which refuses once closed is set, so
	// no Add races Close's Wait.
	wg sync.WaitGroup

	stats counters
}

// counters are the SFU's metrics, updated with atomics on the hot path.
type counters struct {
	calls, peers, published, forwarded atomic.Int64
	packets, bytes                     atomic.Uint64
	retransmits, keyframes             atomic.Uint64
}

// Stats is a snapshot of the SFU's counters, for Prometheus.
type Stats struct {
	Calls           int // calls with at least one peer
	Peers           int // peers joined, in all calls
	PublishedTracks int // tracks received from peers
	ForwardedTracks int // tracks sent to peers (a published track times its subscribers)
	// PacketsForwarded and BytesForwarded count RTP sent to subscribers
	// since New, retransmissions excluded (bytes: RTP payload and header).
	PacketsForwarded uint64
	BytesForwarded   uint64
	// Retransmits counts packets resent from the retransmission buffers
	// to answer subscribers' NACKs.
	Retransmits uint64
	// KeyframeRequests counts picture-loss indications sent to publishers
	// (after throttling).
	KeyframeRequests uint64
}

// New binds the UDP port (and the TCP port if configured) and prepares
// the pion API every peer connection of the process will use. It fails
// with a clear error if a port cannot be bound.
func New(cfg Config) (*SFU, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	s := &SFU{log: cfg.Log, cfg: cfg, calls: make(map[string]*Call)}
	logs := pionLogs{log: cfg.Log}

	var se webrtc.SettingEngine
	se.LoggerFactory = logs
	if err := s.listen(&se, logs); err != nil {
		return nil, err
	}
	disc, failed := cfg.iceDisconnected, cfg.iceFailed
	if disc == 0 {
		disc, failed = iceDisconnectedTimeout, iceFailedTimeout
	}
	se.SetICETimeouts(disc, failed, min(iceKeepalive, disc/2))
	// A server has no use for mDNS: it neither hides its address nor
	// needs to resolve a page's .local candidates (the page reaches the
	// server, which learns the page's address from its checks). Off, it
	// also saves a multicast socket per peer connection.
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(cfg.Loopback)
	if len(cfg.PublicIPs) > 0 {
		err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External:        cfg.PublicIPs,
			AsCandidateType: webrtc.ICECandidateTypeHost,
			Mode:            webrtc.ICEAddressRewriteReplace,
		})
		if err != nil {
			s.closeSockets()
			return nil, fmt.Errorf("sfu: public IPs %v: %w", cfg.PublicIPs, err)
		}
	}

	m, reg, err := mediaSetup()
	if err != nil {
		s.closeSockets()
		return nil, err
	}
	s.api = webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(m),
		webrtc.WithInterceptorRegistry(reg))
	return s, nil
}

// listen binds the UDP mux and, if configured, the TCP mux.
func (s *SFU) listen(se *webrtc.SettingEngine, logs pionLogs) error {
	addr, err := net.ResolveUDPAddr("udp", s.cfg.UDPAddr)
	if err != nil {
		return fmt.Errorf("sfu: UDP address %q: %w", s.cfg.UDPAddr, err)
	}
	if addr.IP == nil || addr.IP.IsUnspecified() {
		// pion's UDPMuxDefault on 0.0.0.0 cannot tell which local address
		// a packet came to, and warns; the multi mux binds the port on
		// every interface address instead.
		opts := []ice.UDPMuxFromPortOption{ice.UDPMuxFromPortWithLogger(logs.NewLogger("udpmux"))}
		if s.cfg.Loopback {
			opts = append(opts, ice.UDPMuxFromPortWithLoopback())
		}
		mux, err := ice.NewMultiUDPMuxFromPort(addr.Port, opts...)
		if err != nil {
			return fmt.Errorf("sfu: listen UDP %s on every interface: %w", s.cfg.UDPAddr, err)
		}
		s.udp = mux
		if as := mux.GetListenAddresses(); len(as) > 0 {
			s.udpAt = as[0]
		}
	} else {
		conn, err := net.ListenUDP("udp", addr)
		if err != nil {
			return fmt.Errorf("sfu: listen UDP %s: %w", s.cfg.UDPAddr, err)
		}
		s.udp = webrtc.NewICEUDPMux(logs.NewLogger("udpmux"), conn)
		s.udpAt = conn.LocalAddr()
	}
	se.SetICEUDPMux(s.udp)
	networks := []webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6}

	if s.cfg.TCPAddr != "" {
		ln, err := net.Listen("tcp", s.cfg.TCPAddr)
		if err != nil {
			s.closeSockets()
			return fmt.Errorf("sfu: listen TCP %s: %w", s.cfg.TCPAddr, err)
		}
		s.tcp = webrtc.NewICETCPMux(logs.NewLogger("tcpmux"), ln, 8)
		se.SetICETCPMux(s.tcp)
		networks = append(networks, webrtc.NetworkTypeTCP4, webrtc.NetworkTypeTCP6)
	}
	se.SetNetworkTypes(networks)
	return nil
}

// mediaSetup registers one codec per kind and the interceptors.
//
// One codec per kind (Opus, VP8) means every subscriber can decode every
// publisher's track without transcoding, and keeps each m-section of the
// SDP short: a 25-peer call has 51 of them per peer connection, and the
// page's answer must stay under the server's 64 KiB signal limit. No RTX:
// retransmissions go on the media SSRC (RFC 4585), which is what the
// retransmission buffer serves.
//
// Interceptors: RTCP sender and receiver reports, TWCC feedback to
// publishers (so browsers' send-side bandwidth estimation works), and a
// NACK generator toward publishers (loss on the way in is repaired once,
// for every subscriber). Not RegisterDefaultInterceptors: its NACK
// responder keeps a 1,024-packet buffer per outgoing video stream, about
// 2 MB per forwarded track and O(N²) per call; subscribers' NACKs are
// answered from one buffer per published track instead (track.go).
func mediaSetup() (*webrtc.MediaEngine, *interceptor.Registry, error) {
	m := &webrtc.MediaEngine{}
	video := []webrtc.RTCPFeedback{{Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"}}
	codecs := []struct {
		p webrtc.RTPCodecParameters
		k webrtc.RTPCodecType
	}{
		{webrtc.RTPCodecParameters{RTPCodecCapability: opusCodec, PayloadType: 111}, webrtc.RTPCodecTypeAudio},
		{webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: video}, PayloadType: 96}, webrtc.RTPCodecTypeVideo},
	}
	for _, c := range codecs {
		if err := m.RegisterCodec(c.p, c.k); err != nil {
			return nil, nil, fmt.Errorf("sfu: register %s: %w", c.p.MimeType, err)
		}
	}
	exts := []struct {
		uri string
		k   webrtc.RTPCodecType
	}{
		// mid lets pion place a packet whose SSRC the answer did not list.
		{sdp.SDESMidURI, webrtc.RTPCodecTypeAudio},
		{sdp.SDESMidURI, webrtc.RTPCodecTypeVideo},
		// RFC 6464 levels drive speaker detection.
		{sdp.AudioLevelURI, webrtc.RTPCodecTypeAudio},
	}
	for _, e := range exts {
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: e.uri}, e.k); err != nil {
			return nil, nil, fmt.Errorf("sfu: register extension %s: %w", e.uri, err)
		}
	}

	reg := &interceptor.Registry{}
	if err := webrtc.ConfigureRTCPReports(reg); err != nil {
		return nil, nil, fmt.Errorf("sfu: RTCP reports: %w", err)
	}
	if err := webrtc.ConfigureTWCCSender(m, reg); err != nil {
		return nil, nil, fmt.Errorf("sfu: TWCC: %w", err)
	}
	gen, err := nack.NewGeneratorInterceptor()
	if err != nil {
		return nil, nil, fmt.Errorf("sfu: NACK generator: %w", err)
	}
	reg.Add(gen)
	return m, reg, nil
}

// opusCodec is the one audio codec, as browsers offer it.
var opusCodec = webrtc.RTPCodecCapability{
	MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1",
}

// UDPAddr is the address of the media port (with the port chosen if
// Config.UDPAddr asked for 0). With an unspecified address it is one of
// the interface addresses bound.
func (s *SFU) UDPAddr() net.Addr { return s.udpAt }

// Call returns the call named id. onSpeakers is called, from the call's
// own goroutine and with no lock of the SFU held, with the ids of the
// peers speaking, loudest first, whenever that list changes (at most every
// speakerInterval). A call is registered by its first Join and removed
// when its last peer leaves; the onSpeakers of the *Call that registered
// it is the one kept. A *Call kept after it emptied still works: its Join
// registers it again, or joins the call registered since under its name.
func (s *SFU) Call(id string, onSpeakers func(ids []string)) *Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.calls[id]; c != nil {
		return c
	}
	return &Call{sfu: s, id: id, onSpeakers: onSpeakers, peers: make(map[string]*Peer), removed: true}
}

// addCallLocked registers c and starts its speaker ticker. s.mu must be
// held and s not closed.
func (s *SFU) addCallLocked(c *Call) {
	s.calls[c.id] = c
	c.removed = false
	c.stop = make(chan struct{})
	s.stats.calls.Add(1)
	s.wg.Add(1)
	go c.speakers(c.stop)
}

// removeCall drops c if it still has no peers (a Join may have come in
// since its last peer left).
func (s *SFU) removeCall(c *Call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.peers) > 0 || c.removed {
		return
	}
	if s.calls[c.id] == c {
		delete(s.calls, c.id)
	}
	c.removed = true
	close(c.stop)
	s.stats.calls.Add(-1)
}

// enter counts a goroutine the SFU is about to start; false once the SFU
// is closed (then the goroutine must not start).
func (s *SFU) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// Close closes every call and peer connection and the sockets, and waits
// for every goroutine the SFU started. Pages get no message: the server
// tells them the call ended. Close is idempotent.
func (s *SFU) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var peers []*Peer
	for _, c := range s.calls {
		c.mu.Lock()
		for _, p := range c.peers {
			peers = append(peers, p)
		}
		c.mu.Unlock()
	}
	s.mu.Unlock()

	var closing sync.WaitGroup
	for _, p := range peers {
		closing.Add(1)
		go func() {
			defer closing.Done()
			p.leave(true)
		}()
	}
	closing.Wait()
	// Every call emptied as its last peer left, which stopped its
	// speaker goroutine; no Join is accepted any more.
	s.wg.Wait()
	return s.closeSockets()
}

// closeSockets closes the muxes (and so the ports).
func (s *SFU) closeSockets() error {
	var errs []error
	if s.udp != nil {
		errs = append(errs, s.udp.Close())
	}
	if s.tcp != nil {
		errs = append(errs, s.tcp.Close())
	}
	return errors.Join(errs...)
}

// Stats returns the current counters.
func (s *SFU) Stats() Stats {
	return Stats{
		Calls:            int(s.stats.calls.Load()),
		Peers:            int(s.stats.peers.Load()),
		PublishedTracks:  int(s.stats.published.Load()),
		ForwardedTracks:  int(s.stats.forwarded.Load()),
		PacketsForwarded: s.stats.packets.Load(),
		BytesForwarded:   s.stats.bytes.Load(),
		Retransmits:      s.stats.retransmits.Load(),
		KeyframeRequests: s.stats.keyframes.Load(),
	}
}
