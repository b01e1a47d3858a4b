package main

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Latency histograms are log-linear, in the manner of HdrHistogram: values
// (microseconds) below 2·histSub land in buckets of width 1, and every
// further power of two is cut into histSub equal buckets. The relative error
// of any recorded value is therefore below 1/histSub (1.6 %), the bucket
// boundaries are the same in every process, and two histograms merge by
// adding their counts. A list of samples would not merge across worker
// processes without shipping every sample, and would grow with the run.
const (
	histSubBits = 6
	histSub     = 1 << histSubBits // linear buckets per power of two
	// histMaxShift bounds the range: values up to 2^(histMaxShift+histSubBits+1) µs
	// (about 19 hours) have their own bucket, larger ones are clamped.
	histMaxShift = 30
	histBuckets  = (histMaxShift + 2) * histSub
)

// Histogram counts latencies in fixed log-linear buckets. Record is safe for
// concurrent use (atomic adds, no locks), so every poller goroutine of a
// worker can share one; reading while recording gives a consistent-enough
// snapshot for a progress line, and exact figures once recording stopped.
type Histogram struct {
	counts [histBuckets]atomic.Uint64
	total  atomic.Uint64
	sum    atomic.Uint64 // µs, for the mean
	max    atomic.Uint64 // µs
}

// histIndex maps a value in µs to its bucket.
func histIndex(v uint64) int {
	if v < 2*histSub {
		return int(v)
	}
	shift := bits.Len64(v) - histSubBits - 1
	if shift > histMaxShift {
		return histBuckets - 1
	}
	return (shift+1)*histSub + int(v>>uint(shift)) - histSub
}

// histLow returns the smallest value that falls in bucket i, and histWidth
// the width of that bucket.
func histLow(i int) uint64 {
	if i < 2*histSub {
		return uint64(i)
	}
	shift := i/histSub - 1
	return uint64(i%histSub+histSub) << uint(shift)
}

func histWidth(i int) uint64 {
	if i < 2*histSub {
		return 1
	}
	return 1 << uint(i/histSub-1)
}

// Record adds one latency. Negative durations (a clock step) count as zero.
func (h *Histogram) Record(d time.Duration) {
	us := uint64(0)
	if d > 0 {
		us = uint64(d / time.Microsecond)
	}
	h.RecordMicros(us)
}

// RecordMicros adds one value in microseconds.
func (h *Histogram) RecordMicros(us uint64) {
	h.counts[histIndex(us)].Add(1)
	h.total.Add(1)
	h.sum.Add(us)
	// Load first: after the first few values the maximum rarely changes,
	// so most calls never write the shared word.
	for {
		m := h.max.Load()
		if us <= m || h.max.CompareAndSwap(m, us) {
			break
		}
	}
}

// Count returns the number of recorded values.
func (h *Histogram) Count() uint64 { return h.total.Load() }

// Merge adds every count of o into h.
func (h *Histogram) Merge(o *Histogram) {
	for i := range o.counts {
		if c := o.counts[i].Load(); c != 0 {
			h.counts[i].Add(c)
		}
	}
	h.total.Add(o.total.Load())
	h.sum.Add(o.sum.Load())
	for {
		m, om := h.max.Load(), o.max.Load()
		if om <= m || h.max.CompareAndSwap(m, om) {
			break
		}
	}
}

// Quantile returns the value (µs) below which the fraction q of the recorded
// values lie: the middle of the bucket that holds it, never above the exact
// maximum. It returns 0 for an empty histogram.
func (h *Histogram) Quantile(q float64) float64 {
	n := h.total.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			v := float64(histLow(i)) + float64(histWidth(i)-1)/2
			return math.Min(v, float64(h.max.Load()))
		}
	}
	return float64(h.max.Load())
}

// Max returns the largest recorded value in µs.
func (h *Histogram) Max() float64 { return float64(h.max.Load()) }

// Mean returns the mean in µs (bucketing does not affect it).
func (h *Histogram) Mean() float64 {
	n := h.total.Load()
	if n == 0 {
		return 0
	}
	return float64(h.sum.Load()) / float64(n)
}

// SparseHist is the wire and file form of a Histogram: only the non-empty
// buckets, as pairs of bucket index and count.
type SparseHist struct {
	Buckets [][2]uint64 `json:"buckets,omitempty"`
	Sum     uint64      `json:"sum_us"`
	Max     uint64      `json:"max_us"`
}

// Sparse returns the non-empty buckets of h.
func (h *Histogram) Sparse() SparseHist {
	s := SparseHist{Sum: h.sum.Load(), Max: h.max.Load()}
	for i := range h.counts {
		if c := h.counts[i].Load(); c != 0 {
			s.Buckets = append(s.Buckets, [2]uint64{uint64(i), c})
		}
	}
	return s
}

