package console

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// seriesAnswer is the series part of GET /admin/api/nodes.
type seriesAnswer struct {
	T     []int64
	Nodes map[string]map[string][]*float64
	Total map[string][]*float64
}

func decodeSeries(t *testing.T, b []byte) seriesAnswer {
	t.Helper()
	var s seriesAnswer
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("%v in %s", err, b)
	}
	return s
}

// vals renders a series as text, "-" for null.
func vals(s []*float64) string {
	var out []string
	for _, v := range s {
		if v == nil {
			out = append(out, "-")
		} else {
			b, _ := json.Marshal(*v)
			out = append(out, string(b))
		}
	}
	return strings.Join(out, " ")
}

func TestSeriesRates(t *testing.T) {
	s := newSeries(600)
	t0 := time.UnixMilli(1_700_000_000_000)
	node := func(name string, conns int64, deliveries uint64, cpu float64) Node {
		return Node{Name: name, Load: Load{Connections: conns, Deliveries: deliveries, CPUSeconds: cpu,
			Errors: map[string]uint64{"bad_json": deliveries / 10, "rate_limited": 1}}}
	}
	s.add(t0, []Node{node("b", 5, 100, 1), node("a", 1, 0, 0)})
	s.add(t0.Add(time.Second), []Node{node("a", 2, 10, 0.25), node("b", 6, 150, 1.5)})
	// Two seconds later: rates are per second of the time that passed.
	s.add(t0.Add(3*time.Second), []Node{node("a", 3, 30, 0.5), {Name: "b", Missing: true}})
	// b is back, restarted: its counter went down, which gives no rate.
	s.add(t0.Add(4*time.Second), []Node{node("a", 3, 30, 0.5), node("b", 1, 20, 0.1)})
	s.add(t0.Add(5*time.Second), []Node{node("a", 4, 31, 0.5), node("b", 1, 25, 0.2)})

	ticks := s.all()
	got := decodeSeries(t, seriesJSON(ticks, 0))
	if len(got.T) != 5 || got.T[0] != t0.UnixMilli() || got.T[2] != t0.Add(3*time.Second).UnixMilli() {
		t.Fatalf("t = %v", got.T)
	}
	for _, c := range []struct {
		name, series, metric, want string
	}{
		{"a", "node", "connections", "1 2 3 3 4"},
		{"a", "node", "deliveries", "- 10 10 0 1"},
		{"a", "node", "cpu", "- 0.25 0.125 0 0"},
		{"b", "node", "connections", "5 6 - 1 1"},
		{"b", "node", "deliveries", "- 50 - - 5"},
		{"b", "node", "errors", "- 5 - - 0"},
		{"", "total", "connections", "6 8 3 4 5"},
		{"", "total", "deliveries", "- 60 10 0 6"},
	} {
		var arr []*float64
		if c.series == "node" {
			arr = got.Nodes[c.name][c.metric]
		} else {
			arr = got.Total[c.metric]
		}
		if v := vals(arr); v != c.want {
			t.Errorf("%s %s %s = %s, want %s", c.series, c.name, c.metric, v, c.want)
		}
	}

	// since: only the later ticks, whose rates still use the tick before.
	later := decodeSeries(t, seriesJSON(ticks, t0.Add(3*time.Second).UnixMilli()))
	if len(later.T) != 2 || vals(later.Nodes["a"]["deliveries"]) != "0 1" || vals(later.Total["connections"]) != "4 5" {
		t.Fatalf("since: %+v", later)
	}
	if empty := decodeSeries(t, seriesJSON(ticks, t0.Add(time.Hour).UnixMilli())); len(empty.T) != 0 || len(empty.Nodes) != 0 {
		t.Fatalf("since the future: %+v", empty)
	}
	if r := latestRates(ticks, func(i int, m *metric) float64 { return value(ticks, i, "b", m) }); r["deliveries"] == nil || *r["deliveries"] != 5 {
		t.Fatalf("latest rates of b: %v", r)
	}
}

func TestSeriesRing(t *testing.T) {
	s := newSeries(3)
	t0 := time.Now()
	for i := 0; i < 5; i++ {
		s.add(t0.Add(time.Duration(i)*time.Second), []Node{{Name: "n", Load: Load{Connections: int64(i)}}})
	}
	got := decodeSeries(t, seriesJSON(s.all(), 0))
	if vals(got.Nodes["n"]["connections"]) != "2 3 4" {
		t.Fatalf("ring keeps %v, want the last three", vals(got.Nodes["n"]["connections"]))
	}
	// A node gone for the whole window leaves the answer.
	for i := 5; i < 8; i++ {
		s.add(t0.Add(time.Duration(i)*time.Second), []Node{{Name: "m"}})
	}
	if got := decodeSeries(t, seriesJSON(s.all(), 0)); got.Nodes["n"] != nil || got.Nodes["m"] == nil {
		t.Fatalf("after n left: %v", got.Nodes)
	}
}

// TestNodesEndpoint: GET /admin/api/nodes serves the sampled nodes, their
// rates and the total, from the samples alone.
func TestNodesEndpoint(t *testing.T) {
	f := newFixture(t, Options{Password: []byte(testPassword)})
	t0 := time.Now().Add(-2 * time.Second)
	f.src.nodes = []Node{{Name: "a", Self: true, Load: Load{Connections: 2, FramesOut: 100}}, {Name: "b", Load: Load{Connections: 3, FramesOut: 1000}}}
	f.c.sampleOnce(t0)
	f.src.nodes = []Node{{Name: "a", Self: true, Load: Load{Connections: 4, FramesOut: 300, Errors: map[string]uint64{"bad_json": 2}}},
		{Name: "b", Missing: true}}
	f.c.sampleOnce(t0.Add(2 * time.Second))
	resp, body := f.do("GET", "/admin/api/nodes", "", map[string]string{"Authorization": "Bearer " + testPassword})
	if resp.StatusCode != 200 {
		t.Fatalf("nodes: %d %s", resp.StatusCode, body)
	}
	var ans struct {
		Nodes []struct {
			Name    string
			Self    bool
			Missing bool
			Rates   map[string]*float64
		}
		Total struct {
			Nodes, Missing, Connections int
			Errors                      map[string]int `json:"errors_total"`
			Rates                       map[string]*float64
		}
		Series seriesAnswer
	}
	if err := json.Unmarshal([]byte(body), &ans); err != nil {
		t.Fatal(err)
	}
	if len(ans.Nodes) != 2 || !ans.Nodes[0].Self || !ans.Nodes[1].Missing || *ans.Nodes[0].Rates["frames_out"] != 100 {
		t.Fatalf("nodes: %s", body)
	}
	if ans.Total.Nodes != 1 || ans.Total.Missing != 1 || ans.Total.Connections != 4 || ans.Total.Errors["bad_json"] != 2 ||
		*ans.Total.Rates["frames_out"] != 100 || ans.Total.Rates["deliveries"] == nil {
		t.Fatalf("total: %+v in %s", ans.Total, body)
	}
	if vals(ans.Series.Total["connections"]) != "5 4" {
		t.Fatalf("total connections series %s", vals(ans.Series.Total["connections"]))
	}
}
