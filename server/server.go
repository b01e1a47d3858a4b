package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"noom/server/broker"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/mempool"
	"github.com/lesismal/nbio/nbhttp"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
)

// server ties the nbio engine, the HTTP routes and the room hub together.
type server struct {
	cfg      Config
	log      *slog.Logger
	stats    *stats
	hub      *hub
	registry *prometheus.Registry
	engine   *nbhttp.Engine
	addr     string // the listener's address once started

	admin     *http.Server  // the -admin-addr listener, nil when off (admin.go)
	console   *adminConsole // the operator's console and the cluster's admin subjects (console_source.go)
	adminAddr string        // its address once started, "" when off
	adminDone chan struct{} // closed when its Serve returns

	tls          *tlsState // nil without TLS (tls.go)
	redirectAddr string    // the -http-redirect listener's address once started

	nextID   atomic.Uint64
	draining atomic.Bool

	perIPMu sync.Mutex
	perIP   map[string]int // connections by remote address, with -max-conns-per-ip

	natsServer *natsserver.Server // -nats-embedded

	stopHousekeeping chan struct{}
	housekeepingDone chan struct{}
}

var setPoolOnce sync.Once

// newServer builds a server from cfg; start runs it.
func newServer(cfg Config, log *slog.Logger) *server {
	setPoolOnce.Do(func() {
		// nbio's default pool keeps buffers of up to 1 GiB forever; power-of-two
		// buckets up to 32 KiB keep memory flat after a burst (nbio.md §7).
		// It is process-wide and must be set before the first engine exists.
		mempool.DefaultMemPool = mempool.NewAligned()
	})
	st := &stats{}
	s := &server{
		cfg:              cfg,
		log:              log,
		stats:            st,
		perIP:            make(map[string]int),
		stopHousekeeping: make(chan struct{}),
		housekeepingDone: make(chan struct{}),
	}
	s.hub = newHub(&s.cfg, log, st, newClock())
	s.hub.release = func(c *client) {
		ip := ""
		if s.cfg.MaxConnsPerIP > 0 { // the address nbio keeps: no copy per connection
			ip = remoteIP(c.nbc.RemoteAddr().String())
		}
		s.releaseConn(ip)
	}
	s.registry = newRegistry(st, s.hub)
	return s
}

// start opens the listener and starts the engine, the workers and the
// housekeeping goroutine.
func (s *server) start() error {
	addrs := []string{s.cfg.Addr}
	conf := nbhttp.Config{
		Name:    "noom",
		Network: "tcp",
		Addrs:   addrs,
		Handler: s.routes(),
		// Room for plain HTTP requests beside the WebSocket cap; past it nbio
		// drops new TCP connections at accept.
		MaxLoad: s.cfg.MaxConns + 256,
		// nbio's own cap on a socket's unsent bytes is only a backstop: the
		// workers close slow consumers with 1013 at SendBuffer, and need
		// room left for that close frame and for page responses.
		MaxWriteBufferSize: 2*s.cfg.SendBuffer + 1<<20,
		// Bounds what the HTTP parser buffers for one unfinished request.
		ReadLimit:       s.cfg.MaxHeaderBytes,
		MaxHTTPBodySize: 64 << 10,
		KeepaliveTime:   s.cfg.HeaderTimeout,
		// Handlers run inline, on the poller that parsed the request, not on
		// a pool goroutine: the upgrade then builds and registers its client
		// before another byte of the connection is parsed (serveWS). Every
		// handler on this listener answers from memory without blocking;
		// what may block (metrics, profiles) lives on the admin listener.
		ServerExecutor: func(f func()) { f() },
		WriteTimeout:   s.cfg.HeaderTimeout,
		// Go's listener turns TCP keepalive on for every accepted socket,
		// four setsockopt calls each; the server's own pings find dead
		// peers already.
		Listen: func(network, addr string) (net.Listener, error) {
			return (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), network, addr)
		},
	}
	// With TLS, addrs becomes the TLS listener, beside the optional
	// redirect listener (tls.go).
	if err := s.configureTLS(&conf); err != nil {
		return err
	}
	conf.Handler = headless(conf.Handler) // the redirect listener's too
	s.engine = nbhttp.NewEngine(conf)
	s.hookTLSSockets()
	s.engine.OnWrittenSize(func(c *nbio.Conn, _ []byte, n int) {
		if s, ok := c.Session().(*connSession); ok {
			if cl := s.client(); cl != nil {
				cl.onWritten(n)
			}
		}
	})
	s.engine.OnAcceptError(func(err error) {
		// nbio retries Accept at once; out of file descriptors that would
		// spin a core. A short pause lets closing connections free some.
		time.Sleep(20 * time.Millisecond)
	})
	if err := s.loadAuth(); err != nil {
		return err
	}
	if err := s.openHistory(); err != nil {
		return err
	}
	if err := s.startAdmin(); err != nil {
		s.closeHistory()
		return err
	}
	s.hub.start()
	if err := s.startCluster(); err != nil {
		s.hub.stop()
		s.stopAdmin()
		s.closeHistory()
		return err
	}
	if err := s.startSFU(); err != nil {
		s.stopCluster()
		s.hub.stop()
		s.stopAdmin()
		s.closeHistory()
		return fmt.Errorf("SFU: %w", err)
	}
	if err := s.engine.Start(); err != nil {
		s.stopSFU()
		s.stopCluster()
		s.hub.stop()
		s.stopAdmin()
		s.closeHistory()
		return fmt.Errorf("listen on %s: %w", s.cfg.Addr, err)
	}
	s.addr = addrs[0]
	s.warnAnyHost() // hosts.go
	s.tlsStarted()
	go s.housekeeping()
	s.startConsole()
	return nil
}

