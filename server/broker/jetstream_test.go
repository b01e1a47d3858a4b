package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The JetStream broker against a real NATS server embedded in the test
// process: what only a shared stream has (two nodes racing for a seq,
// retention in real time, the server lost and back), beside the contract
// tests it passes with the local brokers.

// testNATS runs a NATS server with JetStream storing in dir on a free
// loopback port, and stops it when the test ends.
func testNATS(t testing.TB, dir string) *natsserver.Server {
	t.Helper()
	return testNATSOn(t, dir, -1)
}

func testNATSOn(t testing.TB, dir string, port int) *natsserver.Server {
	t.Helper()
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: port, JetStream: true,
		StoreDir: dir, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS did not start")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// openJetStream connects to url as node and returns a broker over the
// stream "rooms" (created, or updated to maxAge), closed when the test
// ends.
func openJetStream(t testing.TB, url, node string, maxAge time.Duration) *JetStream {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.ReconnectBufSize(-1))
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "rooms", Subjects: []string{"t.msg.>", "t.call.>"},
		MaxMsgsPerSubject: 10000, MaxAge: maxAge, Duplicates: min(maxAge, 2*time.Minute),
		Storage: jetstream.FileStorage, Discard: jetstream.DiscardOld})
	if err != nil {
		t.Fatal(err)
	}
	b := NewJetStream(JetStreamConfig{JS: js, Stream: st, Prefix: "t.msg.", CallPrefix: "t.call.", Node: node,
		Epoch: "c" + strconv.FormatInt(st.CachedInfo().Created.UnixMilli(), 36), Timeout: time.Second})
	t.Cleanup(func() { _ = b.Close(); nc.Close() })
	return b
}

