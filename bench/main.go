// Command bench is noom's load harness: it opens many cheap WebSocket
// clients (no goroutine per connection, see client.go), drives one of a few
// scenarios against one or more servers speaking PROTOCOL.md, and reports
// connections, deliveries, latency from the intended send time, losses and
// the server's own CPU and memory figures from its /metrics.
//
// Reading order: main.go (flags, entry points), coordinator.go (the phases
// of a run and the merge of results), scenario.go (the plan every process
// shares), load.go and client.go (one process's connections), codec.go (the
// WebSocket client codec), worker.go (spreading over processes), stats.go
// (histograms), metrics.go (the server's /metrics), report.go and html.go
// (output), compare.go (noom against the reference server in reference/).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"
)

// Config is every flag of the harness. Each field's comment gives its
// default; the flags are bound in newFlagSet, in one place.
type Config struct {
	URLs       []string      // -url, repeatable; default ws://127.0.0.1:8080/ws
	Metrics    []string      // -metrics, repeatable: the servers' /metrics URLs; default /metrics beside each -url
	Scenario   string        // -scenario: fanout (default), connect, rooms, churn, soak, call
	Conns      int           // -conns: connections in all, default 5000 (call: set from -peers)
	Peers      int           // -peers: call: pion peers in the one call, default 6
	Rate       float64       // -rate: messages a second offered, all publishers together, default 200
	Size       int           // -size: bytes of message text, default 64
	Duration   time.Duration // -duration: measured window (connect: idle hold), default 10s
	Warmup     time.Duration // -warmup: publishing before the window opens, default 2s
	Drain      time.Duration // -drain: longest wait for late deliveries after the window, default 5s
	Rooms      int           // -rooms: rooms of the rooms and soak scenarios, default 100
	Room       string        // -room: call: the room of the call (default: a fresh one)
	Publishers int           // -publishers: 0 = auto (fanout, churn: ceil(rate/10); soak: that but one a room at least; rooms: every connection)
	Churn      float64       // -churn: connections replaced a second in the churn scenario, default 100
	Stable     int           // -stable: soak: members of each room that stay for the whole run, default 5
	SlowEvery  time.Duration // -slow-every: churn, soak: open a slow reader this often, default 0 (off)
	SlowHold   time.Duration // -slow-hold: close a slow reader the server has not closed after this long, default 2m
	SlowMSS    int           // -slow-mss: slow readers' TCP MSS, default 1460; 0 = the route's (64 KiB on loopback)
	Sample     time.Duration // -sample-every: scrape the server's /metrics this often during the run, default 5s
	Ramp       float64       // -ramp: connections opened a second, 0 = as fast as the dialers go (default)
	Dialers    int           // -dialers: dialing goroutines per process, default 64
	Workers    int           // -workers: worker processes, 0 = auto (in-process up to 19,000 connections)
	Pollers    int           // -pollers: poller goroutines per process, default 1
	PollIdle   time.Duration // -poll-idle: a poller's pause after a wait that found few ready sockets, default 500µs
	ReadBuffer int           // -read-buffer: bytes of each poller's read buffer, default 256 KiB
	Timeout    time.Duration // -timeout: dial+upgrade timeout, and wait for `joined` after the last dial, default 10s
	JSONFile   string        // -json: write the full result there
	HTMLFile   string        // -html: write a self-contained HTML report there
	Progress   bool          // -progress: progress line on stderr, default true (only on a terminal)
	CPUProfile string        // -cpuprofile: write the harness's own CPU profile (this process) there

	Start      bool   // -start: build and start noom from this tree on a free port, and run against it
	TLS        bool   // -tls: with -start or -compare, serve noom over TLS (-tls-self-signed) and connect with wss://
	Insecure   bool   // -insecure: do not verify the server's certificate (wss:// and the https metrics)
	Compare    bool   // -compare: run noom and the reference server alternately
	Rounds     int    // -rounds: rounds of -compare, default 3
	ServerArgs string // -server-args: extra flags for the noom server of -start and -compare
}

// urlFlag is a repeatable -url.
type urlFlag struct {
	urls *[]string
	set  bool
}

// String returns the URLs, comma-separated.
func (u *urlFlag) String() string {
	if u.urls == nil {
		return ""
	}
	return strings.Join(*u.urls, ",")
}

// Set adds a URL.
func (u *urlFlag) Set(s string) error {
	if !u.set { // the first -url replaces the default
		*u.urls, u.set = nil, true
	}
	*u.urls = append(*u.urls, s)
	return nil
}

const defaultURL = "ws://127.0.0.1:8080/ws"