// housekeeping runs the once-a-second room work and the ping sweep.
func (s *server) housekeeping() {
	defer close(s.housekeepingDone)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	ping := time.NewTicker(sweepEvery(&s.cfg))
	defer ping.Stop()
	expire := time.NewTicker(expireEvery)
	defer expire.Stop()
	calls := time.NewTicker(callSweepEvery)
	defer calls.Stop()
	s.hub.expireHistory(time.Now())
	for {
		select {
		case <-tick.C:
			s.hub.tick()
			s.hub.settle()
		case <-ping.C:
			s.hub.sweep()
		case now := <-expire.C:
			s.hub.expireHistory(now)
		case <-calls.C: // leaves the room queue refused (calls_change.go)
			s.hub.sweepCalls(s.hub.leftCall, s.hub.withoutLeft)
		case <-s.stopHousekeeping:
			return
		}
	}
}

// shutdown drains the server: /healthz answers 503, upgrades are refused,
// every connection gets close 1001, and the engine stops once they are gone
// or ctx ends, whichever comes first. nbio's Shutdown alone would drop the
// sockets without close frames.
func (s *server) shutdown(ctx context.Context) error {
	s.draining.Store(true)
	s.hub.closeAll(closeGoingAway, "server shutting down")
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	resend := time.Now().Add(500 * time.Millisecond)
	var err error
wait:
	for s.stats.connections.Load() > 0 {
		select {
		case <-ctx.Done():
			err = fmt.Errorf("shutdown: %d connections still open: %w", s.stats.connections.Load(), ctx.Err())
			break wait
		case now := <-poll.C:
			if now.After(resend) { // catch connections upgraded while the first round went out
				s.hub.closeAll(closeGoingAway, "server shutting down")
				resend = now.Add(500 * time.Millisecond)
			}
		}
	}
	close(s.stopHousekeeping)
	<-s.housekeepingDone
	s.tlsStopped()
	ectx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if e := s.engine.Shutdown(ectx); e != nil && !errors.Is(e, context.DeadlineExceeded) {
		err = errors.Join(err, e)
	}
	s.stopSFU()
	s.stopCluster()
	s.hub.drain()
	// Before the workers stop: the store writes what is queued and hands
	// those messages to the fan-out.
	if e := s.closeHistory(); e != nil {
		err = errors.Join(err, e)
	}
	s.hub.stop()
	s.stopAdmin() // last: /metrics can be scraped while the server drains
	return err
}

// expireEvery is how often the store's retention runs; callSweepEvery how
// often the call lists are checked for local peers that left.
const (
	expireEvery    = 10 * time.Minute
	callSweepEvery = 10 * time.Second
)

// openHistory opens the standalone node's broker over the store in -data
// (history.go). A store that cannot be trusted (damaged, read-only, full,
// locked by another process) stops the start with the store's own words:
// starting with an empty history instead would lose it silently. In a
// cluster the stream keeps history and no store is opened.
func (s *server) openHistory() error {
	if s.cfg.NATS != "" || s.cfg.NATSEmbedded != "" {
		return nil
	}
	br, err := broker.OpenLocal(s.cfg.Data, s.cfg.HistoryKeep, s.cfg.Retention)
	if err != nil {
		return fmt.Errorf("history store in %q: %w", s.cfg.Data, err)
	}
	s.hub.br = br
	s.hub.calls, s.hub.msgs, s.hub.settings = br, br, br
	if s.cfg.Data == "" {
		s.log.Warn("history kept in memory only (-data \"\"): it is lost on restart")
	} else {
		s.log.Info("history store", "dir", s.cfg.Data, "keep", s.cfg.HistoryKeep, "retention", s.cfg.Retention)
	}
	return nil
}

// closeHistory writes what the store has queued and closes it.
func (s *server) closeHistory() error {
	if s.hub.br == nil {
		return nil
	}
	return s.hub.br.Close()
}

// acquireConn counts a new WebSocket connection against -max-conns.
func (s *server) acquireConn() bool {
	if s.stats.connections.Add(1) > int64(s.cfg.MaxConns) {
		s.stats.connections.Add(-1)
		return false
	}
	return true
}

// releaseConn undoes acquireConn and, with ip set, acquireIP.
func (s *server) releaseConn(ip string) {
	s.stats.connections.Add(-1)
	if ip == "" {
		return
	}
	s.perIPMu.Lock()
	if s.perIP[ip]--; s.perIP[ip] <= 0 {
		delete(s.perIP, ip)
	}
	s.perIPMu.Unlock()
}

// acquireIP counts a connection against -max-conns-per-ip.
func (s *server) acquireIP(ip string) bool {
	s.perIPMu.Lock()
	defer s.perIPMu.Unlock()
	if s.perIP[ip] >= s.cfg.MaxConnsPerIP {
		return false
	}
	s.perIP[ip]++
	return true
}
