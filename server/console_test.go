package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The operator's console against real servers: its API on the admin
// listener, chat clients on the public one, and a cluster whose consoles
// act on every node. The console's own rules (login, CSRF, limits) are
// tested in server/console; here, that it sees and does the right thing.

const consolePassword = "a long test password, not a real one"

// withConsole turns the console on with a password file.
func withConsole(t testing.TB) func(*Config) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "admin-password")
	if err := os.WriteFile(file, []byte(consolePassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return func(c *Config) { c.AdminPasswordFile = file }
}

// consoleDo sends a console API request with the bearer password and
// decodes the JSON answer into out, if given.
func consoleDo(t testing.TB, srv *server, method, path, body string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+srv.adminAddr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+consolePassword)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %d %q: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

// wantStatus checks a console request's status, and its error text if it
// is no success.
func wantStatus(t testing.TB, srv *server, method, path string, status int, errText string) {
	t.Helper()
	var ans struct{ Error string }
	if got := consoleDo(t, srv, method, path, "", &ans); got != status || !strings.Contains(ans.Error, errText) {
		t.Fatalf("%s %s: %d %q, want %d with %q", method, path, got, ans.Error, status, errText)
	}
}

type consoleNodes struct {
	Nodes []struct {
		Name        string
		Self        bool
		Missing     bool
		Draining    bool
		Connections int
		Rooms       int
	}
	Total struct{ Nodes, Missing, Connections int }
}

type consoleRooms struct {
	Rooms []struct {
		Room    string
		Members int
		Nodes   map[string]int
	}
}

type consoleRoom struct {
	Room     string
	Members  []struct{ ID, Nick, Role, Node string }
	Lobby    []any
	Settings map[string]any
	Call     []struct{ ID string }
	Messages []struct {
		Seq  int
		Nick string
		Text string
	}
}

type consoleConns struct {
	Connections []struct {
		ID, Nick, Node, Addr string
		Rooms                []string
		FramesIn             *uint64  `json:"frames_in"`
		FramesOut            *uint64  `json:"frames_out"`
		Age                  *float64 `json:"age_s"`
	}
	Warning string
}

func TestConsoleOffByDefault(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	for _, p := range []string{"/admin/", "/admin/api/nodes"} {
		resp, body := adminGet(t, srv, p)
		if resp.StatusCode != http.StatusNotFound || !strings.HasPrefix(body, "console off: set -admin-password-file or NOOM_ADMIN_PASSWORD") {
			t.Errorf("%s without a password: %d %q", p, resp.StatusCode, body)
		}
	}
	if resp, _ := httpGet(t, srv, "/admin/"); resp.StatusCode == http.StatusOK {
		t.Error("the public listener serves the console")
	}
}

func TestConsolePassword(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	_ = os.WriteFile(file, []byte("secret with spaces \r\n"), 0o600)
	if pw, err := adminPassword(&Config{AdminPasswordFile: file}); err != nil || string(pw) != "secret with spaces " {
		t.Fatalf("password from a file: %q %v", pw, err)
	}
	empty := filepath.Join(dir, "empty")
	_ = os.WriteFile(empty, []byte("\n"), 0o600)
	if _, err := adminPassword(&Config{AdminPasswordFile: empty}); err == nil {
		t.Fatal("an empty password file accepted")
	}
	if _, err := adminPassword(&Config{AdminPasswordFile: filepath.Join(dir, "none")}); err == nil {
		t.Fatal("a missing password file accepted")
	}
	t.Setenv(adminPasswordEnv, "from the environment")
	if pw, err := adminPassword(&Config{}); err != nil || string(pw) != "from the environment" {
		t.Fatalf("password from the environment: %q %v", pw, err)
	}
	if _, err := adminPassword(&Config{AdminPasswordFile: file}); err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("both a file and the environment: %v", err)
	}
	if _, err := parseConfig([]string{"-admin-password", "x"}, io.Discard); err == nil {
		t.Fatal("a password flag exists: the process list would show it")
	}
}

