//go:build race

package main

import (
	"net"
	"sync"

	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/nbhttp"
)

// With the race detector on, tell it about a hand-off it cannot see. nbio's
// listener goroutine builds each accepted connection and gives it to a
// poller through epoll; the poller then reads what the listener wrote (the
// connection's addresses, nbhttp.Conn), and the detector, which knows
// nothing of epoll, reports a race inside nbio on every connection
// (nbhttp/engine.go listen, read in ServerProcessor.OnComplete). A mutex
// taken by the listener after it built the connection (nbio's OnOpen, on
// the listener goroutine) and by the poller before every read (the read
// buffer hook) orders the two for the detector, as epoll orders them for
// real. Race builds only: this costs a lock per read.
func init() {
	raceHandOff = func(e *nbhttp.Engine) {
		var mu sync.Mutex
		order := func() {
			mu.Lock()
			//lint:ignore SA2001 the empty critical section is the point: it orders, it guards nothing
			mu.Unlock()
		}
		e.OnOpen(func(net.Conn) { order() })
		e.Engine.OnReadBufferAlloc(func(c *nbio.Conn) *[]byte {
			order()
			return e.Engine.PollerBufferPtr(c)
		})
	}
}
