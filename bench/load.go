package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// quietPeriod ends the drain: once sending stopped, a worker that has seen
// no delivery for this long assumes nothing more is in flight.
const quietPeriod = 500 * time.Millisecond

// loadGen opens and drives the connections [Plan.Lo, Plan.Hi) of one process:
// the in-process share when the run fits in one process, or a worker
// process's share. It reports through counters that the coordinator (or
// the worker's reporting loop) reads while it runs, and a WorkerResult at
// the end.
type loadGen struct {
	plan    *Plan
	targets []target
	pollers []*poller
	clients []atomic.Pointer[loadClient] // by idx - Lo; churn replaces entries
	shards  []*shard                     // one per poller
	series  *Series                      // sent and connected (deliveries are in the shards)
	seen    bitmap                       // messages seen by any local receiver
	sentSet bitmap                       // messages this share's publishers wrote
	prefix  [][]byte                     // by room: msgPrefix
	kStart  int
	kEnd    int

	rampLatency  Histogram // dial to `joined`, ramp connections
	churnLatency Histogram // dial to `joined`, churn replacements
	slow         slowSet   // slow readers (slow.go)

	joined, failed, open, dropped          atomic.Int64
	churnClosed, churnJoined, churnFailed  atomic.Int64
	sent, sentWindow, unsent, sendErrors   atomic.Uint64
	sendLagMax, sendLagSum                 atomic.Int64
	lastJoin, rampStart, windowStart, tEnd atomic.Int64
	cpuStart, cpuEnd                       atomic.Int64 // rusage of this process in the window, µs
	rampCPU, rampWall                      int64        // rusage and wall time of the ramp, µs
	drainCut                               bool         // the drain ended on Plan.Drain, not on quiet
	stopping                               atomic.Bool
	eventsMu                               sync.Mutex
	events                                 map[string]int
	members                                []int
}

// shard holds what the delivery path counts, for the connections of one
// poller goroutine (connection i goes to poller i mod -pollers). Only
// that goroutine writes a shard, so its atomic adds never bounce a cache
// line between cores; they are atomic only so that the progress line and
// the result can read them at any time.
type shard struct {
	latency    Histogram // deliveries of messages in the measured window
	series     *Series   // deliveries and their latency by receive second
	deliveries atomic.Uint64
	inWindow   atomic.Uint64 // deliveries of window messages
	rxWindow   atomic.Uint64 // deliveries received during the window
	received   atomic.Uint64 // inWindow, to stable members, not duplicates
	duplicates atomic.Uint64
	gaps       atomic.Uint64 // seq numbers skipped within a member's stream
	foreign    atomic.Uint64
	other      atomic.Uint64
	_          [64]byte // keep the next shard's counters off this cache line
}

func newLoadGen(p *Plan) (*loadGen, error) {
	w := &loadGen{
		plan:    p,
		clients: make([]atomic.Pointer[loadClient], p.Hi-p.Lo),
		series:  newSeries(p.Origin, p.Seconds),
		events:  map[string]int{},
	}
	for _, u := range p.URLs {
		t, err := parseTarget(u)
		if err != nil {
			return nil, err
		}
		w.targets = append(w.targets, t)
	}
	for r := range p.roomCount() {
		w.prefix = append(w.prefix, msgPrefix(p.roomName(r)))
	}
	w.kStart, w.kEnd = p.window()
	w.seen = newBitmap(w.kEnd)
	w.sentSet = newBitmap(w.kEnd)
	for range p.Pollers {
		w.shards = append(w.shards, &shard{series: newSeries(p.Origin, p.Seconds)})
	}
	for range p.Pollers {
		pl, err := newPoller(w, p.ReadBuffer, p.PollIdle)
		if err != nil {
			return nil, err
		}
		w.pollers = append(w.pollers, pl)
		go pl.run()
	}
	return w, nil
}

// event counts a notable occurrence (an error frame, a close code, a dial
// failure), under a mutex: these are rare, deliveries never get here.
func (w *loadGen) event(s string) {
	w.eventsMu.Lock()
	w.events[s]++
	w.eventsMu.Unlock()
}

