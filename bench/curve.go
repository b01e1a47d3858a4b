package main

import (
	"fmt"
	"math"
)

// A soak is judged on what a short run cannot show: whether the server's
// memory and goroutines stay flat while connections come and go. The
// sampled series is summarised over the measured window (after the warmup,
// when buffers and pools have grown to their working size) as min and max,
// and as the average of the first minute against the average of the last.
// Averages over a minute smooth out the garbage collector's sawtooth, which
// at a 5 s sample interval would otherwise look like noise of ±50 % on the
// heap.

// curveMinWindow is the shortest window judged flat or not: two whole
// minutes, so the first and last minute do not overlap.
const curveMinWindow = 120.0

// Flatness thresholds: the last minute's average may exceed the first's by
// this fraction plus this slack. The slack keeps a small server (a few MiB,
// a dozen goroutines) from failing on noise; the fraction is far below what
// a leak per connection gives over ten minutes of churn (12,000 replaced
// connections leaking even 1 KiB each is 12 MiB).
const (
	flatMemFraction = 0.10
	flatMemSlack    = 4 << 20
	flatGoFraction  = 0.05
	flatGoSlack     = 5
)

// Curve sums up the server series over the measured window.
type Curve struct {
	Samples     int     `json:"samples"` // in the window
	EdgeSeconds float64 `json:"edge_s"`  // span of First and Last: a minute, or half of a shorter window
	RSS         Trend   `json:"rss_bytes"`
	Heap        Trend   `json:"heap_inuse_bytes"`
	Goroutines  Trend   `json:"goroutines"`
	Connections Trend   `json:"connections"`
	Judged      bool    `json:"judged"` // the window was long enough (curveMinWindow) to call it flat or not
	Flat        bool    `json:"flat"`
}

// Trend is one metric over the window.
type Trend struct {
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	First  float64 `json:"first"`  // average over the first EdgeSeconds
	Last   float64 `json:"last"`   // average over the last EdgeSeconds
	Growth float64 `json:"growth"` // (Last − First) / First
}

// curveOf summarises the points between from and to (seconds since the
// series origin); nil if fewer than two fall there.
func curveOf(pts []ServerPoint, from, to float64) *Curve {
	var in []ServerPoint
	for _, pt := range pts {
		if pt.T >= from && pt.T <= to {
			in = append(in, pt)
		}
	}
	if len(in) < 2 {
		return nil
	}
	c := &Curve{Samples: len(in), EdgeSeconds: math.Min(60, (to-from)/2)}
	trend := func(get func(ServerPoint) float64) Trend {
		t := Trend{Min: math.Inf(1), Max: math.Inf(-1)}
		var first, last []float64
		for _, pt := range in {
			v := get(pt)
			t.Min, t.Max = math.Min(t.Min, v), math.Max(t.Max, v)
			if pt.T < from+c.EdgeSeconds {
				first = append(first, v)
			}
			if pt.T > to-c.EdgeSeconds {
				last = append(last, v)
			}
		}
		t.First, t.Last = mean(first), mean(last)
		if t.First > 0 {
			t.Growth = (t.Last - t.First) / t.First
		}
		return t
	}
	c.RSS = trend(func(p ServerPoint) float64 { return p.RSS })
	c.Heap = trend(func(p ServerPoint) float64 { return p.Heap })
	c.Goroutines = trend(func(p ServerPoint) float64 { return p.Goroutines })
	c.Connections = trend(func(p ServerPoint) float64 { return p.Connections })
	c.Judged = to-from >= curveMinWindow
	c.Flat = len(c.growing()) == 0
	return c
}

// growing names the metrics whose last minute is above the first by more
// than the thresholds.
func (c *Curve) growing() []string {
	var out []string
	mem := func(name string, t Trend) {
		if t.Last > t.First*(1+flatMemFraction)+flatMemSlack {
			out = append(out, fmt.Sprintf("%s %s → %s", name, bytesIEC(t.First), bytesIEC(t.Last)))
		}
	}
	mem("RSS", c.RSS)
	mem("heap", c.Heap)
	if g := c.Goroutines; g.Last > g.First*(1+flatGoFraction)+flatGoSlack {
		out = append(out, fmt.Sprintf("goroutines %.1f → %.1f", g.First, g.Last))
	}
	return out
}

