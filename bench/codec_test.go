package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"
)

// recorder is a frameHandler that keeps what it was given.
type recorder struct {
	msgs   []string
	pings  []string
	closes []int
}

func (r *recorder) onMessage(op byte, p []byte) { r.msgs = append(r.msgs, fmt.Sprintf("%d:%s", op, p)) }
func (r *recorder) onPing(p []byte)             { r.pings = append(r.pings, string(p)) }
func (r *recorder) onCloseFrame(code int, _ []byte) {
	r.closes = append(r.closes, code)
}

// serverFrame builds an unmasked frame as a server sends it.
func serverFrame(op byte, fin bool, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	b := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		b = append(b, byte(n))
	case n <= 0xffff:
		b = append(b, 126, byte(n>>8), byte(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, payload...)
}

// A client frame decodes back to its payload, for every length encoding.
func TestClientFrameRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 7, 8, 125, 126, 127, 65535, 65536, 70000} {
		payload := bytes.Repeat([]byte("abcdefghij"), n/10+1)[:n]
		frame := appendClientFrame(nil, opText, payload, 0xa1b2c3d4)
		if n > 0 && bytes.Contains(frame, payload) {
			t.Errorf("len %d: payload not masked", n)
		}
		op, fin, masked, got, used, err := parseFrame(frame)
		if err != nil || used != len(frame) || op != opText || !fin || !masked || !bytes.Equal(got, payload) {
			t.Errorf("len %d: op %d fin %v masked %v used %d/%d err %v equal %v", n, op, fin, masked, used, len(frame), err, bytes.Equal(got, payload))
		}
	}
}

// The reader gives the same messages however the stream is cut into reads,
// including cuts inside headers and fragmented messages.
func TestFrameReaderSplits(t *testing.T) {
	big := strings.Repeat("x", 300)
	var stream []byte
	stream = append(stream, serverFrame(opText, true, []byte(`{"type":"hello"}`))...)
	stream = append(stream, serverFrame(opPing, true, []byte("p1"))...)
	stream = append(stream, serverFrame(opText, false, []byte("frag-"))...)
	stream = append(stream, serverFrame(opPing, true, []byte("p2"))...) // control frames may interleave
	stream = append(stream, serverFrame(opContinuation, false, []byte("ment-"))...)
	stream = append(stream, serverFrame(opContinuation, true, []byte("ed"))...)
	stream = append(stream, serverFrame(opText, true, []byte(big))...)
	stream = append(stream, serverFrame(opClose, true, []byte{0x03, 0xf5, 'b', 'y', 'e'})...)
	want := fmt.Sprint([]string{`1:{"type":"hello"}`, "1:frag-ment-ed", "1:" + big}, []string{"p1", "p2"}, []int{1013})
	for step := 1; step <= len(stream); step++ {
		var fr frameReader
		var r recorder
		for i := 0; i < len(stream); i += step {
			chunk := append([]byte(nil), stream[i:min(i+step, len(stream))]...)
			if err := fr.feed(chunk, &r); err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
			clear(chunk) // the reader must not keep the caller's buffer
		}
		if got := fmt.Sprint(r.msgs, r.pings, r.closes); got != want {
			t.Fatalf("step %d:\n got %s\nwant %s", step, got, want)
		}
		if len(fr.pending) != 0 || fr.fragOp != 0 {
			t.Fatalf("step %d: leftover state", step)
		}
	}
}

