package main

import (
	"bytes"
	"fmt"
	"html"
	"math"
	"os"
	"strings"
)

// The HTML report is one file with inline SVG drawn here, in Go: no script,
// no stylesheet or font from the network, so it opens anywhere, offline,
// and can be attached to an issue as is.

type line struct {
	name  string
	color string
	ys    []float64
}

// writeHTML writes a report with one section per result.
func writeHTML(path string, results []*Result) error {
	var b bytes.Buffer
	b.WriteString(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>noom bench</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:1000px}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ccc}
pre{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:12px}
svg{display:block;margin:1em 0}
table{border-collapse:collapse}td,th{padding:2px 10px;text-align:right;border-bottom:1px solid #eee}
th:first-child,td:first-child{text-align:left}
</style></head><body><h1>noom bench</h1>
`)
	if len(results) > 1 {
		writeCompareTable(&b, results)
	}
	for _, r := range results {
		title := r.Params.Scenario
		if r.Params.Label != "" {
			title = r.Params.Label + " — " + title
		}
		fmt.Fprintf(&b, "<h2>%s, %s</h2>\n", html.EscapeString(title), r.Params.Started.Format("2006-01-02 15:04:05 UTC"))
		var text bytes.Buffer
		writeText(&text, r)
		fmt.Fprintf(&b, "<pre>%s</pre>\n", html.EscapeString(text.String()))
		xs := make([]float64, len(r.Series))
		conn := make([]float64, len(r.Series))
		deliv := make([]float64, len(r.Series))
		sent := make([]float64, len(r.Series))
		p50, p90, p99, p999, pmax := make([]float64, len(r.Series)), make([]float64, len(r.Series)),
			make([]float64, len(r.Series)), make([]float64, len(r.Series)), make([]float64, len(r.Series))
		for i, pt := range r.Series {
			xs[i] = pt.T
			conn[i] = float64(pt.Connected)
			deliv[i] = float64(pt.Deliveries)
			sent[i] = float64(pt.Sent)
			p50[i], p90[i], p99[i], p999[i], pmax[i] = pt.P50, pt.P90, pt.P99, pt.P999, pt.Max
		}
		b.WriteString(svgChart("Deliveries per second", xs, []line{{"deliveries/s", "#1f77b4", deliv}}, false, r.Phases))
		b.WriteString(svgChart("Latency from intended send time (ms, log scale), by second received", xs, []line{
			{"p50", "#2ca02c", p50}, {"p90", "#1f77b4", p90}, {"p99", "#ff7f0e", p99},
			{"p99.9", "#d62728", p999}, {"max", "#7f7f7f", pmax},
		}, true, r.Phases))
		b.WriteString(svgChart("Connections open, messages sent per second", xs, []line{
			{"connections", "#9467bd", conn}, {"sent/s", "#8c564b", sent},
		}, false, r.Phases))
		writeServerCharts(&b, r)
	}
	b.WriteString("</body></html>\n")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write -html: %w", err)
	}
	return nil
}

// writeServerCharts draws the server's sampled /metrics: memory and
// goroutines over the whole run, the curves a soak is judged on.
func writeServerCharts(b *bytes.Buffer, r *Result) {
	if len(r.ServerSeries) < 2 {
		return
	}
	n := len(r.ServerSeries)
	xs, rss, heap, gor, conns := make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
	for i, pt := range r.ServerSeries {
		xs[i] = pt.T
		rss[i], heap[i] = pt.RSS/(1<<20), pt.Heap/(1<<20)
		gor[i], conns[i] = pt.Goroutines, pt.Connections
	}
	every := fmt.Sprintf("every %gs", r.Params.SampleEvery)
	b.WriteString(svgChart("Server memory (MiB, "+every+")", xs, []line{
		{"RSS", "#d62728", rss}, {"heap in use", "#1f77b4", heap},
	}, false, r.Phases))
	b.WriteString(svgChart("Server goroutines ("+every+")", xs, []line{{"goroutines", "#2ca02c", gor}}, false, r.Phases))
	b.WriteString(svgChart("Server connections ("+every+")", xs, []line{{"connections", "#9467bd", conns}}, false, r.Phases))
}

// svgChart draws lines over seconds, with the phase boundaries as dashed
// verticals (ramp end, publishing start, window start and end).
func svgChart(title string, xs []float64, lines []line, logY bool, ph Phases) string {
	const W, H, L, R, T, B = 940.0, 260.0, 70.0, 20.0, 30.0, 40.0
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%g" height="%g" viewBox="0 0 %g %g" role="img" aria-label="%s">`,
		W, H, W, H, html.EscapeString(title))
	fmt.Fprintf(&sb, `<text x="%g" y="18" font-size="13" font-weight="bold">%s</text>`, L, html.EscapeString(title))
	if len(xs) == 0 {
		sb.WriteString(`<text x="70" y="120">no data</text></svg>`)
		return sb.String()
	}
	xmax := xs[len(xs)-1] + 1
	ymax, ymin := 0.0, math.Inf(1)
	for _, l := range lines {
		for _, y := range l.ys {
			ymax = math.Max(ymax, y)
			if y > 0 {
				ymin = math.Min(ymin, y)
			}
		}
	}
	if ymax <= 0 {
		ymax = 1
	}
	if math.IsInf(ymin, 1) {
		ymin = 0.01
	}
	lo, hi := 0.0, niceCeil(ymax*1.05)
	if logY {
		lo, hi = math.Floor(math.Log10(ymin)), math.Ceil(math.Log10(ymax))
		if hi <= lo {
			hi = lo + 1
		}
	}
	px := func(x float64) float64 { return L + (W-L-R)*x/xmax }
	py := func(y float64) float64 {
		v := y
		if logY {
			if y <= 0 {
				return math.NaN()
			}
			v = math.Log10(y)
		}
		return H - B - (H-T-B)*(v-lo)/(hi-lo)
	}
	// axes and grid
	fmt.Fprintf(&sb, `<rect x="%g" y="%g" width="%g" height="%g" fill="none" stroke="#999"/>`, L, T, W-L-R, H-T-B)
	ticks := 4
	if logY {
		ticks = int(hi - lo) // one per decade
	}
	for i := 0; i <= ticks; i++ {
		var v float64
		if logY {
			v = math.Pow(10, lo+float64(i))
		} else {
			v = hi * float64(i) / 4
		}
		y := py(v)
		fmt.Fprintf(&sb, `<line x1="%g" x2="%g" y1="%.1f" y2="%.1f" stroke="#eee"/><text x="%g" y="%.1f" font-size="11" text-anchor="end">%s</text>`,
			L, W-R, y, y, L-4, y+4, short(v))
	}
	step := math.Max(1, niceCeil(xmax/10))
	for x := 0.0; x <= xmax; x += step {
		fmt.Fprintf(&sb, `<text x="%.1f" y="%g" font-size="11" text-anchor="middle">%gs</text>`, px(x), H-B+15, x)
	}
	for _, v := range []struct {
		x    float64
		name string
	}{{ph.RampEnd, "ramped"}, {ph.Start, "start"}, {ph.WindowStart, "window"}, {ph.WindowEnd, "end"}} {
		if v.x <= 0 || v.x > xmax {
			continue
		}
		fmt.Fprintf(&sb, `<line x1="%.1f" x2="%.1f" y1="%g" y2="%g" stroke="#aaa" stroke-dasharray="4 3"/><text x="%.1f" y="%g" font-size="10" fill="#777">%s</text>`,
			px(v.x), px(v.x), T, H-B, px(v.x)+2, T+10, v.name)
	}
	// lines: each point at the middle of its second
	for i, l := range lines {
		var pts []string
		for j, y := range l.ys {
			yy := py(y)
			if math.IsNaN(yy) || (logY && y <= 0) {
				if len(pts) > 1 {
					fmt.Fprintf(&sb, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, l.color, strings.Join(pts, " "))
				}
				pts = pts[:0]
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(xs[j]+0.5), yy))
		}
		if len(pts) > 0 {
			fmt.Fprintf(&sb, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, l.color, strings.Join(pts, " "))
		}
		lx := L + 10 + float64(i)*110
		fmt.Fprintf(&sb, `<rect x="%g" y="%g" width="12" height="3" fill="%s"/><text x="%g" y="%g" font-size="11">%s</text>`,
			lx, H-12, l.color, lx+16, H-8, html.EscapeString(l.name))
	}
	sb.WriteString("</svg>\n")
	return sb.String()
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	e := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*e >= v {
			return m * e
		}
	}
	return 10 * e
}

// short formats an axis value compactly (1.5k, 2M, 0.25).
func short(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", math.Round(v/1e5)/10)
	case v >= 1e3:
		return fmt.Sprintf("%gk", math.Round(v/1e2)/10)
	case v >= 1 || v == 0:
		return fmt.Sprintf("%g", math.Round(v*10)/10)
	}
	return fmt.Sprintf("%.2g", v)
}
