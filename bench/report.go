package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Result is one run: its parameters, its figures and its time series. It is
// what -json writes, field for field.
type Result struct {
	Params      Params      `json:"params"`
	Connections Connections `json:"connections"`
	Messages    Messages    `json:"messages"`
	Deliveries  Deliveries  `json:"deliveries"`
	Latency     Percentiles `json:"latency"`
	Server      Server      `json:"server"`
	Harness     Harness     `json:"harness"`
	Churn       Churn       `json:"churn"`
	Slow        Slow        `json:"slow_readers"`
	Events      []string    `json:"events"`
	Phases      Phases      `json:"phases"`
	Series      []Point     `json:"series"`
	// ServerSeries is the server's /metrics every -sample-every, from before
	// the ramp to after the harness closed its connections; Curve sums it up.
	ServerSeries []ServerPoint `json:"server_series"`
	Curve        *Curve        `json:"server_curve"`
	// Call is the call scenario's figures (callreport.go).
	Call *CallResult `json:"call,omitempty"`

	plan     *Plan
	workers  []*WorkerResult
	samples  []*Sample
	rampDone time.Time
	t0       int64
}

// Params are the run's parameters, as used (automatic values filled in).
type Params struct {
	Scenario     string    `json:"scenario"`
	URLs         []string  `json:"urls"`
	Conns        int       `json:"conns"`
	Rate         float64   `json:"rate"`
	Size         int       `json:"size"`
	Duration     float64   `json:"duration_s"`
	Warmup       float64   `json:"warmup_s"`
	Rooms        int       `json:"rooms"`
	Publishers   int       `json:"publishers"`
	PerPublisher float64   `json:"per_publisher_rate"`
	Churn        float64   `json:"churn"`
	Stable       int       `json:"stable"` // connections that stay for the whole run (loss is counted for them)
	SlowEvery    float64   `json:"slow_every_s"`
	SlowHold     float64   `json:"slow_hold_s"`
	SlowMSS      int       `json:"slow_mss"`
	SampleEvery  float64   `json:"sample_every_s"`
	Ramp         float64   `json:"ramp"`
	Workers      int       `json:"workers"`
	InProcess    bool      `json:"in_process"`
	Pollers      int       `json:"pollers"`
	Dialers      int       `json:"dialers"`
	SourceIPs    bool      `json:"source_ips"`
	SourceRange  string    `json:"source_range,omitempty"`
	Started      time.Time `json:"started"`
	Host         string    `json:"host"`
	CPUs         int       `json:"cpus"`
	GoVersion    string    `json:"go_version"`
	Label        string    `json:"label,omitempty"`  // -compare: which server
	Server       string    `json:"server,omitempty"` // -start, -compare: the server started and its flags
}

// Connections are the ramp's figures.
type Connections struct {
	Target         int         `json:"target"`
	Joined         int64       `json:"joined"`
	Failed         int64       `json:"failed"`
	Dropped        int64       `json:"dropped"` // closed by the server or the network after joining
	RampSeconds    float64     `json:"ramp_s"`
	PerSecond      float64     `json:"per_second"`
	ConnectLatency Percentiles `json:"connect_latency"` // dial to `joined`
}

// Messages are the publishers' figures. Accepted and Planned count the
// measured window only; Sent counts the warmup too.
type Messages struct {
	Planned       uint64  `json:"planned"`
	Accepted      uint64  `json:"accepted"` // seen by at least one member
	SentWindow    uint64  `json:"sent_window"`
	Rejected      uint64  `json:"rejected"` // sent, seen by no one, and the server refused requests (rate_limited…)
	Unseen        uint64  `json:"unseen"`   // sent, seen by no one, nothing refused: counted as lost
	Sent          uint64  `json:"sent"`
	Unsent        uint64  `json:"unsent"` // publisher not connected
	SendErrors    uint64  `json:"send_errors"`
	SendLagMeanMs float64 `json:"send_lag_mean_ms"`
	SendLagMaxMs  float64 `json:"send_lag_max_ms"`
}

