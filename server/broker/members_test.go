package broker

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// The membership contract (members.go), against both implementations:
// Alone, the only node, and NATSMembers over a real embedded NATS server,
// with two and three nodes.

// recView is a View that records what it is told, as a hub's room table
// would hold it: node -> room/id -> member.
type recView struct {
	mu       sync.Mutex
	members  map[string]map[string]Member
	gone     map[string]int
	cmds     []string // node|room|cmd
	signals  []string
	replaces int
	local    func() []Member
	// gate, if set, holds the first snapshot answered after it was set:
	// the members are read, then Local waits.
	gate atomic.Pointer[snapGate]
}

// snapGate holds a snapshot on its way.
type snapGate struct {
	entered, release chan struct{}
	once             sync.Once
}

func newRecView() *recView {
	return &recView{members: make(map[string]map[string]Member), gone: make(map[string]int),
		local: func() []Member { return nil }}
}

func (v *recView) Join(node string, m Member) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.members[node] == nil {
		v.members[node] = make(map[string]Member)
	}
	k := m.Room + "/" + m.ID
	if old, ok := v.members[node][k]; ok && m.Role == "" {
		m.Role = old.Role // a rename keeps the role
	}
	v.members[node][k] = m
}

func (v *recView) Leave(node, room, id string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.members[node], room+"/"+id)
}

func (v *recView) Role(node, room, id, role string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if m, ok := v.members[node][room+"/"+id]; ok {
		m.Role = role
		v.members[node][room+"/"+id] = m
	}
}

func (v *recView) Command(node, room string, cmd []byte) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.cmds = append(v.cmds, node+"|"+room+"|"+string(cmd))
}

func (v *recView) Signal(data []byte) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.signals = append(v.signals, string(data))
}

func (v *recView) Replace(node string, members []Member) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.replaces++
	v.members[node] = make(map[string]Member)
	for _, m := range members {
		v.members[node][m.Room+"/"+m.ID] = m
	}
}

func (v *recView) Gone(node string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.gone[node]++
	delete(v.members, node)
}

func (v *recView) Local() []Member {
	l := v.local()
	if g := v.gate.Load(); g != nil {
		g.once.Do(func() { close(g.entered); <-g.release })
	}
	return l
}

// of returns what v holds of node's members.
func (v *recView) of(node string) map[string]Member {
	v.mu.Lock()
	defer v.mu.Unlock()
	return maps.Clone(v.members[node])
}

func (v *recView) replaced() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.replaces
}

func (v *recView) goneCount(node string) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.gone[node]
}

// localMembers is what a node's hub holds of its own members, kept as the
// test tells its Membership: what Local answers a snapshot with.
type localMembers struct {
	mu sync.Mutex
	m  map[string]Member
}

func (l *localMembers) join(mb Member) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = make(map[string]Member)
	}
	l.m[mb.Room+"/"+mb.ID] = mb
}

func (l *localMembers) leave(room, id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, room+"/"+id)
}

func (l *localMembers) list() []Member {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Collect(maps.Values(l.m))
}

func (l *localMembers) snapshot() map[string]Member {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.m)
}

// testNode is one node's Membership and what it has been told.
type testNode struct {
	name   string
	nc     *nats.Conn
	m      *NATSMembers
	view   *recView
	local  *localMembers
	paused atomic.Bool
}

// startNode starts node name's NATSMembers on url, with a fast heartbeat
// and dead time dead; it is closed (with a goodbye) when the test ends.
func startNode(t *testing.T, url, name string, dead time.Duration) *testNode {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{name: name, nc: nc, view: newRecView(), local: &localMembers{}}
	n.view.local = n.local.list
	n.m, err = NewNATSMembers(NATSMembersConfig{Conn: nc, Node: name, Prefix: "t.", View: n.view,
		Heartbeat: 50 * time.Millisecond, DeadAfter: dead, Paused: n.paused.Load})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.m.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.m.Close(time.Second); nc.Close() })
	return n
}

func (n *testNode) join(mb Member) { n.local.join(mb); n.m.Joined(mb) }

func (n *testNode) leave(room, id string) { n.local.leave(room, id); n.m.Left(room, id) }

// waitFor fails the test unless cond holds within 10 s: a bound for a
// broken implementation, not a timing claim.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sameMembers reports whether got holds exactly want.
func sameMembers(got, want map[string]Member) bool { return maps.Equal(got, want) }