// newFlagSet binds cfg's fields to flags with their defaults.
func newFlagSet(cfg *Config, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(out)
	cfg.URLs = []string{defaultURL}
	fs.Var(&urlFlag{urls: &cfg.URLs}, "url", "server WebSocket URL; repeat for several servers, connections go round-robin")
	fs.Var(&urlFlag{urls: &cfg.Metrics}, "metrics", "server /metrics `URL`, repeatable, for the server's CPU and memory figures (default: /metrics beside each -url, as the reference serves it; noom serves it on its -admin-addr, http://127.0.0.1:9090/metrics by default)")
	fs.StringVar(&cfg.Scenario, "scenario", scenarioFanout, "scenario: "+strings.Join(scenarios, ", "))
	fs.IntVar(&cfg.Conns, "conns", 5000, "connections in all (call: -peers instead)")
	fs.IntVar(&cfg.Peers, "peers", 6, "call: peers in the call, each a WebSocket client and a pion peer connection publishing audio and camera through the server's SFU")
	fs.Float64Var(&cfg.Rate, "rate", 200, "messages a second offered, all publishers together")
	fs.IntVar(&cfg.Size, "size", 64, "bytes of text in each message (at least its 25-40 byte id header)")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measured window (connect: how long to hold the connections idle)")
	fs.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "publishing before the measured window opens")
	fs.DurationVar(&cfg.Drain, "drain", 5*time.Second, "longest wait for late deliveries after the window")
	fs.IntVar(&cfg.Rooms, "rooms", 100, "rooms of the rooms and soak scenarios")
	fs.StringVar(&cfg.Room, "room", "", "call: the room whose call the peers join (default: a fresh one); lets a browser join them")
	fs.IntVar(&cfg.Publishers, "publishers", 0, "publishing connections; 0 = auto: fanout and churn ceil(rate/10) (the server allows 20 msg/s per connection), soak as many but one a room at least, rooms every connection")
	fs.Float64Var(&cfg.Churn, "churn", 100, "churn, soak: connections closed and replaced a second (clients restarting)")
	fs.IntVar(&cfg.Stable, "stable", 5, "soak: members of each room that stay for the whole run (publishers included); the rest churn")
	fs.DurationVar(&cfg.SlowEvery, "slow-every", 0, "churn, soak: open a slow reader this often (a 4 KiB receive buffer; it joins, then pings but never reads: the server should close it with 1013); 0 = none")
	fs.DurationVar(&cfg.SlowHold, "slow-hold", 2*time.Minute, "close a slow reader after this long if the server has not")
	fs.IntVar(&cfg.SlowMSS, "slow-mss", 1460, "slow readers' TCP MSS, set before connect: a real network's; 0 keeps the route's (64 KiB on loopback, with which Linux lets the server's socket buffer megabytes before -send-buffer counts any)")
	fs.DurationVar(&cfg.Sample, "sample-every", 5*time.Second, "scrape the server's /metrics this often during the run, for the memory and goroutine curve; 0 = only at the phase boundaries")
	fs.Float64Var(&cfg.Ramp, "ramp", 0, "connections opened a second during the ramp; 0 = as fast as the dialers go")
	fs.IntVar(&cfg.Dialers, "dialers", 64, "dialing goroutines per process")
	fs.IntVar(&cfg.Workers, "workers", 0, fmt.Sprintf("worker processes; 0 = auto: in this process up to %d connections, else one per %d (call: up to %d peers, else one per %d)", maxPerProcess, maxPerProcess, callPerProcess, callPerProcess))
	fs.IntVar(&cfg.Pollers, "pollers", 1, "poller goroutines per process (epoll loops reading the connections)")
	fs.DurationVar(&cfg.PollIdle, "poll-idle", 500*time.Microsecond, "a poller's pause after a wait that found few ready sockets, so wakeups do not cost a syscall per frame; adds at most this to latencies (0: no pause)")
	fs.IntVar(&cfg.ReadBuffer, "read-buffer", 256<<10, "bytes of each poller's read buffer")
	fs.DurationVar(&cfg.Timeout, "timeout", 10*time.Second, "dial+upgrade timeout, and wait for joined replies after the last dial (call: thrice this for every track to flow)")
	fs.StringVar(&cfg.JSONFile, "json", "", "write the full result (parameters, results, time series) as JSON to this file (default: none)")
	fs.StringVar(&cfg.HTMLFile, "html", "", "write a self-contained HTML report to this file (default: none)")
	fs.BoolVar(&cfg.Progress, "progress", true, "show a progress line on stderr (only when it is a terminal)")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write the harness's own CPU profile (this process only) to this file (default: none)")
	fs.BoolVar(&cfg.Start, "start", false, "build noom (./server) from this tree, start it on a free 127.0.0.1 port (limits loosened only where the run needs it) and run against it instead of -url")
	fs.BoolVar(&cfg.Compare, "compare", false, "build and start noom (./server) and the reference server (./bench/reference), run the scenario against each in turn, print the ratios")
	fs.IntVar(&cfg.Rounds, "rounds", 3, "-compare: rounds (each runs noom, then the reference)")
	fs.StringVar(&cfg.ServerArgs, "server-args", "", "-start, -compare: extra flags for the noom server, space-separated (default: none)")
	fs.BoolVar(&cfg.TLS, "tls", false, "-start, -compare: run noom with a self-signed certificate and connect over wss:// (implies -insecure)")
	fs.BoolVar(&cfg.Insecure, "insecure", false, "do not verify the server's TLS certificate (for wss:// URLs of servers with self-signed certificates)")
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: go run ./bench [flags]\n\nScenarios:\n")
		for _, s := range scenarios {
			fmt.Fprintf(out, "  %-8s %s\n", s, describe(s))
		}
		fmt.Fprintf(out, "\nFlags:\n")
		fs.PrintDefaults()
	}
	return fs
}

