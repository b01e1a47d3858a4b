//go:build race

package main

import (
	"runtime"
	"unsafe"

	"github.com/lesismal/nbio"
)

// raceEnabled reports whether the binary was built with -race.
const raceEnabled = true

// nbhttp accepts on a goroutine of its own, builds the connection's state
// (its nbhttp.Conn, parser and session), then registers the socket with
// a poller through epoll_ctl; the poller finds it through epoll_wait and
// parses. The kernel orders the two, but the race detector sees no Go
// synchronization between them and reports the poller's first reads
// (RemoteAddr, the parser) as racing with the accept goroutine's writes.
// raceAccepted and raceReading tell it about the edge that exists: nbio
// calls OnOpen on the accept goroutine after the connection's state is
// built and before the socket is registered, and the engine's data handler
// runs on the poller before anything reads that state. Only the accept
// goroutine's writes are covered; any race between the poller and other
// goroutines is still reported. Built without -race, both are no-ops.
//
// Without them, every test that opens a connection fails under -race with
// (nbio v1.6.12; upstream lesismal/nbio#495, reported against v1.6.7):
//
//	Read at 0x00c00007e1a0 by goroutine 21:
//	  github.com/lesismal/nbio/nbhttp.(*Conn).RemoteAddr()
//	  github.com/lesismal/nbio/nbhttp.(*ServerProcessor).OnComplete()  nbhttp/processor.go:230
//	  github.com/lesismal/nbio/nbhttp.NewEngine.func7()                nbhttp/engine.go:1184
//	  github.com/lesismal/nbio.(*Engine).OnData.func1()                engine.go:352
//	  github.com/lesismal/nbio.(*poller).readWriteLoop()               poller_epoll.go:280
//	Previous write at 0x00c00007e1a0 by goroutine 22:
//	  github.com/lesismal/nbio/nbhttp.(*Engine).listen.func1()         nbhttp/engine.go:340
//
// and the same pair for the accepted address (net.(*TCPAddr).String on the
// poller against net.sockaddrToTCP in Accept), for nbhttp.Conn.Parser
// (serveWS's write against the literal in listen), and, with TLS, through
// hookTLSSockets into OnComplete.

// raceAccepted marks the end of the accept goroutine's work on c.
func raceAccepted(c *nbio.Conn) { runtime.RaceRelease(unsafe.Pointer(c)) }

// raceReading marks the start of a poller's work on c.
func raceReading(c *nbio.Conn) { runtime.RaceAcquire(unsafe.Pointer(c)) }
