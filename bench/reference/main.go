// Command reference is the server noom is compared with: a chat written
// the way most Go WebSocket chats are, after gorilla/websocket's
// examples/chat. One hub goroutine owns the rooms; every connection has a
// reading goroutine and a writing goroutine fed by a buffered channel, and
// every frame is its own write. It speaks the part of PROTOCOL.md the load
// harness uses: hello, join → joined (count; no members list, no history),
// say → msg (per-room seq, ts) to every member, leave → left, error frames
// for bad requests; /healthz and /metrics (Prometheus, with the process and
// Go collectors and the noom_connections / noom_deliveries_total names
// the harness reads). No presence, rate limit, nicknames or calls.
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

var (
	connections = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "noom_connections", Help: "Open WebSocket connections.",
	})
	deliveries = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "noom_deliveries_total", Help: "Frames handed to member connections by broadcasts.",
	})
)

func main() {
	addr := flag.String("addr", ":8081", "listen address")
	flag.Parse()
	// The default registry already holds the process and Go collectors.
	prometheus.MustRegister(connections, deliveries)

	hub := newHub()
	go hub.run()
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) { serveWs(hub, w, r) })
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.Handle("/metrics", promhttp.Handler())
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx) // hijacked WebSocket connections end with the process
	}()
	log.Printf("msg=listening addr=%s", *addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
