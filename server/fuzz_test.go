package main

import (
	"bytes"
	"net"
	"testing"
	"time"
)

// FuzzFrames writes arbitrary bytes after a real WebSocket handshake, on a
// real server, and checks the server survives: no recovered panic (the log
// hook of startServer fails the run), and a healthy client is still served
// every so often. `make fuzz` runs it for a minute.
func FuzzFrames(f *testing.F) {
	for _, s := range realRequests {
		f.Add(encodeClientFrame(opText, true, []byte(s)))
	}
	say := []byte(`{"type":"say","room":"r","text":"hi"}`)
	f.Add(append(encodeClientFrame(opText, false, say[:9]), encodeClientFrame(opContinuation, true, say[9:])...))
	f.Add(encodeClientFrame(opPing, true, []byte("x")))
	f.Add(encodeClientFrame(opClose, true, []byte{0x03, 0xe8}))
	f.Add([]byte{0x81, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4})
	f.Add([]byte{0x81, 0x05, 'h', 'e', 'l', 'l', 'o'})
	f.Add(encodeClientFrame(opText, true, []byte{0xed, 0xa0, 0x80}))

	srv := startServer(f, func(c *Config) { c.MaxMessage = 4 << 10; c.Rate, c.Burst = 1e6, 1e6 })
	probe := dial(f, srv)
	probe.join("r")
	var n int
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := net.DialTimeout("tcp", srv.addr, 5*time.Second)
		if err != nil {
			t.Skip("dial:", err) // the machine, not the server
		}
		tc := c.(*net.TCPConn)
		_ = tc.SetLinger(0) // no TIME_WAIT: a minute of fuzzing would exhaust the ports
		defer tc.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")); err != nil {
			t.Skip("write:", err)
		}
		buf := make([]byte, 4096)
		got := 0
		for !bytes.Contains(buf[:got], []byte(`"hello"`)) { // 101, then the hello frame
			m, err := c.Read(buf[got:])
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			got += m
		}
		_, _ = c.Write(in)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
		for {
			if _, err := c.Read(buf); err != nil {
				break
			}
		}
		if n++; n%500 == 0 { // liveness: the room still works
			probe.t = t
			probe.send(map[string]any{"type": "say", "room": "r", "text": "alive"})
			probe.waitFor("msg")
		}
	})
}