// TestConsoleStandalone: what the console shows of rooms, connections and
// the node, and each action on a real server with chat clients.
func TestConsoleStandalone(t *testing.T) {
	t.Parallel()
	srv := startServer(t, withConsole(t))
	ann := dial(t, srv, "/ws?nick=ann")
	bob := dial(t, srv, "/ws?nick=bob")
	ann.join("r1")
	bob.join("r1")
	ann.expect("presence")
	ann.send(map[string]any{"type": "say", "room": "r1", "text": "hello"})
	ann.expect("msg")
	bob.expect("msg")
	dial(t, srv).join("other")

	var rooms consoleRooms
	if consoleDo(t, srv, "GET", "/admin/api/rooms", "", &rooms); len(rooms.Rooms) != 2 || rooms.Rooms[0].Room != "r1" || rooms.Rooms[0].Members != 2 {
		t.Fatalf("rooms: %+v", rooms)
	}
	if consoleDo(t, srv, "GET", "/admin/api/rooms?q=OTH", "", &rooms); len(rooms.Rooms) != 1 || rooms.Rooms[0].Room != "other" {
		t.Fatalf("rooms?q=OTH: %+v", rooms)
	}
	var room consoleRoom
	consoleDo(t, srv, "GET", "/admin/api/rooms/r1", "", &room)
	if len(room.Members) != 2 || room.Members[0].Nick != "ann" || room.Members[1].ID != bob.id || room.Members[0].Role != roleHost ||
		room.Members[1].Role != roleMember || room.Lobby == nil || len(room.Lobby) != 0 || len(room.Messages) != 1 ||
		room.Messages[0].Text != "hello" || room.Messages[0].Nick != "ann" {
		t.Fatalf("room r1: %+v", room)
	}
	var conns consoleConns
	consoleDo(t, srv, "GET", "/admin/api/connections?q=ann", "", &conns)
	if len(conns.Connections) != 1 || conns.Connections[0].ID != ann.id || strings.Join(conns.Connections[0].Rooms, ",") != "r1" ||
		!strings.HasPrefix(conns.Connections[0].Addr, "127.0.0.1:") {
		t.Fatalf("connections?q=ann: %+v", conns)
	}
	// ann sent join and say (2 requests) and got joined, presence, msg at least.
	if c := conns.Connections[0]; c.FramesIn == nil || *c.FramesIn != 2 || c.FramesOut == nil || *c.FramesOut < 3 || c.Age == nil || *c.Age < 0 {
		t.Fatalf("ann's frames and age: in %v out %v age %v", c.FramesIn, c.FramesOut, c.Age)
	}
	if consoleDo(t, srv, "GET", "/admin/api/connections?q=127.0.0.1", "", &conns); len(conns.Connections) != 3 {
		t.Fatalf("connections by address: %+v", conns)
	}
	eventually(t, 10*time.Second, "the console's sample to count three connections", func() bool {
		var nodes consoleNodes
		consoleDo(t, srv, "GET", "/admin/api/nodes", "", &nodes)
		return len(nodes.Nodes) == 1 && nodes.Nodes[0].Self && nodes.Nodes[0].Connections == 3 && nodes.Nodes[0].Rooms == 2 &&
			nodes.Total.Connections == 3
	})

	// Remove: a host's remove, by the operator: bob is out and barred,
	// ann sees him go.
	wantStatus(t, srv, "POST", "/admin/api/rooms/r1/members/"+bob.id+"/remove", 200, "")
	if m := bob.waitFor("removed"); m.str("room") != "r1" || m.str("by") != operatorID {
		t.Fatalf("bob got %v", m)
	}
	if m := ann.waitFor("presence"); m.str("event") != "leave" || m.str("id") != bob.id {
		t.Fatalf("ann got %v", m)
	}
	bob.send(map[string]any{"type": "join", "room": "r1"})
	bob.waitError(errBanned, "join")
	wantStatus(t, srv, "POST", "/admin/api/rooms/r1/members/"+bob.id+"/remove", 404, "no member")

	// Lock: the room's setting, told to its members.
	wantStatus(t, srv, "POST", "/admin/api/rooms/r1/lock", 200, "")
	if m := ann.waitFor("room"); settingsOf(m)["locked"] != true {
		t.Fatalf("ann got %v after a lock", m)
	}
	consoleDo(t, srv, "GET", "/admin/api/rooms/r1", "", &room)
	if room.Settings["locked"] != true {
		t.Fatalf("room r1's settings after a lock: %+v", room.Settings)
	}
	wantStatus(t, srv, "POST", "/admin/api/rooms/nosuch/lock", 404, "no room")

	// End: every member gets ended and leaves; the room is gone from memory.
	var end struct{ Left int }
	if st := consoleDo(t, srv, "POST", "/admin/api/rooms/r1/end", "", &end); st != 200 || end.Left != 1 {
		t.Fatalf("end: %d %+v", st, end)
	}
	if m := ann.waitFor("ended"); m.str("room") != "r1" || m.str("by") != operatorID {
		t.Fatalf("ann got %v", m)
	}
	wantStatus(t, srv, "GET", "/admin/api/rooms/r1", 404, "no room r1")
	wantStatus(t, srv, "POST", "/admin/api/rooms/r1/end", 404, "no room r1")
	// Still connected: ending is not a ban (r1 is locked now: another room).
	ann.join("r2")

	// Disconnect: a close frame of the server's, 1008.
	wantStatus(t, srv, "POST", "/admin/api/connections/"+ann.id+"/disconnect", 200, "")
	ann.expectClose(closePolicy)
	wantStatus(t, srv, "POST", "/admin/api/connections/zzzz/disconnect", 404, "no connection zzzz")
}