// TestMembershipAlone: the only node has nobody to tell and hears of
// nobody, whatever its members do.
func TestMembershipAlone(t *testing.T) {
	var m Membership = Alone{}
	m.Joined(Member{Room: "r", ID: "a", Nick: "ann", Role: "host"})
	m.Renamed("a", "anna", []string{"r"})
	m.Role("r", "a", "member")
	m.Command("r", []byte(`{}`))
	m.Left("r", "a")
	if m.Live("x") || len(m.Nodes()) != 0 || m.Relay("x", []byte(`{}`)) {
		t.Fatal("a node alone sees another node")
	}
	m.Close(0)
}

// TestNATSMembersInOrder: three nodes; each one's joins, renames, roles
// and leaves reach the others in its order (a leave after a join of the
// same member ends with it gone, a rename keeps its role), never itself.
func TestNATSMembersInOrder(t *testing.T) {
	ns := testNATS(t, t.TempDir())
	nodes := []*testNode{
		startNode(t, ns.ClientURL(), "a", time.Minute),
		startNode(t, ns.ClientURL(), "b", time.Minute),
		startNode(t, ns.ClientURL(), "c", time.Minute),
	}
	for _, n := range nodes {
		waitFor(t, n.name+" to hear from the others", func() bool { return len(n.m.Nodes()) == 2 })
	}
	for _, n := range nodes {
		for j := range 300 {
			room := fmt.Sprintf("room%d", j%7)
			id := fmt.Sprintf("%s-%d", n.name, j)
			n.join(Member{Room: room, ID: id, Nick: "n" + id, Role: "member"})
			switch j % 5 {
			case 1:
				n.leave(room, id)
			case 2:
				n.m.Role(room, id, "cohost")
				n.local.join(Member{Room: room, ID: id, Nick: "n" + id, Role: "cohost"})
			case 3:
				n.m.Renamed(id, "renamed"+id, []string{room})
				n.local.join(Member{Room: room, ID: id, Nick: "renamed" + id, Role: "member"})
			}
		}
	}
	for _, n := range nodes {
		want := n.local.snapshot()
		for _, o := range nodes {
			if o == n {
				continue
			}
			waitFor(t, o.name+" to see "+n.name+"'s members", func() bool { return sameMembers(o.view.of(n.name), want) })
		}
		if got := n.view.of(n.name); len(got) != 0 {
			t.Fatalf("%s was told of its own members: %d", n.name, len(got))
		}
	}
}

// TestNATSMembersSnapshot: a node that starts late learns the members
// the others had before it came; one that misses changes (a gap in a
// node's numbers, here a change that claims to be five ahead) asks for a
// snapshot, which replaces what it knew, and goes on with the changes
// after it.
func TestNATSMembersSnapshot(t *testing.T) {
	ns := testNATS(t, t.TempDir())
	a := startNode(t, ns.ClientURL(), "a", time.Minute)
	for j := range 50 {
		a.join(Member{Room: "r", ID: fmt.Sprint("a-", j), Nick: "x", Role: "member"})
	}
	b := startNode(t, ns.ClientURL(), "b", time.Minute)
	waitFor(t, "the late node to learn the members before it", func() bool {
		return sameMembers(b.view.of("a"), a.local.snapshot())
	})

	// A member only a snapshot can tell of: a's hub has it, no change
	// said so. Then a heartbeat of a's that says five changes were
	// missed; a's snapshot is held once it has read its members, and the
	// changes a makes meanwhile reach b while b waits for it: they must
	// follow it.
	a.local.join(Member{Room: "r", ID: "a-hidden", Nick: "h", Role: "host"})
	g := &snapGate{entered: make(chan struct{}), release: make(chan struct{})}
	a.view.gate.Store(g)
	a.m.evMu.Lock()
	gap := nodeEvent{Type: evHeartbeat, Seq: a.m.evSeq + 5}
	a.m.evMu.Unlock()
	raw, _ := json.Marshal(gap)
	before := b.view.replaced()
	if err := a.nc.Publish("t.ev.a", raw); err != nil {
		t.Fatal(err)
	}
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no snapshot asked for after the gap")
	}
	for j := range 5 {
		a.join(Member{Room: "r", ID: fmt.Sprint("a-meanwhile-", j), Nick: "y", Role: "member"})
	}
	a.leave("r", "a-0")
	close(g.release)
	waitFor(t, "the snapshot and the changes after it", func() bool {
		got := b.view.of("a")
		_, hidden := got["r/a-hidden"]
		return hidden && sameMembers(got, a.local.snapshot())
	})
	if b.view.replaced() <= before {
		t.Fatal("no snapshot replaced the view")
	}
}

