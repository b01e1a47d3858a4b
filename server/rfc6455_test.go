package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

// TestRFC6455 sends hand-built frames over a real socket and checks the
// server's answer against RFC 6455. Cases are labelled with the Autobahn
// TestSuite case they correspond to (Autobahn itself cannot run here; see
// the README). Each case runs on a fresh connection; afterwards the server
// must still serve a healthy client.
func TestRFC6455(t *testing.T) {
	srv := startServer(t, func(c *Config) { c.MaxMessage = 64 << 10; c.Rate, c.Burst = 1000, 1000 })

	say := func(text string) []byte {
		b, _ := json.Marshal(map[string]any{"type": "say", "room": "r", "text": text})
		return b
	}
	text := func(p []byte) []byte { return encodeClientFrame(opText, true, p) }
	frag := func(op byte, fin bool, p []byte) []byte { return encodeClientFrame(op, fin, p) }
	cat := func(frames ...[]byte) []byte { return bytes.Join(frames, nil) }
	closeBody := func(code int, reason string) []byte {
		return append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...)
	}
	// rawHeader builds a masked frame header by hand, for lengths and bits
	// encodeClientFrame would never produce.
	rawHeader := func(b0 byte, lenBytes ...byte) []byte {
		return append(append([]byte{b0}, lenBytes...), 1, 2, 3, 4)
	}
	msg := say("fragmented hello")

	type outcome struct {
		close int    // expected close code; 0: the connection stays open
		reply string // with close 0: the text a say must come back with
	}
	cases := []struct {
		id   string
		name string
		in   []byte
		want outcome
	}{
		// Framing (Autobahn 1-3).
		{"1.1.1", "empty text message: not JSON, answered with an error", text(nil), outcome{reply: "error"}},
		{"2.1", "ping without payload", frag(opPing, true, nil), outcome{reply: "pong:"}},
		{"2.2", "ping with payload", frag(opPing, true, []byte("hello")), outcome{reply: "pong:hello"}},
		{"2.4", "ping with 125 bytes", frag(opPing, true, bytes.Repeat([]byte{'p'}, 125)), outcome{reply: "pong:" + strings.Repeat("p", 125)}},
		{"2.5", "ping with 126 bytes", frag(opPing, true, bytes.Repeat([]byte{'p'}, 126)), outcome{close: closeProtocolError}},
		{"2.6", "unsolicited pong", frag(opPong, true, []byte("x")), outcome{}},
		{"3.1", "RSV1 set", rawHeader(0x81|0x40, 0x80), outcome{close: closeProtocolError}},
		{"3.2", "RSV2 set", rawHeader(0x81|0x20, 0x80), outcome{close: closeProtocolError}},
		{"3.3", "RSV3 set", rawHeader(0x81|0x10, 0x80), outcome{close: closeProtocolError}},
		{"3.4", "RSV1+2 after a valid message", cat(text(say("a")), rawHeader(0x81|0x60, 0x80)), outcome{close: closeProtocolError}},
		{"3.7", "RSV on a close frame", rawHeader(0x88|0x70, 0x80), outcome{close: closeProtocolError}},
		// Opcodes (Autobahn 4).
		{"4.1.1", "reserved data opcode 3", rawHeader(0x83, 0x80), outcome{close: closeProtocolError}},
		{"4.1.2", "reserved data opcode 4 with payload", frag(0x4, true, []byte("x")), outcome{close: closeProtocolError}},
		{"4.1.5", "reserved data opcode 7", rawHeader(0x87, 0x80), outcome{close: closeProtocolError}},
		{"4.2.1", "reserved control opcode 11", rawHeader(0x8B, 0x80), outcome{close: closeProtocolError}},
		{"4.2.5", "reserved control opcode 15", rawHeader(0x8F, 0x80), outcome{close: closeProtocolError}},
		// Fragmentation (Autobahn 5).
		{"5.1", "fragmented ping", frag(opPing, false, []byte("x")), outcome{close: closeProtocolError}},
		{"5.2", "fragmented pong", frag(opPong, false, []byte("x")), outcome{close: closeProtocolError}},
		{"5.3", "text in two fragments", cat(frag(opText, false, msg[:7]), frag(opContinuation, true, msg[7:])), outcome{reply: "fragmented hello"}},
		{"5.6", "ping between fragments", cat(frag(opText, false, msg[:7]), frag(opPing, true, []byte("in")), frag(opContinuation, true, msg[7:])), outcome{reply: "pong:in"}},
		{"5.9", "continuation with nothing to continue", frag(opContinuation, true, []byte("x")), outcome{close: closeProtocolError}},
		{"5.10", "unfinished continuation first", frag(opContinuation, false, []byte("x")), outcome{close: closeProtocolError}},
		{"5.18", "text frame while a message is in progress", cat(frag(opText, false, msg[:3]), text(msg)), outcome{close: closeProtocolError}},
		{"5.19", "fragments with one byte each", fragments(msg), outcome{reply: "fragmented hello"}},
		// UTF-8 (Autobahn 6).
		{"6.2.1", "valid UTF-8 split inside a rune", cat(frag(opText, false, say("🦊é")[:30]), frag(opContinuation, true, say("🦊é")[30:])), outcome{reply: "🦊é"}},
		{"6.3.1", "invalid UTF-8 in one frame", text([]byte{'"', 0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80, '"'}), outcome{close: closeInvalidData}},
		{"6.3.2", "invalid UTF-8 in the first fragment", cat(frag(opText, false, []byte{'"', 0xed, 0xa0, 0x80}), frag(opContinuation, true, []byte(`"`))), outcome{close: closeInvalidData}},
		{"6.4.1", "invalid UTF-8 in a later fragment", cat(frag(opText, false, []byte(`{"a":"`)), frag(opContinuation, false, []byte{0xf4, 0x90, 0x80, 0x80})), outcome{close: closeInvalidData}},
		{"6.4.3", "rune cut by the end of the message", cat(frag(opText, false, []byte(`"`)), frag(opContinuation, true, []byte{0xf0, 0x9f, 0xa6})), outcome{close: closeInvalidData}},
		{"6.5.1", "overlong encoding C0 80", text([]byte{0xc0, 0x80}), outcome{close: closeInvalidData}},
		{"6.6.1", "lone continuation byte", text([]byte{0x80}), outcome{close: closeInvalidData}},
		{"6.8.1", "5-byte sequence", text([]byte{0xf8, 0x88, 0x80, 0x80, 0x80}), outcome{close: closeInvalidData}},
		{"6.12.1", "surrogate pair half", text([]byte{0xed, 0xbf, 0xbf}), outcome{close: closeInvalidData}},
		// Close handling (Autobahn 7).
		{"7.1.1", "close without a body", frag(opClose, true, nil), outcome{close: closeNormal}},
		{"7.1.3", "data after close is ignored", cat(frag(opClose, true, closeBody(1000, "")), text(say("late"))), outcome{close: closeNormal}},
		{"7.3.2", "close body of one byte", frag(opClose, true, []byte{0x03}), outcome{close: closeProtocolError}},
		{"7.3.3", "close with reason", frag(opClose, true, closeBody(1000, "bye")), outcome{close: closeNormal}},
		{"7.3.5", "close reason of 123 bytes", frag(opClose, true, closeBody(1000, strings.Repeat("r", 123))), outcome{close: closeNormal}},
		{"7.3.6", "close payload of 126 bytes", frag(opClose, true, closeBody(1000, strings.Repeat("r", 124))), outcome{close: closeProtocolError}},
		{"7.5.1", "close reason with invalid UTF-8", frag(opClose, true, append(closeBody(1000, ""), 0xce, 0xba, 0xed, 0xa0, 0x80)), outcome{close: closeInvalidData}},
	}
	for _, code := range []int{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 3000, 3999, 4000, 4999} {
		cases = append(cases, struct {
			id   string
			name string
			in   []byte
			want outcome
		}{"7.7.x", fmt.Sprintf("valid close code %d is echoed", code), frag(opClose, true, closeBody(code, "")), outcome{close: code}})
	}
	for _, code := range []int{0, 999, 1004, 1005, 1006, 1014 + 1, 1016, 1100, 2000, 2999, 5000, 65535} {
		cases = append(cases, struct {
			id   string
			name string
			in   []byte
			want outcome
		}{"7.9.x", fmt.Sprintf("invalid close code %d", code), frag(opClose, true, closeBody(code, "")), outcome{close: closeProtocolError}})
	}
	cases = append(cases, []struct {
		id   string
		name string
		in   []byte
		want outcome
	}{
		// Limits (Autobahn 9) and what Autobahn does not cover.
		{"9.1.x", "message over the limit in one frame", text(make([]byte, 64<<10+1)), outcome{close: closeTooBig}},
		{"9.2.x", "message over the limit in fragments", cat(frag(opText, false, make([]byte, 40<<10)), frag(opContinuation, true, make([]byte, 40<<10))), outcome{close: closeTooBig}},
		{"-", "2^40-byte frame declared, never sent", rawHeader(0x81, 0x80|127, 0, 0, 1, 0, 0, 0, 0, 0), outcome{close: closeTooBig}},
		{"-", "64-bit length with the top bit set", rawHeader(0x81, 0x80|127, 0x80, 0, 0, 0, 0, 0, 0, 0), outcome{close: closeProtocolError}},
		{"-", "16-bit length below 126", rawHeader(0x81, 0x80|126, 0, 5), outcome{close: closeProtocolError}},
		{"-", "64-bit length below 65536", rawHeader(0x81, 0x80|127, 0, 0, 0, 0, 0, 0, 0, 5), outcome{close: closeProtocolError}},
		{"-", "unmasked client frame", []byte{0x81, 0x02, '{', '}'}, outcome{close: closeProtocolError}},
		{"-", "binary message", frag(opBinary, true, []byte{1, 2, 3}), outcome{close: closeUnsupported}},
		{"-", "binary message in fragments", frag(opBinary, false, []byte{1}), outcome{close: closeUnsupported}},
		{"-", "close code 1015 must not be sent", frag(opClose, true, closeBody(1015, "")), outcome{close: closeProtocolError}},
	}...)

	for _, tc := range cases {
		t.Run(tc.id+" "+tc.name, func(t *testing.T) {
			ws := dial(t, srv)
			ws.join("r")
			if _, err := ws.c.Write(tc.in); err != nil {
				t.Fatal(err)
			}
			checkOutcome(t, ws, tc.want.close, tc.want.reply)
			// Leave the room to the next case: its presence frames
			// would be read as the next case's answer.
			_ = ws.c.Close()
			eventually(t, 10*time.Second, "the room empty", func() bool { return !srv.hub.roomInMemory("r") })
		})
	}
	// The server is healthy after all that.
	ws := dial(t, srv)
	ws.join("r")
	ws.send(map[string]any{"type": "say", "room": "r", "text": "still fine"})
	if m := ws.expect("msg"); m.str("text") != "still fine" {
		t.Fatalf("after the table: %v", m)
	}
}