// progress returns the counters shown on the progress line.
func (w *loadGen) progress() Progress {
	return Progress{
		Joined:     w.joined.Load(),
		Failed:     w.failed.Load(),
		Open:       w.open.Load(),
		Deliveries: w.sum(func(s *shard) *atomic.Uint64 { return &s.deliveries }),
		Sent:       w.sent.Load(),
	}
}

// sum adds one counter over the shards.
func (w *loadGen) sum(f func(*shard) *atomic.Uint64) uint64 {
	var n uint64
	for _, s := range w.shards {
		n += f(s).Load()
	}
	return n
}

// dialPool runs n dialer goroutines over jobs; it returns when jobs is
// closed and drained.
func (w *loadGen) dialPool(n int, jobs <-chan *loadClient) *sync.WaitGroup {
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range jobs {
				if err := c.connect(); err != nil {
					if c.churned {
						w.churnFailed.Add(1)
					} else {
						w.failed.Add(1)
					}
					w.event(dialReason(err))
				}
			}
		}()
	}
	return &wg
}

func (w *loadGen) newClient(i int, churned bool) *loadClient {
	c := &loadClient{w: w, idx: i, room: w.plan.roomOf(i), stable: w.plan.isStable(i), churned: churned}
	w.clients[i-w.plan.Lo].Store(c)
	return c
}

// ramp opens every connection of the share, at most Plan.Ramp a second, and
// returns when each has joined or failed (or Timeout after the last dial).
func (w *loadGen) ramp(ctx context.Context) {
	p := w.plan
	start := time.Now()
	cpu0 := cpuMicros()
	defer func() {
		w.rampCPU, w.rampWall = cpuMicros()-cpu0, time.Since(start).Microseconds()
	}()
	w.rampStart.Store(start.UnixNano())
	go w.sampleOpen(ctx)
	jobs := make(chan *loadClient)
	wg := w.dialPool(p.Dialers, jobs)
	for i := p.Lo; i < p.Hi && ctx.Err() == nil; i++ {
		if p.Ramp > 0 {
			due := start.Add(time.Duration(float64(i-p.Lo) * float64(time.Second) / p.Ramp))
			sleepUntil(ctx, due)
		}
		select {
		case jobs <- w.newClient(i, false):
		case <-ctx.Done():
		}
	}
	close(jobs)
	wg.Wait()
	n := int64(p.Hi - p.Lo)
	deadline := time.Now().Add(p.Timeout)
	for w.joined.Load()+w.failed.Load() < n && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	w.members = make([]int, p.roomCount())
	for i := range w.clients {
		c := w.clients[i].Load()
		if c == nil {
			continue
		}
		if c.state.CompareAndSwap(stJoining, stClosed) {
			w.failed.Add(1)
			w.event("no joined reply")
			c.close()
		} else if c.state.Load() == stJoined && c.stable {
			w.members[c.room]++
		}
	}
}

// sampleOpen writes the number of open connections into the time series.
func (w *loadGen) sampleOpen(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		w.series.at(time.Now().UnixNano()).Connected.Store(w.open.Load())
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// run is the measured part: publishing and churn from t0 (unix ns) for
// Warmup+Duration, then the drain. It returns when the share is done.
func (w *loadGen) run(ctx context.Context, t0 int64) {
	p := w.plan
	winStart := t0 + int64(p.Warmup)
	tEnd := winStart + int64(p.Duration)
	w.windowStart.Store(winStart)
	w.tEnd.Store(tEnd)
	var wg sync.WaitGroup
	if p.sends() {
		wg.Add(1)
		go func() { defer wg.Done(); w.sendLoop(ctx, t0) }()
	}
	if p.churns() && p.Churn > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); w.churnLoop(ctx, t0, tEnd) }()
	}
	if p.churns() && p.SlowEvery > 0 && p.Worker == 0 {
		wg.Add(1)
		go func() { defer wg.Done(); w.slowLoop(ctx, t0, tEnd) }()
	}
	sleepUntil(ctx, time.Unix(0, winStart))
	w.cpuStart.Store(cpuMicros())
	sleepUntil(ctx, time.Unix(0, tEnd))
	w.cpuEnd.Store(cpuMicros())
	wg.Wait()
	if p.sends() {
		w.drain(ctx, tEnd)
	}
}