// TestNATSMembersGone: a node that says goodbye is gone at once for the
// others (the watcher's dead time here is a minute); one that falls
// silent, its connection dropped with no goodbye, or paused (NATS out of
// its reach), is gone after the dead time (a second for this watcher); a
// paused node comes back with its members when it announces itself again.
func TestNATSMembersGone(t *testing.T) {
	ns := testNATS(t, t.TempDir())
	patient := startNode(t, ns.ClientURL(), "patient", time.Minute)
	watcher := startNode(t, ns.ClientURL(), "w", time.Second)
	bye := startNode(t, ns.ClientURL(), "bye", time.Minute)
	silent := startNode(t, ns.ClientURL(), "silent", time.Minute)
	paused := startNode(t, ns.ClientURL(), "paused", time.Minute)
	for _, n := range []*testNode{bye, silent, paused} {
		n.join(Member{Room: "r", ID: n.name + "-1", Nick: n.name, Role: "member"})
		for _, w := range []*testNode{patient, watcher} {
			waitFor(t, w.name+" to see "+n.name, func() bool { return len(w.view.of(n.name)) == 1 })
		}
	}

	bye.m.Close(time.Second)
	waitFor(t, "the goodbye", func() bool { return patient.view.goneCount("bye") == 1 && !patient.m.Live("bye") })
	if len(patient.view.of("bye")) != 0 {
		t.Fatal("a node that left keeps its members")
	}

	silent.nc.Close() // no goodbye
	waitFor(t, "the silent node to be gone", func() bool {
		return watcher.view.goneCount("silent") > 0 && !watcher.m.Live("silent") && len(watcher.view.of("silent")) == 0
	})

	paused.paused.Store(true)
	if paused.m.Relay("w", []byte(`1`)) {
		t.Fatal("a paused node relays")
	}
	waitFor(t, "the paused node to be gone", func() bool { return watcher.view.goneCount("paused") > 0 && !watcher.m.Live("paused") })
	paused.local.join(Member{Room: "r", ID: "paused-2", Nick: "p2", Role: "member"}) // meanwhile, its change lost
	paused.paused.Store(false)
	paused.m.Announce()
	waitFor(t, "the node back with its members", func() bool {
		return watcher.m.Live("paused") && sameMembers(watcher.view.of("paused"), paused.local.snapshot())
	})
	if got := patient.m.Nodes(); !slices.Equal(got, []string{"paused", "silent", "w"}) { // silent is not gone for a minute
		t.Fatalf("live nodes: %v", got)
	}
}

// TestNATSMembersCommandsAndRelays: a command reaches every other node
// in order with the sender's changes, not the sender; a relay reaches
// the node it is for, and only that one.
func TestNATSMembersCommandsAndRelays(t *testing.T) {
	ns := testNATS(t, t.TempDir())
	a := startNode(t, ns.ClientURL(), "a", time.Minute)
	b := startNode(t, ns.ClientURL(), "b", time.Minute)
	c := startNode(t, ns.ClientURL(), "c", time.Minute)
	for _, n := range []*testNode{a, b, c} {
		waitFor(t, n.name+" to hear from the others", func() bool { return len(n.m.Nodes()) == 2 })
	}
	for i := range 20 {
		a.m.Command("r", []byte(fmt.Sprintf(`{"n":%d}`, i)))
	}
	for _, n := range []*testNode{b, c} {
		waitFor(t, n.name+" to get the commands", func() bool {
			n.view.mu.Lock()
			defer n.view.mu.Unlock()
			return len(n.view.cmds) == 20
		})
		for i, cmd := range n.view.cmds {
			if want := fmt.Sprintf(`a|r|{"n":%d}`, i); cmd != want {
				t.Fatalf("%s: command %d is %s, want %s", n.name, i, cmd, want)
			}
		}
	}
	if !a.m.Relay("b", []byte(`"for b"`)) {
		t.Fatal("relay not sent")
	}
	waitFor(t, "the relay", func() bool {
		b.view.mu.Lock()
		defer b.view.mu.Unlock()
		return len(b.view.signals) == 1 && b.view.signals[0] == `"for b"`
	})
	// c must not have had it: a relay of c's own, sent after, is the first it sees.
	if !a.m.Relay("c", []byte(`"for c"`)) {
		t.Fatal("relay not sent")
	}
	waitFor(t, "c's relay", func() bool {
		c.view.mu.Lock()
		defer c.view.mu.Unlock()
		return len(c.view.signals) > 0
	})
	c.view.mu.Lock()
	got := slices.Clone(c.view.signals)
	c.view.mu.Unlock()
	a.view.mu.Lock()
	own := len(a.view.cmds) + len(a.view.signals)
	a.view.mu.Unlock()
	if !slices.Equal(got, []string{`"for c"`}) || own != 0 {
		t.Fatalf("c got %v; a got %d of its own", got, own)
	}
}
