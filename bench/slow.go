package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"syscall"
	"time"
)

// A slow reader is a client that stops reading: a phone gone into a tunnel,
// a tab frozen in the background. The server must not buffer for it without
// bound; noom closes such a connection with 1013 once its unsent bytes pass
// -send-buffer, and meanwhile its other members must not notice.
//
// The harness dials one every -slow-every (churn and soak; worker 0 only, so
// the pace does not depend on how the run is split) with a small receive
// buffer, joins, reads until its `joined` replies are in, and then never
// reads again: it is never handed to a poller, so it is in no epoll set and
// costs nothing but its descriptor (and a ping a second, see slowPing). Not
// reading, the harness cannot see the server's 1013; the server's
// noom_slow_consumer_closes_total (in the /metrics samples) counts those,
// and the harness sees only that the server's side is gone. Slow readers
// are not members of any room for the loss accounting: nothing is expected
// of them.

const (
	// slowRcvBuf is a slow reader's SO_RCVBUF. Set before connect (in the
	// dialer's Control), it also fixes the window the connection advertises,
	// so the server's kernel soon stops taking bytes and they queue in the
	// server, where its cap applies. The MSS is set there too (-slow-mss,
	// default 1460, a real network's): on loopback it is 64 KiB, and Linux
	// sizes a socket's send buffer from it (twice ten segments at least,
	// autotuned up to tcp_wmem's 4 MiB), so the server's kernel would take
	// about 2.8 MB for a reader that takes nothing before the server's own
	// queue, the one -send-buffer caps, held a byte. At 1460 it still takes
	// about 450 KB here, as it would for a remote client.
	slowRcvBuf = 4096
	// slowRooms is how many rooms a slow reader joins at most: noom's
	// default -max-rooms. In a run spread over rooms, one room's share of
	// the traffic (5 msg/s in the soak) would take most of an hour to fill
	// a 1 MiB buffer; 16 of the soak's 20 rooms take about a minute.
	slowRooms = 16
	// slowMaxOpen bounds the slow readers open at once, whatever -slow-every
	// and -slow-hold say, so that their descriptors stay few.
	slowMaxOpen = 64
)

// slowPing is how often a slow reader sends a ping, for two reasons. It
// models a client that is alive (its app still sends) but does not read:
// the case only the server's send-buffer cap can catch; a silent one noom's
// idle timeout (60 s) would close first whenever the traffic is too light to
// fill the buffer by then, and the run would test the timeout instead. And
// it is how the harness learns of the server's close without reading: the
// server's FIN waits behind the bytes this reader never takes, but data
// sent to a socket the server has closed draws a reset, which shows in the
// TCP state (peerClosed) a second later.
const slowPing = time.Second

// slowReader is one slow reader, held open until the server closes it,
// -slow-hold, or the end of the run.
type slowReader struct {
	conn     net.Conn        // never read after the joins
	raw      syscall.RawConn // the TCP socket under conn, for its TCP state
	opened   time.Time
	lastPing time.Time
}

// slowSet is the slow readers of one process and their counts.
type slowSet struct {
	mu         sync.Mutex
	open       []*slowReader // oldest first
	opened     int64
	failed     int64
	serverGone int64     // closed by the harness once their TCP state showed the server's close
	held       int64     // closed by the harness after -slow-hold (or over slowMaxOpen), server side still open
	atEnd      int64     // still open at the end of the run, server side too
	lifetimes  []float64 // seconds from open to the server's close seen, for serverGone
}

// slowLoop opens a slow reader every SlowEvery from t0 until tEnd. Once a
// second it looks at the open ones: pings those due, closes those whose
// server side is gone (so their descriptors come back at once) and those
// held longer than SlowHold.
func (w *loadGen) slowLoop(ctx context.Context, t0, tEnd int64) {
	p := w.plan
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	n := 1
	next := time.Unix(0, t0).Add(p.SlowEvery)
	for {
		now := time.Now()
		if now.UnixNano() >= tEnd || ctx.Err() != nil {
			return
		}
		w.slow.tend(now, p.SlowHold)
		if !now.Before(next) {
			sr, err := w.dialSlow(n)
			n++
			next = next.Add(p.SlowEvery)
			w.slow.mu.Lock()
			if err != nil {
				w.slow.failed++
			} else {
				w.slow.open = append(w.slow.open, sr)
				w.slow.opened++
			}
			w.slow.mu.Unlock()
			if err != nil {
				w.event("slow reader: " + dialReason(err))
			}
			continue // at once: tend also the new one, and catch up if the dial was slow
		}
		wait := time.Until(next)
		if wait > time.Second {
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			}
		} else if !sleepUntil(ctx, next) {
			return
		}
	}
}

