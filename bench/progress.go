package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progressBar draws one self-overwriting line on stderr while a run ramps
// and runs. It draws nothing unless stderr is a terminal, so logs and CI
// output carry only the result block.
type progressBar struct {
	out     io.Writer
	enabled bool

	mu       sync.Mutex
	name     string
	deadline time.Time
	since    time.Time
}

func newProgressBar(out io.Writer, want bool) *progressBar {
	f, ok := out.(*os.File)
	return &progressBar{out: out, enabled: want && ok && isTerminal(f)}
}

// phase names the current phase and, if known, when it ends.
func (b *progressBar) phase(name string, until time.Time) {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.name, b.deadline, b.since = name, until, time.Now()
	b.mu.Unlock()
}

// start redraws every 200 ms from get until the returned stop is called
// (stop may be called more than once).
func (b *progressBar) start(get func() Progress, cfg *Config) (stop func()) {
	if b == nil || !b.enabled {
		return func() {}
	}
	done := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		var last Progress
		lastAt := time.Now()
		rate := 0.0
		for {
			select {
			case <-done:
				fmt.Fprint(b.out, "\r\033[K")
				return
			case now := <-t.C:
				p := get()
				if dt := now.Sub(lastAt).Seconds(); dt > 0 {
					rate = 0.7*rate + 0.3*float64(p.Deliveries-last.Deliveries)/dt
				}
				last, lastAt = p, now
				fmt.Fprint(b.out, "\r\033[K"+b.line(p, cfg, rate))
			}
		}
	}()
	return func() {
		once.Do(func() { close(done); wg.Wait() })
	}
}

func (b *progressBar) line(p Progress, cfg *Config, rate float64) string {
	b.mu.Lock()
	name, deadline, since := b.name, b.deadline, b.since
	b.mu.Unlock()
	frac := float64(p.Joined+p.Failed) / float64(cfg.Conns)
	detail := fmt.Sprintf("%s/%s joined, %s failed", num(float64(p.Joined)), num(float64(cfg.Conns)), num(float64(p.Failed)))
	if name != "ramp" && !deadline.IsZero() {
		total := deadline.Sub(since).Seconds()
		frac = 1 - time.Until(deadline).Seconds()/max(total, 1e-9)
		detail = fmt.Sprintf("%s open, %s sent, %s deliveries/s", num(float64(p.Open)), num(float64(p.Sent)), num(rate))
	}
	frac = min(max(frac, 0), 1)
	const width = 24
	n := int(frac * width)
	return fmt.Sprintf("%-6s [%s%s] %3.0f%%  %s", name, strings.Repeat("#", n), strings.Repeat(".", width-n), 100*frac, detail)
}
