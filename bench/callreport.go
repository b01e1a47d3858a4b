package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// CallResult is the call scenario's figures (call.go), merged over the
// shares and joined with the server's /metrics over the window.
type CallResult struct {
	Peers  int   `json:"peers"`
	Joined int64 `json:"joined"` // answered `call` with sfu:true
	Failed int64 `json:"failed"`
	// FullFlow peers received packets on all WantTracks tracks during the
	// ramp; ToFullFlowS is from the first dial to the last of them (0 if
	// not every peer got there).
	FullFlow    int64       `json:"full_flow"`
	WantTracks  int         `json:"want_tracks"`
	ToFullFlowS float64     `json:"to_full_flow_s"`
	JoinLatency Percentiles `json:"join_latency"` // dial to the server's `call` answer
	FlowLatency Percentiles `json:"flow_latency"` // dial to full flow, per peer
	OffersMean  float64     `json:"offers_per_peer"`
	// Window figures. Packets are counted where they arrive, at the
	// receivers: noom's /metrics has no SFU packet counter.
	PacketsCountedAt string  `json:"packets_counted_at"`
	PacketsPerSecond float64 `json:"packets_per_second"` // received, all peers
	MbitPerSecond    float64 `json:"mbit_per_second"`    // RTP bytes received, all peers
	OfferedPerSecond float64 `json:"offered_per_second"` // published × (peers in the call − 1)
	NominalPerSecond float64 `json:"nominal_per_second"` // what the schedule asks for: peers × (peers − 1) × callPacketsPerSecond
	Delivered        float64 `json:"delivered_fraction"` // PacketsPerSecond / OfferedPerSecond
	TracksMin        int     `json:"tracks_min"`         // per peer, received tracks with packets in the window
	TracksMax        int     `json:"tracks_max"`
	PeersFlowing     int     `json:"peers_flowing"` // peers with all WantTracks in the window
	// Server figures over the window (Δprocess_cpu_seconds_total) and at
	// its end.
	ServerCPUPercent float64 `json:"server_cpu_percent"`
	CPUPerPacket     float64 `json:"server_cpu_us_per_packet"`
	RSS              float64 `json:"server_rss_bytes"`
	RSSBefore        float64 `json:"server_rss_before_bytes"`
	RSSPerPeer       float64 `json:"server_rss_per_peer_bytes"` // (RSS − RSS before the ramp) / peers
	Heap             float64 `json:"server_heap_bytes"`
	HeapPerPeer      float64 `json:"server_heap_per_peer_bytes"`
	Goroutines       float64 `json:"server_goroutines"`
	GoroutinesBefore float64 `json:"server_goroutines_before"`
}

// checkCall validates the call scenario's flags: the peers are the
// connections, none of them publishes chat messages.
func (cfg *Config) checkCall() error {
	switch {
	case cfg.Compare:
		return errors.New("-compare has no call scenario: the reference server forwards no media")
	case cfg.Peers < 1, cfg.Peers < 2 && cfg.Room == "":
		return errors.New("-peers must be at least 2 (1 with -room, in a call others join)")
	case cfg.Workers > cfg.Peers:
		return errors.New("-workers cannot be more than -peers")
	}
	cfg.Conns, cfg.Publishers = cfg.Peers, 0
	return nil
}

// mergeCall sums the shares' call figures and divides the server's by them.
func (r *Result) mergeCall() {
	c := &CallResult{Peers: r.plan.Conns, WantTracks: 2 * (r.plan.Conns - 1), PacketsCountedAt: "receivers (the server exports no SFU packet counter)"}
	r.Call = c
	var join, flow Histogram
	var first, lastFull, offers int64
	var sentRate float64
	allMeasured := true
	c.TracksMin = -1
	for _, w := range r.workers {
		cw := w.Call
		if cw == nil {
			continue
		}
		c.Joined += cw.Joined
		c.Failed += cw.Failed
		c.FullFlow += cw.Full
		join.AddSparse(cw.JoinLatency)
		flow.AddSparse(cw.FlowLatency)
		if first == 0 || cw.RampStart < first {
			first = cw.RampStart
		}
		lastFull = max(lastFull, cw.LastFull)
		offers += cw.Offers
		allMeasured = allMeasured && cw.Measured
		if cw.WindowMicros > 0 {
			s := float64(cw.WindowMicros) / 1e6
			c.PacketsPerSecond += float64(cw.Packets) / s
			c.MbitPerSecond += float64(cw.Bytes) * 8 / s / 1e6
			sentRate += float64(cw.Sent) / s
		}
		if cw.PeersMeasured > 0 && (c.TracksMin < 0 || cw.TracksMin < c.TracksMin) {
			c.TracksMin = cw.TracksMin
		}
		c.TracksMax = max(c.TracksMax, cw.TracksMax)
		c.PeersFlowing += cw.PeersFlowing
	}
	c.TracksMin = max(c.TracksMin, 0)
	c.JoinLatency, c.FlowLatency = join.Summary(), flow.Summary()
	if c.FullFlow == int64(c.Peers) && lastFull > first {
		c.ToFullFlowS = float64(lastFull-first) / 1e9
	}
	if c.Joined > 0 {
		c.OffersMean = float64(offers) / float64(c.Joined)
	}
	c.OfferedPerSecond = sentRate * float64(max(c.Joined-1, 0))
	c.NominalPerSecond = float64(c.Joined*max(c.Joined-1, 0)) * callPacketsPerSecond()
	if c.OfferedPerSecond > 0 {
		c.Delivered = c.PacketsPerSecond / c.OfferedPerSecond
	}
	s := &r.Server
	b, ws, end := s.Before, s.WindowStart, s.End
	if !allMeasured || !ws.has(mCPU) || !end.has(mCPU) {
		return
	}
	if wall := end.At.Sub(ws.At).Seconds(); wall > 0 {
		cpuRate := (end.Values[mCPU] - ws.Values[mCPU]) / wall // core-seconds a second
		c.ServerCPUPercent = 100 * cpuRate
		if c.PacketsPerSecond > 0 {
			c.CPUPerPacket = 1e6 * cpuRate / c.PacketsPerSecond
		}
	}
	n := float64(c.Peers)
	if end.has(mRSS) && b.has(mRSS) {
		c.RSS, c.RSSBefore = end.Values[mRSS], b.Values[mRSS]
		c.RSSPerPeer = (c.RSS - c.RSSBefore) / n
	}
	if end.has(mHeap) && b.has(mHeap) {
		c.Heap = end.Values[mHeap]
		c.HeapPerPeer = (c.Heap - b.Values[mHeap]) / n
	}
	if end.has(mGoroutines) && b.has(mGoroutines) {
		c.Goroutines, c.GoroutinesBefore = end.Values[mGoroutines], b.Values[mGoroutines]
	}
}

