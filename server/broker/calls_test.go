package broker

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The call lists' contract tests, over the standalone node's lists and the
// cluster's stream (a NATS server embedded in the test). Each opener gives
// two handles on the same lists: two nodes of a cluster, or the one
// standalone node twice.
type callsOpener struct {
	name string
	open func(t *testing.T) (a, b Calls)
}

var callImplementations = []callsOpener{
	{"local", func(t *testing.T) (Calls, Calls) {
		l, err := OpenLocal("", 100, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Close() })
		return l, l
	}},
	{"jetstream", func(t *testing.T) (Calls, Calls) {
		ns := testNATS(t, t.TempDir())
		return openJetStream(t, ns.ClientURL(), "n1", time.Hour), openJetStream(t, ns.ClientURL(), "n2", time.Hour)
	}},
}

func forEachCalls(t *testing.T, fn func(t *testing.T, a, b Calls)) {
	for _, impl := range callImplementations {
		t.Run(impl.name, func(t *testing.T) {
			t.Parallel()
			a, b := impl.open(t)
			fn(t, a, b)
		})
	}
}

func ids(peers []Peer) []string {
	out := make([]string, len(peers))
	for i, p := range peers {
		out[i] = p.ID
	}
	return out
}

// join is a call join under limit as a node decides it, from cur.
func join(c Calls, room string, cur Call, id string, limit int) (Call, bool, error) {
	final, stored, _, err := Change(c, room, cur, 10*time.Second, func(cur Call) ([]Peer, bool, bool, bool) {
		switch {
		case slices.ContainsFunc(cur.Peers, func(p Peer) bool { return p.ID == id }):
			return nil, false, true, false
		case len(cur.Peers) >= limit:
			return nil, false, true, true
		}
		return append(slices.Clone(cur.Peers), Peer{ID: id, Nick: "nick " + id}), false, false, false
	})
	return final, stored, err
}

// leave takes the peers for which gone is true out of room's list.
func leave(c Calls, room string, cur Call, gone func(Peer) bool) (Call, error) {
	final, _, _, err := Change(c, room, cur, 10*time.Second, func(cur Call) ([]Peer, bool, bool, bool) {
		next := slices.DeleteFunc(slices.Clone(cur.Peers), gone)
		none := len(next) == len(cur.Peers) // nothing to take out, on a list that may be stale
		return next, cur.SFU, none, none
	})
	return final, err
}

// TestCallsCompareAndSet: a list is replaced only from the version it is
// at; a stale replace gets ErrSeq and the newest list; versions grow.
func TestCallsCompareAndSet(t *testing.T) {
	forEachCalls(t, func(t *testing.T, a, b Calls) {
		if c, err := a.Call("r"); err != nil || c.Version != 0 || len(c.Peers) != 0 {
			t.Fatalf("a new room's call: %+v %v", c, err)
		}
		v1, err := a.SetCall("r", 0, []Peer{{"a", "A"}}, false)
		if err != nil || v1.Version == 0 {
			t.Fatalf("first list: %+v %v", v1, err)
		}
		stale, err := b.SetCall("r", 0, []Peer{{"b", "B"}}, false)
		if !errors.Is(err, ErrSeq) || stale.Version != v1.Version || !slices.Equal(ids(stale.Peers), []string{"a"}) {
			t.Fatalf("a replace from version 0 after %d: %+v %v, want ErrSeq and the list of a", v1.Version, stale, err)
		}
		v2, err := b.SetCall("r", v1.Version, []Peer{{"a", "A"}, {"b", "B"}}, true)
		if err != nil || v2.Version <= v1.Version {
			t.Fatalf("second list: %+v %v", v2, err)
		}
		got, err := a.Call("r")
		if err != nil || got.Version != v2.Version || !got.SFU || !slices.Equal(ids(got.Peers), []string{"a", "b"}) ||
			got.Peers[1].Nick != "B" {
			t.Fatalf("read back: %+v %v, want a and b at %d through the SFU", got, err, v2.Version)
		}
		if other, _ := a.Call("s"); len(other.Peers) != 0 {
			t.Fatalf("another room's call: %+v", other)
		}
		empty, err := a.SetCall("r", v2.Version, nil, false)
		if err != nil || empty.Version <= v2.Version {
			t.Fatalf("emptied: %+v %v", empty, err)
		}
		got, _ = b.Call("r")
		if len(got.Peers) != 0 || got.SFU {
			t.Fatalf("after the call emptied: %+v", got)
		}
		again, err := b.SetCall("r", got.Version, []Peer{{"c", "C"}}, false)
		if err != nil || again.Version <= empty.Version {
			t.Fatalf("a new call in the room: %+v %v, want a version past %d", again, err, empty.Version)
		}
	})
}