// check validates cfg and fills the automatic values.
func (cfg *Config) check() error {
	valid := false
	for _, s := range scenarios {
		valid = valid || s == cfg.Scenario
	}
	switch {
	case !valid:
		return fmt.Errorf("unknown -scenario %q (want one of %s)", cfg.Scenario, strings.Join(scenarios, ", "))
	case len(cfg.URLs) == 0:
		return errors.New("no -url")
	case cfg.Conns < 1:
		return errors.New("-conns must be at least 1")
	case cfg.Rate < 0 || cfg.Churn < 0 || cfg.Ramp < 0:
		return errors.New("-rate, -churn and -ramp cannot be negative")
	case cfg.Stable < 1:
		return errors.New("-stable must be at least 1")
	case cfg.SlowEvery < 0 || cfg.SlowHold <= 0 || cfg.Sample < 0 || cfg.SlowMSS < 0:
		return errors.New("-slow-every, -slow-mss and -sample-every cannot be negative, -slow-hold must be positive")
	case cfg.SlowEvery > 0 && cfg.Scenario != scenarioChurn && cfg.Scenario != scenarioSoak:
		return errors.New("-slow-every is for the churn and soak scenarios")
	case cfg.Size < 1 || cfg.Size > 4096:
		return errors.New("-size must be 1 to 4096 (the protocol's text limit)")
	case cfg.Duration <= 0:
		return errors.New("-duration must be positive")
	case cfg.Warmup < 0 || cfg.Drain < 0:
		return errors.New("-warmup and -drain cannot be negative")
	case cfg.Rooms < 1:
		return errors.New("-rooms must be at least 1")
	case cfg.Dialers < 1 || cfg.Pollers < 1:
		return errors.New("-dialers and -pollers must be at least 1")
	case cfg.ReadBuffer < 4096:
		return errors.New("-read-buffer must be at least 4096")
	case cfg.Workers < 0:
		return errors.New("-workers cannot be negative")
	case cfg.Rounds < 1:
		return errors.New("-rounds must be at least 1")
	}
	for _, u := range cfg.URLs {
		if _, err := parseTarget(u); err != nil {
			return err
		}
	}
	for _, m := range cfg.Metrics {
		if u, err := url.Parse(m); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("-metrics %q: want an http:// or https:// URL", m)
		}
	}
	if cfg.Scenario == scenarioCall {
		return cfg.checkCall()
	}
	if cfg.Publishers <= 0 {
		cfg.Publishers = autoPublishers(cfg.Scenario, cfg.Rate, cfg.Conns, cfg.Rooms)
	}
	cfg.Publishers = min(cfg.Publishers, cfg.Conns)
	if cfg.Scenario == scenarioConnect {
		cfg.Publishers = 0
	}
	workers := cfg.Workers
	if workers == 0 {
		workers = (cfg.Conns + maxPerProcess - 1) / maxPerProcess
	}
	if (cfg.Conns+workers-1)/workers > maxPerProcess {
		return fmt.Errorf("-conns %d over %d workers is more than %d a process (the open-file limit); raise -workers", cfg.Conns, workers, maxPerProcess)
	}
	return nil
}

// autoPublishers spreads the rate so that no publisher sends more than 10
// messages a second: half the server's default per-connection limit (20/s,
// burst 40), so an open-loop publisher catching up never trips it. In soak
// every room gets at least one (publisher p is in room p mod rooms).
func autoPublishers(scenario string, rate float64, conns, rooms int) int {
	switch scenario {
	case scenarioRooms:
		return conns
	case scenarioConnect:
		return 0
	}
	n := max(1, int(rate/10+0.999999))
	if scenario == scenarioSoak {
		n = max(n, rooms)
	}
	return n
}