// Deliveries are the receivers' figures. Expected, Received and Lost are
// for messages of the measured window and members that stayed (stable);
// PerSecond counts what arrived during the window.
type Deliveries struct {
	Expected    uint64  `json:"expected"`
	Received    uint64  `json:"received"`
	Lost        uint64  `json:"lost"`
	Duplicates  uint64  `json:"duplicates"`
	Gaps        uint64  `json:"gaps"` // seqs missing between two deliveries to one member, any member (churned ones too)
	PerSecond   float64 `json:"per_second"`
	InWindow    uint64  `json:"in_window"` // deliveries of window messages, any receiver
	RxWindow    uint64  `json:"rx_window"` // deliveries received during the window
	Total       uint64  `json:"total"`     // every msg frame, warmup and drain included
	Foreign     uint64  `json:"foreign"`   // msg frames not sent by this run
	OtherFrames uint64  `json:"other_frames"`
	DrainCut    bool    `json:"drain_cut"` // deliveries were still arriving when the drain ended
}

// Server holds the server-side figures from /metrics (zero when absent).
type Server struct {
	Available        bool    `json:"available"`
	MemPerConn       float64 `json:"mem_per_conn_bytes"`  // ΔRSS / joined, before ramp → idle
	HeapPerConn      float64 `json:"heap_per_conn_bytes"` // Δheap in use / joined
	RSSBefore        float64 `json:"rss_before_bytes"`
	RSSIdle          float64 `json:"rss_idle_bytes"`
	RSSEnd           float64 `json:"rss_end_bytes"`
	GoroutinesBefore float64 `json:"goroutines_before"`
	GoroutinesIdle   float64 `json:"goroutines_idle"`
	Connections      float64 `json:"connections_idle"`
	CPUPercent       float64 `json:"cpu_percent"` // over the measured window, of one core
	Deliveries       float64 `json:"deliveries"`  // Δnoom_deliveries_total over the window
	CPUPerDelivery   float64 `json:"cpu_us_per_delivery"`
	CPUPerConnect    float64 `json:"cpu_us_per_connect"` // Δcpu before ramp → idle, per joined connection
	// After the harness closed everything: what the run left behind.
	ConnectionsBefore float64 `json:"connections_before"`
	ConnectionsAfter  float64 `json:"connections_after"`
	GoroutinesAfter   float64 `json:"goroutines_after"`
	HeapBefore        float64 `json:"heap_before_bytes"`
	HeapAfter         float64 `json:"heap_after_bytes"`
	RSSAfter          float64 `json:"rss_after_bytes"`
	Before            *Sample `json:"sample_before"`
	Idle              *Sample `json:"sample_idle"`
	WindowStart       *Sample `json:"sample_window_start"`
	End               *Sample `json:"sample_end"`
	After             *Sample `json:"sample_after"`
}

// Harness is the load generator's own cost, to judge whether it, not the
// server, was the limit.
type Harness struct {
	CPUPercent     float64 `json:"cpu_percent"`      // all harness processes, of one core, over the window
	RampCPUPercent float64 `json:"ramp_cpu_percent"` // the same over the ramp
	CPUPerDelivery float64 `json:"cpu_us_per_delivery"`
}

// Churn is the churn scenario's figures.
type Churn struct {
	Closed         int64       `json:"closed"`
	Joined         int64       `json:"joined"`
	Failed         int64       `json:"failed"`
	PerSecond      float64     `json:"per_second"`
	ConnectLatency Percentiles `json:"connect_latency"`
}

// Slow is the slow readers' figures (slow.go). The harness cannot see the
// server's 1013 (it does not read them), only that their TCP state says the
// server's side is gone, for whatever reason: ServerCloses is the server's
// own count, Δnoom_slow_consumer_closes_total from before the ramp to after
// the run (which would also count any healthy member it closed as slow).
type Slow struct {
	Every         float64 `json:"every_s"`
	RoomsEach     int     `json:"rooms_each"`
	Opened        int64   `json:"opened"`
	Failed        int64   `json:"failed"`
	ServerGone    int64   `json:"server_gone"`             // the socket showed the server's side closed (then the harness closed it)
	Held          int64   `json:"closed_after_hold"`       // closed by the harness after -slow-hold, server side still open
	AtEnd         int64   `json:"closed_at_end"`           // still open at the end, closed by the harness
	LifeMin       float64 `json:"server_gone_after_min_s"` // open to the server's close noticed (within two seconds), for ServerGone
	LifeMedian    float64 `json:"server_gone_after_median_s"`
	LifeMax       float64 `json:"server_gone_after_max_s"`
	ServerCloses  float64 `json:"server_slow_consumer_closes"`
	ServerCounted bool    `json:"server_counted"` // the server exports noom_slow_consumer_closes_total
}

