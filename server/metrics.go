package main

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"noom/server/sfu"
)

// stats are the server's counters. Hot paths bump plain atomics (the
// workers keep their own, see workerStats); Prometheus reads them only when
// scraped, through statsCollector.
type stats struct {
	connections     atomic.Int64 // open WebSocket connections
	upgrades        atomic.Uint64
	framesIn        atomic.Uint64
	bytesIn         atomic.Uint64
	droppedRequests atomic.Uint64 // requests over the rate limit
	errors          [len(errorCodes)]atomic.Uint64
	closes          [len(closeCodes)]atomic.Uint64
	rejected        [len(rejectReasons)]atomic.Uint64
	misdirected     atomic.Uint64 // HTTP requests refused for a Host not in -hosts
	storeErrors     atomic.Uint64 // messages the store did not keep (answered unavailable)
	degraded        atomic.Bool
}

// closeCodes are the close codes the server sends, for noom_closes_total.
var closeCodes = [...]int{closeNormal, closeGoingAway, closeProtocolError, closeUnsupported,
	closeInvalidData, closePolicy, closeTooBig, closeTryAgainLater}

// Reasons an upgrade is refused, for noom_upgrades_rejected_total.
const (
	rejectDraining = iota
	rejectHandshake
	rejectOrigin
	rejectCap
	rejectPerIP
)

var rejectReasons = [...]string{"draining", "bad_handshake", "origin", "conn_cap", "per_ip_cap"}

func (s *stats) countError(code string) {
	for i, c := range errorCodes {
		if c == code {
			s.errors[i].Add(1)
			return
		}
	}
}

func (s *stats) countClose(code int) {
	for i, c := range closeCodes {
		if c == code {
			s.closes[i].Add(1)
			return
		}
	}
}

// statsCollector exposes stats and the hub's worker counters to Prometheus.
type statsCollector struct {
	st  *stats
	hub *hub

	connections, rooms, upgrades, framesIn, bytesIn, framesOut, bytesOut,
	deliveries, slow, droppedReq, droppedFrames, errors, closes, rejected, misdirected, storeErrors,
	clusterNodes, clusterDegraded, clusterPublished, clusterRetries *prometheus.Desc

	sfuCalls, sfuPeers, sfuPublished, sfuForwarded, sfuPackets, sfuBytes, sfuRetransmits, sfuKeyframes *prometheus.Desc
}

func newStatsCollector(st *stats, h *hub) *statsCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("noom_"+name, help, labels, nil)
	}
	return &statsCollector{
		st: st, hub: h,
		connections:   d("connections", "Open WebSocket connections."),
		rooms:         d("rooms", "Rooms with at least one member."),
		upgrades:      d("upgrades_total", "WebSocket upgrades accepted."),
		framesIn:      d("frames_in_total", "WebSocket frames received."),
		bytesIn:       d("bytes_in_total", "Bytes received on WebSocket connections."),
		framesOut:     d("frames_out_total", "WebSocket frames written."),
		bytesOut:      d("bytes_out_total", "Bytes written to WebSocket connections."),
		deliveries:    d("deliveries_total", "Frames handed to room members by broadcasts."),
		slow:          d("slow_consumer_closes_total", "Connections closed with 1013 because their unsent data went over -send-buffer."),
		droppedReq:    d("dropped_requests_total", "Requests dropped by the per-connection rate limit."),
		droppedFrames: d("dropped_frames_total", "Frames not sent because their connection was closed as a slow consumer."),
		errors:        d("errors_total", "Error frames sent, by code.", "code"),
		closes:        d("closes_total", "Close frames the server initiated or answered with, by code.", "code"),
		rejected:      d("upgrades_rejected_total", "WebSocket upgrades refused, by reason.", "reason"),
		misdirected:   d("misdirected_requests_total", "HTTP requests, upgrades included, answered 421 for a Host not in -hosts."),
		storeErrors:   d("store_errors_total", "Messages the store (-data) did not keep: full, busy or failing; each was answered unavailable."),

		clusterNodes:     d("cluster_nodes", "Other nodes of the cluster heard from recently (0 standalone)."),
		clusterDegraded:  d("cluster_degraded", "1 while NATS is unreachable and the node serves its local members alone."),
		clusterPublished: d("cluster_published_total", "Messages this node stored in the cluster's stream."),
		clusterRetries:   d("cluster_cas_retries_total", "Compare-and-set conflicts: another node took the seq first."),

		sfuCalls:       d("sfu_calls", "Calls whose media this node's SFU forwards."),
		sfuPeers:       d("sfu_peers", "Peers connected to this node's SFU."),
		sfuPublished:   d("sfu_tracks_published", "Tracks the SFU receives from peers."),
		sfuForwarded:   d("sfu_tracks_forwarded", "Tracks the SFU sends to peers (each published track times its subscribers)."),
		sfuPackets:     d("sfu_packets_forwarded_total", "RTP packets the SFU sent to subscribers, retransmissions excluded."),
		sfuBytes:       d("sfu_bytes_forwarded_total", "Bytes of RTP the SFU sent to subscribers."),
		sfuRetransmits: d("sfu_retransmits_total", "Packets resent from the SFU's buffers to answer NACKs."),
		sfuKeyframes:   d("sfu_keyframe_requests_total", "Picture-loss requests the SFU sent to publishers."),
	}
}