// TestConsoleDrain: the node stops taking connections and sends its own
// away with 1001, and stays up for the operator.
func TestConsoleDrain(t *testing.T) {
	t.Parallel()
	srv := startServer(t, withConsole(t))
	ws := dial(t, srv)
	ws.join("r")
	wantStatus(t, srv, "POST", "/admin/api/drain", 200, "")
	ws.expectClose(closeGoingAway)
	if resp, body := httpGet(t, srv, "/healthz"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/healthz after a drain: %d %q", resp.StatusCode, body)
	}
	_, _, resp := handshakeRaw(t, srv.addr, dialOpts{})
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("upgrade after a drain: %d", resp.StatusCode)
	}
	eventually(t, 10*time.Second, "the console to show the node draining and empty", func() bool {
		var nodes consoleNodes
		consoleDo(t, srv, "GET", "/admin/api/nodes", "", &nodes)
		return len(nodes.Nodes) == 1 && nodes.Nodes[0].Draining && nodes.Nodes[0].Connections == 0
	})
	wantStatus(t, srv, "POST", "/admin/api/drain", 200, "") // again: nothing more to do
	// startServer's cleanup leaves a draining server alone: shut it down here.
	if err := srv.shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestConsoleReadOnly(t *testing.T) {
	t.Parallel()
	on := withConsole(t)
	srv := startServer(t, func(c *Config) { on(c); c.AdminReadOnly = true })
	ws := dial(t, srv)
	wantStatus(t, srv, "POST", "/admin/api/connections/"+ws.id+"/disconnect", 403, "read-only")
	wantStatus(t, srv, "POST", "/admin/api/drain", 403, "read-only")
	ws.join("still-here")
	var conns consoleConns
	if consoleDo(t, srv, "GET", "/admin/api/connections", "", &conns); len(conns.Connections) != 1 {
		t.Fatalf("read-only console cannot look: %+v", conns)
	}
}