// ServerPoint is one /metrics sample of the server series.
type ServerPoint struct {
	T           float64 `json:"t"` // seconds since the series origin
	RSS         float64 `json:"rss_bytes"`
	Heap        float64 `json:"heap_inuse_bytes"`
	Goroutines  float64 `json:"goroutines"`
	Connections float64 `json:"connections"`
	SlowCloses  float64 `json:"slow_consumer_closes"`
	CPU         float64 `json:"cpu_seconds"`
}

// Phases are the phase boundaries, in seconds since the series origin.
type Phases struct {
	RampEnd     float64 `json:"ramp_end"`
	Start       float64 `json:"start"`
	WindowStart float64 `json:"window_start"`
	WindowEnd   float64 `json:"window_end"`
}

// Point is one second of the time series (by receive time).
type Point struct {
	T          float64 `json:"t"`
	Connected  int64   `json:"connected"`
	Sent       uint64  `json:"sent"`
	Deliveries uint64  `json:"deliveries"`
	P50        float64 `json:"p50_ms"`
	P90        float64 `json:"p90_ms"`
	P99        float64 `json:"p99_ms"`
	P999       float64 `json:"p999_ms"`
	Max        float64 `json:"max_ms"`
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write -json: %w", err)
	}
	return nil
}

// writeText prints the parameters and results block.
func writeText(w io.Writer, r *Result) {
	if r.Params.Scenario == scenarioCall {
		writeCallText(w, r)
		return
	}
	p := &r.Params
	pf := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	label := ""
	if p.Label != "" {
		label = " [" + p.Label + "]"
	}
	pf("noom bench%s: scenario %s, %s connections, %s", label, p.Scenario, num(float64(p.Conns)), describeLoad(r))
	pf("  servers      %s", strings.Join(p.URLs, " "))
	if p.Server != "" {
		pf("  started      %s", p.Server)
	}
	procs := "in-process"
	if !p.InProcess {
		procs = fmt.Sprintf("%d worker processes", p.Workers)
	}
	src := "default source address"
	if p.SourceIPs {
		src = "source " + p.SourceRange
	}
	pf("  harness      %s, %d poller(s) and %d dialers each, %s; %d CPUs, %s", procs, p.Pollers, p.Dialers, src, p.CPUs, p.GoVersion)
	c := &r.Connections
	pf("connections    %s joined, %s failed of %s in %.2f s (%s/s); connect p50 %s p99 %s",
		num(float64(c.Joined)), num(float64(c.Failed)), num(float64(c.Target)), c.RampSeconds, num(c.PerSecond),
		ms(c.ConnectLatency.P50), ms(c.ConnectLatency.P99))
	if c.Dropped > 0 {
		pf("               %s closed by the server during the run", num(float64(c.Dropped)))
	}
	if p.Scenario == scenarioChurn || p.Scenario == scenarioSoak {
		ch := &r.Churn
		pf("churn          %s replaced (%s/s), %s failed; connect p50 %s p99 %s max %s",
			num(float64(ch.Joined)), num(ch.PerSecond), num(float64(ch.Failed)),
			ms(ch.ConnectLatency.P50), ms(ch.ConnectLatency.P99), ms(ch.ConnectLatency.Max))
	}
	if sl := &r.Slow; p.SlowEvery > 0 {
		server := "the server does not export " + mSlow
		if sl.ServerCounted {
			server = fmt.Sprintf("the server counted %s slow-consumer closes (1013)", num(sl.ServerCloses))
		}
		pf("slow readers   %s opened (one every %gs, %d B receive buffer, MSS %s, %d room(s) each), %s failed; %s",
			num(float64(sl.Opened)), p.SlowEvery, slowRcvBuf, mssText(p.SlowMSS), sl.RoomsEach, num(float64(sl.Failed)), server)
		gone := ""
		if sl.ServerGone > 0 {
			gone = fmt.Sprintf(", after %.0f s median (%.0f–%.0f s)", sl.LifeMedian, sl.LifeMin, sl.LifeMax)
		}
		pf("               %s seen closed by the server (TCP state)%s; %s still open after %gs and %s at the end, closed by the harness",
			num(float64(sl.ServerGone)), gone, num(float64(sl.Held)), p.SlowHold, num(float64(sl.AtEnd)))
	}
	m, d, l := &r.Messages, &r.Deliveries, &r.Latency
	if p.Rate > 0 && p.Scenario != scenarioConnect {
		pf("messages       %s planned in the window, %s accepted, %s sent with warmup; send lag mean %s max %s",
			num(float64(m.Planned)), num(float64(m.Accepted)), num(float64(m.Sent)), ms(m.SendLagMeanMs), ms(m.SendLagMaxMs))
		if m.Rejected > 0 {
			pf("               %s sent but delivered to no one, with requests refused (see events): not expected", num(float64(m.Rejected)))
		}
		if m.Unseen > 0 {
			pf("               %s sent but delivered to no one by the end of the drain: counted as lost", num(float64(m.Unseen)))
		}
		if m.Unsent+m.SendErrors > 0 {
			pf("               %s not sent (publisher down), %s write errors", num(float64(m.Unsent)), num(float64(m.SendErrors)))
		}
		pf("deliveries     %s/s; %s expected, %s received, %s lost (missing after the drain), %s duplicate; %s gaps in any member's seqs",
			num(d.PerSecond), num(float64(d.Expected)), num(float64(d.Received)), num(float64(d.Lost)), num(float64(d.Duplicates)), num(float64(d.Gaps)))
		pf("latency        p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (%s samples, from intended send time)",
			ms(l.P50), ms(l.P90), ms(l.P99), ms(l.P999), ms(l.Max), num(float64(l.Count)))
	}
	s := &r.Server
	if !s.Available {
		reason := "no /metrics"
		if s.Idle != nil && len(s.Idle.Errors) > 0 {
			reason = s.Idle.Errors[0]
		}
		pf("server         (no figures: %s)", reason)
	} else {
		mem := fmt.Sprintf("memory %s/conn (heap %s/conn)", bytesIEC(s.MemPerConn), bytesIEC(s.HeapPerConn))
		if s.MemPerConn < 0 {
			// The server gave memory back during the ramp: it still held
			// the garbage of earlier connections, so the delta means nothing.
			mem = "memory per conn n/a (RSS fell: start a fresh server to measure it)"
		}
		pf("server         %s, RSS %s → %s idle → %s end; goroutines %.0f → %.0f; %s connections by its count",
			mem, bytesIEC(s.RSSBefore), bytesIEC(s.RSSIdle), bytesIEC(s.RSSEnd), s.GoroutinesBefore, s.GoroutinesIdle, num(s.Connections))
		if s.CPUPerConnect > 0 {
			pf("               cpu %.0f µs per connection (upgrade and join, ramp through settle)", s.CPUPerConnect)
		}
		if s.CPUPerDelivery > 0 {
			pf("               cpu %.0f%% of a core in the window, %.3f µs per delivery (%s deliveries counted by the server)",
				s.CPUPercent, s.CPUPerDelivery, num(s.Deliveries))
		} else {
			pf("               cpu %.0f%% of a core in the window", s.CPUPercent)
		}
	}
	if s.After.has(mConnections, mGoroutines, mHeap) {
		pf("after close    connections %s (%s before the ramp), goroutines %.0f (%.0f before), heap %s (%s before), RSS %s",
			num(s.ConnectionsAfter), num(s.ConnectionsBefore), s.GoroutinesAfter, s.GoroutinesBefore,
			bytesIEC(s.HeapAfter), bytesIEC(s.HeapBefore), bytesIEC(s.RSSAfter))
	}
	if c := r.Curve; c != nil && c.Judged {
		flat := "flat"
		if !c.Flat {
			flat = "NOT FLAT: " + strings.Join(c.growing(), ", ")
		}
		pf("server curve   RSS %s–%s after warmup, first→last minute %s → %s (%+.1f%%); heap %s–%s, %s → %s (%+.1f%%)",
			bytesIEC(c.RSS.Min), bytesIEC(c.RSS.Max), bytesIEC(c.RSS.First), bytesIEC(c.RSS.Last), 100*c.RSS.Growth,
			bytesIEC(c.Heap.Min), bytesIEC(c.Heap.Max), bytesIEC(c.Heap.First), bytesIEC(c.Heap.Last), 100*c.Heap.Growth)
		pf("               goroutines %.0f–%.0f, %.1f → %.1f; connections %s–%s; %d samples every %gs: %s",
			c.Goroutines.Min, c.Goroutines.Max, c.Goroutines.First, c.Goroutines.Last,
			num(c.Connections.Min), num(c.Connections.Max), c.Samples, p.SampleEvery, flat)
	}
	if p.Scenario == scenarioSoak {
		if problems := soakProblems(r); len(problems) > 0 {
			pf("verdict        FAIL: %s", strings.Join(problems, "; "))
		} else {
			pf("verdict        pass: %s", soakPassText(r))
		}
	}
	h := &r.Harness
	perDelivery := ""
	if d.RxWindow > 0 {
		perDelivery = fmt.Sprintf(" (%.2f µs per delivery)", h.CPUPerDelivery)
	}
	pf("harness cpu    %.0f%% of a core in the window%s, %.0f%% during the ramp", h.CPUPercent, perDelivery, h.RampCPUPercent)
	// notes/perf.md §3: a run where the load generator saturates measures
	// the generator, not the server.
	if h.CPUPercent > 85*float64(p.Pollers*p.Workers) {
		pf("warning        the harness used %.0f%% of a core with %d poller(s) in %d process(es): it may be the limit (try -pollers 2 or -workers)",
			h.CPUPercent, p.Pollers, p.Workers)
	}
	if d.DrainCut {
		pf("warning        deliveries were still arriving when the %gs drain ended: the server is behind (-drain to wait longer)", r.plan.Drain.Seconds())
	}
	if m.SendLagMaxMs > 100 {
		pf("warning        publishers fell up to %s behind their schedule (a busy machine); latency includes it", ms(m.SendLagMaxMs))
	}
	if len(r.Events) > 0 {
		n := min(len(r.Events), 6)
		pf("events         %s", strings.Join(r.Events[:n], "; "))
	}
}

