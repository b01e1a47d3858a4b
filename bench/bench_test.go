package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestMain lets this test binary act as a harness worker process: -workers
// re-executes os.Executable(), which under `go test` is the test binary.
func TestMain(m *testing.M) {
	if os.Getenv(workerEnv) == "1" {
		if err := runWorker(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "bench worker:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// buildServer compiles a server package of this module into dir.
func buildServer(t *testing.T, pkg string) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// startTestServer starts bin on a free 127.0.0.1 port and returns its
// WebSocket URL.
func startTestServer(t *testing.T, bin string) string {
	t.Helper()
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := startServer(context.Background(), bin, []string{"-addr", addr}, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.stop()
		if t.Failed() {
			t.Logf("server output:\n%s", srv.stderr.Bytes())
		}
	})
	return "ws://" + addr + "/ws"
}

// runHarness runs the CLI path in-process and returns the decoded -json file.
func runHarness(t *testing.T, args ...string) (map[string]any, string) {
	t.Helper()
	dir := t.TempDir()
	jsonFile, htmlFile := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.html")
	args = append(args, "-json", jsonFile, "-html", htmlFile)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	var stdout bytes.Buffer
	if err := run(ctx, args, &stdout, io.Discard); err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	t.Logf("%s", stdout.String())
	b, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(htmlFile); err != nil || st.Size() < 1000 {
		t.Errorf("html report missing or tiny: %v", err)
	}
	return m, stdout.String()
}

// checkComplete fails for every key of a fully populated Result that the
// JSON lacks, at any depth.
func checkComplete(t *testing.T, got map[string]any) {
	t.Helper()
	full := &Result{Series: []Point{{}}, Events: []string{"x"}, Params: Params{Label: "x", SourceRange: "x"}}
	full.Server.Before = &Sample{Values: map[string]float64{}, Errors: []string{"x"}}
	full.Server.Idle, full.Server.WindowStart, full.Server.End = full.Server.Before, full.Server.Before, full.Server.Before
	b, _ := json.Marshal(full)
	var want map[string]any
	_ = json.Unmarshal(b, &want)
	var walk func(path string, w, g any)
	walk = func(path string, w, g any) {
		switch wv := w.(type) {
		case map[string]any:
			gv, ok := g.(map[string]any)
			if !ok {
				t.Errorf("%s: not an object in the result", path)
				return
			}
			if path == ".server.sample_before.values" || path == ".server.sample_idle.values" {
				return // the metric names depend on the server
			}
			for k, sub := range wv {
				if k == "errors" || k == "label" || k == "source_range" {
					continue // present only when there is something to say
				}
				gs, ok := gv[k]
				if !ok {
					t.Errorf("%s.%s: missing from the result", path, k)
					continue
				}
				walk(path+"."+k, sub, gs)
			}
		case []any:
			if gv, ok := g.([]any); ok && len(gv) > 0 && len(wv) > 0 {
				walk(path+"[0]", wv[0], gv[0])
			}
		}
	}
	walk("", want, got)
}

func num64(t *testing.T, m map[string]any, path ...string) float64 {
	t.Helper()
	var v any = m
	for _, p := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%v: not an object at %q", path, p)
		}
		v = mm[p]
	}
	f, ok := v.(float64)
	if !ok {
		t.Fatalf("%v: %v is not a number", path, v)
	}
	return f
}

