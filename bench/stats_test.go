package main

import (
	"bufio"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
)

// Every value falls in a bucket whose bounds contain it, and buckets tile
// the range without gaps.
func TestHistogramBuckets(t *testing.T) {
	for i := 1; i < histBuckets; i++ {
		if histLow(i) != histLow(i-1)+histWidth(i-1) {
			t.Fatalf("gap between buckets %d and %d: %d+%d != %d", i-1, i, histLow(i-1), histWidth(i-1), histLow(i))
		}
	}
	for _, v := range []uint64{0, 1, 127, 128, 129, 1000, 65535, 1 << 20, 123456789, 1 << 36} {
		i := histIndex(v)
		if lo, w := histLow(i), histWidth(i); v < lo || v >= lo+w {
			t.Errorf("value %d in bucket %d = [%d, %d)", v, i, lo, lo+w)
		}
		if w := histWidth(i); float64(w) > float64(v)/histSub*2+1 {
			t.Errorf("value %d: bucket width %d is over the %d%% precision", v, w, 100/histSub)
		}
	}
}

// Quantiles stay within the bucket precision of the exact ones.
func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	r := rand.New(rand.NewPCG(1, 2))
	vals := make([]float64, 100000)
	for i := range vals {
		v := uint64(math.Exp(r.Float64() * 14)) // 1 µs to 1.2 s, log-uniform
		vals[i] = float64(v)
		h.RecordMicros(v)
	}
	sort.Float64s(vals)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
		exact := vals[int(math.Ceil(q*float64(len(vals))))-1]
		got := h.Quantile(q)
		if math.Abs(got-exact) > exact/histSub+1 {
			t.Errorf("q%g = %g, exact %g", q, got, exact)
		}
	}
	if h.Max() != vals[len(vals)-1] {
		t.Errorf("max %g, want %g", h.Max(), vals[len(vals)-1])
	}
	var empty Histogram
	if empty.Quantile(0.99) != 0 || empty.Summary().Count != 0 {
		t.Error("empty histogram not zero")
	}
}

// Merging (directly or through the sparse wire form) equals recording
// everything in one histogram: what makes worker processes' results exact.
func TestHistogramMerge(t *testing.T) {
	var a, b, all Histogram
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 50000 {
		v := uint64(r.ExpFloat64() * 5000)
		if i%3 == 0 {
			a.RecordMicros(v)
		} else {
			b.RecordMicros(v)
		}
		all.RecordMicros(v)
	}
	var direct, wire Histogram
	direct.Merge(&a)
	direct.Merge(&b)
	wire.AddSparse(a.Sparse())
	wire.AddSparse(b.Sparse())
	for name, h := range map[string]*Histogram{"merge": &direct, "sparse": &wire} {
		if h.Sparse().Sum != all.Sparse().Sum || h.Count() != all.Count() || h.Max() != all.Max() {
			t.Errorf("%s: count/sum/max differ", name)
		}
		for i := range h.counts {
			if h.counts[i].Load() != all.counts[i].Load() {
				t.Fatalf("%s: bucket %d: %d, want %d", name, i, h.counts[i].Load(), all.counts[i].Load())
			}
		}
		if h.Summary() != all.Summary() {
			t.Errorf("%s: summary %+v, want %+v", name, h.Summary(), all.Summary())
		}
	}
}

func TestBitmap(t *testing.T) {
	a, b := newBitmap(200), newBitmap(200)
	a.Set(0)
	a.Set(63)
	b.Set(64)
	b.Set(199)
	a.orWords(b.words())
	for i := range 200 {
		want := i == 0 || i == 63 || i == 64 || i == 199
		if a.Has(i) != want {
			t.Errorf("bit %d = %v", i, a.Has(i))
		}
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP noom_connections Open connections.
# TYPE noom_connections gauge
noom_connections 42
noom_deliveries_total{shard="0"} 1.5e+06
noom_deliveries_total{shard="1"} 500000
process_cpu_seconds_total 12.25
noom_connections_other 7
go_goroutines 9
`
	got, err := parseMetrics(bufio.NewScanner(strings.NewReader(text)), wantedMetrics)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{mConnections: 42, mDeliveries: 2e6, mCPU: 12.25, mGoroutines: 9}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if _, ok := got[mRSS]; ok {
		t.Error("absent metric reported")
	}
}