// mssText names a -slow-mss value.
func mssText(mss int) string {
	if mss == 0 {
		return "the route's"
	}
	return fmt.Sprintf("%d B", mss)
}

// describeLoad summarises the offered load in one phrase.
func describeLoad(r *Result) string {
	p := &r.Params
	switch p.Scenario {
	case scenarioConnect:
		return fmt.Sprintf("held idle %gs", p.Duration)
	case scenarioRooms:
		return fmt.Sprintf("%d rooms, %g msg/s from %s publishers, %d B text, %gs (+%gs warmup)",
			p.Rooms, p.Rate, num(float64(p.Publishers)), p.Size, p.Duration, p.Warmup)
	case scenarioChurn:
		return fmt.Sprintf("one room, %g conns/s churn, %g msg/s from %d publishers, %d B text, %gs (+%gs warmup)",
			p.Churn, p.Rate, p.Publishers, p.Size, p.Duration, p.Warmup)
	case scenarioSoak:
		return fmt.Sprintf("%d rooms, %s staying (publishers included), %g conns/s churn, %g msg/s from %d publishers, %d B text, %s (+%gs warmup)",
			p.Rooms, num(float64(p.Stable)), p.Churn, p.Rate, p.Publishers, p.Size, time.Duration(p.Duration*float64(time.Second)), p.Warmup)
	}
	return fmt.Sprintf("one room, %g msg/s from %d publishers (%.3g/s each), %d B text, %gs (+%gs warmup)",
		p.Rate, p.Publishers, p.PerPublisher, p.Size, p.Duration, p.Warmup)
}

// num formats a count with thousands separators (and one decimal below 100).
func num(v float64) string {
	if v < 100 && v != float64(int64(v)) {
		return fmt.Sprintf("%.1f", v)
	}
	s := fmt.Sprintf("%.0f", v)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, ch := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(ch)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// ms formats milliseconds with a precision that suits the magnitude.
func ms(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.2fs", v/1000)
	case v >= 100:
		return fmt.Sprintf("%.0fms", v)
	case v >= 10:
		return fmt.Sprintf("%.1fms", v)
	}
	return fmt.Sprintf("%.2fms", v)
}

// bytesIEC formats a byte count in KiB/MiB/GiB.
func bytesIEC(v float64) string {
	neg := v < 0
	if neg {
		v = -v
	}
	s := fmt.Sprintf("%.0f B", v)
	for _, u := range []string{"KiB", "MiB", "GiB"} {
		if v < 1024 {
			break
		}
		v /= 1024
		s = fmt.Sprintf("%.2f %s", v, u)
	}
	if neg {
		return "-" + s
	}
	return s
}
