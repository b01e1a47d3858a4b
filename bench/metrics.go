package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Server-side figures come from the server's /metrics (Prometheus text
// format), when it has one. The names are noom's; the reference server
// exports the same ones.
const (
	mConnections = "noom_connections"
	mDeliveries  = "noom_deliveries_total"
	mCPU         = "process_cpu_seconds_total"
	mRSS         = "process_resident_memory_bytes"
	mHeap        = "go_memstats_heap_inuse_bytes"
	mGoroutines  = "go_goroutines"
	mSlow        = "noom_slow_consumer_closes_total"
)

var wantedMetrics = []string{mConnections, mDeliveries, mCPU, mRSS, mHeap, mGoroutines, mSlow}

// Sample is one scrape of every server, summed over servers. A metric
// missing from every server is absent from Values.
type Sample struct {
	At     time.Time          `json:"at"`
	Values map[string]float64 `json:"values"`
	Errors []string           `json:"errors,omitempty"`
}

// has reports whether every named metric was present.
func (s *Sample) has(names ...string) bool {
	if s == nil {
		return false
	}
	for _, n := range names {
		if _, ok := s.Values[n]; !ok {
			return false
		}
	}
	return true
}

// metricsTargets returns the /metrics URLs to scrape: -metrics if given,
// else the ones beside the WebSocket URLs.
func (cfg *Config) metricsTargets() []string {
	if len(cfg.Metrics) > 0 {
		return cfg.Metrics
	}
	return metricsURLs(cfg.URLs)
}

// metricsURLs turns the WebSocket URLs into the distinct /metrics URLs of
// their servers: where the reference serves them. noom serves its own on a
// separate admin listener, which -metrics names.
func metricsURLs(wsURLs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, raw := range wsURLs {
		u, err := url.Parse(raw)
		if err != nil || seen[u.Host] {
			continue
		}
		seen[u.Host] = true
		scheme := "http"
		if u.Scheme == "wss" {
			scheme = "https"
		}
		out = append(out, scheme+"://"+u.Host+"/metrics")
	}
	return out
}

var metricsClient = &http.Client{Timeout: 5 * time.Second}

// insecureTLS is set by -insecure: certificates of wss:// and https://
// servers are not verified.
var insecureTLS bool

// setInsecure applies -insecure to the metrics client and the dialers.
func setInsecure(b bool) {
	insecureTLS = b
	if b {
		metricsClient.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	}
}

// scrape reads the wanted metrics from every server and sums them. A server
// without /metrics leaves the figures out; the run goes on.
func scrape(ctx context.Context, urls []string) *Sample {
	s := &Sample{At: time.Now(), Values: map[string]float64{}}
	for _, u := range urls {
		vals, err := scrapeOne(ctx, u)
		if err != nil {
			s.Errors = append(s.Errors, err.Error())
			continue
		}
		for k, v := range vals {
			s.Values[k] += v
		}
	}
	return s
}

func scrapeOne(ctx context.Context, u string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := metricsClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, fmt.Errorf("%s: %s (noom serves /metrics on its -admin-addr: pass -metrics)", u, resp.Status)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", u, resp.Status)
	}
	return parseMetrics(bufio.NewScanner(resp.Body), wantedMetrics)
}

// parseMetrics sums, for each wanted name, every series of that name
// (whatever its labels) in Prometheus text format.
func parseMetrics(sc *bufio.Scanner, names []string) (map[string]float64, error) {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]float64{}
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name := line
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
		}
		if !want[name] {
			continue
		}
		rest := line[len(name):]
		if strings.HasPrefix(rest, "{") {
			if j := strings.LastIndexByte(rest, '}'); j >= 0 {
				rest = rest[j+1:]
			}
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		out[name] += v
	}
	return out, sc.Err()
}

// sampler scrapes the servers every interval for the whole run, for the
// curves of memory and goroutines over time: a leak shows as a slope that
// the four phase samples of a short run cannot show. A scrape of noom costs
// it well under a millisecond; at the default 5 s that is nothing.
type sampler struct {
	mu      sync.Mutex
	samples []*Sample
	stop    chan struct{}
	done    chan struct{}
}

// startSampler starts a series with first (the sample before the ramp) and
// scrapes urls every interval from then on; with interval 0 it does
// nothing. Its first scrape of its own comes an interval later, not at
// once: at once it would land in the first moments of the ramp, which
// belong to no steady state (the server runs an upgrade handler goroutine
// per connection in flight, dozens for a moment).
func startSampler(ctx context.Context, urls []string, interval time.Duration, first *Sample) *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	if interval <= 0 {
		close(s.done)
		return s
	}
	s.samples = append(s.samples, first)
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
			case <-s.stop:
				return
			case <-ctx.Done():
				return
			}
			smp := scrape(ctx, urls)
			s.mu.Lock()
			s.samples = append(s.samples, smp)
			s.mu.Unlock()
		}
	}()
	return s
}

// finish stops the sampler and returns its samples, last appended (the
// sample at the end of the run, taken by the caller) if not nil.
func (s *sampler) finish(last *Sample) []*Sample {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	if last != nil && len(s.samples) > 0 { // not when sampling is off
		s.samples = append(s.samples, last)
	}
	return s.samples
}