// checkDelivery asserts the fan-out accounting: everything joined, every
// planned message accepted, every expected delivery counted exactly once.
func checkDelivery(t *testing.T, m map[string]any, conns, members int) {
	t.Helper()
	if got := num64(t, m, "connections", "joined"); got != float64(conns) {
		t.Errorf("joined %v, want %d", got, conns)
	}
	if got := num64(t, m, "connections", "failed"); got != 0 {
		t.Errorf("failed %v connections", got)
	}
	planned, accepted := num64(t, m, "messages", "planned"), num64(t, m, "messages", "accepted")
	if planned == 0 || accepted != planned {
		t.Errorf("accepted %v of %v planned messages", accepted, planned)
	}
	expected, received := num64(t, m, "deliveries", "expected"), num64(t, m, "deliveries", "received")
	if expected != accepted*float64(members) {
		t.Errorf("expected %v deliveries, want accepted × members = %v", expected, accepted*float64(members))
	}
	if received != expected {
		t.Errorf("received %v of %v expected deliveries", received, expected)
	}
	for _, k := range []string{"lost", "duplicates", "foreign"} {
		if v := num64(t, m, "deliveries", k); v != 0 {
			t.Errorf("%s = %v", k, v)
		}
	}
	if num64(t, m, "latency", "count") != expected {
		t.Errorf("latency samples %v, want %v", num64(t, m, "latency", "count"), expected)
	}
	if s, _ := m["series"].([]any); len(s) < 3 {
		t.Errorf("time series has %d seconds", len(s))
	}
}

var shortRun = []string{"-scenario", "fanout", "-conns", "300", "-rate", "50", "-duration", "2s", "-warmup", "500ms", "-drain", "3s"}

// TestFanoutNoom is the end-to-end check: a short fan-out run
// against the server built from this tree.
func TestFanoutNoom(t *testing.T) {
	url := startTestServer(t, buildServer(t, "./server"))
	m, _ := runHarness(t, append([]string{"-url", url}, shortRun...)...)
	checkDelivery(t, m, 300, 300)
	checkComplete(t, m)
	if num64(t, m, "server", "cpu_us_per_delivery") <= 0 {
		t.Errorf("no server CPU per delivery: /metrics lacks %s or %s?", mCPU, mDeliveries)
	}
}

// TestFanoutReference runs the same against the reference server, and
// spreads the connections over two worker processes.
func TestFanoutReference(t *testing.T) {
	url := startTestServer(t, buildServer(t, "./bench/reference"))
	t.Run("in-process", func(t *testing.T) {
		m, _ := runHarness(t, append([]string{"-url", url}, shortRun...)...)
		checkDelivery(t, m, 300, 300)
		checkComplete(t, m)
	})
	t.Run("two-workers", func(t *testing.T) {
		m, _ := runHarness(t, append([]string{"-url", url, "-workers", "2"}, shortRun...)...)
		checkDelivery(t, m, 300, 300)
		if num64(t, m, "params", "workers") != 2 {
			t.Errorf("workers = %v", num64(t, m, "params", "workers"))
		}
	})
	t.Run("rooms", func(t *testing.T) {
		m, _ := runHarness(t, "-url", url, "-scenario", "rooms", "-conns", "200", "-rooms", "20", "-rate", "100",
			"-duration", "2s", "-warmup", "500ms")
		checkDelivery(t, m, 200, 10) // ten members a room
	})
	t.Run("connect", func(t *testing.T) {
		m, _ := runHarness(t, "-url", url, "-scenario", "connect", "-conns", "300", "-duration", "500ms")
		if j := num64(t, m, "connections", "joined"); j != 300 {
			t.Errorf("joined %v", j)
		}
		if num64(t, m, "server", "rss_idle_bytes") <= 0 || num64(t, m, "connections", "per_second") <= 0 {
			t.Error("no server memory or connect rate")
		}
	})
	t.Run("churn", func(t *testing.T) {
		m, _ := runHarness(t, "-url", url, "-scenario", "churn", "-conns", "200", "-churn", "100", "-rate", "20",
			"-duration", "1500ms", "-warmup", "0s")
		if j := num64(t, m, "churn", "joined"); j < 100 {
			t.Errorf("churn joined %v, want about 150", j)
		}
		// Loss is counted over the members that stay: the two publishers.
		if e, r := num64(t, m, "deliveries", "expected"), num64(t, m, "deliveries", "received"); e == 0 || r != e {
			t.Errorf("received %v of %v", r, e)
		}
	})
}

// TestEvents makes sure the sorted event lines are stable.
func TestEvents(t *testing.T) {
	got := sortedEvents(map[string]int{"b": 2, "a": 2, "c": 5})
	want := []string{"5 × c", "2 × a", "2 × b"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
