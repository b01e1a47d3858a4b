package main

import (
	"io"
	"strings"
	"testing"
)

// TestCall runs the call scenario with three peers against the server
// built from this tree, with the SFU on: every peer joins the call, answers
// the SFU's offers and receives the other two's audio and camera, the
// packets counted at the receivers are about what was published, and the
// server's CPU per packet and memory come out of its /metrics. Then the
// same spread over two worker processes, whose peers can only reach full
// flow through each other's.
func TestCall(t *testing.T) {
	target := startTestServer(t, buildServer(t, "./server"), true, "-sfu", "on")
	for _, tc := range []struct {
		name    string
		workers string
	}{{"in-process", "0"}, {"two-workers", "2"}} {
		t.Run(tc.name, func(t *testing.T) {
			m, out := runHarness(t, with(target, "-scenario", "call", "-peers", "3", "-workers", tc.workers,
				"-duration", "2s", "-warmup", "500ms", "-sample-every", "1s")...)
			checkComplete(t, m)
			c, ok := m["call"].(map[string]any)
			if !ok {
				t.Fatalf("no call figures in the result")
			}
			for k, want := range map[string]float64{"peers": 3, "joined": 3, "failed": 0, "full_flow": 3,
				"want_tracks": 4, "tracks_min": 4, "peers_flowing": 3} {
				if got := num64(t, c, k); got != want {
					t.Errorf("%s = %v, want %v", k, got, want)
				}
			}
			// Each peer publishes 50 audio and about 60 video packets a
			// second to two others: about 660 a second in all. A busy
			// machine may lose a few; half of them would be a fault.
			pps, offered := num64(t, c, "packets_per_second"), num64(t, c, "offered_per_second")
			if offered < 500 || pps < offered/2 || pps > offered*1.1 {
				t.Errorf("%.0f packets/s received of %.0f/s offered", pps, offered)
			}
			if num64(t, c, "server_cpu_us_per_packet") <= 0 || num64(t, c, "server_rss_bytes") <= 0 || num64(t, c, "to_full_flow_s") <= 0 {
				t.Errorf("missing server or flow figures: %v", c)
			}
			if got := num64(t, m, "params", "workers"); tc.workers == "2" && got != 2 {
				t.Errorf("workers = %v", got)
			}
			for _, line := range []string{"full flow      3 of 3 peers", "µs per forwarded packet"} {
				if !strings.Contains(out, line) {
					t.Errorf("no %q in the text block", line)
				}
			}
		})
	}
}

// TestCallFlags checks the call scenario's flags: -peers sets the
// connections, -compare is refused, the peers spread over processes.
func TestCallFlags(t *testing.T) {
	var cfg Config
	fs := newFlagSet(&cfg, io.Discard)
	if err := fs.Parse([]string{"-scenario", "call", "-peers", "25"}); err != nil {
		t.Fatal(err)
	}
	if err := cfg.check(); err != nil {
		t.Fatal(err)
	}
	if cfg.Conns != 25 || cfg.Publishers != 0 || cfg.workerCount() != 2 {
		t.Errorf("conns %d publishers %d workers %d", cfg.Conns, cfg.Publishers, cfg.workerCount())
	}
	if args, _ := noomArgs(&cfg); strings.Join(args, " ") != "-sfu on" {
		t.Errorf("server flags %v", args)
	}
	cfg.Compare = true
	if err := cfg.check(); err == nil {
		t.Error("-compare -scenario call accepted")
	}
}
