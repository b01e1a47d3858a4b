package sfu

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// media is what a published track carries, fixed by the transceiver the
// page sends it on (see the package doc).
type media uint8

const (
	mediaAudio media = iota
	mediaCamera
	mediaScreen
	mediaCount
)

// String is the media's name: the forwarded track's id, and the "media"
// of an offer's track list.
func (m media) String() string {
	return [...]string{"audio", "camera", "screen"}[m]
}

const (
	// receiveMTU bounds one RTP packet read from a publisher (pion's
	// default receive MTU).
	receiveMTU = 1460
	// rtxSlots is the retransmission buffer of one published video
	// track, in packets (a power of two). 512 is LiveKit's order (500):
	// 8 s of a 500 kbit/s camera, 2 s of a keyframe-heavy 2.5 Mbit/s
	// screen, more than any NACK round trip. At most 512 × 1.5 KB ≈ 750 KB
	// per published video track, however many subscribers.
	rtxSlots = 512
	// maxResendPerNACK caps what one NACK packet can make the server
	// resend, so a subscriber cannot turn a small RTCP packet into a
	// burst of thousands.
	maxResendPerNACK = 64
	// keyframeGap is the least time between two picture-loss requests to
	// one publisher's track (LiveKit's low-quality throttle). A request
	// inside the gap is sent when the gap ends, not dropped: a subscriber
	// that joined just after another still gets its keyframe.
	keyframeGap = 500 * time.Millisecond
)

// upTrack is one track a peer publishes. Its forwarder goroutine (pion's
// OnTrack goroutine) reads every packet once and writes it to each
// subscriber's downTrack.
type upTrack struct {
	pub    *Peer
	media  media
	kind   webrtc.RTPCodecType
	remote *webrtc.TrackRemote
	ssrc   uint32
	// levelID is the negotiated id of the RFC 6464 audio level header
	// extension, 0 if none.
	levelID uint8
	level   audioLevels
	rtx     *rtxBuffer // video only

	// downs is the subscribers' downTracks, copy-on-write: the forwarder
	// loads it once per packet without a lock; downMu serialises the
	// writers (subscribers' negotiations and leaves).
	downs  atomic.Pointer[[]*downTrack]
	downMu sync.Mutex

	// kfMu guards lastKF and kfPending (keyframe requests).
	kfMu      sync.Mutex
	lastKF    time.Time
	kfPending bool
}

func newUpTrack(pub *Peer, m media, remote *webrtc.TrackRemote, recv *webrtc.RTPReceiver) *upTrack {
	t := &upTrack{pub: pub, media: m, kind: remote.Kind(), remote: remote, ssrc: uint32(remote.SSRC())}
	t.downs.Store(&[]*downTrack{})
	for _, e := range recv.GetParameters().HeaderExtensions {
		if e.URI == sdp.AudioLevelURI {
			t.levelID = uint8(e.ID)
		}
	}
	if t.kind == webrtc.RTPCodecTypeVideo {
		t.rtx = &rtxBuffer{}
	}
	return t
}

// forward reads the publisher's packets until its track ends and writes
// each to every subscriber. Packets go out unchanged but for SSRC and
// payload type (which TrackLocalStaticRTP rewrites per subscriber) and
// the header extensions, which are stripped: their ids and meaning (mid,
// transport-wide sequence numbers) belong to the publisher's connection.
func (t *upTrack) forward() {
	s := t.pub.call.sfu
	buf := make([]byte, receiveMTU)
	var pkt rtp.Packet
	for {
		n, _, err := t.remote.Read(buf)
		if err != nil {
			return
		}
		if pkt.Unmarshal(buf[:n]) != nil {
			continue
		}
		if t.kind == webrtc.RTPCodecTypeAudio {
			if t.pub.audioMuted.Load() {
				continue // host mute: the audio reaches nobody
			}
			if t.levelID != 0 {
				var l rtp.AudioLevelExtension
				if e := pkt.GetExtension(t.levelID); e != nil && l.Unmarshal(e) == nil {
					t.level.observe(l.Level)
				}
			}
		}
		pkt.Extension = false
		if t.rtx != nil {
			t.rtx.put(&pkt)
		}
		sent := 0
		for _, d := range *t.downs.Load() {
			if d.bound.Load() && d.WriteRTP(&pkt) == nil {
				sent++
			}
		}
		if sent > 0 {
			s.stats.packets.Add(uint64(sent))
			s.stats.bytes.Add(uint64(sent * n))
		}
	}
}

