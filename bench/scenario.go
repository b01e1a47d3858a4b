package main

import (
	"bytes"
	"fmt"
	"math"
	"net"
	"strconv"
	"time"
)

// Scenarios. Every one ramps its connections up first, each connection
// joining its room; they differ in what happens next.
const (
	// scenarioFanout: all connections in one room, publishers (members too)
	// sending -rate messages a second in total.
	scenarioFanout = "fanout"
	// scenarioConnect: connections join one room and stay idle for
	// -duration; the figures are the connect rate and server memory.
	scenarioConnect = "connect"
	// scenarioRooms: connections spread over -rooms rooms, every member a
	// publisher, -rate messages a second in total: chat-like traffic.
	scenarioRooms = "rooms"
	// scenarioChurn: one room; the publishers stay, every other connection
	// is closed and replaced by a new one at -churn a second, while the
	// publishers send -rate messages a second.
	scenarioChurn = "churn"
	// scenarioSoak: chat-like traffic for a long time (make soak: ten
	// minutes): connections spread over -rooms rooms, -stable members of
	// each room stay (publishers among them), every other connection is
	// replaced at -churn a second (a client restarting), and a slow reader
	// joins every -slow-every. It checks what a long run can show and a
	// short one cannot: nothing lost for the members that stay, no gaps for
	// the ones that come and go, slow readers cut off by the server, and the
	// server's memory and goroutines flat over time (its /metrics, sampled).
	scenarioSoak = "soak"
	// scenarioCall: -peers pion peers in one room's call through the
	// server's SFU, each publishing audio and a camera and receiving
	// everyone else's (call.go): forwarded packets a second, the server's
	// CPU per forwarded packet and its memory per peer.
	scenarioCall = "call"
)

var scenarios = []string{scenarioFanout, scenarioConnect, scenarioRooms, scenarioChurn, scenarioSoak, scenarioCall}

// maxPerProcess is how many connections one harness process opens. The
// open-file limit here is 20,000 and cannot be raised; the rest is left for
// the dialers' temporary descriptors (a dial briefly holds two: the poller
// dups the socket), the pollers and the metrics client.
const maxPerProcess = 19000

// connsPerSourceIP is how many connections share one source address when
// the target is loopback. With IP_BIND_ADDRESS_NO_PORT one address could
// take about 28,000 (the ephemeral range) per destination; fewer leave room
// for sockets of earlier runs still in TIME_WAIT.
const connsPerSourceIP = 5000

// Plan is the run, computed once by the coordinator and handed to every
// worker (over a pipe, as JSON, for worker processes). All the arithmetic
// that workers and coordinator must agree on (who publishes, which room,
// which message is in the measured window) is a method of Plan, so both
// sides derive it from the same numbers.
type Plan struct {
	Scenario   string        `json:"scenario"`
	URLs       []string      `json:"urls"`
	Conns      int           `json:"conns"`
	Lo         int           `json:"lo"` // first global connection index of this worker
	Hi         int           `json:"hi"` // one past the last
	Worker     int           `json:"worker"`
	Rooms      int           `json:"rooms"`
	RoomPrefix string        `json:"room_prefix"`
	Room       string        `json:"room,omitempty"` // call: a room given with -room
	Publishers int           `json:"publishers"`
	Rate       float64       `json:"rate"` // messages a second, all publishers together
	Size       int           `json:"size"`
	Warmup     time.Duration `json:"warmup"`
	Duration   time.Duration `json:"duration"`
	Drain      time.Duration `json:"drain"`
	Ramp       float64       `json:"ramp"`  // connections a second for this worker, 0 = as fast as possible
	Churn      float64       `json:"churn"` // replacements a second for this worker
	Dialers    int           `json:"dialers"`
	Timeout    time.Duration `json:"timeout"`
	Pollers    int           `json:"pollers"`
	PollIdle   time.Duration `json:"poll_idle"`
	ReadBuffer int           `json:"read_buffer"`
	Stable     int           `json:"stable"`     // connections [0, Stable) stay for the whole run (see isStable)
	SlowEvery  time.Duration `json:"slow_every"` // open a slow reader this often (0: never); worker 0 only
	SlowHold   time.Duration `json:"slow_hold"`  // close a slow reader after this long if the server has not
	SlowMSS    int           `json:"slow_mss"`   // TCP_MAXSEG of slow readers, 0 = the route's
	SourceIPs  bool          `json:"source_ips"` // bind 127.0.0.x source addresses
	Origin     int64         `json:"origin"`     // unix ns of the first second of the time series
	Seconds    int           `json:"seconds"`    // length of the time series
}

