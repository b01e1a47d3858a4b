package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The harness reads its sockets with a small epoll loop of its own rather
// than nbio's: one goroutine per poller, no goroutine per connection, like
// nbio, but it can pace itself. When a wait returns only a few ready sockets
// the poller sleeps a little (-poll-idle) before waiting again, so that the
// next wait returns many. Otherwise a fan-out at a low rate wakes the
// harness once per frame: each wakeup costs the harness a few microseconds
// and the server's write to it as much again, which on a machine where both
// share the cores is the largest cost of a delivery. The pause adds at most
// -poll-idle to measured latencies, never hides any.

// sparseBatch is the number of ready sockets below which a poller pauses.
const sparseBatch = 64

// sock is one connection's socket. Writes and close are serialized by mu;
// reads happen only on its poller's goroutine.
type sock struct {
	fd     int
	tls    *tls.Conn // wss://: read by a goroutine of its own, see adoptTLS
	p      *poller
	c      *loadClient
	mu     sync.Mutex
	closed atomic.Bool
}

// errClosed is returned by writes to a closed socket.
var errClosed = errors.New("use of closed connection")

// Write writes all of b. The socket is non-blocking: the harness writes
// small frames at a modest rate, so a full send buffer is rare; it is
// waited out briefly rather than queued.
func (s *sock) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tls != nil {
		if s.closed.Load() {
			return 0, errClosed
		}
		return s.tls.Write(b)
	}
	written := 0
	var deadline time.Time
	for written < len(b) {
		if s.closed.Load() {
			return written, errClosed
		}
		n, err := syscall.Write(s.fd, b[written:])
		if n > 0 {
			written += n
		}
		switch {
		case err == nil || errors.Is(err, syscall.EINTR):
		case errors.Is(err, syscall.EAGAIN):
			if deadline.IsZero() {
				deadline = time.Now().Add(5 * time.Second)
			} else if time.Now().After(deadline) {
				return written, fmt.Errorf("write: send buffer full for 5s")
			}
			time.Sleep(100 * time.Microsecond)
		default:
			return written, err
		}
	}
	return written, nil
}

// Close closes the socket; the load generator's onClose runs once.
func (s *sock) Close() error { return s.CloseWithError(nil) }

// CloseWithError closes the socket, reporting err to onClose.
func (s *sock) CloseWithError(err error) error {
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return nil
	}
	s.closed.Store(true)
	var cerr error
	if s.tls != nil {
		s.p.mu.Lock()
		delete(s.p.tlsSocks, s)
		s.p.mu.Unlock()
		cerr = s.tls.Close()
	} else {
		s.p.remove(s)
		cerr = syscall.Close(s.fd)
	}
	s.mu.Unlock()
	s.p.w.onClose(s.c, err)
	return cerr
}

// poller is one epoll loop.
type poller struct {
	w        *loadGen
	epfd     int
	idle     time.Duration
	buf      []byte
	mu       sync.Mutex // guards socks and tlsSocks against other goroutines
	socks    map[int]*sock
	tlsSocks map[*sock]struct{} // wss:// sockets, read by goroutines of their own
	stop     atomic.Bool
	done     chan struct{}
}

func newPoller(w *loadGen, readBuffer int, idle time.Duration) (*poller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	return &poller{w: w, epfd: epfd, idle: idle, buf: make([]byte, readBuffer),
		socks: make(map[int]*sock), tlsSocks: make(map[*sock]struct{}), done: make(chan struct{})}, nil
}

// adopt takes over conn's socket (a duplicate of its descriptor; conn itself
// is closed) for client c.
func (p *poller) adopt(conn net.Conn, c *loadClient) (*sock, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("not a socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(f uintptr) { fd, derr = syscall.Dup(int(f)) }); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, derr
	}
	_ = conn.Close() // the duplicate shares the socket, still non-blocking
	s := &sock{fd: fd, p: p, c: c}
	p.mu.Lock()
	p.socks[fd] = s
	p.mu.Unlock()
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		p.remove(s)
		_ = syscall.Close(fd)
		return nil, err
	}
	return s, nil
}

// adoptTLS takes over a TLS connection for client c. The TLS state lives in
// Go's crypto/tls, so the socket cannot join the epoll set: each wss://
// connection has a reading goroutine of its own (about 8 KiB of stack and
// buffer each), which is fine for the few thousand connections a TLS
// measurement needs. Only the plain ws:// path is goroutine-free.
func (p *poller) adoptTLS(conn net.Conn, c *loadClient) (*sock, error) {
	tc, ok := conn.(*tls.Conn)
	if !ok {
		return nil, errors.New("not a TLS connection")
	}
	s := &sock{fd: -1, tls: tc, p: p, c: c}
	p.mu.Lock()
	p.tlsSocks[s] = struct{}{}
	p.mu.Unlock()
	go func() {
		buf := make([]byte, 8<<10)
		for {
			n, err := tc.Read(buf)
			if n > 0 {
				p.w.onData(c, buf[:n])
			}
			if err != nil {
				_ = s.CloseWithError(err)
				return
			}
		}
	}()
	return s, nil
}

// remove forgets s; closing its descriptor takes it out of the epoll set.
func (p *poller) remove(s *sock) {
	p.mu.Lock()
	if p.socks[s.fd] == s {
		delete(p.socks, s.fd)
	}
	p.mu.Unlock()
}

func (p *poller) lookup(fd int) *sock {
	p.mu.Lock()
	s := p.socks[fd]
	p.mu.Unlock()
	return s
}

// run is the poller goroutine.
func (p *poller) run() {
	defer close(p.done)
	events := make([]syscall.EpollEvent, 1024)
	for !p.stop.Load() {
		n, err := syscall.EpollWait(p.epfd, events, 100)
		if err != nil && !errors.Is(err, syscall.EINTR) {
			p.w.event("epoll_wait: " + err.Error())
			return
		}
		for _, ev := range events[:max(n, 0)] {
			if s := p.lookup(int(ev.Fd)); s != nil {
				p.read(s, ev.Events)
			}
		}
		if n < sparseBatch && p.idle > 0 {
			time.Sleep(p.idle)
		}
	}
}

// read drains s and hands every chunk to its client's parser.
func (p *poller) read(s *sock, events uint32) {
	for {
		n, err := syscall.Read(s.fd, p.buf)
		if n > 0 {
			p.w.onData(s.c, p.buf[:n])
			if s.closed.Load() { // the client answered a close frame
				return
			}
		}
		switch {
		case n == 0 && err == nil:
			_ = s.CloseWithError(io.EOF)
			return
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EAGAIN):
			if events&(syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
				_ = s.CloseWithError(io.EOF)
			}
			return
		case err != nil:
			_ = s.CloseWithError(err)
			return
		case n < len(p.buf):
			return // the socket is drained; no need for a read that says so
		}
	}
}

// shutdown closes every socket and ends the loop.
func (p *poller) shutdown() {
	p.mu.Lock()
	socks := make([]*sock, 0, len(p.socks))
	for _, s := range p.socks {
		socks = append(socks, s)
	}
	for s := range p.tlsSocks {
		socks = append(socks, s)
	}
	p.mu.Unlock()
	for _, s := range socks {
		_ = s.Close()
	}
	p.stop.Store(true)
	<-p.done
	_ = syscall.Close(p.epfd)
}
