package main

import (
	"net"
	"sync/atomic"
)

// connSession is what nbio keeps as the session of an upgraded connection
// (and what the HTTP parser of a TLS one hands its reads to): the client,
// reached through one pointer that is let go when the socket closes.
//
// nbio may hold a closed connection's Conn, and with it its session, for a
// while after the close: with the client as the session, one to ten of 600
// churned connections' whole state (its struct, buffers, nick, token)
// stayed reachable, of any age, after nothing of ours referred to them any
// more (TestChurnLeavesNoResidue). A held Conn now keeps this pointer's
// worth. The pointer is atomic because nbio can close a socket (calling
// CloseAndClean) on a writer's goroutine while a poller reads the session.
type connSession struct{ c atomic.Pointer[client] }

func newSession(c *client) *connSession {
	s := &connSession{}
	s.c.Store(c)
	return s
}

// client returns the connection's client, nil once it closed.
func (s *connSession) client() *client { return s.c.Load() }

// Parse implements nbhttp.ParserCloser.
func (s *connSession) Parse(data []byte) error {
	if c := s.c.Load(); c != nil {
		return c.Parse(data)
	}
	return nil
}

// CloseAndClean implements nbhttp.ParserCloser: the client learns of the
// close, once, and is let go.
func (s *connSession) CloseAndClean(err error) {
	if c := s.c.Swap(nil); c != nil {
		c.CloseAndClean(err)
	}
}

// UnderlayerConn implements nbhttp.ParserCloser.
func (s *connSession) UnderlayerConn() net.Conn {
	if c := s.c.Load(); c != nil {
		return c.UnderlayerConn()
	}
	return nil
}
