package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"
)

// A run larger than one process's open-file budget (maxPerProcess) is
// spread over worker processes: the harness starts its own executable again
// with the hidden flag -worker (and workerEnv set, which is how a test
// binary recognises the same request), gives each a Plan with its share of
// connection indexes, and merges what they report. Coordinator and worker
// talk JSON lines over the worker's stdin and stdout:
//
//	coordinator → worker: Plan, then {"start": t0}; closing stdin aborts
//	worker → coordinator: {"progress":…} every 200 ms, {"ready":…} once
//	                      ramped, then {"result":…}
//
// All processes share one clock (one machine), so the coordinator's t0 and
// the intended send times embedded in messages mean the same everywhere.

// workerEnv marks a process started as a worker.
const workerEnv = "NOOM_BENCH_WORKER"

// Progress is a worker's running count, shown on the progress line.
type Progress struct {
	Joined     int64  `json:"joined"`
	Failed     int64  `json:"failed"`
	Open       int64  `json:"open"`
	Deliveries uint64 `json:"deliveries"`
	Sent       uint64 `json:"sent"`
}

func (p *Progress) add(o Progress) {
	p.Joined += o.Joined
	p.Failed += o.Failed
	p.Open += o.Open
	p.Deliveries += o.Deliveries
	p.Sent += o.Sent
}

// WorkerResult is everything one share measured. Every field merges by
// summing, by OR (Seen) or by histogram merge, so the coordinator's figures
// do not depend on how the run was split.
type WorkerResult struct {
	Worker       int            `json:"worker"`
	Conns        int            `json:"conns"`
	Joined       int64          `json:"joined"`
	Failed       int64          `json:"failed"`
	RampStart    int64          `json:"ramp_start"`
	LastJoin     int64          `json:"last_join"`
	Members      []int          `json:"members"`  // stable members joined at the end of the ramp, by room
	Seen         []uint64       `json:"seen"`     // bitmap of messages received by anyone here
	SentSet      []uint64       `json:"sent_set"` // bitmap of messages written by publishers here
	DrainCut     bool           `json:"drain_cut"`
	Deliveries   uint64         `json:"deliveries"`
	InWindow     uint64         `json:"in_window"`
	RxWindow     uint64         `json:"rx_window"`
	Received     uint64         `json:"received"`
	Duplicates   uint64         `json:"duplicates"`
	Gaps         uint64         `json:"gaps"`
	Foreign      uint64         `json:"foreign"`
	Other        uint64         `json:"other"`
	Sent         uint64         `json:"sent"`
	SentWindow   uint64         `json:"sent_window"`
	Unsent       uint64         `json:"unsent"`
	SendErrors   uint64         `json:"send_errors"`
	SendLagMax   int64          `json:"send_lag_max"`
	SendLagSum   int64          `json:"send_lag_sum"`
	Dropped      int64          `json:"dropped"`
	ChurnClosed  int64          `json:"churn_closed"`
	ChurnJoined  int64          `json:"churn_joined"`
	ChurnFailed  int64          `json:"churn_failed"`
	Slow         SlowWire       `json:"slow"`
	Call         *CallWire      `json:"call,omitempty"` // the call scenario's figures (call.go)
	Latency      SparseHist     `json:"latency"`
	RampLatency  SparseHist     `json:"ramp_latency"`
	ChurnLatency SparseHist     `json:"churn_latency"`
	CPUMicros    int64          `json:"cpu_us"`
	RampCPU      int64          `json:"ramp_cpu_us"`
	RampWall     int64          `json:"ramp_wall_us"`
	WindowMicros int64          `json:"window_us"`
	Series       []SecondWire   `json:"series"`
	Events       map[string]int `json:"events"`
}

// SlowWire is one share's slow-reader counts (slow.go).
type SlowWire struct {
	Opened     int64     `json:"opened"`
	Failed     int64     `json:"failed"`
	ServerGone int64     `json:"server_gone"`
	Held       int64     `json:"held"`
	AtEnd      int64     `json:"at_end"`
	Lifetimes  []float64 `json:"lifetimes"`
}

