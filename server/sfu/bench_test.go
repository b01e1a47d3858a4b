package sfu

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkCall measures the server forwarding one call of N peers that
// each publish a camera (VP8, 1.5 KB frames at 30 fps: 60 packets/s,
// ≈360 kbit/s) and a microphone (Opus, 50 packets/s).
//
// The clients run in a child process (this test binary again, as
// TestClientProcess), signalling through two pipes, so that the CPU this
// process uses (getrusage) is the server's alone: the SFU, its pion
// connections and the pipe relay. One op is one forwarded packet; the
// metrics are
//
//	cpu-µs/pkt  server CPU (user+system) per forwarded packet
//	user-µs/pkt of which in user space (Go: pion, SRTP, the SFU)
//	sys-µs/pkt  of which in the kernel (sendto, on loopback also the
//	            delivery to the client process's socket)
//	pkts/s      forwarded packets per second
//	heap-MB     heap in use after a GC, with the call running
//	rss-MB      the process's resident set then
//	heap-KB/peer (heap in use − heap before New) / N
//
// Run: go test -run XXX -bench BenchmarkCall -benchtime 10s ./server/sfu/
func BenchmarkCall(b *testing.B) {
	for _, n := range []int{6, 12, 25} {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) { benchCall(b, n) })
	}
}

// relayMsg is one line on the pipes between the benchmark and its client
// process: a signal for or from peer P, or (from the clients) the number
// of tracks received with packets flowing.
type relayMsg struct {
	P    string          `json:"p,omitempty"`
	D    json.RawMessage `json:"d,omitempty"`
	Live *int            `json:"live,omitempty"`
}

func benchCall(b *testing.B, n int) {
	runtime.GC()
	heap0 := heapInUse()
	s, err := New(Config{UDPAddr: "127.0.0.1:0", Loopback: true, Log: testLog()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()

	toChildR, toChildW, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	fromChildR, fromChildW, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestClientProcess$")
	cmd.Env = append(os.Environ(), "NOOM_SFU_CLIENTS="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = []*os.File{toChildR, fromChildW} // fds 3 and 4
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	toChildR.Close()
	fromChildW.Close()
	defer func() {
		toChildW.Close() // the client process exits at EOF
		_ = cmd.Wait()
		fromChildR.Close()
	}()

	var wmu sync.Mutex
	w := bufio.NewWriter(toChildW)
	call := s.Call("bench", nil)
	peers := make(map[string]*Peer, n)
	for i := range n {
		id := fmt.Sprintf("c%02d", i)
		p, err := call.Join(id, func(data []byte) {
			line, _ := json.Marshal(relayMsg{P: id, D: data})
			wmu.Lock()
			defer wmu.Unlock()
			_, _ = w.Write(append(line, '\n'))
			_ = w.Flush()
		})
		if err != nil {
			b.Fatal(err)
		}
		peers[id] = p
	}

	var live sync.Map // "n" → int
	go func() {
		sc := bufio.NewScanner(fromChildR)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var m relayMsg
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				continue
			}
			if m.Live != nil {
				live.Store("n", *m.Live)
			} else if p := peers[m.P]; p != nil {
				_ = p.Signal(m.D)
			}
		}
	}()

	want := 2 * n * (n - 1)
	waitFor(b, func() string { v, _ := live.Load("n"); return fmt.Sprintf("%v of %d tracks live", v, want) },
		func() bool { v, _ := live.Load("n"); return v == want })
	time.Sleep(2 * time.Second) // past the joins' keyframe requests and renegotiations

	b.ReportAllocs()
	b.ResetTimer()
	u0, k0 := cpuTime()
	t0, p0 := time.Now(), s.Stats().PacketsForwarded
	for s.Stats().PacketsForwarded-p0 < uint64(b.N) {
		time.Sleep(5 * time.Millisecond)
	}
	u1, k1 := cpuTime()
	t1, p1 := time.Now(), s.Stats().PacketsForwarded
	b.StopTimer()

	pkts := float64(p1 - p0)
	user, sys := float64((u1-u0).Microseconds())/pkts, float64((k1-k0).Microseconds())/pkts
	b.ReportMetric(user+sys, "cpu-µs/pkt")
	b.ReportMetric(user, "user-µs/pkt")
	b.ReportMetric(sys, "sys-µs/pkt")
	b.ReportMetric(pkts/t1.Sub(t0).Seconds(), "pkts/s")
	runtime.GC()
	heap := heapInUse()
	b.ReportMetric(float64(heap)/(1<<20), "heap-MB")
	b.ReportMetric(float64(rss())/(1<<20), "rss-MB")
	b.ReportMetric(float64(int64(heap)-int64(heap0))/1024/float64(n), "heap-KB/peer")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() (user, sys time.Duration) {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

func heapInUse() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// rss is the process's resident set in bytes (Linux), 0 if unknown.
func rss() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// TestClientProcess is BenchmarkCall's client process: N test clients,
// signalling over fds 3 (in) and 4 (out). Skipped in a normal test run.
func TestClientProcess(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("NOOM_SFU_CLIENTS"))
	if n == 0 {
		t.Skip("only as BenchmarkCall's client process")
	}
	in, out := os.NewFile(3, "from-server"), os.NewFile(4, "to-server")
	var wmu sync.Mutex
	w := bufio.NewWriter(out)
	write := func(m relayMsg) {
		line, _ := json.Marshal(m)
		wmu.Lock()
		defer wmu.Unlock()
		_, _ = w.Write(append(line, '\n'))
		_ = w.Flush()
	}
	clients := make(map[string]*client, n)
	for i := range n {
		id := fmt.Sprintf("c%02d", i)
		c, err := newClient(id, av)
		if err != nil {
			t.Fatal(err)
		}
		c.toServer = func(data []byte) error { write(relayMsg{P: id, D: data}); return nil }
		c.start()
		clients[id] = c
		defer c.close()
	}
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			total := 0
			for _, c := range clients {
				total += len(c.live())
			}
			write(relayMsg{Live: &total})
		}
	}()
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m relayMsg
		if json.Unmarshal(sc.Bytes(), &m) == nil && clients[m.P] != nil {
			clients[m.P].deliver(m.D)
		}
	}
	close(done)
}
