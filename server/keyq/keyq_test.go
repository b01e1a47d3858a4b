package keyq

import (
	"slices"
	"sync"
	"testing"
)

// TestOrderPerKey: the items of one key run in the order queued, whatever
// the other keys do; Close runs everything queued first.
func TestOrderPerKey(t *testing.T) {
	var mu sync.Mutex
	got := map[string][]int{}
	q := New(4, 2500, func(v [2]int) { // all 2,500 fit in one queue: keys may share one
		mu.Lock()
		k := string(rune('a' + v[0]))
		got[k] = append(got[k], v[1])
		mu.Unlock()
	})
	for i := range 500 {
		for k := range 5 {
			if !q.Enqueue(string(rune('a'+k)), [2]int{k, i}) {
				t.Fatal("refused with room to spare")
			}
		}
	}
	q.Close()
	for k, seq := range got {
		if len(seq) != 500 || !slices.IsSorted(seq) {
			t.Fatalf("key %s ran %d items, in order: %v", k, len(seq), slices.IsSorted(seq))
		}
	}
	if len(got) != 5 {
		t.Fatalf("%d keys ran, want 5", len(got))
	}
}

// TestFullAndClosedRefuse: a full queue refuses at once, and so do closed
// queues.
func TestFullAndClosedRefuse(t *testing.T) {
	hold, held := make(chan struct{}), make(chan struct{}, 1)
	q := New(1, 2, func(int) {
		select {
		case held <- struct{}{}:
		default:
		}
		<-hold
	})
	if !q.Enqueue("k", 0) {
		t.Fatal("the first refused")
	}
	<-held // the goroutine holds the first: two more fit
	if !q.Enqueue("k", 1) || !q.Enqueue("k", 2) {
		t.Fatal("refused with room to spare")
	}
	if q.Enqueue("k", 3) {
		t.Fatal("a full queue took one more")
	}
	close(hold)
	q.Close()
	if q.Enqueue("k", 4) {
		t.Fatal("closed queues took one")
	}
}
