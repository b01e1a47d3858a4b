package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// The call scenario puts -peers pion peers (callpeer.go) in one room's call
// through the server's SFU, every one publishing audio and a camera, and
// measures the forwarding: the server's CPU per forwarded packet and its
// memory per peer, from its /metrics, with the packets counted at the
// receivers (noom's /metrics has no SFU packet counter). callGen is one
// process's share of the peers, driven through the same phases as the chat
// connections of loadGen: its ramp joins its peers and ends once each of
// them receives packets on all 2·(N−1) tracks of the others (full flow),
// or callFlowFactor × -timeout after the last join.

// callPerProcess is how many peers one process runs when -workers is not
// given: pion's goroutines, SRTP and timers for 25 peers receiving 24
// senders each are a lot for one process on a small machine.
const callPerProcess = 13

// callFlowFactor × -timeout bounds the wait for full flow after the joins.
const callFlowFactor = 3

// callGen runs the peers [Plan.Lo, Plan.Hi) of the call.
type callGen struct {
	plan   *Plan
	peers  []*callPeer
	series *Series // packets received by receive second; peers at full flow
	want   int     // tracks each peer should receive: audio and camera of every other peer

	joinLatency Histogram // dial to the server's `call` answer
	flowLatency Histogram // dial to full flow

	joined, failed, full atomic.Int64
	rampStart            int64
	lastJoin, lastFull   atomic.Int64
	rampCPU, rampWall    int64

	win callWindow // what the measured window saw, set by run

	eventsMu sync.Mutex
	events   map[string]int
	cancel   context.CancelFunc
}

// callWindow is what the share saw in the measured window.
type callWindow struct {
	measured                 bool
	startCPU, startWall      int64 // µs, when the window opened
	startPackets, startBytes uint64
	startSent                uint64
	cpu, wall                int64 // µs of this process's CPU and of wall time in the window
	packets, bytes, sent     uint64
	tracksMin, tracksMax     int // per peer: received tracks whose packets grew in the window
	peersFlowing             int // peers with all the tracks they want growing
}

func newCallGen(p *Plan) (*callGen, error) {
	if _, err := callAPI(); err != nil {
		return nil, err
	}
	g := &callGen{plan: p, series: newSeries(p.Origin, p.Seconds), want: 2 * (p.Conns - 1), events: map[string]int{}}
	for i := p.Lo; i < p.Hi; i++ {
		g.peers = append(g.peers, newCallPeer(g, i))
	}
	return g, nil
}

// event counts a notable occurrence.
func (g *callGen) event(s string) {
	g.eventsMu.Lock()
	g.events[s]++
	g.eventsMu.Unlock()
}

// progress: joined are the peers in the call, open those at full flow,
// deliveries the packets received.
func (g *callGen) progress() Progress {
	pk, _ := g.received()
	return Progress{Joined: g.joined.Load(), Failed: g.failed.Load(), Open: g.full.Load(), Deliveries: pk}
}

// received sums the packets and bytes received by every peer of the share.
func (g *callGen) received() (packets, bytes uint64) {
	for _, c := range g.peers {
		for _, t := range c.tracks() {
			packets += t.packets.Load()
			bytes += t.bytes.Load()
		}
	}
	return packets, bytes
}

// sent sums the RTP packets the share's peers published.
func (g *callGen) sent() uint64 {
	var n uint64
	for _, c := range g.peers {
		n += c.sent.Load()
	}
	return n
}