// spread reports whether the scenario spreads its connections over -rooms.
func (p *Plan) spread() bool {
	return (p.Scenario == scenarioRooms || p.Scenario == scenarioSoak) && p.Rooms > 0
}

// roomOf returns the room index of global connection i.
func (p *Plan) roomOf(i int) int {
	if p.spread() {
		return i % p.Rooms
	}
	return 0
}

// roomCount returns how many rooms the run uses.
func (p *Plan) roomCount() int {
	if p.spread() {
		return p.Rooms
	}
	return 1
}

// churns reports whether the scenario replaces its unstable connections.
func (p *Plan) churns() bool { return p.Scenario == scenarioChurn || p.Scenario == scenarioSoak }

// roomName returns the wire name of room r. The prefix carries a run id so
// that runs never see each other's rooms on a long-lived server.
func (p *Plan) roomName(r int) string { return p.RoomPrefix + "-" + strconv.Itoa(r) }

// isPublisher reports whether connection i publishes: publisher number p is
// connection p.
func (p *Plan) isPublisher(i int) bool { return i < p.Publishers && p.Rate > 0 }

// isStable reports whether connection i stays for the whole run, and so is
// expected to receive every accepted message of its room. In churn only the
// publishers stay; in soak the first -stable of each room (stableCount).
func (p *Plan) isStable(i int) bool { return i < p.Stable }

// stableCount returns how many connections stay for the whole run: the
// first ones, so that with connection i in room i mod rooms the first
// rooms×perRoom are perRoom members of every room. Publishers always stay:
// a message's sender must be there to send it on schedule.
func stableCount(scenario string, conns, publishers, rooms, perRoom int) int {
	switch scenario {
	case scenarioChurn:
		return publishers
	case scenarioSoak:
		return min(conns, max(publishers, rooms*perRoom))
	}
	return conns
}

// sends reports whether the scenario publishes at all.
func (p *Plan) sends() bool { return p.Scenario != scenarioConnect && p.Rate > 0 && p.Publishers > 0 }

// Message k (counted over all publishers, from the start of the warmup) is
// sent by publisher k mod Publishers, as its (k div Publishers)-th message,
// at t0 + k/Rate: the publishers interleave into one even stream.

// msgDue returns the intended send time of message k, in ns after t0.
func (p *Plan) msgDue(k int) int64 { return int64(float64(k) * 1e9 / p.Rate) }

// msgIndex returns k for the n-th message of publisher pub.
func (p *Plan) msgIndex(pub, n int) int { return n*p.Publishers + pub }

// window returns the range [kStart, kEnd) of messages whose intended time is
// in the measured window; kEnd is also the number of messages sent in all.
func (p *Plan) window() (kStart, kEnd int) {
	if !p.sends() {
		return 0, 0
	}
	kStart = int(math.Ceil(p.Warmup.Seconds() * p.Rate))
	kEnd = int(math.Ceil((p.Warmup + p.Duration).Seconds() * p.Rate))
	return kStart, kEnd
}

// sourceIP returns the local address connection i binds to, or nil.
func (p *Plan) sourceIP(i int) net.IP {
	if !p.SourceIPs {
		return nil
	}
	return net.IPv4(127, 0, 0, byte(2+(i/connsPerSourceIP)%250))
}

// appendSay appends the JSON of a `say` request whose text identifies the
// message: "<publisher> <n> <intended unix ns> " padded with x to size bytes.
// Receivers read those three numbers back with parseText, so latency is
// measured from the intended send time (open loop): a server that queues
// cannot hide it by slowing the publishers down.
func appendSay(dst []byte, room string, pub, n int, due int64, size int) []byte {
	dst = append(dst, `{"type":"say","room":"`...)
	dst = append(dst, room...)
	dst = append(dst, `","text":"`...)
	start := len(dst)
	dst = strconv.AppendInt(dst, int64(pub), 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, int64(n), 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, due, 10)
	if pad := size - (len(dst) - start); pad > 0 {
		dst = append(dst, ' ')
		for i := 1; i < pad; i++ {
			dst = append(dst, 'x')
		}
	}
	return append(dst, `"}`...)
}

// appendJoin appends a `join` request.
func appendJoin(dst []byte, room string) []byte {
	dst = append(dst, `{"type":"join","room":"`...)
	dst = append(dst, room...)
	return append(dst, `"}`...)
}

