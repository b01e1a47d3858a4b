package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// -compare builds noom (./server) and the reference server
// (./bench/reference), then runs the same scenario against each in turn,
// A B A B …, each run on a freshly started server (so memory figures start
// from the same empty state), and prints medians and ratios. Alternating
// spreads slow drifts of a shared machine (thermal, page cache, TIME_WAIT
// sockets) over both servers instead of charging one of them.

// serverUnderTest is one of the two servers compared.
type serverUnderTest struct {
	label string
	bin   string
	args  []string // beyond -addr
	note  string
	tls   bool // serves HTTPS and WSS
	admin bool // serves /metrics on -admin-addr (noom), not beside /ws (the reference)
}

// describe returns the server's name, flags and why.
func (s serverUnderTest) describe() string {
	return strings.Join(append(append([]string{s.label}, s.args...), s.note), " ")
}

// noomRateLimit and noomBurst are the server's default per-connection
// request limits (server -rate and -burst).
const (
	noomRateLimit = 20.0
	noomBurst     = 40
)

func runCompare(ctx context.Context, cfg *Config, stdout, stderr io.Writer) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "noom-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	suts := []serverUnderTest{
		{label: "noom", bin: filepath.Join(dir, "noom"), admin: true},
		{label: "reference", bin: filepath.Join(dir, "reference"), note: "gorilla/websocket, goroutines per connection, no rate limit"},
	}
	for pkg, bin := range map[string]string{"./server": suts[0].bin, "./bench/reference": suts[1].bin} {
		if err := goBuild(ctx, root, pkg, bin, stderr); err != nil {
			return err
		}
	}
	suts[0].args, suts[0].note = noomArgs(cfg)
	if cfg.ServerArgs != "" {
		suts[0].args = append(suts[0].args, strings.Fields(cfg.ServerArgs)...)
	}
	for _, s := range suts {
		fmt.Fprintln(stdout, s.describe())
	}
	var all []*Result
	byLabel := map[string][]*Result{}
	for round := 1; round <= cfg.Rounds; round++ {
		for _, s := range suts {
			res, err := runAgainst(ctx, cfg, s, stderr)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", round, s.label, err)
			}
			res.Params.Label = fmt.Sprintf("%s, round %d", s.label, round)
			res.Params.Server = s.describe()
			fmt.Fprintf(stdout, "round %d %-10s %s\n", round, s.label, oneLine(res))
			all = append(all, res)
			byLabel[s.label] = append(byLabel[s.label], res)
		}
	}
	fmt.Fprintln(stdout)
	writeText(stdout, byLabel["noom"][len(byLabel["noom"])/2])
	fmt.Fprintln(stdout)
	writeCompare(stdout, cfg, byLabel["noom"], byLabel["reference"])
	if cfg.JSONFile != "" {
		if err := writeJSON(cfg.JSONFile, all); err != nil {
			return err
		}
	}
	if cfg.HTMLFile != "" {
		return writeHTML(cfg.HTMLFile, all)
	}
	return nil
}

// noomArgs returns the flags that loosen noom's limits where this run
// needs it, and a note saying why. Only the per-connection request rate can
// get in the way of a benchmark: publishers sending more than the default
// 20 a second would be answered rate_limited.
func noomArgs(cfg *Config) ([]string, string) {
	if cfg.Scenario == scenarioCall {
		return []string{"-sfu", "on"}, "(the SFU from the call's first peer)"
	}
	if cfg.Scenario == scenarioConnect || cfg.Publishers == 0 {
		return nil, "(defaults)"
	}
	per := cfg.Rate / float64(cfg.Publishers)
	if per <= noomRateLimit*0.75 {
		return nil, fmt.Sprintf("(defaults: publishers send %.3g msg/s each, under the %g/s limit)", per, noomRateLimit)
	}
	rate := per * 2
	burst := max(noomBurst, int(rate*2))
	return []string{"-rate", strconv.FormatFloat(rate, 'f', -1, 64), "-burst", strconv.Itoa(burst)},
		fmt.Sprintf("(limit loosened: publishers send %.3g msg/s each, over %g%% of the default %g/s)", per, 75.0, noomRateLimit)
}

// goBuild builds pkg of the module at root into bin.
func goBuild(ctx context.Context, root, pkg, bin string, stderr io.Writer) error {
	fmt.Fprintf(stderr, "building %s\n", pkg)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
	}
	return nil
}

