package sfu

import (
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
)

// waitTimeout is how long a test waits for a condition: generous, for a
// loaded 2-core machine under the race detector. No test asserts how soon
// anything happens.
const waitTimeout = 90 * time.Second

// waitFor polls cond until it holds, failing the test after waitTimeout
// with what() describing the state.
func waitFor(t testing.TB, what func() string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// newTestSFU starts an SFU on a loopback port, closed at the end of the
// test.
func newTestSFU(t testing.TB, tweak ...func(*Config)) *SFU {
	t.Helper()
	cfg := Config{UDPAddr: "127.0.0.1:0", Loopback: true, Log: testLog()}
	for _, f := range tweak {
		f(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// testCall is a call with its test clients.
type testCall struct {
	t       testing.TB
	call    *Call
	clients []*client
	peers   map[string]*Peer

	mu       sync.Mutex
	speakers [][]string
}

func newTestCall(t testing.TB, s *SFU, name string) *testCall {
	tc := &testCall{t: t, peers: map[string]*Peer{}}
	tc.call = s.Call(name, func(ids []string) {
		tc.mu.Lock()
		tc.speakers = append(tc.speakers, ids)
		tc.mu.Unlock()
	})
	return tc
}

// join adds a client that publishes what opts says.
func (tc *testCall) join(id string, opts clientOpts) *client {
	tc.t.Helper()
	c, err := newClient(id, opts)
	if err != nil {
		tc.t.Fatal(err)
	}
	p, err := tc.call.Join(id, c.deliver)
	if err != nil {
		tc.t.Fatal(err)
	}
	c.toServer = p.Signal
	c.start()
	tc.clients = append(tc.clients, c)
	tc.peers[id] = p
	tc.t.Cleanup(c.close)
	return c
}

// lastSpeakers is the last list given to onSpeakers.
func (tc *testCall) lastSpeakers() []string {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if len(tc.speakers) == 0 {
		return nil
	}
	return tc.speakers[len(tc.speakers)-1]
}

// checkClients fails the test if a client met an error.
func (tc *testCall) checkClients() {
	tc.t.Helper()
	for _, c := range tc.clients {
		if err := c.err(); err != nil {
			tc.t.Error(err)
		}
	}
}

// describe lists what each client receives, for failure messages.
func describe(cs []*client) string {
	var b strings.Builder
	for _, c := range cs {
		var ts []string
		for _, t := range c.live() {
			ts = append(ts, t.stream+"/"+t.id)
		}
		sort.Strings(ts)
		fmt.Fprintf(&b, "%s receives %d %v; ", c.id, len(ts), ts)
	}
	return b.String()
}

// everyoneGets waits until every client receives, with packets, exactly
// the tracks of the other clients: per other, want media (track ids).
func everyoneGets(t testing.TB, cs []*client, want func(*client) []string) {
	t.Helper()
	waitFor(t, func() string { return describe(cs) }, func() bool {
		for _, c := range cs {
			var got, exp []string
			for _, tr := range c.live() {
				got = append(got, tr.stream+"/"+tr.id)
			}
			for _, o := range cs {
				if o != c {
					for _, m := range want(o) {
						exp = append(exp, o.id+"/"+m)
					}
				}
			}
			sort.Strings(got)
			sort.Strings(exp)
			if !slices.Equal(got, exp) {
				return false
			}
		}
		return true
	})
}

var av = clientOpts{audio: true, camera: true}

func avTracks(*client) []string { return []string{"audio", "camera"} }

// TestForwardAll: N peers each receive the 2·(N−1) tracks of the others,
// with packets, stream id = publisher, track id = media, and the offer's
// track list says the same by mid.
func TestForwardAll(t *testing.T) {
	for _, n := range []int{3, 6} {
		t.Run(fmt.Sprintf("peers=%d", n), func(t *testing.T) {
			s := newTestSFU(t)
			tc := newTestCall(t, s, "room")
			for i := range n {
				tc.join(fmt.Sprintf("p%d", i), av)
			}
			everyoneGets(t, tc.clients, avTracks)
			for _, c := range tc.clients {
				offered := c.offerTracks()
				for _, tr := range c.live() {
					if got := offered[tr.mid]; got != (trackInfo{ID: tr.stream, Media: tr.id}) {
						t.Errorf("%s: mid %s is %+v in the offer, msid %s %s", c.id, tr.mid, got, tr.stream, tr.id)
					}
				}
			}
			st := s.Stats()
			if st.Calls != 1 || st.Peers != n || st.PublishedTracks != 2*n || st.ForwardedTracks != 2*n*(n-1) {
				t.Errorf("stats %+v", st)
			}
			if st.PacketsForwarded == 0 || st.BytesForwarded == 0 {
				t.Errorf("nothing counted as forwarded: %+v", st)
			}
			tc.checkClients()
		})
	}
}

// TestScreen: a screen share comes as a third track, "screen".
func TestScreen(t *testing.T) {
	s := newTestSFU(t)
	tc := newTestCall(t, s, "room")
	tc.join("a", clientOpts{audio: true, camera: true, screen: true})
	tc.join("b", av)
	everyoneGets(t, tc.clients, func(c *client) []string {
		if c.id == "a" {
			return []string{"audio", "camera", "screen"}
		}
		return avTracks(c)
	})
	tc.checkClients()
}

// TestLeave: a peer that leaves, and one whose connection dies without a
// word, have their tracks removed from the others by renegotiation.
func TestLeave(t *testing.T) {
	s := newTestSFU(t, func(c *Config) { c.iceDisconnected, c.iceFailed = time.Second, 2*time.Second })
	tc := newTestCall(t, s, "room")
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		opts := av
		opts.ownSocket = id == "c"
		tc.join(id, opts)
	}
	everyoneGets(t, tc.clients, avTracks)

	tc.peers["a"].Leave()
	tc.peers["a"].Leave() // idempotent
	<-tc.peers["a"].Done()
	rest := tc.clients[1:]
	everyoneGets(t, rest, avTracks)
	if err := tc.peers["a"].Signal([]byte(`{"kind":"ice","candidate":null}`)); err != ErrClosed {
		t.Errorf("Signal after Leave: %v, want ErrClosed", err)
	}

	// b's page closes its connection, without a signal to the server.
	tc.clients[1].close()
	select {
	case <-tc.peers["b"].Done():
	case <-time.After(waitTimeout):
		t.Fatal("the server did not drop a peer whose page closed its connection")
	}
	everyoneGets(t, tc.clients[2:], avTracks)

	// c's page vanishes without a word (no DTLS close): ICE fails.
	tc.clients[2].vanish()
	select {
	case <-tc.peers["c"].Done():
	case <-time.After(waitTimeout):
		t.Fatal("the server did not drop a peer whose connection died")
	}
	everyoneGets(t, tc.clients[3:], avTracks)
	waitFor(t, func() string { return fmt.Sprintf("%+v", s.Stats()) }, func() bool {
		st := s.Stats()
		return st.Peers == 2 && st.PublishedTracks == 4 && st.ForwardedTracks == 4
	})

	// The last two leave: the call is gone; its *Call still works.
	tc.peers["d"].Leave()
	tc.peers["e"].Leave()
	waitFor(t, func() string { return fmt.Sprintf("%+v", s.Stats()) }, func() bool { return s.Stats().Calls == 0 })
	tc.join("f", av)
	tc.join("g", av)
	everyoneGets(t, tc.clients[5:], avTracks)
	if st := s.Stats(); st.Calls != 1 || st.Peers != 2 {
		t.Errorf("after a new join: %+v", st)
	}
}

// TestUnreachable: a peer that never connects is dropped, with a warning.
func TestUnreachable(t *testing.T) {
	s := newTestSFU(t, func(c *Config) { c.connectTimeout = time.Second })
	tc := newTestCall(t, s, "room")
	tc.join("a", clientOpts{audio: true, deaf: true})
	select {
	case <-tc.peers["a"].Done():
	case <-time.After(waitTimeout):
		t.Fatal("a peer that never connected was kept")
	}
	waitFor(t, func() string { return fmt.Sprintf("%+v", s.Stats()) }, func() bool { return s.Stats().Calls == 0 })
}

// TestRejoin: joining again under the same id replaces the old peer.
func TestRejoin(t *testing.T) {
	s := newTestSFU(t)
	tc := newTestCall(t, s, "room")
	tc.join("a", av)
	tc.join("b", av)
	everyoneGets(t, tc.clients, avTracks)
	old := tc.peers["b"]
	tc.clients[1].close()
	tc.join("b", av)
	<-old.Done()
	everyoneGets(t, []*client{tc.clients[0], tc.clients[2]}, avTracks)
}

// TestPictureLoss: a PLI a subscriber sends reaches the publisher, and a
// new subscriber makes one.
func TestPictureLoss(t *testing.T) {
	s := newTestSFU(t)
	tc := newTestCall(t, s, "room")
	a := tc.join("a", av)
	b := tc.join("b", av)
	everyoneGets(t, tc.clients, avTracks)
	waitFor(t, func() string { return "no PLI at a after b subscribed" }, func() bool { return a.plis.Load() > 0 })

	before := a.plis.Load()
	cam := b.liveFrom("a")
	for _, tr := range cam {
		if tr.id == "camera" {
			if err := b.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(tr.remote.SSRC())}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, func() string { return "b's PLI did not reach a" }, func() bool { return a.plis.Load() > before })
	if s.Stats().KeyframeRequests == 0 {
		t.Errorf("no keyframe request counted: %+v", s.Stats())
	}
}

// TestNACK: a subscriber's NACK for a packet it had is answered from the
// published track's buffer.
func TestNACK(t *testing.T) {
	s := newTestSFU(t)
	tc := newTestCall(t, s, "room")
	tc.join("a", av)
	b := tc.join("b", av)
	everyoneGets(t, tc.clients, avTracks)
	for _, tr := range b.liveFrom("a") {
		if tr.id != "camera" {
			continue
		}
		before := tr.repeats.Load()
		seq := uint16(tr.lastSeq.Load())
		nack := &rtcp.TransportLayerNack{MediaSSRC: uint32(tr.remote.SSRC()),
			Nacks: rtcp.NackPairsFromSequenceNumbers([]uint16{seq - 2, seq - 1, seq})}
		if err := b.pc.WriteRTCP([]rtcp.Packet{nack}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() string { return fmt.Sprintf("no retransmission received: %+v", s.Stats()) },
			func() bool { return tr.repeats.Load() >= before+3 })
		if st := s.Stats(); st.Retransmits < 3 {
			t.Errorf("retransmissions not counted: %+v", st)
		}
	}
}

// TestSpeakers: a peer at level 10 is listed, one at 127 is not; they
// switch; a host-muted peer is never listed.
func TestSpeakers(t *testing.T) {
	s := newTestSFU(t)
	tc := newTestCall(t, s, "room")
	a := tc.join("a", av)
	b := tc.join("b", av)
	c := tc.join("c", av)
	everyoneGets(t, tc.clients, avTracks)

	want := func(ids ...string) {
		t.Helper()
		waitFor(t, func() string { return fmt.Sprintf("speakers %v, want %v", tc.lastSpeakers(), ids) },
			func() bool { return slices.Equal(tc.lastSpeakers(), ids) && (len(ids) > 0 || len(tc.speakers) > 0) })
	}
	a.level.Store(10)
	want("a")
	a.level.Store(127)
	b.level.Store(10)
	want("b")
	c.level.Store(20)
	want("b", "c") // loudest first: 10 before 20
	tc.peers["b"].SetAudioMuted(true)
	want("c")
	c.level.Store(127)
	want()
}

// TestHostMute: a muted peer's audio stops reaching the others (video
// goes on), and comes back when unmuted.
func TestHostMute(t *testing.T) {
	s := newTestSFU(t)
	tc := newTestCall(t, s, "room")
	tc.join("a", av)
	b := tc.join("b", av)
	everyoneGets(t, tc.clients, avTracks)
	var audio, video *recvTrack
	for _, tr := range b.liveFrom("a") {
		if tr.id == "audio" {
			audio = tr
		} else {
			video = tr
		}
	}

	tc.peers["a"].SetAudioMuted(true)
	// Wait until a's audio count stays put for a second: the packets in
	// flight when the mute came are in.
	var stillAt int64 = -1
	waitFor(t, func() string { return "a's audio still flows while muted" }, func() bool {
		n := audio.packets.Load()
		if n == stillAt {
			return true
		}
		stillAt = n
		time.Sleep(time.Second)
		return false
	})
	v := video.packets.Load()
	waitFor(t, func() string { return "a's video stopped too" }, func() bool { return video.packets.Load() > v+10 })
	if n := audio.packets.Load(); n != stillAt {
		t.Errorf("muted audio went on: %d packets, then %d", stillAt, n)
	}

	tc.peers["a"].SetAudioMuted(false)
	waitFor(t, func() string { return "a's audio did not come back" }, func() bool { return audio.packets.Load() > stillAt+10 })
}

// TestSignalErrors: bad signal data is an error, never a panic.
func TestSignalErrors(t *testing.T) {
	s := newTestSFU(t)
	c := s.Call("room", nil)
	p, err := c.Join("a", func([]byte) {})
	if err != nil {
		t.Fatal(err)
	}
	for _, data := range []string{
		``, `{`, `[]`, `{"kind":"offer","sdp":"v=0"}`, `{"kind":"answer"}`,
		`{"kind":"answer","sdp":"nonsense"}`, `{"kind":"what"}`, `{"kind":"ice","candidate":{"candidate":7}}`,
	} {
		if err := p.Signal([]byte(data)); err == nil {
			t.Errorf("Signal(%q): no error", data)
		}
	}
	for _, data := range []string{`{"kind":"ice","candidate":null}`, `{"kind":"ice"}`} {
		if err := p.Signal([]byte(data)); err != nil {
			t.Errorf("Signal(%q): %v", data, err)
		}
	}
}

// TestNewErrors: a port that cannot be bound is a clear error.
func TestNewErrors(t *testing.T) {
	s := newTestSFU(t)
	_, err := New(Config{UDPAddr: s.UDPAddr().String(), Log: testLog()})
	if err == nil || !strings.Contains(err.Error(), "listen UDP") {
		t.Errorf("second bind of %s: %v", s.UDPAddr(), err)
	}
	if _, err := New(Config{UDPAddr: "nonsense:x", Log: testLog()}); err == nil {
		t.Error("bad address accepted")
	}
}

// TestManyPeers: 25 peers with video and audio each, in one call; every
// peer receives the 48 tracks of the others. Under the race detector the
// media rate is lowered (the check is that every track flows, not how
// fast).
func TestManyPeers(t *testing.T) {
	if testing.Short() {
		t.Skip("25 peers: not with -short")
	}
	opts := av
	if raceEnabled {
		opts.frameEvery, opts.audioEvery, opts.frameSize = 250*time.Millisecond, 250*time.Millisecond, 800
	}
	s := newTestSFU(t)
	tc := newTestCall(t, s, "big")
	for i := range 25 {
		tc.join(fmt.Sprintf("p%02d", i), opts)
	}
	everyoneGets(t, tc.clients, avTracks)
	if st := s.Stats(); st.ForwardedTracks != 25*24*2 {
		t.Errorf("stats %+v", st)
	}
	// Measured, not asserted: how many offers the debounce let through.
	lo, hi := int64(1<<62), int64(0)
	for _, c := range tc.clients {
		lo, hi = min(lo, c.offers.Load()), max(hi, c.offers.Load())
	}
	t.Logf("offers per peer for 25 joins: %d to %d", lo, hi)
	tc.checkClients()
}

// TestCloseLeavesNoGoroutine: after Close (and the clients' own close),
// the goroutine count is back where it was.
func TestCloseLeavesNoGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	s, err := New(Config{UDPAddr: "127.0.0.1:0", Loopback: true, Log: testLog()})
	if err != nil {
		t.Fatal(err)
	}
	tc := newTestCall(t, s, "room")
	for _, id := range []string{"a", "b", "c"} {
		tc.join(id, av)
	}
	everyoneGets(t, tc.clients, avTracks)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range tc.clients {
		c.close()
	}
	if _, err := s.Call("room", nil).Join("z", func([]byte) {}); err != ErrClosed {
		t.Errorf("Join after Close: %v", err)
	}
	waitFor(t, func() string {
		buf := make([]byte, 1<<20)
		return fmt.Sprintf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
	}, func() bool { return runtime.NumGoroutine() <= before })
}
