package auth

import (
	"container/heap"
	"sync"
	"time"
)

// BarDuration is how long PROTOCOL.md bars a removed member: an hour.
const BarDuration = time.Hour

// MaxBars bounds the bars a Bars holds; past it, adding one first drops the
// ended bars, then the bar that would end soonest. Bars come from hosts'
// `remove` requests, one per removed identity (a token's sub or an
// address), so reaching the bound takes ten thousand identities removed
// within an hour; at about 200 bytes a bar it is 2 MB.
const MaxBars = 10000

// Bars remembers who is barred from which room until when (PROTOCOL.md
// `remove`). who is the token's sub where tokens are used, otherwise the
// remote address (see AddrKey): the caller decides, and should keep one
// kind per room, since Bars compares them as plain strings.
//
// Memory is bounded by MaxBars: when it is full, Bar drops ended bars, then
// the one that would end soonest, the one whose loss matters least. Bars is
// safe for concurrent use; its zero value is not, use NewBars.
type Bars struct {
	max int // MaxBars; tests lower it

	mu    sync.Mutex
	byKey map[barKey]*bar
	heap  barHeap // by end, soonest first
}

type barKey struct{ room, who string }

type bar struct {
	key   barKey
	until time.Time
	index int // in the heap
}

// NewBars returns an empty set of bars.
func NewBars() *Bars {
	return &Bars{max: MaxBars, byKey: make(map[barKey]*bar)}
}

// Bar bars who from room until the time until, replacing any bar it had
// there (a later until extends it, an earlier one shortens it). An empty
// who or room is ignored.
func (b *Bars) Bar(room, who string, until time.Time) {
	if room == "" || who == "" {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	k := barKey{room, who}
	if e, ok := b.byKey[k]; ok {
		e.until = until
		heap.Fix(&b.heap, e.index)
		return
	}
	if len(b.byKey) >= b.max {
		// Ended bars end soonest, so they go first; then the soonest to end.
		b.remove(b.heap[0])
	}
	e := &bar{key: k, until: until}
	heap.Push(&b.heap, e)
	b.byKey[k] = e
}

// Barred reports whether who is barred from room at now: true while now is
// before the bar's end.
func (b *Bars) Barred(room, who string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.byKey[barKey{room, who}]
	return ok && now.Before(e.until)
}

// Lift removes who's bar from room, if any (a host's `admit` does this).
func (b *Bars) Lift(room, who string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e, ok := b.byKey[barKey{room, who}]; ok {
		b.remove(e)
	}
}

// Expire drops every bar that has ended at now. Call it now and then (say,
// once a minute): Barred is right without it, but memory is only given back
// here and when the set is full.
func (b *Bars) Expire(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.heap) > 0 && !now.Before(b.heap[0].until) {
		b.remove(b.heap[0])
	}
}

// Len returns the number of bars held, ended or not.
func (b *Bars) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.byKey)
}

// remove drops one bar; b.mu must be held.
func (b *Bars) remove(e *bar) {
	heap.Remove(&b.heap, e.index)
	delete(b.byKey, e.key)
}

// barHeap is a container/heap of bars by end time.
type barHeap []*bar

func (h barHeap) Len() int           { return len(h) }
func (h barHeap) Less(i, j int) bool { return h[i].until.Before(h[j].until) }
func (h barHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}

func (h *barHeap) Push(x any) {
	e := x.(*bar)
	e.index = len(*h)
	*h = append(*h, e)
}

func (h *barHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}