// runStarted is -start: build noom from this tree, start it on a free port
// with the limits the run needs loosened, run the scenario, stop it.
func runStarted(ctx context.Context, cfg *Config, stderr io.Writer) (*Result, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "noom-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	s := serverUnderTest{label: "noom", bin: filepath.Join(dir, "noom"), admin: true}
	if err := goBuild(ctx, root, "./server", s.bin, stderr); err != nil {
		return nil, err
	}
	s.args, s.note = noomArgs(cfg)
	if cfg.ServerArgs != "" {
		s.args = append(s.args, strings.Fields(cfg.ServerArgs)...)
	}
	if cfg.TLS {
		s.args = append(s.args, "-tls-self-signed")
		s.tls = true
	}
	res, err := runAgainst(ctx, cfg, s, stderr)
	if err != nil {
		return nil, err
	}
	res.Params.Server = s.describe()
	return res, nil
}

// runAgainst starts one server on a free port, runs the scenario against
// it, and stops it.
func runAgainst(ctx context.Context, cfg *Config, s serverUnderTest, stderr io.Writer) (*Result, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args := []string{"-addr", addr}
	if s.admin {
		args = append(args, "-admin-addr", "127.0.0.1:0", "-rtc-udp", "127.0.0.1:0") // before s.args: -server-args can override it
		// noom's store on disk, as it runs by default, in a directory of
		// this run's own: a store left by an earlier run would only grow.
		dir, err := os.MkdirTemp("", "noom-bench-data-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		args = append(args, "-data", dir)
	}
	srv, err := startServer(ctx, s.bin, append(args, s.args...), s.tls, s.admin)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	c := *cfg
	c.URLs = []string{"ws://" + addr + "/ws"}
	if s.tls {
		c.URLs = []string{"wss://" + addr + "/ws"}
	}
	c.Metrics = nil
	if s.admin {
		c.Metrics = []string{"http://" + srv.adminAddr + "/metrics"}
	}
	return runBench(ctx, &c, newProgressBar(stderr, cfg.Progress))
}

// startedServer is a server process started by the harness.
type startedServer struct {
	cmd       *exec.Cmd
	stderr    *tailBuffer
	done      chan error
	adminAddr string // with admin: the admin listener's address, from its log line
}

// adminLine is how noom logs its admin listener's address at start (slog's
// text format): the harness starts it with -admin-addr 127.0.0.1:0 and
// learns the port from it.
var adminLine = regexp.MustCompile(`msg="admin listening" addr=("[^"]*"|\S+)`)

// startServer starts bin and waits until GET /healthz answers 200 and,
// with admin, until it has logged its admin listener's address.
func startServer(ctx context.Context, bin string, args []string, overTLS, admin bool) (*startedServer, error) {
	cmd := exec.Command(bin, args...)
	s := &startedServer{cmd: cmd, stderr: &tailBuffer{max: 8192}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = s.stderr, s.stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { s.done <- cmd.Wait() }()
	addr := args[1]
	deadline := time.Now().Add(15 * time.Second)
	for {
		scheme := "http"
		if overTLS {
			scheme = "https"
		}
		if admin && s.adminAddr == "" {
			if m := adminLine.FindSubmatch(s.stderr.Bytes()); m != nil {
				s.adminAddr = strings.Trim(string(m[1]), `"`)
			}
		}
		resp, err := metricsClient.Get(scheme + "://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && (!admin || s.adminAddr != "") {
				return s, nil
			}
		}
		select {
		case err := <-s.done:
			return nil, fmt.Errorf("%s exited: %v\n%s", filepath.Base(bin), err, s.stderr.Bytes())
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("%s: no healthy /healthz (or, for noom, no \"admin listening\" line) after 15s\n%s", filepath.Base(bin), s.stderr.Bytes())
		}
	}
}

// stop asks the server to shut down (SIGTERM) and kills it if it has not
// within 10 seconds.
func (s *startedServer) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// moduleRoot finds the directory of the noom module's go.mod, from the
// working directory upwards.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.HasPrefix(b, []byte("module noom\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("-compare must run inside the noom module (no go.mod for module noom above the working directory)")
		}
		dir = parent
	}
}

// oneLine summarises a run for the per-round lines of -compare.
func oneLine(r *Result) string {
	if r.Params.Scenario == scenarioConnect {
		return fmt.Sprintf("%s joined, %s/s, server %s/conn", num(float64(r.Connections.Joined)), num(r.Connections.PerSecond), bytesIEC(r.Server.MemPerConn))
	}
	return fmt.Sprintf("%s deliveries/s, p50 %s p99 %s, lost %s, server %.3f µs/delivery, %s/conn",
		num(r.Deliveries.PerSecond), ms(r.Latency.P50), ms(r.Latency.P99), num(float64(r.Deliveries.Lost)),
		r.Server.CPUPerDelivery, bytesIEC(r.Server.MemPerConn))
}