// TestClusterConsole: node A's console sees all three nodes, their
// connections and rooms, and its actions reach members on B and C; a node
// that does not answer is reported, not waited for.
func TestClusterConsole(t *testing.T) {
	ns := testNATS(t, t.TempDir(), 0)
	nodes := startNodes(t, ns.ClientURL(), 3, withConsole(t))
	a := nodes[0]
	bob := dial(t, nodes[1], "/ws?nick=bob")
	cat := dial(t, nodes[2], "/ws?nick=cat")
	joinSettle(t, bob, "r", 1)
	joinSettle(t, cat, "r", 2)
	waitCount(t, bob, 2)
	cat.send(map[string]any{"type": "say", "room": "r", "text": "hi from cat"})
	bob.waitFor("msg")
	cat.waitFor("msg")

	eventually(t, 15*time.Second, "A's console to see three nodes answer", func() bool {
		var n consoleNodes
		consoleDo(t, a, "GET", "/admin/api/nodes", "", &n)
		return n.Total.Nodes == 3 && n.Total.Missing == 0 && n.Total.Connections == 2
	})
	var conns consoleConns
	consoleDo(t, a, "GET", "/admin/api/connections", "", &conns)
	where := map[string]string{}
	for _, c := range conns.Connections {
		where[c.ID] = c.Node
	}
	if len(conns.Connections) != 2 || where[bob.id] != nodes[1].hub.cl.node || where[cat.id] != nodes[2].hub.cl.node {
		t.Fatalf("connections seen from A: %+v", conns)
	}
	var rooms consoleRooms
	eventually(t, 10*time.Second, "A to count r's members on B and C", func() bool {
		consoleDo(t, a, "GET", "/admin/api/rooms", "", &rooms)
		return len(rooms.Rooms) == 1 && rooms.Rooms[0].Members == 2 && len(rooms.Rooms[0].Nodes) == 2
	})
	// A holds r for members elsewhere only: its messages come from B or C.
	var room consoleRoom
	consoleDo(t, a, "GET", "/admin/api/rooms/r", "", &room)
	if len(room.Members) != 2 || len(room.Messages) != 1 || room.Messages[0].Text != "hi from cat" {
		t.Fatalf("room r seen from A: %+v", room)
	}

	// A disconnect issued on A reaches bob on B.
	wantStatus(t, a, "POST", "/admin/api/connections/"+bob.id+"/disconnect", 200, "")
	bob.expectClose(closePolicy)
	wantStatus(t, a, "POST", "/admin/api/connections/"+nodes[1].hub.cl.node+"-zz/disconnect", 404, "no connection")
	wantStatus(t, a, "POST", "/admin/api/connections/nonode-1/disconnect", 404, "not in the cluster")
	wantStatus(t, a, "POST", "/admin/api/connections/all-1/disconnect", 404, "no connection")
	// End on A takes cat, on C, out of r; remove on A then finds nothing.
	eventually(t, 10*time.Second, "A to see bob leave r", func() bool {
		consoleDo(t, a, "GET", "/admin/api/rooms", "", &rooms)
		return len(rooms.Rooms) == 1 && rooms.Rooms[0].Members == 1
	})
	var end struct{ Left int }
	if st := consoleDo(t, a, "POST", "/admin/api/rooms/r/end", "", &end); st != 200 || end.Left != 1 {
		t.Fatalf("end from A: %d %+v", st, end)
	}
	if m := cat.waitFor("ended"); m.str("room") != "r" {
		t.Fatalf("cat got %v", m)
	}
	cat.join("r2")
	wantStatus(t, a, "POST", "/admin/api/rooms/r2/members/"+cat.id+"/remove", 200, "")
	if m := cat.waitFor("removed"); m.str("room") != "r2" {
		t.Fatalf("cat got %v", m)
	}

	// C stops answering its admin subjects, alive otherwise: A's console
	// says so and answers with what the others said.
	for _, sub := range nodes[2].console.subs {
		_ = sub.Unsubscribe()
	}
	conns = consoleConns{}
	consoleDo(t, a, "GET", "/admin/api/connections", "", &conns)
	if !strings.Contains(conns.Warning, nodes[2].hub.cl.node) || len(conns.Connections) != 0 {
		t.Fatalf("connections with C silent: %+v", conns)
	}
	eventually(t, 15*time.Second, "A's console to mark C missing", func() bool {
		var n consoleNodes
		consoleDo(t, a, "GET", "/admin/api/nodes", "", &n)
		for _, node := range n.Nodes {
			if node.Name == nodes[2].hub.cl.node {
				return node.Missing
			}
		}
		return false
	})
}