// Describe implements prometheus.Collector.
func (sc *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	prometheus.DescribeByCollect(sc, ch)
}

// Collect implements prometheus.Collector.
func (sc *statsCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	counter := func(d *prometheus.Desc, v uint64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	st := sc.st
	gauge(sc.connections, float64(st.connections.Load()))
	gauge(sc.rooms, float64(sc.hub.roomCount.Load()))
	counter(sc.upgrades, st.upgrades.Load())
	counter(sc.framesIn, st.framesIn.Load())
	counter(sc.bytesIn, st.bytesIn.Load())
	var fo, bo, dl, sl, df uint64
	for _, w := range sc.hub.workers {
		fo += w.stats.framesOut.Load()
		bo += w.stats.bytesOut.Load()
		dl += w.stats.deliveries.Load()
		sl += w.stats.slowConsumers.Load()
		df += w.stats.droppedFrames.Load()
	}
	counter(sc.framesOut, fo)
	counter(sc.bytesOut, bo)
	counter(sc.deliveries, dl)
	counter(sc.slow, sl)
	counter(sc.droppedReq, st.droppedRequests.Load())
	counter(sc.storeErrors, st.storeErrors.Load())
	counter(sc.droppedFrames, df)
	for i, code := range errorCodes {
		counter(sc.errors, st.errors[i].Load(), code)
	}
	for i, code := range closeCodes {
		counter(sc.closes, st.closes[i].Load(), strconv.Itoa(code))
	}
	for i, r := range rejectReasons {
		counter(sc.rejected, st.rejected[i].Load(), r)
	}
	counter(sc.misdirected, st.misdirected.Load())
	cl := sc.hub.cl
	gauge(sc.clusterNodes, float64(len(sc.hub.members.Nodes())))
	degraded := 0.0
	if st.degraded.Load() {
		degraded = 1
	}
	gauge(sc.clusterDegraded, degraded)
	var pub, retries uint64
	if cl != nil {
		pub, retries = cl.msgs.Published(), cl.msgs.Retries()+sc.hub.callConflicts.Load()
	}
	counter(sc.clusterPublished, pub)
	counter(sc.clusterRetries, retries)
	var ss sfu.Stats
	if s := sc.hub.sfuLive.Load(); s != nil {
		ss = s.Stats()
	}
	gauge(sc.sfuCalls, float64(ss.Calls))
	gauge(sc.sfuPeers, float64(ss.Peers))
	gauge(sc.sfuPublished, float64(ss.PublishedTracks))
	gauge(sc.sfuForwarded, float64(ss.ForwardedTracks))
	counter(sc.sfuPackets, ss.PacketsForwarded)
	counter(sc.sfuBytes, ss.BytesForwarded)
	counter(sc.sfuRetransmits, ss.Retransmits)
	counter(sc.sfuKeyframes, ss.KeyframeRequests)
}

// newRegistry builds the /metrics registry: noom's counters plus the Go
// runtime and process collectors (CPU seconds, resident memory, open files),
// which the load harness reads to compute cost per connection and delivery.
func newRegistry(st *stats, h *hub) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		newStatsCollector(st, h),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// clock is a millisecond monotonic clock for rate limits and idle checks.
type clock struct{ start time.Time }

func newClock() *clock { return &clock{start: time.Now()} }

// now returns milliseconds since the clock started.
func (c *clock) now() int64 { return time.Since(c.start).Milliseconds() }