// TestJetStreamTwoNodes: two nodes take seqs for one room at once, each
// retrying with the stream's head after ErrSeq, as a cluster node does:
// every message is kept once, seqs 1..n without a gap.
func TestJetStreamTwoNodes(t *testing.T) {
	ns := testNATS(t, t.TempDir())
	nodes := []*JetStream{openJetStream(t, ns.ClientURL(), "a", time.Hour), openJetStream(t, ns.ClientURL(), "b", time.Hour)}
	const each = 60
	var wg sync.WaitGroup
	for _, b := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sent := 0; sent < each; {
				rs, err := b.Room("r", 0)
				if err != nil {
					t.Error(err)
					return
				}
				err = publishWait(b, "r", rs.Epoch, rs.Seq+1)
				switch {
				case err == nil:
					sent++
				case errors.Is(err, ErrSeq): // the other node took it: ask again
				default:
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	msgs, more, err := nodes[0].History("r", 0, 1000)
	if err != nil || more || len(msgs) != 2*each {
		t.Fatalf("history: %d messages, more %v, %v; want %d", len(msgs), more, err, 2*each)
	}
	for i, m := range msgs {
		if m.Seq != uint64(i+1) {
			t.Fatalf("message %d has seq %d", i, m.Seq)
		}
	}
}

// TestJetStreamRenumbers: two nodes publish into one room at once without
// waiting, each numbering its messages from what it last knew (so most of
// their seqs are taken by the other's), with a renumber: every message is
// kept once, seqs 1..n without a gap, each node's in the order it
// published them, and done reports each one's seq and payload as kept.
func TestJetStreamRenumbers(t *testing.T) {
	ns := testNATS(t, t.TempDir())
	nodes := []*JetStream{openJetStream(t, ns.ClientURL(), "a", time.Hour), openJetStream(t, ns.ClientURL(), "b", time.Hour)}
	rs, err := nodes[0].Room("r", 0)
	if err != nil {
		t.Fatal(err)
	}
	const each = 60
	type kept struct {
		seq  uint64
		text string
	}
	got := make([][]kept, len(nodes))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for n, b := range nodes {
		for i := range each {
			text := fmt.Sprintf("%d.%d", n, i)
			body := func(seq uint64) []byte { return fmt.Appendf(nil, `{"seq":%d,"text":%q}`, seq, text) }
			wg.Add(1)
			err := b.Publish("r", rs.Epoch, Message{Seq: uint64(i + 1), Payload: body(uint64(i + 1))}, body, func(k Kept, err error) {
				defer wg.Done()
				if err != nil {
					t.Errorf("%s: %v", text, err)
					return
				}
				if want := body(k.Seq); string(k.Payload) != string(want) || k.Epoch != rs.Epoch {
					t.Errorf("%s kept as %s in %s, want %s in %s", text, k.Payload, k.Epoch, want, rs.Epoch)
				}
				mu.Lock()
				got[n] = append(got[n], kept{k.Seq, text})
				mu.Unlock()
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	wg.Wait()
	for n := range nodes {
		if len(got[n]) != each {
			t.Fatalf("node %d: %d kept", n, len(got[n]))
		}
		for i, k := range got[n] {
			if k.text != fmt.Sprintf("%d.%d", n, i) || i > 0 && k.seq <= got[n][i-1].seq {
				t.Fatalf("node %d: done %d is %s at seq %d, after seq %d", n, i, k.text, k.seq, got[n][max(i-1, 0)].seq)
			}
		}
	}
	msgs, more, err := nodes[1].History("r", 0, 1000)
	if err != nil || more || len(msgs) != 2*each {
		t.Fatalf("history: %d messages, more %v, %v; want %d", len(msgs), more, err, 2*each)
	}
	for i, m := range msgs {
		if m.Seq != uint64(i+1) || !strings.Contains(string(m.Payload), fmt.Sprintf(`"seq":%d,`, m.Seq)) {
			t.Fatalf("message %d: seq %d, %s", i, m.Seq, m.Payload)
		}
	}
	if nodes[0].Retries()+nodes[1].Retries() == 0 {
		t.Fatal("no seq was ever taken: the test did not race the nodes")
	}
}

// TestJetStreamFailureFailsWhatFollows: a publish that fails fails the
// publishes of its room queued behind it, even ones that would have been
// kept, so that a node's messages are kept in its order or not at all;
// what is published after the failure is reported goes on.
func TestJetStreamFailureFailsWhatFollows(t *testing.T) {
	ns := testNATS(t, t.TempDir())
	a := openJetStream(t, ns.ClientURL(), "a", time.Hour)
	rs, err := a.Room("r", 0)
	if err != nil {
		t.Fatal(err)
	}
	msg := func(seq uint64) Message { return Message{Seq: seq, Payload: fmt.Appendf(nil, `{"seq":%d}`, seq)} }
	hold, held := make(chan struct{}), make(chan struct{})
	results := make(chan string, 4)
	publish := func(name string, seq uint64, wait bool) {
		err := a.Publish("r", rs.Epoch, msg(seq), nil, func(k Kept, err error) {
			if wait { // hold the room's worker until the rest are queued
				close(held)
				<-hold
			}
			results <- fmt.Sprintf("%s:%v", name, errors.Is(err, ErrSeq))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	publish("first", 1, true)
	<-held
	publish("wrong", 5, false) // not next, and no renumber: ErrSeq
	publish("next", 2, false)  // would follow seq 1, but is queued behind the failure
	publish("then", 3, false)
	close(hold)
	for _, want := range []string{"first:false", "wrong:true", "next:true", "then:true"} {
		if got := <-results; got != want {
			t.Fatalf("got %s, want %s", got, want)
		}
	}
	if err := publishWait(a, "r", rs.Epoch, 2); err != nil {
		t.Fatalf("a publish after the failure was reported: %v", err)
	}
}

// TestJetStreamPaused: a node out of the cluster for now publishes
// nothing: ErrOffline at once, and the stream keeps nothing of it.
func TestJetStreamPaused(t *testing.T) {
	ns := testNATS(t, t.TempDir())
	a := openJetStream(t, ns.ClientURL(), "a", time.Hour)
	var paused atomic.Bool
	a.paused = paused.Load
	rs, err := a.Room("r", 0)
	if err != nil {
		t.Fatal(err)
	}
	paused.Store(true)
	if err := publishWait(a, "r", rs.Epoch, 1); !errors.Is(err, ErrOffline) {
		t.Fatalf("paused publish: %v, want ErrOffline", err)
	}
	paused.Store(false)
	if err := publishWait(a, "r", rs.Epoch, 1); err != nil {
		t.Fatalf("publish once back: %v", err)
	}
	if msgs, _, err := a.History("r", 0, 10); err != nil || len(msgs) != 1 {
		t.Fatalf("history: %d, %v", len(msgs), err)
	}
}

// TestJetStreamLostAck: a publish stored whose answer was lost is sent
// again and kept once; the room's next seq follows it.
func TestJetStreamLostAck(t *testing.T) {
	ns := testNATS(t, t.TempDir())
	b := openJetStream(t, ns.ClientURL(), "a", time.Hour)
	rs, _ := b.Room("r", 0)
	b.DropAcks(1)
	if err := publishWait(b, "r", rs.Epoch, 1); err != nil {
		t.Fatalf("publish after a lost ack: %v", err)
	}
	if err := publishWait(b, "r", rs.Epoch, 2); err != nil {
		t.Fatal(err)
	}
	msgs, _, _ := b.History("r", 0, 10)
	if len(msgs) != 2 || msgs[0].Seq != 1 || msgs[1].Seq != 2 {
		t.Fatalf("history after a lost ack: %+v", msgs)
	}
}

// TestJetStreamRetention: once retention took every message of a room,
// its sequence is lost: the next Room starts a lifetime, the same one for
// every node, and a publish in the old lifetime is refused.
func TestJetStreamRetention(t *testing.T) {
	ns := testNATS(t, t.TempDir())
	a := openJetStream(t, ns.ClientURL(), "a", time.Second)
	b := openJetStream(t, ns.ClientURL(), "b", time.Second)
	old, _ := a.Room("r", 0)
	for s := uint64(1); s <= 3; s++ {
		if err := publishWait(a, "r", old.Epoch, s); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if msgs, _, _ := b.History("r", 0, 10); len(msgs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("retention took nothing")
		}
	}
	if err := publishWait(a, "r", old.Epoch, 4); !errors.Is(err, ErrSeq) {
		t.Fatalf("seq 4 in the lost lifetime: %v, want ErrSeq", err)
	}
	na, err := a.Room("r", 10)
	if err != nil || na.Known || na.Seq != 0 || na.Epoch == old.Epoch {
		t.Fatalf("after retention: %+v %v", na, err)
	}
	nb, _ := b.Room("r", 10)
	if nb.Epoch != na.Epoch {
		t.Fatalf("two nodes name the new lifetime %s and %s", na.Epoch, nb.Epoch)
	}
	if err := publishWait(b, "r", nb.Epoch, 1); err != nil {
		t.Fatal(err)
	}
	if msgs, _, _ := a.History("r", 0, 10); len(msgs) != 1 || msgs[0].Seq != 1 {
		t.Fatalf("the new lifetime's history: %+v", msgs)
	}
	if msgs, _, _ := a.HistoryIn("r", old.Epoch, 0, 10); len(msgs) != 0 {
		t.Fatalf("a page of the lost lifetime: %+v", msgs)
	}
	if msgs, _, _ := a.HistoryIn("r", nb.Epoch, 0, 10); len(msgs) != 1 {
		t.Fatalf("a page of the new lifetime: %+v", msgs)
	}
}

// TestJetStreamServerLost: with the NATS server gone a publish ends with
// ErrOffline, nothing is claimed kept; after it comes back on the same
// store, the room goes on from its seq.
func TestJetStreamServerLost(t *testing.T) {
	dir := t.TempDir()
	ns := testNATS(t, dir)
	port := ns.Addr().(interface{ String() string }).String()
	b := openJetStream(t, ns.ClientURL(), "a", time.Hour)
	rs, _ := b.Room("r", 0)
	if err := publishWait(b, "r", rs.Epoch, 1); err != nil {
		t.Fatal(err)
	}
	ns.Shutdown()
	ns.WaitForShutdown()
	if err := publishWait(b, "r", rs.Epoch, 2); !errors.Is(err, ErrOffline) {
		t.Fatalf("publish with the server gone: %v, want ErrOffline", err)
	}
	p, _ := strconv.Atoi(port[len("127.0.0.1:"):])
	testNATSOn(t, dir, p)
	var got RoomState
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var err error
		if got, err = b.Room("r", 5); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("room after the server came back: %v", err)
		}
	}
	if got.Epoch != rs.Epoch || got.Seq != 1 {
		t.Fatalf("after the server came back: %+v", got)
	}
	if err := publishWait(b, "r", rs.Epoch, 2); err != nil {
		t.Fatal(err)
	}
}

// TestJetStreamPagesFar: pages and since reach a room's message among
// many of other rooms (the bisection over stream sequences).
func TestJetStreamPagesFar(t *testing.T) {
	ns := testNATS(t, t.TempDir())
	b := openJetStream(t, ns.ClientURL(), "a", time.Hour)
	ra, _ := b.Room("a", 0)
	rb, _ := b.Room("b", 0)
	for s := uint64(1); s <= 200; s++ {
		if err := publishWait(b, "a", ra.Epoch, s); err != nil {
			t.Fatal(err)
		}
		for k := uint64(1); k <= 3; k++ {
			if err := publishWait(b, "b", rb.Epoch, 3*(s-1)+k); err != nil {
				t.Fatal(err)
			}
		}
	}
	msgs, more, err := b.History("a", 101, 20)
	if err != nil || len(msgs) != 20 || msgs[0].Seq != 81 || msgs[19].Seq != 100 || !more {
		t.Fatalf("page before 101: %d messages from %v, more %v, %v", len(msgs), msgs, more, err)
	}
	since, ok, err := b.Since("a", 150, 100)
	if err != nil || !ok || len(since) != 50 || since[0].Seq != 151 {
		t.Fatalf("since 150: %d, %v, %v", len(since), ok, err)
	}
}

// BenchmarkJetStreamPage reads a page of 50 from the middle of a room of
// 2,000 messages among 6,000 of other rooms: the bisection and the fetch.
func BenchmarkJetStreamPage(b *testing.B) {
	ns := testNATS(b, b.TempDir())
	j := openJetStream(b, ns.ClientURL(), "a", time.Hour)
	ra, _ := j.Room("a", 0)
	rb, _ := j.Room("b", 0)
	for s := uint64(1); s <= 2000; s++ {
		if err := publishWait(j, "a", ra.Epoch, s); err != nil {
			b.Fatal(err)
		}
		for k := uint64(1); k <= 3; k++ {
			if err := publishWait(j, "b", rb.Epoch, 3*(s-1)+k); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		msgs, _, err := j.History("a", 1000, 50)
		if err != nil || len(msgs) != 50 {
			b.Fatalf("%d messages, %v", len(msgs), err)
		}
	}
}