// TestCallsLimitUnderRace: sixteen joins at once, from both nodes, each
// starting from an empty list it read before the others wrote: exactly
// limit of them are stored, and the list holds those, once each.
func TestCallsLimitUnderRace(t *testing.T) {
	forEachCalls(t, func(t *testing.T, a, b Calls) {
		const joins, limit = 16, 5
		var wg sync.WaitGroup
		in := make(chan string, joins)
		errs := make(chan error, joins)
		for i := range joins {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, id := a, fmt.Sprintf("n1-%d", i)
				if i%2 == 1 {
					c, id = b, fmt.Sprintf("n2-%d", i)
				}
				_, stored, err := join(c, "r", Call{}, id, limit)
				if err != nil {
					errs <- err
				} else if stored {
					in <- id
				}
			}()
		}
		wg.Wait()
		close(in)
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		var stored []string
		for id := range in {
			stored = append(stored, id)
		}
		got, err := a.Call("r")
		if err != nil {
			t.Fatal(err)
		}
		list := ids(got.Peers)
		slices.Sort(list)
		slices.Sort(stored)
		if len(list) != limit || !slices.Equal(list, stored) {
			t.Fatalf("list %v after joins that were told they are in: %v; want %d of them", list, stored, limit)
		}
	})
}

// TestCallsJoinRacesLeave: in a full call, one node's leave and another
// node's join race, round after round. Whatever the order, the leave is
// kept and the limit holds: the join is in only if the leave came first.
func TestCallsJoinRacesLeave(t *testing.T) {
	forEachCalls(t, func(t *testing.T, a, b Calls) {
		for round := range 20 {
			room := fmt.Sprintf("r%d", round)
			start, err := a.SetCall(room, 0, []Peer{{"n1-x", "X"}, {"n1-y", "Y"}}, false)
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			var leaveErr, joinErr error
			var joined bool
			wg.Add(2)
			go func() {
				defer wg.Done()
				_, leaveErr = leave(a, room, start, func(p Peer) bool { return p.ID == "n1-x" })
			}()
			go func() {
				defer wg.Done()
				_, joined, joinErr = join(b, room, start, "n2-z", 2)
			}()
			wg.Wait()
			if leaveErr != nil || joinErr != nil {
				t.Fatal(leaveErr, joinErr)
			}
			got, _ := a.Call(room)
			want := []string{"n1-y"}
			if joined {
				want = append(want, "n2-z")
			}
			if !slices.Equal(ids(got.Peers), want) {
				t.Fatalf("round %d: %v (join stored: %v), want %v", round, ids(got.Peers), joined, want)
			}
		}
	})
}

// TestCallsNodeNeverBack: a node's peers hold places in a call, and the
// node is gone for good (its connection closed, nothing more from it).
// Another node purges them from what it reads; the places are free again.
func TestCallsNodeNeverBack(t *testing.T) {
	forEachCalls(t, func(t *testing.T, a, b Calls) {
		const limit = 3
		cur := Call{}
		for _, id := range []string{"n1-a", "n2-b", "n2-c"} {
			var err error
			var stored bool
			if cur, stored, err = join(b, "r", cur, id, limit); err != nil || !stored {
				t.Fatalf("join %s: %v %v", id, stored, err)
			}
		}
		if j, ok := b.(*JetStream); ok {
			j.js.Conn().Close() // n2 dies: it never publishes again
		}
		if _, stored, _ := join(a, "r", Call{}, "n1-d", limit); stored {
			t.Fatal("a fourth peer in a call of three")
		}
		if _, err := leave(a, "r", Call{}, func(p Peer) bool { return strings.HasPrefix(p.ID, "n2-") }); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"n1-d", "n1-e"} {
			if _, stored, err := join(a, "r", Call{}, id, limit); err != nil || !stored {
				t.Fatalf("join %s after the purge: %v %v", id, stored, err)
			}
		}
		got, _ := a.Call("r")
		if !slices.Equal(ids(got.Peers), []string{"n1-a", "n1-d", "n1-e"}) {
			t.Fatalf("after the purge and two joins: %v", ids(got.Peers))
		}
	})
}

// TestJetStreamCallsServerLost: with the NATS server gone a change ends
// with ErrOffline; the list kept before is there when it comes back on the
// same store, and changes go on from it.
func TestJetStreamCallsServerLost(t *testing.T) {
	dir := t.TempDir()
	ns := testNATS(t, dir)
	port := ns.Addr().String()
	b := openJetStream(t, ns.ClientURL(), "a", time.Hour)
	v1, err := b.SetCall("r", 0, []Peer{{"a-1", "one"}}, false)
	if err != nil {
		t.Fatal(err)
	}
	ns.Shutdown()
	ns.WaitForShutdown()
	if _, err := b.SetCall("r", v1.Version, nil, false); !errors.Is(err, ErrOffline) {
		t.Fatalf("a change with the server gone: %v, want ErrOffline", err)
	}
	var p int
	fmt.Sscanf(port[strings.LastIndexByte(port, ':')+1:], "%d", &p)
	testNATSOn(t, dir, p)
	var got Call
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if got, err = b.Call("r"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("call after the server came back: %v", err)
		}
	}
	if got.Version != v1.Version || !slices.Equal(ids(got.Peers), []string{"a-1"}) {
		t.Fatalf("after the server came back: %+v, want the list of a-1 at %d", got, v1.Version)
	}
	if _, stored, err := join(b, "r", got, "a-2", 6); err != nil || !stored {
		t.Fatal(err)
	}
}