func mean(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// residueGoroutines is how many more goroutines than before the ramp the
// server may run once the harness has closed everything and the server has
// had up to afterWait to process the closes.
const residueGoroutines = 10

// soakProblems lists what makes a soak fail: anything lost, repeated or cut
// off for healthy clients, slow readers the server did not close, memory
// or goroutines that grew, connections or goroutines left behind.
func soakProblems(r *Result) []string {
	var out []string
	add := func(format string, a ...any) { out = append(out, fmt.Sprintf(format, a...)) }
	c, m, d, ch, sl, s := &r.Connections, &r.Messages, &r.Deliveries, &r.Churn, &r.Slow, &r.Server
	if d.Lost > 0 {
		add("%s deliveries lost for the members that stay", num(float64(d.Lost)))
	}
	if d.Gaps > 0 {
		add("%s messages missing between two a member received (gaps)", num(float64(d.Gaps)))
	}
	if d.Duplicates > 0 {
		add("%s duplicate deliveries", num(float64(d.Duplicates)))
	}
	if m.Accepted < m.Planned {
		add("%s of %s planned messages not accepted (%s refused, %s not sent, %s write errors)",
			num(float64(m.Planned-m.Accepted)), num(float64(m.Planned)), num(float64(m.Rejected)), num(float64(m.Unsent)), num(float64(m.SendErrors)))
	}
	if c.Failed > 0 || ch.Failed > 0 || c.Dropped > 0 {
		add("connections: %s failed in the ramp, %s churn dials failed, %s closed by the server", num(float64(c.Failed)), num(float64(ch.Failed)), num(float64(c.Dropped)))
	}
	if r.Params.SlowEvery > 0 {
		switch {
		case sl.Opened == 0:
			add("no slow reader opened (%s failed)", num(float64(sl.Failed)))
		case !sl.ServerCounted:
			add("the server exports no %s: slow-consumer closes unknown", mSlow)
		case sl.ServerCloses == 0:
			add("the server closed none of %s slow readers as a slow consumer", num(float64(sl.Opened)))
		case sl.ServerCloses > float64(sl.Opened):
			add("the server closed %s connections as slow consumers but only %s slow readers were opened: healthy members cut off",
				num(sl.ServerCloses), num(float64(sl.Opened)))
		case sl.Held > 0:
			add("%s slow readers were still open after %gs: the server never closed them", num(float64(sl.Held)), r.Params.SlowHold)
		case float64(sl.ServerGone) > sl.ServerCloses:
			add("the server closed %s slow readers but counted %s slow-consumer closes: some went for another reason (the idle timeout?)",
				num(float64(sl.ServerGone)), num(sl.ServerCloses))
		}
	}
	if cv := r.Curve; cv == nil && r.Params.Duration >= curveMinWindow {
		add("no server samples: memory and goroutines not checked")
	} else if cv != nil && cv.Judged && !cv.Flat {
		add("server not flat: %v", cv.growing())
	}
	if s.After.has(mConnections, mGoroutines) {
		if s.ConnectionsAfter > s.ConnectionsBefore {
			add("the server still counts %s connections after the harness closed all (%s before)", num(s.ConnectionsAfter), num(s.ConnectionsBefore))
		}
		if s.GoroutinesAfter > s.GoroutinesBefore+residueGoroutines {
			add("the server runs %.0f goroutines after the run, %.0f before", s.GoroutinesAfter, s.GoroutinesBefore)
		}
	} else {
		add("no server sample after the run: residue not checked")
	}
	return out
}

// soakPassText says what a passed soak showed.
func soakPassText(r *Result) string {
	d, sl := &r.Deliveries, &r.Slow
	curve := "memory and goroutines flat"
	if r.Curve == nil || !r.Curve.Judged {
		curve = fmt.Sprintf("memory curve not judged (window under %gs)", curveMinWindow)
	}
	slow := ""
	if r.Params.SlowEvery > 0 {
		slow = fmt.Sprintf(", %s slow readers and %s slow-consumer closes", num(float64(sl.Opened)), num(sl.ServerCloses))
	}
	return fmt.Sprintf("nothing lost for the %s members that stay (%s deliveries), no gaps for the %s that came and went%s, %s, nothing left behind",
		num(float64(r.Params.Stable)), num(float64(d.Received)), num(float64(r.Churn.Joined)), slow, curve)
}
