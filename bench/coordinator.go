package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"
)

// settleTime separates the end of the ramp from the idle memory sample, so
// the server has answered the last joins and its RSS reflects them.
const settleTime = time.Second

// runBench runs one scenario: plan, start the shares, ramp, sample the
// server, run, collect and merge. The phases are the same for every
// scenario; what a scenario changes lives in the Plan.
func runBench(ctx context.Context, cfg *Config, bar *progressBar) (*Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	plans := makePlans(cfg, time.Now())
	murls := cfg.metricsTargets()
	res := newResult(cfg, plans)

	res.Server.Before = scrape(ctx, murls)
	samp := startSampler(ctx, murls, cfg.Sample, res.Server.Before)
	defer samp.finish(nil)
	handles := make([]workerHandle, 0, len(plans))
	defer func() {
		for _, h := range handles {
			h.Close()
		}
	}()
	for _, p := range plans {
		var h workerHandle
		var err error
		if cfg.Workers == 0 && len(plans) == 1 {
			h, err = startLocal(ctx, p)
		} else {
			h, err = startProc(ctx, p)
		}
		if err != nil {
			return nil, err
		}
		handles = append(handles, h)
	}
	progress := func() Progress {
		var sum Progress
		for _, h := range handles {
			sum.add(h.Progress())
		}
		return sum
	}
	stopBar := bar.start(progress, cfg)
	defer stopBar()

	bar.phase("ramp", time.Time{})
	for _, h := range handles {
		select {
		case <-h.Ready():
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	res.rampDone = time.Now()
	bar.phase("settle", time.Now().Add(settleTime))
	sleepUntil(ctx, time.Now().Add(settleTime))
	res.Server.Idle = scrape(ctx, murls)

	// t0 on a whole second of the series, so its slots line up with the phases.
	origin := plans[0].Origin
	t0 := origin + (time.Now().UnixNano()-origin)/int64(time.Second)*int64(time.Second) + int64(time.Second)
	res.t0 = t0
	for _, h := range handles {
		h.Start(t0)
	}
	p := plans[0]
	winStart := time.Unix(0, t0).Add(p.Warmup)
	tEnd := winStart.Add(p.Duration)
	if p.Warmup > 0 {
		bar.phase("warmup", winStart)
	}
	sleepUntil(ctx, winStart)
	res.Server.WindowStart = scrape(ctx, murls)
	phase := "run"
	if p.Scenario == scenarioConnect {
		phase = "hold"
	}
	bar.phase(phase, tEnd)
	sleepUntil(ctx, tEnd)
	res.Server.End = scrape(ctx, murls)
	if p.sends() {
		bar.phase("drain", tEnd.Add(p.Drain))
	}

	if err := ctx.Err(); err != nil {
		return nil, err // interrupted: the shares stop at once, their figures are partial
	}
	for _, h := range handles {
		r, err := h.Result(ctx)
		if err != nil {
			return nil, err
		}
		res.workers = append(res.workers, r)
	}
	stopBar()
	// Every share has closed its connections: the server should be back to
	// the connections it had before the run (what it holds on to now is
	// residue of the run), and the samples end with that.
	res.Server.After = scrapeAfter(ctx, murls, res.Server.Before)
	res.samples = samp.finish(res.Server.After)
	res.merge()
	return res, nil
}

// afterWait bounds the wait for the server to settle after the harness's
// closes: what is still there after it is residue.
const afterWait = 5 * time.Second

// scrapeAfter scrapes until the servers count no more connections than
// before and no more than residueGoroutines goroutines above before (they
// have processed the closes: nbhttp handles a burst of them on goroutines
// of its executor pool, dozens for a moment), at most afterWait.
func scrapeAfter(ctx context.Context, urls []string, before *Sample) *Sample {
	deadline := time.Now().Add(afterWait)
	for {
		s := scrape(ctx, urls)
		if !s.has(mConnections, mGoroutines) || !before.has(mConnections, mGoroutines) ||
			s.Values[mConnections] <= before.Values[mConnections] && s.Values[mGoroutines] <= before.Values[mGoroutines]+residueGoroutines ||
			time.Now().After(deadline) || ctx.Err() != nil {
			return s
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// makePlans splits the run into shares, one per process.
func makePlans(cfg *Config, now time.Time) []*Plan {
	workers := cfg.workerCount()
	var id [3]byte
	_, _ = rand.Read(id[:])
	base := Plan{
		Scenario:   cfg.Scenario,
		URLs:       cfg.URLs,
		Conns:      cfg.Conns,
		Rooms:      cfg.Rooms,
		Room:       cfg.Room,
		RoomPrefix: "bench-" + hex.EncodeToString(id[:]),
		Publishers: cfg.Publishers,
		Rate:       cfg.Rate,
		Size:       cfg.Size,
		Warmup:     cfg.Warmup,
		Duration:   cfg.Duration,
		Drain:      cfg.Drain,
		Ramp:       cfg.Ramp / float64(workers),
		Churn:      cfg.Churn / float64(workers),
		Dialers:    cfg.Dialers,
		Timeout:    cfg.Timeout,
		Pollers:    cfg.Pollers,
		PollIdle:   cfg.PollIdle,
		ReadBuffer: cfg.ReadBuffer,
		Stable:     stableCount(cfg.Scenario, cfg.Conns, cfg.Publishers, cfg.Rooms, cfg.Stable),
		SlowEvery:  cfg.SlowEvery,
		SlowHold:   cfg.SlowHold,
		SlowMSS:    cfg.SlowMSS,
		SourceIPs:  allLoopback(cfg.URLs),
		Origin:     now.UnixNano(),
		Seconds:    seriesSeconds(cfg),
	}
	switch cfg.Scenario {
	case scenarioConnect:
		base.Rate, base.Warmup = 0, 0 // nothing to warm up: the hold is -duration
	case scenarioCall:
		base.Rate, base.Publishers = 0, 0 // the media is the load, not messages
	}
	plans := make([]*Plan, workers)
	for w := range plans {
		p := base
		p.Worker = w
		p.Lo = cfg.Conns * w / workers
		p.Hi = cfg.Conns * (w + 1) / workers
		plans[w] = &p
	}
	return plans
}

// workerCount returns the number of shares: -workers, or one per
// maxPerProcess connections (call: one per callPerProcess peers).
func (cfg *Config) workerCount() int {
	switch {
	case cfg.Workers > 0:
		return cfg.Workers
	case cfg.Scenario == scenarioCall:
		return (cfg.Conns + callPerProcess - 1) / callPerProcess
	}
	return (cfg.Conns + maxPerProcess - 1) / maxPerProcess
}

// seriesSeconds sizes the time series generously: the ramp's worst case
// (dial timeouts, the -ramp pace), the settle, the run and the drain.
func seriesSeconds(cfg *Config) int {
	ramp := float64(cfg.Conns)/500 + 2*cfg.Timeout.Seconds()
	if cfg.Scenario == scenarioCall {
		ramp += callFlowFactor * cfg.Timeout.Seconds()
	}
	if cfg.Ramp > 0 {
		ramp += float64(cfg.Conns) / cfg.Ramp
	}
	return int(ramp+(settleTime+cfg.Warmup+cfg.Duration+cfg.Drain).Seconds()) + 30
}

// allLoopback reports whether every server is on a loopback address, the
// only case where binding 127.0.0.x source addresses is possible (and
// needed: one source address to one server has only ~28k ports).
func allLoopback(urls []string) bool {
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil {
			return false
		}
		h := u.Hostname()
		if h == "localhost" {
			continue
		}
		ip := net.ParseIP(h)
		if ip == nil || ip.To4() == nil || !ip.IsLoopback() {
			return false
		}
	}
	return true
}

func newResult(cfg *Config, plans []*Plan) *Result {
	p := plans[0]
	host, _ := os.Hostname()
	perPub := 0.0
	if p.Publishers > 0 {
		perPub = p.Rate / float64(p.Publishers)
	}
	r := &Result{
		plan: p,
		Params: Params{
			Scenario:     cfg.Scenario,
			URLs:         cfg.URLs,
			Conns:        cfg.Conns,
			Rate:         p.Rate,
			Size:         cfg.Size,
			Duration:     cfg.Duration.Seconds(),
			Warmup:       p.Warmup.Seconds(),
			Rooms:        p.roomCount(),
			Publishers:   p.Publishers,
			PerPublisher: perPub,
			Churn:        map[bool]float64{true: cfg.Churn}[p.churns()],
			Stable:       p.Stable,
			SlowEvery:    map[bool]float64{true: cfg.SlowEvery.Seconds()}[p.churns()],
			SlowHold:     cfg.SlowHold.Seconds(),
			SlowMSS:      cfg.SlowMSS,
			SampleEvery:  cfg.Sample.Seconds(),
			Ramp:         cfg.Ramp,
			Workers:      len(plans),
			InProcess:    cfg.Workers == 0 && len(plans) == 1,
			Pollers:      cfg.Pollers,
			Dialers:      cfg.Dialers,
			SourceIPs:    p.SourceIPs,
			Started:      time.Unix(0, p.Origin).UTC(),
			Host:         host,
			CPUs:         runtime.NumCPU(),
			GoVersion:    runtime.Version(),
		},
	}
	if p.churns() && p.SlowEvery > 0 {
		r.Slow.Every, r.Slow.RoomsEach = p.SlowEvery.Seconds(), min(slowRooms, p.roomCount())
	}
	if p.SourceIPs {
		last := plans[len(plans)-1]
		r.Params.SourceRange = fmt.Sprintf("%s-%s", p.sourceIP(0), last.sourceIP(cfg.Conns-1))
	}
	return r
}

// merge combines the workers' results into the result's figures.
func (r *Result) merge() {
	p := r.plan
	var lat, rampLat, churnLat Histogram
	members := make([]int, p.roomCount())
	kStart, kEnd := p.window()
	seen, sent := newBitmap(kEnd), newBitmap(kEnd)
	var rampStart, lastJoin int64
	events := map[string]int{}
	var cpu, window, rampCPU, rampWall int64
	var lagSum int64
	var lifetimes []float64
	for _, w := range r.workers {
		lat.AddSparse(w.Latency)
		rampLat.AddSparse(w.RampLatency)
		churnLat.AddSparse(w.ChurnLatency)
		for i, m := range w.Members {
			if i < len(members) {
				members[i] += m
			}
		}
		seen.orWords(w.Seen)
		sent.orWords(w.SentSet)
		r.Deliveries.DrainCut = r.Deliveries.DrainCut || w.DrainCut
		if rampStart == 0 || w.RampStart < rampStart {
			rampStart = w.RampStart
		}
		lastJoin = max(lastJoin, w.LastJoin)
		for k, v := range w.Events {
			events[k] += v
		}
		cpu += w.CPUMicros
		window = max(window, w.WindowMicros)
		rampCPU += w.RampCPU
		rampWall = max(rampWall, w.RampWall)
		c := &r.Connections
		c.Joined += w.Joined
		c.Failed += w.Failed
		c.Dropped += w.Dropped
		m := &r.Messages
		m.Sent += w.Sent
		m.SentWindow += w.SentWindow
		m.Unsent += w.Unsent
		m.SendErrors += w.SendErrors
		m.SendLagMaxMs = max(m.SendLagMaxMs, float64(w.SendLagMax)/1e6)
		lagSum += w.SendLagSum
		d := &r.Deliveries
		d.Total += w.Deliveries
		d.InWindow += w.InWindow
		d.RxWindow += w.RxWindow
		d.Received += w.Received
		d.Duplicates += w.Duplicates
		d.Gaps += w.Gaps
		d.Foreign += w.Foreign
		d.OtherFrames += w.Other
		ch := &r.Churn
		ch.Closed += w.ChurnClosed
		ch.Joined += w.ChurnJoined
		ch.Failed += w.ChurnFailed
		sl := &r.Slow
		sl.Opened += w.Slow.Opened
		sl.Failed += w.Slow.Failed
		sl.ServerGone += w.Slow.ServerGone
		sl.Held += w.Slow.Held
		sl.AtEnd += w.Slow.AtEnd
		lifetimes = append(lifetimes, w.Slow.Lifetimes...)
	}
	if len(lifetimes) > 0 {
		sort.Float64s(lifetimes)
		r.Slow.LifeMin, r.Slow.LifeMedian, r.Slow.LifeMax = lifetimes[0], lifetimes[len(lifetimes)/2], lifetimes[len(lifetimes)-1]
	}
	c := &r.Connections
	c.Target = p.Conns
	if lastJoin > rampStart && c.Joined > 0 {
		c.RampSeconds = float64(lastJoin-rampStart) / 1e9
		c.PerSecond = float64(c.Joined) / c.RampSeconds
	}
	c.ConnectLatency = rampLat.Summary()

	m := &r.Messages
	if m.Sent > 0 {
		m.SendLagMeanMs = float64(lagSum) / float64(m.Sent) / 1e6
	}
	// A message no member saw was either refused (the server answers
	// rate_limited, at most once a second, so refusals cannot be counted one
	// by one) or not delivered by the end of the drain. Without any refusal
	// on record it is the second: its members count as lost.
	refusals := 0
	for k, v := range events {
		if strings.HasPrefix(k, "error ") {
			refusals += v
		}
	}
	var expected uint64
	for k := kStart; k < kEnd; k++ {
		n := uint64(members[p.roomOf(k%p.Publishers)])
		switch {
		case seen.Has(k):
			m.Accepted++
			expected += n
		case !sent.Has(k):
		case refusals > 0:
			m.Rejected++
		default:
			m.Unseen++
			expected += n
		}
	}
	m.Planned = uint64(kEnd - kStart)
	d := &r.Deliveries
	d.Expected = expected
	if expected > d.Received {
		d.Lost = expected - d.Received
	}
	if p.Duration > 0 {
		d.PerSecond = float64(d.RxWindow) / p.Duration.Seconds()
	}
	r.Latency = lat.Summary()
	r.Harness.CPUPercent = 100 * float64(cpu) / float64(max(window, 1))
	r.Harness.RampCPUPercent = 100 * float64(rampCPU) / float64(max(rampWall, 1))
	if r.Deliveries.RxWindow > 0 {
		r.Harness.CPUPerDelivery = float64(cpu) / float64(r.Deliveries.RxWindow)
	}
	r.Events = sortedEvents(events)
	if p.churns() {
		run := (p.Warmup + p.Duration).Seconds()
		r.Churn.PerSecond = float64(r.Churn.Joined) / run
		r.Churn.ConnectLatency = churnLat.Summary()
	}
	r.mergeServer(c.Joined)
	r.mergeSeries()
	r.mergeServerSeries()
	if p.Scenario == scenarioCall {
		r.mergeCall()
	}
}

// mergeServer derives the server figures from the /metrics samples.
func (r *Result) mergeServer(joined int64) {
	s := &r.Server
	b, idle, ws, end := s.Before, s.Idle, s.WindowStart, s.End
	s.Available = idle.has(mRSS)
	if b.has(mRSS) && idle.has(mRSS) && joined > 0 {
		s.MemPerConn = (idle.Values[mRSS] - b.Values[mRSS]) / float64(joined)
		s.RSSBefore, s.RSSIdle = b.Values[mRSS], idle.Values[mRSS]
	}
	if end.has(mRSS) {
		s.RSSEnd = end.Values[mRSS]
	}
	if b.has(mHeap) && idle.has(mHeap) && joined > 0 {
		s.HeapPerConn = (idle.Values[mHeap] - b.Values[mHeap]) / float64(joined)
	}
	if idle.has(mGoroutines) {
		s.GoroutinesIdle = idle.Values[mGoroutines]
		s.GoroutinesBefore = b.Values[mGoroutines]
	}
	if b.has(mCPU) && idle.has(mCPU) && joined > 0 {
		// From before the ramp to the idle sample: connects, joins and the
		// settle time (which an idle server spends nothing in).
		s.CPUPerConnect = 1e6 * (idle.Values[mCPU] - b.Values[mCPU]) / float64(joined)
	}
	if idle.has(mConnections) {
		s.Connections = idle.Values[mConnections]
	}
	if after := s.After; after.has(mConnections, mGoroutines, mHeap, mRSS) {
		s.ConnectionsBefore, s.ConnectionsAfter = b.Values[mConnections], after.Values[mConnections]
		s.GoroutinesAfter, s.HeapBefore, s.HeapAfter, s.RSSAfter =
			after.Values[mGoroutines], b.Values[mHeap], after.Values[mHeap], after.Values[mRSS]
	}
	if b.has(mSlow) {
		last := s.After
		if !last.has(mSlow) {
			last = end
		}
		if last.has(mSlow) {
			r.Slow.ServerCloses = last.Values[mSlow] - b.Values[mSlow]
			r.Slow.ServerCounted = true
		}
	}
	if ws.has(mCPU) && end.has(mCPU) {
		dcpu := end.Values[mCPU] - ws.Values[mCPU]
		wall := end.At.Sub(ws.At).Seconds()
		if wall > 0 {
			s.CPUPercent = 100 * dcpu / wall
		}
		if ws.has(mDeliveries) && end.has(mDeliveries) {
			s.Deliveries = end.Values[mDeliveries] - ws.Values[mDeliveries]
			if s.Deliveries > 0 {
				s.CPUPerDelivery = 1e6 * dcpu / s.Deliveries
			}
		}
	}
}

// mergeSeries builds the per-second series (relative to the start of
// publishing) from the workers' slots.
func (r *Result) mergeSeries() {
	p := r.plan
	n := 0
	for _, w := range r.workers {
		n = max(n, len(w.Series))
	}
	slotOf := func(t int64) float64 { return float64(t-p.Origin) / 1e9 }
	r.Phases = Phases{
		RampEnd:     slotOf(r.rampDone.UnixNano()),
		Start:       slotOf(r.t0),
		WindowStart: slotOf(r.t0 + int64(p.Warmup)),
		WindowEnd:   slotOf(r.t0 + int64(p.Warmup+p.Duration)),
	}
	r.Series = make([]Point, 0, n)
	for i := range n {
		var h Histogram
		pt := Point{T: float64(i)}
		for _, w := range r.workers {
			if i < len(w.Series) {
				s := w.Series[i]
				pt.Deliveries += s.Deliveries
				pt.Sent += s.Sent
				pt.Connected += s.Connected
				h.AddSparse(s.Latency)
			}
		}
		if h.Count() > 0 {
			sum := h.Summary()
			pt.P50, pt.P90, pt.P99, pt.P999, pt.Max = sum.P50, sum.P90, sum.P99, sum.P999, sum.Max
		}
		r.Series = append(r.Series, pt)
	}
}

// mergeServerSeries turns the sampler's scrapes into the server series
// (seconds since the series origin, like the phases) and its summary.
func (r *Result) mergeServerSeries() {
	for _, smp := range r.samples {
		if len(smp.Values) == 0 {
			continue // the scrape failed: a gap in the curve, not a zero
		}
		v := smp.Values
		r.ServerSeries = append(r.ServerSeries, ServerPoint{
			T:           float64(smp.At.UnixNano()-r.plan.Origin) / 1e9,
			RSS:         v[mRSS],
			Heap:        v[mHeap],
			Goroutines:  v[mGoroutines],
			Connections: v[mConnections],
			SlowCloses:  v[mSlow],
			CPU:         v[mCPU],
		})
	}
	r.Curve = curveOf(r.ServerSeries, r.Phases.WindowStart, r.Phases.WindowEnd)
}