// workerHandle is the coordinator's view of one share, in this process or
// in a worker process.
type workerHandle interface {
	Progress() Progress
	Ready() <-chan struct{} // closed when the share has ramped up (or failed)
	Start(t0 int64)
	Result(ctx context.Context) (*WorkerResult, error)
	Close()
}

// share is one process's part of a run: the chat connections of loadGen
// (load.go), or the call peers of callGen (call.go). The coordinator and
// the worker processes drive either through the same phases.
type share interface {
	ramp(ctx context.Context)          // open and join, until every one is in (or failed)
	run(ctx context.Context, t0 int64) // the measured part, from t0 (unix ns)
	result() *WorkerResult
	progress() Progress
	stop()
}

// newShare returns the share of p's scenario.
func newShare(p *Plan) (share, error) {
	if p.Scenario == scenarioCall {
		g, err := newCallGen(p)
		if err != nil {
			return nil, err
		}
		return g, nil
	}
	g, err := newLoadGen(p)
	if err != nil {
		return nil, err
	}
	return g, nil
}

// localWorker runs a share in this process.
type localWorker struct {
	gen   share
	ready chan struct{}
	start chan int64
	done  chan struct{}
	res   *WorkerResult
}

func startLocal(ctx context.Context, p *Plan) (*localWorker, error) {
	gen, err := newShare(p)
	if err != nil {
		return nil, err
	}
	lw := &localWorker{gen: gen, ready: make(chan struct{}), start: make(chan int64, 1), done: make(chan struct{})}
	go func() {
		defer close(lw.done)
		gen.ramp(ctx)
		close(lw.ready)
		select {
		case t0 := <-lw.start:
			gen.run(ctx, t0)
		case <-ctx.Done():
		}
		lw.res = gen.result()
		gen.stop()
	}()
	return lw, nil
}

// Progress reads the share's counters directly.
func (lw *localWorker) Progress() Progress { return lw.gen.progress() }

// Ready is closed when the ramp is over.
func (lw *localWorker) Ready() <-chan struct{} { return lw.ready }

// Start hands over the start time.
func (lw *localWorker) Start(t0 int64) { lw.start <- t0 }

// Close does nothing: the share stops itself once its result is taken.
func (lw *localWorker) Close() {}

// Result waits for the share to finish.
func (lw *localWorker) Result(ctx context.Context) (*WorkerResult, error) {
	select {
	case <-lw.done:
		return lw.res, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// procWorker runs a share in a child process.
type procWorker struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *tailBuffer
	ready  chan struct{}
	done   chan struct{}

	mu       sync.Mutex
	progress Progress
	res      *WorkerResult
	err      error
}

// workerLine is one line a worker writes.
type workerLine struct {
	Progress *Progress     `json:"progress,omitempty"`
	Ready    *Progress     `json:"ready,omitempty"`
	Result   *WorkerResult `json:"result,omitempty"`
	Error    string        `json:"error,omitempty"`
}

func startProc(ctx context.Context, p *Plan) (*procWorker, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	cmd := exec.CommandContext(ctx, exe, "-worker")
	cmd.Env = append(os.Environ(), workerEnv+"=1")
	pw := &procWorker{cmd: cmd, stderr: &tailBuffer{max: 4096}, ready: make(chan struct{}), done: make(chan struct{})}
	cmd.Stderr = pw.stderr
	if pw.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start worker %d: %w", p.Worker, err)
	}
	if err := json.NewEncoder(pw.stdin).Encode(p); err != nil {
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("send plan to worker %d: %w", p.Worker, err)
	}
	go pw.read(stdout, p.Worker)
	return pw, nil
}