// tend pings the slow readers due for it and closes those the server has
// closed, those held past hold, and the oldest beyond slowMaxOpen.
func (s *slowSet) tend(now time.Time, hold time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := s.open[:0]
	for i, sr := range s.open {
		switch {
		case peerClosed(sr.raw):
			s.serverGone++
			s.lifetimes = append(s.lifetimes, now.Sub(sr.opened).Seconds())
			_ = sr.conn.Close()
		case now.Sub(sr.opened) >= hold || len(s.open)-i > slowMaxOpen:
			s.held++
			_ = sr.conn.Close()
		default:
			if now.Sub(sr.lastPing) >= slowPing {
				sr.lastPing = now
				_ = sr.conn.SetWriteDeadline(now.Add(time.Second))
				_, _ = sr.conn.Write(appendClientFrame(nil, opPing, nil, rand.Uint32()))
			}
			keep = append(keep, sr)
		}
	}
	clear(s.open[len(keep):])
	s.open = keep
}

// closeAll closes the slow readers still open at the end of the run.
func (s *slowSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sr := range s.open {
		if peerClosed(sr.raw) {
			s.serverGone++
			s.lifetimes = append(s.lifetimes, time.Since(sr.opened).Seconds())
		} else {
			s.atEnd++
		}
		_ = sr.conn.Close()
	}
	s.open = nil
}

// dialSlow opens slow reader number n: dial with a small receive buffer,
// upgrade, join up to slowRooms rooms, read until every join is answered,
// then stop reading for good.
func (w *loadGen) dialSlow(n int) (*slowReader, error) {
	p := w.plan
	t := w.targets[n%len(w.targets)]
	ip := p.sourceIP(p.Conns + n) // past the regular connections' addresses
	d := net.Dialer{Timeout: p.Timeout, KeepAlive: -1, Control: func(network, address string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, slowRcvBuf)
			if serr == nil && p.SlowMSS > 0 {
				serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, p.SlowMSS)
			}
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("slow reader socket options: %w", serr)
		}
		if ip != nil {
			return bindNoPort(network, address, rc)
		}
		return nil
	}}
	if ip != nil {
		d.LocalAddr = &net.TCPAddr{IP: ip}
	}
	tcp, err := d.Dial("tcp", t.host)
	if err != nil {
		return nil, err
	}
	sr := &slowReader{conn: tcp, opened: time.Now(), lastPing: time.Now()}
	if sc, ok := tcp.(syscall.Conn); ok {
		sr.raw, _ = sc.SyscallConn()
	}
	fail := func(err error) (*slowReader, error) {
		_ = sr.conn.Close()
		return nil, err
	}
	deadline := time.Now().Add(p.Timeout)
	if t.tls {
		tc := tls.Client(tcp, &tls.Config{ServerName: t.serverName, InsecureSkipVerify: insecureTLS})
		_ = tc.SetDeadline(deadline)
		if err := tc.Handshake(); err != nil {
			return fail(fmt.Errorf("tls: %w", err))
		}
		sr.conn = tc
	}
	rest, err := handshake(sr.conn, t.host, t.path, deadline)
	if err != nil {
		return fail(err)
	}
	rooms := min(slowRooms, p.roomCount())
	var out []byte
	for i := range rooms {
		room := p.roomName((n + i) % p.roomCount())
		out = appendClientFrame(out, opText, appendJoin(nil, room), rand.Uint32())
	}
	_ = sr.conn.SetDeadline(deadline)
	if _, err := sr.conn.Write(out); err != nil {
		return fail(err)
	}
	var h slowJoins
	var fr frameReader
	buf := make([]byte, 16<<10)
	data := rest
	for h.joined+h.refused < rooms && !h.closed {
		if err := fr.feed(data, &h); err != nil {
			return fail(err)
		}
		if h.joined+h.refused >= rooms || h.closed {
			break
		}
		k, err := sr.conn.Read(buf)
		if err != nil {
			return fail(fmt.Errorf("waiting for joined: %w", err))
		}
		data = buf[:k]
	}
	_ = sr.conn.SetDeadline(time.Time{})
	if h.joined == 0 {
		return fail(errors.New("no room joined"))
	}
	return sr, nil
}

// slowJoins counts the replies to a slow reader's joins.
type slowJoins struct {
	joined, refused int
	closed          bool
}

func (h *slowJoins) onMessage(op byte, p []byte) {
	switch string(frameType(p)) {
	case "joined":
		h.joined++
	case "error": // too many rooms, rate limited: the joins that worked will do
		h.refused++
	}
}

func (h *slowJoins) onPing([]byte)            {}
func (h *slowJoins) onCloseFrame(int, []byte) { h.closed = true }