func TestFrameReaderErrors(t *testing.T) {
	masked := appendClientFrame(nil, opText, []byte("hi"), 1)
	bigPing := serverFrame(opPing, true, bytes.Repeat([]byte("p"), 126))
	for name, in := range map[string][]byte{
		"masked":             masked,
		"reserved bits":      {0xc1, 0x00},
		"big control":        bigPing,
		"fragmented control": {0x09, 0x00},
		"lone continuation":  serverFrame(opContinuation, true, []byte("x")),
		"huge length":        {0x81, 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	} {
		var fr frameReader
		if err := fr.feed(in, &recorder{}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestCheckUpgrade(t *testing.T) {
	key := "dGhlIHNhbXBsZSBub25jZQ=="
	if acceptKey(key) != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" { // RFC 6455 §1.3's example
		t.Fatalf("acceptKey = %s", acceptKey(key))
	}
	ok := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
	if err := checkUpgrade([]byte(ok), key); err != nil {
		t.Errorf("valid response: %v", err)
	}
	for _, bad := range []string{
		"HTTP/1.1 503 Service Unavailable\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: nope\r\n",
		"HTTP/1.1 101 Switching Protocols\r\n",
	} {
		if err := checkUpgrade([]byte(bad), key); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// The say text carries publisher, number and intended time, padded to -size,
// and the receiver's field scan reads them back from a server's msg frame.
func TestMessageText(t *testing.T) {
	due := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC).UnixNano()
	body := appendSay(nil, "bench-ab-3", 17, 4242, due, 100)
	text := body[bytes.Index(body, keyText)+len(keyText) : len(body)-2]
	if len(text) != 100 {
		t.Errorf("text is %d bytes, want 100", len(text))
	}
	frame := []byte(`{"type":"msg","room":"bench-ab-3","seq":99,"from":"x1","nick":"guest-x1","text":"` + string(text) + `","ts":1}`)
	for name, f := range map[string]func() (int64, []byte, bool){
		"fast":    func() (int64, []byte, bool) { return msgFieldsFast(frame, msgPrefix("bench-ab-3")) },
		"generic": func() (int64, []byte, bool) { return msgFields(frame) },
		"reordered": func() (int64, []byte, bool) {
			return msgFieldsFast([]byte(`{"text":"17 4242 5 ","type":"msg","seq":99}`), msgPrefix("r"))
		},
	} {
		seq, txt, ok := f()
		pub, n, d, ok2 := parseText(txt)
		if !ok || !ok2 || seq != 99 || pub != 17 || n != 4242 || (name != "reordered" && d != due) {
			t.Errorf("%s: seq %d pub %d n %d due %d ok %v %v", name, seq, pub, n, d, ok, ok2)
		}
	}
	if got := string(frameType([]byte(`{"type":"joined","room":"a"}`))); got != "joined" {
		t.Errorf("frameType = %q", got)
	}
	if got := string(stringField([]byte(`{"code":"rate_limited","message":"a \"q\""}`), keyCode)); got != "rate_limited" {
		t.Errorf("code = %q", got)
	}
}

// Hostile or foreign msg frames (another client in the room, a server with
// another layout) are counted as foreign, never crash the delivery path.
func TestOnMsgForeign(t *testing.T) {
	p := &Plan{Scenario: scenarioFanout, Publishers: 4, Rate: 10, Duration: time.Second, RoomPrefix: "r", Origin: time.Now().UnixNano(), Seconds: 2}
	w := &loadGen{plan: p, prefix: [][]byte{msgPrefix(p.roomName(0))}, shards: []*shard{{series: newSeries(p.Origin, p.Seconds)}}}
	w.kStart, w.kEnd = p.window()
	w.seen = newBitmap(w.kEnd)
	c := &loadClient{w: w, sh: w.shards[0], stable: true, now: time.Now().UnixNano()}
	for _, f := range []string{
		`{"type":"msg","room":"r-0","seq":1,"text":"hello"}`,
		`{"type":"msg","room":"r-0","seq":2,"text":"9999999999999999999 9999999999999999999 1"}`,
		`{"type":"msg","room":"r-0","seq":3,"text":"1 9999999999999999999 1"}`,
		`{"type":"msg","room":"r-0","seq":4,"text":"7 1 1"}`,
		`{"type":"msg","room":"r-0","seq":5}`,
		`{"type":"msg","room":"r-0","seq":-1,"text":"1 1 1"}`,
		`{"type":"msg"`,
	} {
		c.onMessage(opText, []byte(f))
	}
	if got := w.shards[0].foreign.Load(); got != 6 {
		t.Errorf("foreign = %d, want 6", got)
	}
	c.onMessage(opText, []byte(`{"type":"msg","room":"r-0","seq":9,"from":"a","text":"1 2 5 xx","ts":1}`))
	if !w.seen.Has(p.msgIndex(1, 2)) || w.shards[0].received.Load() != 1 {
		t.Error("a well-formed message was not counted")
	}
}