// ramp joins every peer at once (or at -ramp a second) and waits for full
// flow.
func (g *callGen) ramp(ctx context.Context) {
	p := g.plan
	start := time.Now()
	cpu0 := cpuMicros()
	defer func() { g.rampCPU, g.rampWall = cpuMicros()-cpu0, time.Since(start).Microseconds() }()
	g.rampStart = start.UnixNano()
	sctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	go g.sampleFull(sctx)
	var wg sync.WaitGroup
	for i, c := range g.peers {
		if p.Ramp > 0 {
			sleepUntil(ctx, start.Add(time.Duration(float64(i)*float64(time.Second)/p.Ramp)))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.join(ctx); err != nil {
				c.state.Store(cpFailed)
				g.failed.Add(1)
				g.event("join: " + shorten(err.Error()))
				return
			}
			now := time.Now().UnixNano()
			c.state.Store(cpInCall)
			g.joined.Add(1)
			g.joinLatency.Record(time.Duration(now - c.dialStart))
			storeMax(&g.lastJoin, now)
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(callFlowFactor * p.Timeout)
	for ctx.Err() == nil {
		waiting := 0
		for _, c := range g.peers {
			if c.state.Load() != cpInCall || c.fullAt.Load() != 0 {
				continue
			}
			if c.live() < g.want {
				waiting++
				continue
			}
			now := time.Now().UnixNano()
			c.fullAt.Store(now)
			g.full.Add(1)
			g.flowLatency.Record(time.Duration(now - c.dialStart))
			storeMax(&g.lastFull, now)
		}
		if waiting == 0 {
			return
		}
		if time.Now().After(deadline) {
			g.event(fmt.Sprintf("%d peer(s) without all %d tracks after %s", waiting, g.want, callFlowFactor*p.Timeout))
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sampleFull writes the number of peers at full flow into the series.
func (g *callGen) sampleFull(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		g.series.at(time.Now().UnixNano()).Connected.Store(g.full.Load())
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// run waits for the window, counts what it receives in it, and returns at
// its end: the media flows on its own.
func (g *callGen) run(ctx context.Context, t0 int64) {
	p := g.plan
	winStart := time.Unix(0, t0).Add(p.Warmup)
	if !sleepUntil(ctx, winStart) {
		return
	}
	w := &g.win
	w.startCPU, w.startWall = cpuMicros(), time.Now().UnixMicro()
	w.startPackets, w.startBytes = g.received()
	w.startSent = g.sent()
	for _, c := range g.peers {
		for _, t := range c.tracks() {
			t.atStart = t.packets.Load()
		}
	}
	if !sleepUntil(ctx, winStart.Add(p.Duration)) {
		return
	}
	w.cpu, w.wall = cpuMicros()-w.startCPU, time.Now().UnixMicro()-w.startWall
	pk, by := g.received()
	w.packets, w.bytes, w.sent = pk-w.startPackets, by-w.startBytes, g.sent()-w.startSent
	w.tracksMin = -1
	for _, c := range g.peers {
		if c.state.Load() != cpInCall {
			continue
		}
		n := 0
		for _, t := range c.tracks() {
			if t.stream != c.id && t.packets.Load() > t.atStart {
				n++
			}
		}
		if w.tracksMin < 0 || n < w.tracksMin {
			w.tracksMin = n
		}
		w.tracksMax = max(w.tracksMax, n)
		if n >= g.want {
			w.peersFlowing++
		}
	}
	w.tracksMin = max(w.tracksMin, 0)
	w.measured = true
}

// stop closes every peer, all at once.
func (g *callGen) stop() {
	if g.cancel != nil {
		g.cancel()
	}
	var wg sync.WaitGroup
	for _, c := range g.peers {
		wg.Add(1)
		go func() { defer wg.Done(); c.close() }()
	}
	wg.Wait()
}

// CallWire is one share's call figures; the coordinator sums them
// (callreport.go).
type CallWire struct {
	Peers         int        `json:"peers"`
	Joined        int64      `json:"joined"`
	Failed        int64      `json:"failed"`
	Full          int64      `json:"full"` // peers that reached full flow during the ramp
	Want          int        `json:"want"` // tracks each peer should receive
	JoinLatency   SparseHist `json:"join_latency"`
	FlowLatency   SparseHist `json:"flow_latency"`
	RampStart     int64      `json:"ramp_start"`
	LastJoin      int64      `json:"last_join"`
	LastFull      int64      `json:"last_full"`
	Offers        int64      `json:"offers"`
	Measured      bool       `json:"measured"`
	WindowMicros  int64      `json:"window_us"`
	CPUMicros     int64      `json:"cpu_us"`
	Packets       uint64     `json:"packets"` // received in the window
	Bytes         uint64     `json:"bytes"`
	Sent          uint64     `json:"sent"` // published in the window
	TracksMin     int        `json:"tracks_min"`
	TracksMax     int        `json:"tracks_max"`
	PeersFlowing  int        `json:"peers_flowing"` // with every wanted track's packets growing in the window
	PacketsTotal  uint64     `json:"packets_total"`
	PeersMeasured int        `json:"peers_measured"`
}

// result reports the share's figures, in the chat fields where they mean
// the same (joined, ramp, the series, the harness's CPU; a delivery is a
// received packet) and in Call.
func (g *callGen) result() *WorkerResult {
	p, w := g.plan, &g.win
	var offers int64
	inCall := 0
	for _, c := range g.peers {
		offers += c.offers.Load()
		if c.state.Load() == cpInCall {
			inCall++
		}
	}
	total, _ := g.received()
	cw := &CallWire{
		Peers: len(g.peers), Joined: g.joined.Load(), Failed: g.failed.Load(), Full: g.full.Load(), Want: g.want,
		JoinLatency: g.joinLatency.Sparse(), FlowLatency: g.flowLatency.Sparse(),
		RampStart: g.rampStart, LastJoin: g.lastJoin.Load(), LastFull: g.lastFull.Load(), Offers: offers,
		Measured: w.measured, WindowMicros: w.wall, CPUMicros: w.cpu, Packets: w.packets, Bytes: w.bytes, Sent: w.sent,
		TracksMin: w.tracksMin, TracksMax: w.tracksMax, PeersFlowing: w.peersFlowing, PacketsTotal: total, PeersMeasured: inCall,
	}
	r := &WorkerResult{
		Worker: p.Worker, Conns: len(g.peers), Joined: g.joined.Load(), Failed: g.failed.Load(),
		RampStart: g.rampStart, LastJoin: g.lastJoin.Load(), Members: []int{int(g.joined.Load())},
		Deliveries: total, RxWindow: w.packets, RampLatency: g.joinLatency.Sparse(),
		CPUMicros: w.cpu, WindowMicros: w.wall, RampCPU: g.rampCPU, RampWall: g.rampWall,
		Series: g.series.wire(g.series.lastUsed()), Events: map[string]int{}, Call: cw,
	}
	g.eventsMu.Lock()
	for k, v := range g.events {
		r.Events[k] = v
	}
	g.eventsMu.Unlock()
	return r
}

// storeMax raises a to v if v is larger.
func storeMax(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

// shorten cuts an error text to one event line.
func shorten(s string) string {
	if len(s) > 120 {
		return s[:120]
	}
	return s
}