// parseText reads "<pub> <n> <ns>" at the start of a message text.
func parseText(t []byte) (pub, n int, due int64, ok bool) {
	a, t, ok1 := parseUint(t)
	b, t, ok2 := parseUint(t)
	c, _, ok3 := parseUint(t)
	return int(a), int(b), int64(c), ok1 && ok2 && ok3
}

// parseUint reads a decimal number and skips one following space.
func parseUint(b []byte) (v uint64, rest []byte, ok bool) {
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9' && i < 19; i++ {
		v = v*10 + uint64(b[i]-'0')
	}
	if i == 0 {
		return 0, b, false
	}
	if i < len(b) && b[i] == ' ' {
		i++
	}
	return v, b[i:], true
}

// The server's frames are read without a JSON decoder: the harness needs
// three fields of one frame type, and decoding every delivery would cost
// more CPU than the server spends sending it. Field names are found as
// `"name":` byte patterns; inside a JSON string every quote is escaped, so
// such a pattern only ever matches a key (the frames are flat objects).

var (
	keyType = []byte(`"type":"`)
	keySeq  = []byte(`"seq":`)
	keyText = []byte(`"text":"`)
	keyCode = []byte(`"code":"`)
	msgHead = []byte(`{"type":"msg"`)
)

// msgPrefix returns how noom starts a msg frame of room: when a frame
// starts with it, `seq` follows at a known offset and needs no search.
func msgPrefix(room string) []byte {
	return []byte(`{"type":"msg","room":"` + room + `","seq":`)
}

// msgFieldsFast is msgFields for a frame that starts with prefix.
func msgFieldsFast(p, prefix []byte) (seq int64, text []byte, ok bool) {
	if !bytes.HasPrefix(p, prefix) {
		return msgFields(p)
	}
	rest := p[len(prefix):]
	v, _, ok := parseUint(rest)
	j := bytes.Index(rest, keyText)
	if !ok || j < 0 {
		return msgFields(p)
	}
	return int64(v), rest[j+len(keyText):], true
}

// msgFields returns the `seq` of a msg frame and the start of its text
// (enough for parseText; the end of the string is not looked for). It
// searches `text` after `seq` first, the order servers usually write, and
// the whole frame otherwise.
func msgFields(p []byte) (seq int64, text []byte, ok bool) {
	i := bytes.Index(p, keySeq)
	if i < 0 {
		return 0, nil, false
	}
	seq, ok = intField(p[i:], keySeq)
	j := bytes.Index(p[i:], keyText)
	if j >= 0 {
		j += i
	} else if j = bytes.Index(p, keyText); j < 0 {
		return 0, nil, false
	}
	return seq, p[j+len(keyText):], ok
}

// frameType returns the value of the `type` field.
func frameType(p []byte) []byte { return stringField(p, keyType) }

// stringField returns the raw (still escaped) value of a string field.
func stringField(p, key []byte) []byte {
	i := bytes.Index(p, key)
	if i < 0 {
		return nil
	}
	v := p[i+len(key):]
	for j := 0; j < len(v); j++ {
		switch v[j] {
		case '\\':
			j++
		case '"':
			return v[:j]
		}
	}
	return nil
}

// intField returns the value of an integer field.
func intField(p, key []byte) (int64, bool) {
	i := bytes.Index(p, key)
	if i < 0 {
		return 0, false
	}
	v := bytes.TrimLeft(p[i+len(key):], " ")
	neg := len(v) > 0 && v[0] == '-'
	if neg {
		v = v[1:]
	}
	n, _, ok := parseUint(v)
	if neg {
		return -int64(n), ok
	}
	return int64(n), ok
}

// describe returns the one-line description of a scenario for -help.
func describe(s string) string {
	switch s {
	case scenarioFanout:
		return "one room of -conns members; publishers send -rate msg/s in total"
	case scenarioConnect:
		return "ramp up, hold idle for -duration: connect rate, server memory per connection"
	case scenarioRooms:
		return "-conns spread over -rooms rooms, every member publishing: -rate msg/s in total"
	case scenarioChurn:
		return "one room; all but the publishers are replaced at -churn conns/s while -rate msg/s flow"
	case scenarioSoak:
		return "long chat-like run: -rooms rooms, -stable members of each stay, the rest replaced at -churn/s,\n" +
			"           a slow reader every -slow-every, /metrics sampled; defaults " + soakDefaultsText()
	case scenarioCall:
		return "one call of -peers pion peers through the server's SFU (audio and camera each): packets forwarded,\n" +
			"           server CPU per packet, memory per peer, time to full flow"
	}
	return fmt.Sprintf("unknown scenario %q", s)
}