// AddSparse merges a sparse histogram into h. Out-of-range indexes (a
// worker built with other constants) are clamped rather than dropped.
func (h *Histogram) AddSparse(s SparseHist) {
	var n uint64
	for _, b := range s.Buckets {
		i := b[0]
		if i >= histBuckets {
			i = histBuckets - 1
		}
		h.counts[i].Add(b[1])
		n += b[1]
	}
	h.total.Add(n)
	h.sum.Add(s.Sum)
	for {
		m := h.max.Load()
		if s.Max <= m || h.max.CompareAndSwap(m, s.Max) {
			break
		}
	}
}

// Percentiles is the summary printed and stored for a latency histogram,
// in milliseconds.
type Percentiles struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

// Summary returns the standard percentiles of h in milliseconds.
func (h *Histogram) Summary() Percentiles {
	return Percentiles{
		Count: h.Count(),
		Mean:  h.Mean() / 1e3,
		P50:   h.Quantile(0.50) / 1e3,
		P90:   h.Quantile(0.90) / 1e3,
		P99:   h.Quantile(0.99) / 1e3,
		P999:  h.Quantile(0.999) / 1e3,
		Max:   h.Max() / 1e3,
	}
}

// Second is one 1-second slot of a time series, filled by a worker: the
// deliveries received, messages sent and their latencies during that second
// (by receive time), and the connections open at its end.
type Second struct {
	Deliveries atomic.Uint64
	Sent       atomic.Uint64
	Connected  atomic.Int64
	Latency    Histogram
}

// Series is a preallocated run of seconds since the run's origin. Slots are
// allocated up front so that the delivery path only indexes and adds.
type Series struct {
	origin int64 // unix ns of slot 0
	slots  []Second
}

func newSeries(origin int64, seconds int) *Series {
	if seconds < 1 {
		seconds = 1
	}
	return &Series{origin: origin, slots: make([]Second, seconds)}
}

// at returns the slot for the unix time now (ns); times past the end land in
// the last slot, times before the origin in the first.
func (s *Series) at(now int64) *Second {
	i := (now - s.origin) / int64(time.Second)
	if i < 0 {
		i = 0
	}
	if i >= int64(len(s.slots)) {
		i = int64(len(s.slots)) - 1
	}
	return &s.slots[i]
}

// SecondWire is the wire form of one Second.
type SecondWire struct {
	Deliveries uint64     `json:"d"`
	Sent       uint64     `json:"s"`
	Connected  int64      `json:"c"`
	Latency    SparseHist `json:"l"`
}

// wire returns the slots up to and including the last one that saw anything.
func (s *Series) wire(upTo int) []SecondWire {
	if upTo > len(s.slots) {
		upTo = len(s.slots)
	}
	out := make([]SecondWire, upTo)
	for i := range out {
		sl := &s.slots[i]
		out[i] = SecondWire{
			Deliveries: sl.Deliveries.Load(),
			Sent:       sl.Sent.Load(),
			Connected:  sl.Connected.Load(),
			Latency:    sl.Latency.Sparse(),
		}
	}
	return out
}

// bitmap is a fixed-size set of message numbers, safe for concurrent Set.
// Workers mark every message they saw; the coordinator ORs the bitmaps of all
// workers to learn which messages the server accepted.
type bitmap []atomic.Uint64

func newBitmap(n int) bitmap { return make(bitmap, (n+63)/64) }

// Set marks i. It reads before writing, so the thousands of receivers of one
// message mostly share the cache line instead of bouncing it.
func (b bitmap) Set(i int) {
	w := &b[i>>6]
	m := uint64(1) << uint(i&63)
	if w.Load()&m == 0 {
		w.Or(m)
	}
}

// Has reports whether i is marked.
func (b bitmap) Has(i int) bool { return b[i>>6].Load()&(1<<uint(i&63)) != 0 }

// words returns a plain copy for the wire.
func (b bitmap) words() []uint64 {
	out := make([]uint64, len(b))
	for i := range b {
		out[i] = b[i].Load()
	}
	return out
}

// orWords merges a wire copy into b.
func (b bitmap) orWords(ws []uint64) {
	for i, w := range ws {
		if i < len(b) && w != 0 {
			b[i].Or(w)
		}
	}
}

// lastUsed returns one past the last slot that recorded anything.
func (s *Series) lastUsed() int {
	for i := len(s.slots) - 1; i >= 0; i-- {
		sl := &s.slots[i]
		if sl.Deliveries.Load() != 0 || sl.Sent.Load() != 0 || sl.Connected.Load() != 0 {
			return i + 1
		}
	}
	return 0
}