// sendLoop sends this share's publishers' messages on the open-loop
// schedule: message k at t0 + k/Rate, whatever happened to earlier ones.
// When it falls behind it sends the late messages at once with their
// original intended times, so its own lag shows up in the latency.
func (w *loadGen) sendLoop(ctx context.Context, t0 int64) {
	p := w.plan
	lo, hi := max(p.Lo, 0), min(p.Hi, p.Publishers)
	if lo >= hi {
		return
	}
	var body, frame []byte
	for n := 0; ; n++ {
		for pub := lo; pub < hi; pub++ {
			k := p.msgIndex(pub, n)
			if k >= w.kEnd {
				return
			}
			due := t0 + p.msgDue(k)
			if !sleepUntil(ctx, time.Unix(0, due)) {
				return
			}
			c := w.clients[pub-p.Lo].Load()
			nc := c.connection()
			if c.state.Load() != stJoined || nc == nil {
				w.unsent.Add(1)
				continue
			}
			body = appendSay(body[:0], p.roomName(c.room), pub, n, due, p.Size)
			frame = appendClientFrame(frame[:0], opText, body, rand.Uint32())
			if _, err := nc.Write(frame); err != nil {
				w.sendErrors.Add(1)
				continue
			}
			now := time.Now().UnixNano()
			w.sentSet.Set(k)
			w.sent.Add(1)
			if k >= w.kStart {
				w.sentWindow.Add(1)
			}
			w.series.at(now).Sent.Add(1)
			lag := now - due
			w.sendLagSum.Add(lag)
			for m := w.sendLagMax.Load(); lag > m && !w.sendLagMax.CompareAndSwap(m, lag); m = w.sendLagMax.Load() {
			}
		}
	}
}