// soakDefaults are the defaults the soak scenario uses for flags not given:
// sized for ten minutes on a 2-core machine shared by server and harness,
// busy but far from saturated (about 15,000 deliveries a second, a fifth of
// a core each). At 100 msg/s of 200 B a slow reader in 16 of the 20 rooms
// receives about 20 KB/s and passes the server's default 1 MiB send buffer
// in about a minute, well within -slow-hold; the warmup lets the server's
// buffers and pools grow before the memory curve's first minute.
var soakDefaults = []struct{ name, value string }{
	{"conns", "3000"}, {"rooms", "20"}, {"rate", "100"}, {"size", "200"},
	{"churn", "20"}, {"slow-every", "20s"}, {"warmup", "30s"}, {"duration", "10m"},
}

// applySoakDefaults sets the soak defaults of the flags the command line
// did not set.
func applySoakDefaults(fs *flag.FlagSet) {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for _, d := range soakDefaults {
		if !given[d.name] {
			_ = fs.Set(d.name, d.value)
		}
	}
}

// soakDefaultsText lists the soak defaults as flags, for -help.
func soakDefaultsText() string {
	var b strings.Builder
	for i, d := range soakDefaults {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "-%s %s", d.name, d.value)
	}
	return b.String()
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-worker" || os.Getenv(workerEnv) == "1" {
		if err := runWorker(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "bench worker:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		switch {
		case errors.Is(err, flag.ErrHelp):
		case errors.Is(err, context.Canceled):
			fmt.Fprintln(os.Stderr, "bench: interrupted")
		default:
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
		stop()
		os.Exit(2)
	}
}

// run is the whole command minus process concerns, so tests drive the same
// path as the CLI: parse flags, run (or compare), print and write reports.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg Config
	fs := newFlagSet(&cfg, stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if cfg.Scenario == scenarioSoak {
		applySoakDefaults(fs)
	}
	if err := cfg.check(); err != nil {
		return err
	}
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if per := cfg.Rate / float64(max(cfg.Publishers, 1)); cfg.Publishers > 0 && per > noomRateLimit && !cfg.Compare {
		fmt.Fprintf(stderr, "note: each publisher sends %.3g msg/s, over noom's default limit of %g/s a connection: expect rate_limited unless the server runs with a higher -rate\n", per, noomRateLimit)
	}
	if cfg.TLS {
		cfg.Insecure = true // the certificate is made at the server's start: nothing can verify it
	}
	setInsecure(cfg.Insecure)
	if cfg.Compare {
		return runCompare(ctx, &cfg, stdout, stderr)
	}
	if cfg.Start && urlGiven(fs) {
		return errors.New("-start runs against the server it starts: give -start or -url, not both")
	}
	if !cfg.Start && !cfg.Compare {
		if err := preflight(ctx, cfg.URLs); err != nil {
			return err
		}
	}
	var res *Result
	var err error
	if cfg.Start {
		res, err = runStarted(ctx, &cfg, stderr)
	} else {
		res, err = runBench(ctx, &cfg, newProgressBar(stderr, cfg.Progress))
	}
	if err != nil {
		return err
	}
	writeText(stdout, res)
	if err := writeFiles(&cfg, res); err != nil {
		return err
	}
	// A soak is a check (make soak): its verdict line is in the block, and
	// a failure is the command's exit status too.
	if cfg.Scenario == scenarioSoak {
		if problems := soakProblems(res); len(problems) > 0 {
			return fmt.Errorf("soak failed: %s", strings.Join(problems, "; "))
		}
	}
	return nil
}

func urlGiven(fs *flag.FlagSet) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "url" })
	return given
}

// preflight checks that every server accepts TCP connections, so that a
// missing server is one clear error rather than thousands of failed dials.
func preflight(ctx context.Context, urls []string) error {
	for _, u := range urls {
		t, err := parseTarget(u)
		if err != nil {
			return err
		}
		d := net.Dialer{Timeout: 2 * time.Second}
		c, err := d.DialContext(ctx, "tcp", t.host)
		if err != nil {
			return fmt.Errorf("no server at %s (%v): start one (make run), or let the harness build and start one with -start", u, err)
		}
		_ = c.Close()
	}
	return nil
}

// writeFiles writes the -json and -html reports, if asked for.
func writeFiles(cfg *Config, res *Result) error {
	if cfg.JSONFile != "" {
		if err := writeJSON(cfg.JSONFile, res); err != nil {
			return err
		}
	}
	if cfg.HTMLFile != "" {
		if err := writeHTML(cfg.HTMLFile, []*Result{res}); err != nil {
			return err
		}
	}
	return nil
}