// checkOutcome reads the server's answer: a close frame with code (then the
// end of the connection), or, with code 0, the reply described by reply.
func checkOutcome(t *testing.T, ws *wsConn, code int, reply string) {
	t.Helper()
	if code != 0 {
		for {
			f, err := ws.readFrame(5 * time.Second)
			if err != nil {
				t.Fatalf("want close %d, got %v", code, err)
			}
			if f.op == opClose {
				if got := closeCodeOf(f.payload); got != code {
					t.Fatalf("close %d (%q), want %d", got, f.payload, code)
				}
				break
			}
		}
		// Closed cleanly: EOF, never a reset, even with a refused frame's
		// payload still arriving (the lingering close, lifecycle.go).
		if _, err := ws.readFrame(5 * time.Second); err != io.EOF {
			t.Fatalf("after the close frame: %v, want the connection closed", err)
		}
		return
	}
	switch {
	case reply == "":
		ws.expectSilence(100 * time.Millisecond)
	case strings.HasPrefix(reply, "pong:"):
		for {
			f, err := ws.readFrame(5 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if f.op == opPong {
				if string(f.payload) != strings.TrimPrefix(reply, "pong:") {
					t.Fatalf("pong %q, want %q", f.payload, reply)
				}
				return
			}
		}
	case reply == "error":
		ws.expect("error")
	default:
		if m := ws.expect("msg"); m.str("text") != reply {
			t.Fatalf("msg %v, want text %q", m, reply)
		}
	}
}

// fragments splits a text message into one-byte fragments.
func fragments(p []byte) []byte {
	var out []byte
	for i := range p {
		op := byte(opContinuation)
		if i == 0 {
			op = opText
		}
		out = append(out, encodeClientFrame(op, i == len(p)-1, p[i:i+1])...)
	}
	return out
}
