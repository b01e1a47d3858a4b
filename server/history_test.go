package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Tests of the standalone node's kept history (history.go, server/broker,
// server/store): restarts, pages, kill -9, and a store that cannot be
// trusted.

// childServeEnv, set, makes the test binary run the server itself (run, as
// the noom binary does) with the arguments it holds, separated by \x1f,
// so a test can kill a real server process.
const childServeEnv = "NOOM_TEST_SERVE_ARGS"

func TestMain(m *testing.M) {
	if args := os.Getenv(childServeEnv); args != "" {
		ctx, stop := context.WithCancel(context.Background())
		defer stop()
		if err := run(ctx, strings.Split(args, "\x1f"), os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "noom:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// sayN says n messages in room, each text its number, and reads every msg.
func sayN(t *testing.T, ws *wsConn, room string, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		ws.send(map[string]any{"type": "say", "room": room, "text": fmt.Sprint(i)})
		if m := ws.expect("msg"); m.num("seq") != i {
			t.Fatalf("msg %v, want seq %d", m, i)
		}
	}
}

func seqsOf(t *testing.T, list []any) []int {
	t.Helper()
	var out []int
	for _, x := range list {
		m, ok := x.(map[string]any)
		if !ok {
			t.Fatalf("history item %v", x)
		}
		out = append(out, int(m["seq"].(float64)))
	}
	return out
}

// TestHistorySurvivesRestart is the newcomer's check: say five messages,
// restart the server on the same -data, join again: they are there, under
// the same epoch, and the next message is seq 6.
func TestHistorySurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	withData := func(c *Config) { c.Data = dir }
	srv := startServer(t, withData)
	a := dial(t, srv)
	epoch := a.join("r").str("epoch")
	sayN(t, a, "r", 1, 5)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	srv = startServer(t, withData)
	b := dial(t, srv)
	j := b.join("r")
	if got := fmt.Sprint(seqsOf(t, j.list("history"))); got != "[1 2 3 4 5]" || j.str("epoch") != epoch {
		t.Fatalf("after a restart: history %s epoch %q, want [1 2 3 4 5] and %q", got, j.str("epoch"), epoch)
	}
	b.send(map[string]any{"type": "say", "room": "r", "text": "6"})
	if m := b.expect("msg"); m.num("seq") != 6 {
		t.Fatalf("after a restart: %v, want seq 6", m)
	}
	// A reconnecting client that saw 3 gets 4..6, recovered.
	c := dial(t, srv)
	c.send(map[string]any{"type": "join", "room": "r", "since": 3, "epoch": epoch})
	j = c.expect("joined")
	if got := fmt.Sprint(seqsOf(t, j.list("history"))); got != "[4 5 6]" || j["recovered"] != true {
		t.Fatalf("since 3 after a restart: %v", j)
	}
}

// pageBack sends history requests of limit from before back to the
// room's first kept message and returns the seqs of every page, oldest
// first.
func pageBack(t *testing.T, ws *wsConn, room string, before, limit int) []int {
	t.Helper()
	var all []int
	for {
		ws.send(map[string]any{"type": "history", "room": room, "before": before, "limit": limit})
		h := ws.waitFor("history")
		page := seqsOf(t, h.list("messages"))
		all = append(page, all...)
		if h["more"] != true {
			return all
		}
		if len(page) == 0 {
			t.Fatal("more, but an empty page")
		}
		before = page[0]
	}
}

// TestHistoryPages pages back through 120 messages of a room whose joined
// frame holds only the newest 50.
func TestHistoryPages(t *testing.T) {
	srv := startServer(t, func(c *Config) { c.Rate, c.Burst = 10000, 10000 })
	a := dial(t, srv)
	a.join("r")
	sayN(t, a, "r", 1, 120)

	b := dial(t, srv)
	b.send(map[string]any{"type": "history", "room": "r"})
	b.expectError(errNotInRoom, "history")
	j := b.join("r")
	if got := seqsOf(t, j.list("history")); len(got) != 50 || got[0] != 71 {
		t.Fatalf("joined.history %v, want 71..120", got)
	}
	a.expect("presence")
	if all := pageBack(t, b, "r", 71, 50); fmt.Sprint(all) != fmt.Sprint(seqRange(1, 70)) {
		t.Fatalf("pages gave %v, want 1..70", all)
	}
	b.send(map[string]any{"type": "history", "room": "r"})
	if got := seqsOf(t, b.expect("history").list("messages")); fmt.Sprint(got) != fmt.Sprint(seqRange(71, 120)) {
		t.Fatalf("history without before: %v", got)
	}
	for _, bad := range []map[string]any{
		{"type": "history", "room": "r", "limit": 0},
		{"type": "history", "room": "r", "limit": 101},
		{"type": "history", "room": "r", "before": 0},
		{"type": "history", "room": "r", "before": "x"},
	} {
		b.send(bad)
		b.expectError(errBadField, "history")
	}
}

// sendErr is send for another goroutine than the test's: it returns the
// error instead of failing the test.
func (ws *wsConn) sendErr(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return ws.writeFrame(opText, true, b)
}

// parseMsg decodes a text frame's JSON, nil if it is not an object.
func parseMsg(p []byte) msg {
	var m msg
	if json.Unmarshal(p, &m) != nil {
		return nil
	}
	return m
}

func seqRange(from, to int) []int {
	var s []int
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

// TestKillNineLosesNothingSeen runs the server as a real process on a store
// on disk, has clients say messages at full speed, kills the server with
// SIGKILL in the middle, starts it again on the same -data and checks that
// every message any client had received as msg is in the history, with
// the text it had.
func TestKillNineLosesNothingSeen(t *testing.T) {
	k := startKillable(t)
	srv := k.srv

	const senders = 4
	var mu sync.Mutex
	seen := map[int]string{} // seq → text, as received by anyone
	var wg sync.WaitGroup
	for s := 0; s < senders; s++ {
		ws := dial(t, srv)
		ws.join("r")
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				text := fmt.Sprintf("s%d-%d", s, i)
				if err := ws.sendErr(map[string]any{"type": "say", "room": "r", "text": text}); err != nil {
					return
				}
				f, err := ws.readFrame(5 * time.Second)
				for err == nil && f.op == opText {
					if m := parseMsg(f.payload); m != nil && m.str("type") == "msg" {
						mu.Lock()
						seen[m.num("seq")] = m.str("text")
						mu.Unlock()
						if m.str("text") == text {
							break
						}
					}
					f, err = ws.readFrame(5 * time.Second)
				}
				if err != nil || f.op != opText {
					return
				}
			}
		}()
	}
	// Kill once a few hundred messages went through.
	eventually(t, 20*time.Second, "traffic", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) >= 300
	})
	k.kill9()
	wg.Wait()

	k.start()
	ws := dial(t, k.srv)
	ws.send(map[string]any{"type": "join", "room": "r"})
	ws.expect("joined")
	kept := map[int]string{}
	before := 0
	for {
		req := map[string]any{"type": "history", "room": "r", "limit": 100}
		if before > 0 {
			req["before"] = before
		}
		ws.send(req)
		h := ws.expect("history")
		for _, x := range h.list("messages") {
			m := x.(map[string]any)
			kept[int(m["seq"].(float64))] = m["text"].(string)
		}
		msgs := h.list("messages")
		if h["more"] != true || len(msgs) == 0 {
			break
		}
		before = int(msgs[0].(map[string]any)["seq"].(float64))
	}
	mu.Lock()
	defer mu.Unlock()
	lost := 0
	for seq, text := range seen {
		if kept[seq] != text {
			lost++
			if lost <= 5 {
				t.Errorf("seq %d (%q) was received before the kill but is %q after it", seq, text, kept[seq])
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d received messages lost by kill -9", lost, len(seen))
	}
	for seq := 1; seq <= len(kept); seq++ {
		if _, ok := kept[seq]; !ok {
			t.Fatalf("gap in the kept history at seq %d of %d", seq, len(kept))
		}
	}
	t.Logf("%d messages received before kill -9, all of them among the %d kept", len(seen), len(kept))
}

// TestDamagedStoreStopsStart: a store file that is damaged stops the start
// with an error naming it, instead of a server with an empty history.
func TestDamagedStoreStopsStart(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, func(c *Config) { c.Data = dir })
	a := dial(t, srv)
	a.join("r")
	sayN(t, a, "r", 1, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "store.db")
	if err := os.WriteFile(file, []byte("not a store at all, but long enough to look like a header"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := defaultConfig()
	cfg.Addr, cfg.AdminAddr, cfg.Data = "127.0.0.1:0", "", dir
	s2 := newServer(cfg, newLogger(&testLogWriter{t: t}, 0))
	err := s2.start()
	if err == nil {
		_ = s2.shutdown(ctx)
		t.Fatal("the server started on a damaged store")
	}
	if !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("start: %v, want an error naming %s as damaged", err, file)
	}
}

// startChild runs the test binary as a server on a store in dir (see
// childServeEnv) and returns it with its address; it is killed when the
// test ends.
func startChild(t *testing.T, bin, dir string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(bin)
	args := []string{"-addr", "127.0.0.1:0", "-admin-addr", "", "-data", dir, "-rate", "100000", "-burst", "100000"}
	cmd.Env = append(os.Environ(), childServeEnv+"="+strings.Join(args, "\x1f"))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addrRe := regexp.MustCompile(`msg=listening addr=(\S+)`)
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if m := addrRe.FindStringSubmatch(sc.Text()); m != nil {
			go func() { // keep draining, or the child blocks on its logs
				for sc.Scan() {
				}
			}()
			return cmd, m[1]
		}
	}
	t.Fatalf("the server did not start: %v", sc.Err())
	return nil, ""
}