// drainRTCP reads the publisher's RTCP for this track (sender reports)
// so the receiver-report interceptor sees them, until the track ends.
func (t *upTrack) drainRTCP(recv *webrtc.RTPReceiver) {
	defer t.pub.call.sfu.wg.Done()
	buf := make([]byte, receiveMTU)
	for {
		if _, _, err := recv.Read(buf); err != nil {
			return
		}
	}
}

// addDown starts forwarding to d.
func (t *upTrack) addDown(d *downTrack) {
	t.downMu.Lock()
	defer t.downMu.Unlock()
	old := *t.downs.Load()
	next := make([]*downTrack, len(old), len(old)+1)
	copy(next, old)
	next = append(next, d)
	t.downs.Store(&next)
	t.pub.call.sfu.stats.forwarded.Add(1)
}

// removeDown stops forwarding to d.
func (t *upTrack) removeDown(d *downTrack) {
	t.downMu.Lock()
	defer t.downMu.Unlock()
	old := *t.downs.Load()
	next := make([]*downTrack, 0, len(old))
	for _, o := range old {
		if o != d {
			next = append(next, o)
		}
	}
	if len(next) < len(old) {
		t.downs.Store(&next)
		t.pub.call.sfu.stats.forwarded.Add(-1)
	}
}

// keyframe asks the publisher for a keyframe, at most once per
// keyframeGap; a request inside the gap is sent when it ends.
func (t *upTrack) keyframe() {
	if t.kind != webrtc.RTPCodecTypeVideo {
		return
	}
	t.kfMu.Lock()
	if t.kfPending {
		t.kfMu.Unlock()
		return
	}
	wait := keyframeGap - time.Since(t.lastKF)
	if wait <= 0 {
		t.lastKF = time.Now()
		t.kfMu.Unlock()
		t.sendPLI()
		return
	}
	t.kfPending = true
	t.kfMu.Unlock()
	time.AfterFunc(wait, func() {
		t.kfMu.Lock()
		t.kfPending = false
		t.lastKF = time.Now()
		t.kfMu.Unlock()
		t.sendPLI()
	})
}

func (t *upTrack) sendPLI() {
	if t.pub.left.Load() {
		return
	}
	err := t.pub.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: t.ssrc}})
	if err == nil {
		t.pub.call.sfu.stats.keyframes.Add(1)
	}
}

// downTrack is one published track as sent to one subscriber: its own
// TrackLocalStaticRTP (so its own SSRC, payload type and RTCP), whose
// stream id is the publisher's id and whose track id is the media.
type downTrack struct {
	*webrtc.TrackLocalStaticRTP
	up     *upTrack
	sub    *Peer
	sender *webrtc.RTPSender
	tr     *webrtc.RTPTransceiver
	// bound is true between pion's Bind and Unbind: the answer that
	// negotiated it is in and packets really go out (for the counters).
	bound atomic.Bool
	ssrc  atomic.Uint32
	// fresh marks a downTrack whose offer is not answered yet; guarded by
	// sub.negMu. Its answer triggers one keyframe request.
	fresh bool
}

func newDownTrack(up *upTrack, sub *Peer) (*downTrack, error) {
	local, err := webrtc.NewTrackLocalStaticRTP(up.remote.Codec().RTPCodecCapability, up.media.String(), up.pub.id)
	if err != nil {
		return nil, err
	}
	return &downTrack{TrackLocalStaticRTP: local, up: up, sub: sub, fresh: true}, nil
}