// writeCallText prints the call scenario's block.
func writeCallText(w io.Writer, r *Result) {
	p, c := &r.Params, r.Call
	pf := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	pf("noom bench: scenario call, %d peers through the SFU, each publishing Opus (%d B every %s) and VP8 (%d B frames every %s); %gs (+%gs warmup)",
		p.Conns, callAudioSize, callAudioEvery, callFrameSize, callFrameEvery, p.Duration, p.Warmup)
	pf("  servers      %s", strings.Join(p.URLs, " "))
	if p.Server != "" {
		pf("  started      %s", p.Server)
	}
	procs := "in-process"
	if !p.InProcess {
		procs = fmt.Sprintf("%d worker processes", p.Workers)
	}
	pf("  harness      %s; %d CPUs, %s", procs, p.CPUs, p.GoVersion)
	if c == nil {
		pf("call           (no figures)")
		return
	}
	pf("peers          %d in the call, %d failed; join (dial → call answer) p50 %s max %s; %.1f offers answered per peer",
		c.Joined, c.Failed, ms(c.JoinLatency.P50), ms(c.JoinLatency.Max), c.OffersMean)
	last := ""
	if c.ToFullFlowS > 0 {
		last = fmt.Sprintf(", the last %.2f s after the first dial", c.ToFullFlowS)
	}
	pf("full flow      %d of %d peers received packets on all %d tracks%s (dial → full flow p50 %s max %s)",
		c.FullFlow, c.Peers, c.WantTracks, last, ms(c.FlowLatency.P50), ms(c.FlowLatency.Max))
	pf("packets        %s/s forwarded (%.1f Mbit/s), counted at the %s; %s/s published × (peers − 1): %.1f%%",
		num(c.PacketsPerSecond), c.MbitPerSecond, c.PacketsCountedAt, num(c.OfferedPerSecond), 100*c.Delivered)
	pf("               tracks flowing in the window per peer %d–%d of %d; %d of %d peers received every one",
		c.TracksMin, c.TracksMax, c.WantTracks, c.PeersFlowing, c.Joined)
	if c.NominalPerSecond > 0 && c.OfferedPerSecond < 0.95*c.NominalPerSecond {
		pf("warning        the peers published %.0f%% of their schedule's %s/s (the harness's machine is busy): the load is lower than nominal",
			100*c.OfferedPerSecond/c.NominalPerSecond, num(c.NominalPerSecond))
	}
	if c.CPUPerPacket > 0 {
		pf("server         cpu %.0f%% of a core in the window, %.2f µs per forwarded packet", c.ServerCPUPercent, c.CPUPerPacket)
		pf("               RSS %s at the window's end (%s before the call: %s per peer); heap %s (%s per peer); goroutines %.0f (%.0f before)",
			bytesIEC(c.RSS), bytesIEC(c.RSSBefore), bytesIEC(c.RSSPerPeer), bytesIEC(c.Heap), bytesIEC(c.HeapPerPeer), c.Goroutines, c.GoroutinesBefore)
	} else {
		reason := "no /metrics"
		if s := r.Server.End; s != nil && len(s.Errors) > 0 {
			reason = s.Errors[0]
		}
		pf("server         (no figures: %s)", reason)
	}
	h := &r.Harness
	pf("harness cpu    %.0f%% of a core in the window (%.2f µs per received packet), %.0f%% during the ramp",
		h.CPUPercent, h.CPUPerDelivery, h.RampCPUPercent)
	if c.FullFlow < int64(c.Peers) {
		pf("warning        %d of %d peers never received all %d tracks: the figures are of a partial call", c.Peers-int(c.FullFlow), c.Peers, c.WantTracks)
	}
	if len(r.Events) > 0 {
		n := min(len(r.Events), 6)
		pf("events         %s", strings.Join(r.Events[:n], "; "))
	}
}
