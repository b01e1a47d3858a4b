// Package keyq runs work keyed by a name (a room) on a few goroutines:
// work of one key goes to one queue, in order, so that nothing races
// itself for one room's state, and different keys go on in parallel. A
// full queue refuses at once instead of blocking the caller, which is
// often an event loop. The hub's room queues and the JetStream broker's
// publishers are both one of these.
package keyq

import (
	"hash/maphash"
	"sync"
)

var seed = maphash.MakeSeed()

// Queues is a fixed set of queues, each run by one goroutine. Close ends
// them under mu, which Enqueue holds for reading, so an Enqueue racing a
// Close is refused rather than sent on a closed channel.
type Queues[T any] struct {
	mu     sync.RWMutex
	qs     []chan T
	closed bool
	wg     sync.WaitGroup
}

// New starts n queues of depth items each, every item run by do on its
// queue's goroutine.
func New[T any](n, depth int, do func(T)) *Queues[T] {
	q := &Queues[T]{}
	for range n {
		c := make(chan T, depth)
		q.qs = append(q.qs, c)
		q.wg.Add(1)
		go func() {
			defer q.wg.Done()
			for v := range c {
				do(v)
			}
		}()
	}
	return q
}

// Enqueue hands v to key's queue; false if that queue is full or the
// queues are closed.
func (q *Queues[T]) Enqueue(key string, v T) bool {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.closed {
		return false
	}
	select {
	case q.qs[maphash.String(seed, key)%uint64(len(q.qs))] <- v:
		return true
	default:
		return false
	}
}

// Depth is how many items each queue holds.
func (q *Queues[T]) Depth() int { return cap(q.qs[0]) }

// Close runs what is queued, then ends the goroutines; later Enqueues are
// refused. Safe to call more than once.
func (q *Queues[T]) Close() {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		for _, c := range q.qs {
			close(c)
		}
	}
	q.mu.Unlock()
	q.wg.Wait()
}
