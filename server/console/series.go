package console

import (
	"math"
	"slices"
	"strconv"
	"sync"
	"time"
)

// The nodes' history: one sample of every node a second, the last ten
// minutes of them, in a ring of ticks. A tick holds what one Source.Nodes
// call returned, so a node's series is its entry in each tick, and a node
// that went away leaves the history by itself once its last tick is
// overwritten: nothing grows with nodes that come and go (a cluster node's
// name is new at every start).
//
// Counters become rates here, from consecutive samples: (v₂ − v₁) / (t₂ −
// t₁), per second. A counter that went down (the node restarted under the
// same name) gives no rate for that step, and neither does a node missing
// from either sample: the charts show a gap, not a spike.

// tick is one sample of every node. Its nodes are never modified once
// stored.
type tick struct {
	at    time.Time
	nodes []Node // by name
}

// series is the ring. mu guards it; answers are built from a copy, outside
// the lock.
type series struct {
	mu    sync.Mutex
	ticks []tick
	next  int // where the next tick goes once the ring is full
	size  int
}

func newSeries(size int) *series { return &series{size: size} }

// add stores the sample taken at at.
func (s *series) add(at time.Time, nodes []Node) {
	nodes = slices.Clone(nodes)
	slices.SortFunc(nodes, func(a, b Node) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ticks) < s.size {
		s.ticks = append(s.ticks, tick{at, nodes})
		return
	}
	s.ticks[s.next] = tick{at, nodes}
	s.next = (s.next + 1) % s.size
}

// all returns the ticks, oldest first.
func (s *series) all() []tick {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]tick, 0, len(s.ticks))
	out = append(out, s.ticks[s.next:]...)
	return append(out, s.ticks[:s.next]...)
}

// metric is one charted number of a node.
type metric struct {
	key  string
	rate bool // a counter, charted per second
	get  func(*Node) float64
}

// metrics are the charted numbers, in the order the answer lists them.
var metrics = []metric{
	{"connections", false, func(n *Node) float64 { return float64(n.Connections) }},
	{"rooms", false, func(n *Node) float64 { return float64(n.Rooms) }},
	{"calls", false, func(n *Node) float64 { return float64(n.Calls) }},
	{"call_peers", false, func(n *Node) float64 { return float64(n.CallPeers) }},
	{"deliveries", true, func(n *Node) float64 { return float64(n.Deliveries) }},
	{"frames_in", true, func(n *Node) float64 { return float64(n.FramesIn) }},
	{"frames_out", true, func(n *Node) float64 { return float64(n.FramesOut) }},
	{"bytes_out", true, func(n *Node) float64 { return float64(n.BytesOut) }},
	{"slow_closes", true, func(n *Node) float64 { return float64(n.SlowCloses) }},
	{"errors", true, func(n *Node) float64 { return float64(sumErrors(n.Errors)) }},
	{"cpu", true, func(n *Node) float64 { return n.CPUSeconds }},
	{"rss", false, func(n *Node) float64 { return float64(n.RSS) }},
	{"goroutines", false, func(n *Node) float64 { return float64(n.Goroutines) }},
}

func sumErrors(m map[string]uint64) uint64 {
	var t uint64
	for _, v := range m {
		t += v
	}
	return t
}

// find returns the entry of node name in t, if it answered.
func (t *tick) find(name string) *Node {
	i, ok := slices.BinarySearchFunc(t.nodes, name, func(n Node, name string) int {
		switch {
		case n.Name < name:
			return -1
		case n.Name > name:
			return 1
		}
		return 0
	})
	if !ok || t.nodes[i].Missing {
		return nil
	}
	return &t.nodes[i]
}

// value is m of node name at tick i, NaN where there is none: the node did
// not answer then (or, for a rate, at the tick before), or its counter went
// down.
func value(ticks []tick, i int, name string, m *metric) float64 {
	n := ticks[i].find(name)
	if n == nil {
		return math.NaN()
	}
	if !m.rate {
		return m.get(n)
	}
	if i == 0 {
		return math.NaN()
	}
	p := ticks[i-1].find(name)
	dt := ticks[i].at.Sub(ticks[i-1].at).Seconds()
	if p == nil || dt <= 0 {
		return math.NaN()
	}
	d := m.get(n) - m.get(p)
	if d < 0 {
		return math.NaN()
	}
	return d / dt
}

// total is the sum of m over names at tick i, NaN if none has a value.
func total(ticks []tick, i int, names []string, m *metric) float64 {
	sum, any := 0.0, false
	for _, name := range names {
		if v := value(ticks, i, name, m); !math.IsNaN(v) {
			sum, any = sum+v, true
		}
	}
	if !any {
		return math.NaN()
	}
	return sum
}

// seriesJSON encodes the ticks after since (Unix ms; 0: all) as
// {"t":[ms…],"nodes":{name:{metric:[…]}},"total":{metric:[…]}}, each
// array aligned with t, null where there is no value. Written by hand:
// thirteen arrays of 600 numbers per node, for encoding/json a slice of
// pointers each.
func seriesJSON(ticks []tick, since int64) []byte {
	from := 0
	for from < len(ticks) && ticks[from].at.UnixMilli() <= since {
		from++
	}
	var names []string
	for _, t := range ticks[from:] {
		for _, n := range t.nodes {
			if !n.Missing && !slices.Contains(names, n.Name) {
				names = append(names, n.Name)
			}
		}
	}
	slices.Sort(names)
	b := make([]byte, 0, 1024+(len(ticks)-from)*(len(names)+1)*len(metrics)*8)
	b = append(b, `{"t":[`...)
	for i := from; i < len(ticks); i++ {
		if i > from {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, ticks[i].at.UnixMilli(), 10)
	}
	b = append(b, `],"nodes":{`...)
	for k, name := range names {
		if k > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, name)
		b = append(b, ':')
		b = appendMetrics(b, from, len(ticks), func(i int, m *metric) float64 { return value(ticks, i, name, m) })
	}
	b = append(b, `},"total":`...)
	b = appendMetrics(b, from, len(ticks), func(i int, m *metric) float64 { return total(ticks, i, names, m) })
	return append(b, '}')
}

// appendMetrics appends {metric:[v(from)…v(to-1)],…}.
func appendMetrics(b []byte, from, to int, v func(int, *metric) float64) []byte {
	b = append(b, '{')
	for k := range metrics {
		m := &metrics[k]
		if k > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, m.key...)
		b = append(b, `":[`...)
		for i := from; i < to; i++ {
			if i > from {
				b = append(b, ',')
			}
			b = appendNum(b, v(i, m))
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// appendNum appends f with at most three decimals, or null for NaN.
func appendNum(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, math.Round(f*1000)/1000, 'f', -1, 64)
}

// latestRates are the rate metrics at the last tick by key, v giving
// each; nil where there is none.
func latestRates(ticks []tick, v func(i int, m *metric) float64) map[string]*float64 {
	out := make(map[string]*float64)
	for k := range metrics {
		m := &metrics[k]
		if !m.rate {
			continue
		}
		out[m.key] = nil
		if len(ticks) == 0 {
			continue
		}
		if f := v(len(ticks)-1, m); !math.IsNaN(f) {
			f = math.Round(f*1000) / 1000
			out[m.key] = &f
		}
	}
	return out
}