// Bind implements webrtc.TrackLocal: pion calls it when the subscriber's
// answer is applied.
func (d *downTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	p, err := d.TrackLocalStaticRTP.Bind(ctx)
	if err == nil {
		d.ssrc.Store(uint32(ctx.SSRC()))
		d.bound.Store(true)
	}
	return p, err
}

// Unbind implements webrtc.TrackLocal: the track was removed.
func (d *downTrack) Unbind(ctx webrtc.TrackLocalContext) error {
	d.bound.Store(false)
	return d.TrackLocalStaticRTP.Unbind(ctx)
}

// readRTCP handles the subscriber's RTCP about this track until the
// sender stops: picture-loss requests go (throttled) to the publisher,
// NACKs are answered from the published track's retransmission buffer.
func (d *downTrack) readRTCP() {
	defer d.sub.call.sfu.wg.Done()
	buf := make([]byte, receiveMTU)
	var scratch []byte
	for {
		n, _, err := d.sender.Read(buf)
		if err != nil {
			return
		}
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		// A compound packet comes to every sender it names: act only on
		// what is about this one.
		ssrc := d.ssrc.Load()
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.PictureLossIndication:
				if p.MediaSSRC == ssrc {
					d.up.keyframe()
				}
			case *rtcp.FullIntraRequest:
				if firNames(p, ssrc) {
					d.up.keyframe()
				}
			case *rtcp.TransportLayerNack:
				if p.MediaSSRC == ssrc {
					scratch = d.resend(p, scratch)
				}
			}
		}
	}
}

// firNames tells whether a full intra request is about ssrc: RFC 5104
// names the stream in its entries, some senders in the media SSRC.
func firNames(p *rtcp.FullIntraRequest, ssrc uint32) bool {
	if p.MediaSSRC == ssrc {
		return true
	}
	for _, e := range p.FIR {
		if e.SSRC == ssrc {
			return true
		}
	}
	return false
}

// resend writes the packets a NACK lists, if still buffered, to this
// subscriber only. scratch is reused between calls.
func (d *downTrack) resend(nack *rtcp.TransportLayerNack, scratch []byte) []byte {
	rb := d.up.rtx
	if rb == nil {
		return scratch
	}
	sent := 0
	var pkt rtp.Packet
	for _, pair := range nack.Nacks {
		for _, seq := range pair.PacketList() {
			if sent == maxResendPerNACK {
				return scratch
			}
			var ok bool
			if scratch, ok = rb.get(seq, scratch[:0]); !ok || pkt.Unmarshal(scratch) != nil {
				continue
			}
			if d.WriteRTP(&pkt) == nil {
				sent++
				d.sub.call.sfu.stats.retransmits.Add(1)
			}
		}
	}
	return scratch
}

// rtxBuffer keeps the last rtxSlots packets of one published video track,
// marshalled (extensions already stripped), indexed by sequence number.
// One per published track, shared by all its subscribers.
type rtxBuffer struct {
	mu    sync.Mutex
	slots [rtxSlots]rtxSlot
}

type rtxSlot struct {
	seq   uint16
	valid bool
	data  []byte
}

// put stores a copy of pkt, replacing the packet rtxSlots older.
func (b *rtxBuffer) put(pkt *rtp.Packet) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := &b.slots[pkt.SequenceNumber%rtxSlots]
	size := pkt.MarshalSize()
	if cap(s.data) < size {
		s.data = make([]byte, size, max(size, receiveMTU))
	}
	n, err := pkt.MarshalTo(s.data[:size])
	s.data, s.seq, s.valid = s.data[:n], pkt.SequenceNumber, err == nil
}

// get appends the packet numbered seq to dst, if it is still buffered.
func (b *rtxBuffer) get(seq uint16, dst []byte) ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := &b.slots[seq%rtxSlots]
	if !s.valid || s.seq != seq {
		return dst, false
	}
	return append(dst, s.data...), true
}
