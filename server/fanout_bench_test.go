package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The fan-out path measured without the kernel: members whose socket is a
// sink that takes everything at once. What is left is noom's own cost per
// broadcast and per member — encoding, queueing, coalescing — which must not
// allocate per member. The harness in bench/ measures the path with real
// sockets, where the write syscall dominates.

// discard is a member's socket that accepts every write immediately.
type discard struct {
	c      *client
	writes *atomic.Int64
	bytes  *atomic.Int64
}

func (d discard) Write(b []byte) (int, error) {
	d.c.written.Add(int64(len(b))) // as nbio's OnWrittenSize would
	d.writes.Add(1)
	d.bytes.Add(int64(len(b)))
	return len(b), nil
}

// benchHub starts a hub with n members in room "r" and returns a sender
// among them plus counters of what the sinks got.
func benchHub(b *testing.B, n int) (*hub, *client, *atomic.Int64, *atomic.Int64) {
	cfg := defaultConfig()
	cfg.PresenceLimit = 0 // no presence storm while filling the room
	h := newHub(&cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), &stats{}, newClock())
	h.release = func(*client) {}
	h.start()
	b.Cleanup(h.stop)
	var writes, bytes atomic.Int64
	var sender *client
	for i := 0; i < n; i++ {
		id := uint64(i + 1)
		c := &client{id: id, idStr: formatID(id)}
		c.w = h.worker(id)
		c.sink = discard{c, &writes, &bytes}
		c.setNickname("member")
		h.register(c, []byte("x"))
		h.join(c, joinReq{room: "r"})
		if sender == nil {
			sender = c
		}
	}
	// Wait until the setup frames are out, then count from zero.
	deadline := time.Now().Add(30 * time.Second)
	for prev := int64(-1); ; {
		time.Sleep(20 * time.Millisecond)
		cur := bytes.Load()
		if cur == prev {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("setup never settled")
		}
		prev = cur
	}
	writes.Store(0)
	bytes.Store(0)
	return h, sender, &writes, &bytes
}

func benchmarkBroadcast(b *testing.B, members int) {
	h, sender, writes, bytes := benchHub(b, members)
	text := strings.Repeat("x", 100)
	frame, _ := encodeMsg("r", 1, sender.idStr, "member", text, time.Now().UnixMilli())
	perMsg := int64(len(frame) * members)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h.say(sender, "r", text)
	}
	want := perMsg * int64(b.N)
	for bytes.Load() < want { // seq grows a digit now and then: at least this much
		time.Sleep(50 * time.Microsecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(int64(b.N)*int64(members)), "ns/delivery")
	b.ReportMetric(float64(int64(b.N)*int64(members))/float64(writes.Load()), "frames/write")
}

// BenchmarkBroadcast publishes to rooms of 1, 100 and 10,000 members. An op
// is one message delivered to every member; allocs/op must not grow with
// the number of members.
func BenchmarkBroadcast(b *testing.B) {
	for _, n := range []int{1, 100, 10000} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) { benchmarkBroadcast(b, n) })
	}
}