// read consumes the worker's lines until it exits.
func (pw *procWorker) read(stdout io.Reader, n int) {
	defer close(pw.done)
	readyClosed := false
	markReady := func() {
		if !readyClosed {
			readyClosed = true
			close(pw.ready)
		}
	}
	defer markReady()
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 256<<20)
	for sc.Scan() {
		var l workerLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			pw.setErr(fmt.Errorf("worker %d: bad line: %w", n, err))
			continue
		}
		pw.mu.Lock()
		switch {
		case l.Progress != nil:
			pw.progress = *l.Progress
		case l.Ready != nil:
			pw.progress = *l.Ready
		case l.Result != nil:
			pw.res = l.Result
		case l.Error != "":
			pw.err = fmt.Errorf("worker %d: %s", n, l.Error)
		}
		pw.mu.Unlock()
		if l.Ready != nil {
			markReady()
		}
	}
	if err := pw.cmd.Wait(); err != nil {
		pw.setErr(fmt.Errorf("worker %d: %w: %s", n, err, bytes.TrimSpace(pw.stderr.Bytes())))
	}
}

func (pw *procWorker) setErr(err error) {
	pw.mu.Lock()
	if pw.err == nil {
		pw.err = err
	}
	pw.mu.Unlock()
}

// Progress returns the worker's last reported counters.
func (pw *procWorker) Progress() Progress {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	return pw.progress
}

// Ready is closed when the worker reports its ramp over (or exits).
func (pw *procWorker) Ready() <-chan struct{} { return pw.ready }

// Start sends the start time to the worker.
func (pw *procWorker) Start(t0 int64) {
	_ = json.NewEncoder(pw.stdin).Encode(map[string]int64{"start": t0})
}

// Result waits for the worker to exit and returns what it reported.
func (pw *procWorker) Result(ctx context.Context) (*WorkerResult, error) {
	select {
	case <-pw.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if pw.res == nil && pw.err == nil {
		return nil, errors.New("worker exited without a result")
	}
	return pw.res, pw.err
}

// Close tells the worker to stop (closing its stdin) and waits a moment
// for it; the context of exec.CommandContext kills it otherwise.
func (pw *procWorker) Close() {
	_ = pw.stdin.Close()
	select {
	case <-pw.done:
	case <-time.After(10 * time.Second):
		_ = pw.cmd.Process.Kill()
	}
}

// runWorker is the body of a worker process: read the Plan, ramp, report
// ready, wait for the start time, run, report the result.
func runWorker(stdin io.Reader, stdout io.Writer) error {
	var mu sync.Mutex
	enc := json.NewEncoder(stdout)
	send := func(l workerLine) {
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(l)
	}
	dec := json.NewDecoder(stdin)
	var p Plan
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("read plan: %w", err)
	}
	gen, err := newShare(&p)
	if err != nil {
		send(workerLine{Error: err.Error()})
		return err
	}
	defer gen.stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				pr := gen.progress()
				send(workerLine{Progress: &pr})
			case <-ctx.Done():
				return
			}
		}
	}()
	start := make(chan int64, 1)
	go func() {
		// The first command is the start time; end of input, before or
		// after it, means the coordinator gave up: stop at once.
		var cmd struct {
			Start int64 `json:"start"`
		}
		if err := dec.Decode(&cmd); err == nil {
			start <- cmd.Start
			_ = dec.Decode(&cmd)
		}
		cancel()
	}()
	gen.ramp(ctx)
	pr := gen.progress()
	send(workerLine{Ready: &pr})
	select {
	case t0 := <-start:
		gen.run(ctx, t0)
	case <-ctx.Done():
	}
	res := gen.result()
	send(workerLine{Result: res})
	return nil
}

// tailBuffer keeps the last max bytes written to it (a worker's stderr).
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

// Write keeps the tail of p.
func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
	return len(p), nil
}

// Bytes returns a copy of what is kept.
func (t *tailBuffer) Bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]byte(nil), t.buf...)
}