// churnLoop replaces this share's non-publisher connections, round-robin,
// Churn times a second: close one that has joined, dial a new one in its
// slot. Dials go through their own pool, so a slow server makes the
// achieved rate fall short (reported) rather than pile up goroutines.
func (w *loadGen) churnLoop(ctx context.Context, t0, tEnd int64) {
	p := w.plan
	var slots []int
	for i := p.Lo; i < p.Hi; i++ {
		if !p.isStable(i) {
			slots = append(slots, i)
		}
	}
	if len(slots) == 0 {
		return
	}
	jobs := make(chan *loadClient, p.Dialers)
	wg := w.dialPool(p.Dialers, jobs)
	defer wg.Wait()
	defer close(jobs)
	sleepUntil(ctx, time.Unix(0, t0))
	done, next := 0, 0
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		now := time.Now().UnixNano()
		if now >= tEnd || ctx.Err() != nil {
			return
		}
		due := int(float64(now-t0) * p.Churn / 1e9)
		for ; done < due; done++ {
			i := slots[next%len(slots)]
			next++
			old := w.clients[i-p.Lo].Load()
			if old == nil || old.state.Load() != stJoined {
				continue // its previous replacement is still connecting
			}
			old.close()
			w.churnClosed.Add(1)
			select {
			case jobs <- w.newClient(i, true):
			case <-ctx.Done():
				return
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// drain waits after the last send until deliveries stop (quietPeriod) or
// Plan.Drain has passed; in the second case it records that deliveries were
// still arriving (the server is behind, and what it had not delivered yet
// counts as lost).
func (w *loadGen) drain(ctx context.Context, tEnd int64) {
	w.drainCut = true
	deadline := time.Unix(0, tEnd).Add(w.plan.Drain)
	deliveries := func() uint64 { return w.sum(func(s *shard) *atomic.Uint64 { return &s.deliveries }) }
	last, quiet := deliveries(), time.Now()
	for time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
		if d := deliveries(); d != last {
			last, quiet = d, time.Now()
		} else if time.Since(quiet) >= quietPeriod {
			w.drainCut = false
			return
		}
	}
}

// stop closes every connection and the pollers.
func (w *loadGen) stop() {
	w.stopping.Store(true)
	w.slow.closeAll()
	for _, p := range w.pollers {
		p.shutdown()
	}
}

// result snapshots the share's figures.
func (w *loadGen) result() *WorkerResult {
	p := w.plan
	w.slow.closeAll() // the run is over: what the server has not closed, the harness does
	w.slow.mu.Lock()
	slow := SlowWire{Opened: w.slow.opened, Failed: w.slow.failed, ServerGone: w.slow.serverGone,
		Held: w.slow.held, AtEnd: w.slow.atEnd, Lifetimes: append([]float64(nil), w.slow.lifetimes...)}
	w.slow.mu.Unlock()
	r := &WorkerResult{
		Slow:         slow,
		Worker:       p.Worker,
		Conns:        p.Hi - p.Lo,
		Joined:       w.joined.Load(),
		Failed:       w.failed.Load(),
		RampStart:    w.rampStart.Load(),
		LastJoin:     w.lastJoin.Load(),
		Members:      w.members,
		Seen:         w.seen.words(),
		SentSet:      w.sentSet.words(),
		DrainCut:     w.drainCut,
		Deliveries:   w.sum(func(s *shard) *atomic.Uint64 { return &s.deliveries }),
		InWindow:     w.sum(func(s *shard) *atomic.Uint64 { return &s.inWindow }),
		RxWindow:     w.sum(func(s *shard) *atomic.Uint64 { return &s.rxWindow }),
		Received:     w.sum(func(s *shard) *atomic.Uint64 { return &s.received }),
		Duplicates:   w.sum(func(s *shard) *atomic.Uint64 { return &s.duplicates }),
		Gaps:         w.sum(func(s *shard) *atomic.Uint64 { return &s.gaps }),
		Foreign:      w.sum(func(s *shard) *atomic.Uint64 { return &s.foreign }),
		Other:        w.sum(func(s *shard) *atomic.Uint64 { return &s.other }),
		Sent:         w.sent.Load(),
		SentWindow:   w.sentWindow.Load(),
		RampCPU:      w.rampCPU,
		RampWall:     w.rampWall,
		Unsent:       w.unsent.Load(),
		SendErrors:   w.sendErrors.Load(),
		SendLagMax:   w.sendLagMax.Load(),
		SendLagSum:   w.sendLagSum.Load(),
		Dropped:      w.dropped.Load(),
		ChurnClosed:  w.churnClosed.Load(),
		ChurnJoined:  w.churnJoined.Load(),
		ChurnFailed:  w.churnFailed.Load(),
		Latency:      w.latencySparse(),
		RampLatency:  w.rampLatency.Sparse(),
		ChurnLatency: w.churnLatency.Sparse(),
		CPUMicros:    w.cpuEnd.Load() - w.cpuStart.Load(),
		WindowMicros: (w.tEnd.Load() - w.windowStart.Load()) / 1e3,
		Series:       w.seriesWire(),
		Events:       map[string]int{},
	}
	w.eventsMu.Lock()
	for k, v := range w.events {
		r.Events[k] = v
	}
	w.eventsMu.Unlock()
	return r
}

func (w *loadGen) latencySparse() SparseHist {
	var h Histogram
	for _, s := range w.shards {
		h.Merge(&s.latency)
	}
	return h.Sparse()
}

// seriesWire merges the shards' delivery series with the sent/connected one.
func (w *loadGen) seriesWire() []SecondWire {
	all := []*Series{w.series}
	for _, s := range w.shards {
		all = append(all, s.series)
	}
	n := 0
	for _, s := range all {
		n = max(n, s.lastUsed())
	}
	out := w.series.wire(n)
	for _, s := range all[1:] {
		for i, sw := range s.wire(n) {
			out[i].Deliveries += sw.Deliveries
			var h Histogram
			h.AddSparse(out[i].Latency)
			h.AddSparse(sw.Latency)
			out[i].Latency = h.Sparse()
		}
	}
	return out
}

// sleepUntil sleeps until t or ctx is done; it reports whether t was reached.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// sortedEvents returns events as "count × name" lines, most frequent first.
func sortedEvents(ev map[string]int) []string {
	keys := make([]string, 0, len(ev))
	for k := range ev {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if ev[keys[i]] != ev[keys[j]] {
			return ev[keys[i]] > ev[keys[j]]
		}
		return keys[i] < keys[j]
	})
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = fmt.Sprintf("%d × %s", ev[k], k)
	}
	return out
}