// killable is a server run as a real process (startChild) on a store of
// its own, for the tests that kill it with SIGKILL and start it again.
type killable struct {
	t        *testing.T
	bin, dir string
	cmd      *exec.Cmd
	srv      *server // its address, for dial
}

// startKillable starts a killable server on a new store.
func startKillable(t *testing.T) *killable {
	t.Helper()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	k := &killable{t: t, bin: bin, dir: t.TempDir()}
	k.start()
	return k
}

func (k *killable) start() {
	k.t.Helper()
	cmd, addr := startChild(k.t, k.bin, k.dir)
	k.cmd, k.srv = cmd, &server{addr: addr}
}

// kill9 sends SIGKILL and waits for the process to end.
func (k *killable) kill9() {
	k.t.Helper()
	if err := k.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		k.t.Fatal(err)
	}
	_ = k.cmd.Wait()
}

// restart kill9s the server and starts it again on the same store.
func (k *killable) restart() {
	k.t.Helper()
	k.kill9()
	k.start()
}

// TestKillNineKeepsSettingsTold: settings its members were told (room)
// survive SIGKILL right after: a change is told only once it is kept.
// Ten hosts lock their rooms at once, the server is killed as soon as the
// last room frame arrives, and after a restart on the same -data every
// room is locked.
func TestKillNineKeepsSettingsTold(t *testing.T) {
	k := startKillable(t)
	const rooms = 10
	hosts := make([]*wsConn, rooms)
	for i := range hosts {
		hosts[i] = dial(t, k.srv)
		hosts[i].join(fmt.Sprintf("k%d", i))
	}
	for i, h := range hosts {
		h.send(map[string]any{"type": "settings", "room": fmt.Sprintf("k%d", i), "locked": true})
	}
	for _, h := range hosts {
		if m := h.waitFor("room"); settingsOf(m)["locked"] != true {
			t.Fatalf("room frame after the lock: %v", m)
		}
	}
	k.restart()
	ws := dial(t, k.srv)
	for i := range rooms {
		ws.send(map[string]any{"type": "join", "room": fmt.Sprintf("k%d", i)})
		if m := ws.next(); m.str("type") != "error" || m.str("code") != errRoomLocked {
			t.Errorf("join of k%d after the kill: %v, want room_locked: the lock its host was told of is lost", i, m)
		}
	}
}

