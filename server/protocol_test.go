package main

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// realRequests are requests as the page and the harness send them; they
// seed the fuzzers and the benchmarks.
var realRequests = []string{
	`{"type":"nick","nick":"alice"}`,
	`{"type":"join","room":"lobby"}`,
	`{"type":"join","room":"lobby","since":41,"epoch":"mwxg8i1a.2"}`,
	`{"type":"leave","room":"lobby"}`,
	`{"type":"say","room":"lobby","text":"hi \"there\" \u00e9\ud83e\udd8a <b>"}`,
	`{"type":"rooms"}`,
	`{"type":"call","room":"lobby","action":"join"}`,
	`{"type":"signal","room":"lobby","to":"a1","data":{"kind":"offer","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}}`,
	`{"type":"signal","room":"lobby","to":"a1","data":{"kind":"ice","candidate":{"candidate":"candidate:1 1 udp 2122260223 10.0.0.2 53421 typ host","sdpMid":"0"}}}`,
	`not json`, `[]`, `{"type":3}`, `{"type":"say","room":"a b","text":""}`,
}

func TestDecodeRequest(t *testing.T) {
	cases := []struct {
		in   string
		code string
		want request
	}{
		{`{"type":"nick","nick":"  bob  "}`, "", request{Type: "nick", Nick: "bob"}},
		{` {"type":"rooms","extra":[1,{"x":2}]} `, "", request{Type: "rooms"}},
		{`{"type":"join","room":"a.b-c_D9"}`, "", request{Type: "join", Room: "a.b-c_D9"}},
		{`{"type":"say","room":"r","text":"` + strings.Repeat("é", 2048) + `"}`, "", request{Type: "say", Room: "r", Text: strings.Repeat("é", 2048)}},
		{`{"type":"say","room":"r","text":"` + strings.Repeat("é", 2049) + `"}`, errTooLarge, request{}},
		{`{"type":"nick","nick":"` + strings.Repeat("🦊", 32) + `"}`, "", request{Type: "nick", Nick: strings.Repeat("🦊", 32)}},
		{`{"type":"nick","nick":"a\u200bb"}`, "", request{Type: "nick", Nick: "a\u200bb"}}, // format, not control
		{`{"type":"nick","nick":"a\u0085b"}`, errBadField, request{}},
		{`{"type":"join","room":"é"}`, errBadField, request{}},
		{`{"type":"join","room":""}`, errBadField, request{}},
		{`{"type":"call","room":"r"}`, errBadField, request{}},
		{`{"type":"signal","room":"r","to":"x","data":null}`, "", request{Type: "signal", Room: "r", To: "x"}},
		{`{"type":"Say"}`, errUnknownType, request{}},
		{`{"type":"say","room":"r","text":"x"} trailing`, errBadJSON, request{}},
		{``, errBadJSON, request{}},
	}
	for _, tc := range cases {
		var r request
		e := decodeRequest([]byte(tc.in), &r)
		code := ""
		if e != nil {
			code = e.code
		}
		if code != tc.code {
			t.Errorf("%.50s: code %q, want %q", tc.in, code, tc.code)
			continue
		}
		if code == "" {
			r.Data, r.Since = nil, nil
			if !reflect.DeepEqual(r, tc.want) {
				t.Errorf("%.50s: got %+v, want %+v", tc.in, r, tc.want)
			}
		}
	}
}

func TestEncodersProduceValidJSON(t *testing.T) {
	hostile := "\"\\\x00\x1f\n\t<script>é🦊\u2028"
	frames := [][]byte{
		encodeHello("a", hostile, "none"),
		encodeNick(hostile),
		joinedFrame(&joinedInfo{room: "r", epoch: "e", count: 2, members: appendMemberRoles(nil, []member{{"a", hostile}}, []string{roleHost}),
			history: [][]byte{[]byte(`{"type":"msg"}`)}, withRecovered: true, recovered: true}),
		encodeLeft("r"),
		encodePresence("r", "join", "a", hostile, 3),
		encodeCount("r", 501),
		encodeRooms([]roomCount{{"a", 2}, {"b", 1}}),
		encodeCall("r", []callPeer{{id: "a", nick: hostile}}, "", true),
		encodeCallPeer("r", "leave", "a", hostile),
		encodeSignal("r", "a", hostile, []byte(`{"sdp":"x"}`)),
		encodeError(errBadField, hostile, hostile),
	}
	m, _ := encodeMsg("r", 7, "a", hostile, strings.Repeat(hostile, 20), 1)
	frames = append(frames, m)
	for _, f := range frames {
		if f[0] != 0x81 {
			t.Fatalf("frame header %x", f[:2])
		}
		p := payloadOf(f)
		if n := serverHeaderLen(len(p)); n+len(p) != len(f) {
			t.Fatalf("frame length does not match payload: %x", f[:4])
		}
		var v map[string]any
		if err := json.Unmarshal(p, &v); err != nil {
			t.Fatalf("invalid JSON %s: %v", p, err)
		}
		for k, val := range v { // every hostile string comes back intact
			if s, ok := val.(string); ok && strings.Contains(s, "script") && s != hostile && s != strings.Repeat(hostile, 20) {
				t.Errorf("%s: string %q did not round-trip", k, s)
			}
		}
	}
}

// FuzzDecode feeds arbitrary text to the request decoder: it must never
// panic, must answer with a known code, and whatever it accepts must satisfy
// the protocol's field rules and encode back into valid JSON.
func FuzzDecode(f *testing.F) {
	for _, s := range realRequests {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r request
		e := decodeRequest(b, &r)
		if e != nil {
			if !slices.Contains(errorCodes[:], e.code) || e.msg == "" {
				t.Fatalf("unknown error %+v", e)
			}
			return
		}
		switch r.Type {
		case "join", "leave", "say", "call", "signal":
			if !validRoom(r.Room) {
				t.Fatalf("accepted room %q", r.Room)
			}
		case "nick":
			if n := utf8.RuneCountInString(r.Nick); n == 0 || n > maxNickRunes {
				t.Fatalf("accepted nick %q", r.Nick)
			}
		}
		frame, at := encodeMsg(r.Room, 1, "id", r.Nick, r.Text, 1)
		if !json.Valid(frame[at:]) {
			t.Fatalf("encodeMsg made invalid JSON from %q", b)
		}
		if r.Type == "signal" && !json.Valid(payloadOf(encodeSignal(r.Room, "id", r.Nick, r.Data))) {
			t.Fatalf("encodeSignal made invalid JSON from %q", b)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	in := []byte(realRequests[4])
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	var r request
	for b.Loop() {
		if e := decodeRequest(in, &r); e != nil {
			b.Fatal(e)
		}
	}
}

func BenchmarkEncodeMsg(b *testing.B) {
	text := strings.Repeat("hello world ", 10)
	b.ReportAllocs()
	for b.Loop() {
		encodeMsg("lobby", 12345, "abc", "alice", text, 1764150000000)
	}
}

// payloadOf returns the payload of one unmasked server frame.
func payloadOf(f []byte) []byte {
	switch f[1] & 0x7F {
	case 126:
		return f[4:]
	case 127:
		return f[10:]
	}
	return f[2:]
}

// joinedFrame is encodeJoined's three parts as one frame.
func joinedFrame(j *joinedInfo) []byte {
	head, members, tail := encodeJoined(j)
	return append(append(append([]byte(nil), head...), members...), tail...)
}