// compareRow is one measure of the comparison table.
type compareRow struct {
	name   string
	get    func(*Result) float64
	format func(float64) string
	higher bool // higher is better
}

func compareRows(scenario string) []compareRow {
	rows := []compareRow{
		{"connect rate /s", func(r *Result) float64 { return r.Connections.PerSecond }, num, true},
		{"server memory/conn", func(r *Result) float64 { return r.Server.MemPerConn }, bytesIEC, false},
		{"server heap/conn", func(r *Result) float64 { return r.Server.HeapPerConn }, bytesIEC, false},
	}
	if scenario == scenarioConnect {
		return rows
	}
	return append([]compareRow{
		{"deliveries/s", func(r *Result) float64 { return r.Deliveries.PerSecond }, num, true},
		{"latency p50", func(r *Result) float64 { return r.Latency.P50 }, ms, false},
		{"latency p99", func(r *Result) float64 { return r.Latency.P99 }, ms, false},
		{"latency max", func(r *Result) float64 { return r.Latency.Max }, ms, false},
		{"server µs/delivery", func(r *Result) float64 { return r.Server.CPUPerDelivery }, func(v float64) string { return fmt.Sprintf("%.3f", v) }, false},
		{"server cpu %", func(r *Result) float64 { return r.Server.CPUPercent }, func(v float64) string { return fmt.Sprintf("%.0f%%", v) }, false},
		{"lost", func(r *Result) float64 { return float64(r.Deliveries.Lost) }, num, false},
		{"duplicates", func(r *Result) float64 { return float64(r.Deliveries.Duplicates) }, num, false},
	}, rows...)
}

func median(rs []*Result, get func(*Result) float64) float64 {
	if len(rs) == 0 {
		return 0
	}
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = get(r)
	}
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// ratioText says how noom compares on one measure.
func ratioText(a, b float64, higher bool) string {
	switch {
	case a == b:
		return "same"
	case a == 0 || b == 0:
		return "—"
	}
	r := a / b
	if r > 1/1.02 && r < 1.02 {
		return "about the same"
	}
	word := "more"
	if !higher {
		word = "higher"
	}
	if r < 1 {
		r, word = 1/r, map[bool]string{true: "less", false: "lower"}[higher]
	}
	better := (a > b) == higher
	mark := "worse"
	if better {
		mark = "better"
	}
	prec := 2
	if r >= 100 {
		prec = 0
	} else if r >= 10 {
		prec = 1
	}
	return fmt.Sprintf("%.*f× %s (%s)", prec, r, word, mark)
}

// writeCompare prints the comparison table (medians over rounds).
func writeCompare(w io.Writer, cfg *Config, a, b []*Result) {
	fmt.Fprintf(w, "compare: %s, %s connections, %g msg/s, %d B, %v; medians of %d rounds each\n",
		cfg.Scenario, num(float64(cfg.Conns)), cfg.Rate, cfg.Size, cfg.Duration, len(a))
	fmt.Fprintf(w, "  %-20s %14s %14s   %s\n", "", "noom", "reference", "noom vs reference")
	for _, row := range compareRows(cfg.Scenario) {
		va, vb := median(a, row.get), median(b, row.get)
		fmt.Fprintf(w, "  %-20s %14s %14s   %s\n", row.name, row.format(va), row.format(vb), ratioText(va, vb, row.higher))
	}
}

// writeCompareTable is the same table in the HTML report.
func writeCompareTable(b *bytes.Buffer, results []*Result) {
	var a, r []*Result
	for _, res := range results {
		if strings.HasPrefix(res.Params.Label, "noom") {
			a = append(a, res)
		} else {
			r = append(r, res)
		}
	}
	if len(a) == 0 || len(r) == 0 {
		return
	}
	b.WriteString("<h2>noom vs reference (medians)</h2><table><tr><th></th><th>noom</th><th>reference</th><th>noom vs reference</th></tr>\n")
	for _, row := range compareRows(a[0].Params.Scenario) {
		va, vb := median(a, row.get), median(r, row.get)
		fmt.Fprintf(b, "<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>\n",
			html.EscapeString(row.name), html.EscapeString(row.format(va)), html.EscapeString(row.format(vb)),
			html.EscapeString(ratioText(va, vb, row.higher)))
	}
	b.WriteString("</table>\n")
}