// TestKillNineKeepsNewRoomsHost: a new room's first settings (the hash of
// the host key its creator was given in joined) survive SIGKILL right
// after: the creator's join waits until they are kept (load.go). Ten
// clients create a room each at once, the server is killed as soon as the
// last joined arrives, and after a restart on the same -data a join
// without the key is a member in every room, one with it the host.
func TestKillNineKeepsNewRoomsHost(t *testing.T) {
	k := startKillable(t)
	const rooms = 10
	creators := make([]*wsConn, rooms)
	for i := range creators {
		creators[i] = dial(t, k.srv)
	}
	for i, c := range creators {
		c.send(map[string]any{"type": "join", "room": fmt.Sprintf("n%d", i)})
	}
	keys := make([]string, rooms)
	for i, c := range creators {
		j := c.expect("joined")
		if keys[i] = j.str("host_key"); j.str("role") != roleHost || keys[i] == "" {
			t.Fatalf("creator of n%d: %v", i, j)
		}
	}
	k.restart()
	ws := dial(t, k.srv)
	for i := range rooms {
		if j := ws.join(fmt.Sprintf("n%d", i)); j.str("role") != roleMember {
			t.Errorf("a stranger joined n%d after the kill as %q: the room its creator was told of is lost", i, j.str("role"))
		}
	}
	for i := range rooms {
		c := dial(t, k.srv)
		c.send(map[string]any{"type": "join", "room": fmt.Sprintf("n%d", i), "host_key": keys[i]})
		if j := c.expect("joined"); j.str("role") != roleHost {
			t.Errorf("the creator of n%d came back with its key as %q", i, j.str("role"))
		}
	}
}

// BenchmarkJoin measures join → joined over a real socket, for a room
// nobody has created (its first settings are kept before joined:
// load.go) and for one the store knows, on disk and in memory. An op is
// one join and its joined, then a leave and its left.
func BenchmarkJoin(b *testing.B) {
	for _, store := range []string{"disk", "memory"} {
		for _, room := range []string{"new", "known"} {
			b.Run(store+"/"+room, func(b *testing.B) {
				srv := startServer(b, func(c *Config) {
					c.Rate, c.Burst, c.MaxRooms = 1e6, 1e6, 1
					if store == "disk" {
						c.Data = b.TempDir()
					}
				})
				ws := dial(b, srv)
				name := func(i int) string { return "r" + strconv.Itoa(i) }
				if room == "known" {
					for i := range b.N {
						ws.join(name(i))
						ws.send(map[string]any{"type": "leave", "room": name(i)})
						ws.waitFor("left")
					}
				}
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					ws.join(name(i))
					ws.send(map[string]any{"type": "leave", "room": name(i)})
					ws.waitFor("left")
				}
			})
		}
	}
}
