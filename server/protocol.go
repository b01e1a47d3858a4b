package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"

	"noom/server/auth"
)

// protocolVersion is sent in hello; see PROTOCOL.md.
const protocolVersion = 1

// Limits fixed by PROTOCOL.md.
const (
	maxNickRunes   = 32
	maxRoomLen     = 64
	maxTextBytes   = 4096
	maxSignalBytes = 64 << 10
	maxListMembers = 100 // joined.members is capped here
	maxListRooms   = 100 // the rooms frame lists at most this many rooms
)

// Error codes of the error frame.
const (
	errBadJSON      = "bad_json"
	errUnknownType  = "unknown_type"
	errBadField     = "bad_field"
	errNotInRoom    = "not_in_room"
	errNoSuchMember = "no_such_member"
	errTooLarge     = "too_large"
	errRateLimited  = "rate_limited"
	errTooManyRooms = "too_many_rooms"
	errCallFull     = "call_full"
	// errUnavailable answers a request the server cannot carry out right
	// now because its store or broker is unreachable or overloaded; the
	// client may retry. Never the per-connection rate limit: that is
	// errRateLimited.
	errUnavailable = "unavailable"
	// errNotAllowed refuses what the sender may not do: a signal between
	// two members of a room who are not both in its call, a host request
	// from a member (meetings.go).
	errNotAllowed = "not_allowed"
	// Meetings and tokens (PROTOCOL.md, "Rooms that belong to someone",
	// "Tokens").
	errUnauthorized     = "unauthorized"
	errPasscodeRequired = "passcode_required"
	errBadPasscode      = "bad_passcode"
	errTooManyAttempts  = "too_many_attempts"
	errRoomLocked       = "room_locked"
	errDenied           = "denied"
	errBanned           = "banned"
)

// errorCodes lists every error code, for metrics.
var errorCodes = [...]string{errBadJSON, errUnknownType, errBadField, errNotInRoom,
	errNoSuchMember, errTooLarge, errRateLimited, errTooManyRooms, errCallFull,
	errUnavailable, errNotAllowed, errUnauthorized, errPasscodeRequired, errBadPasscode,
	errTooManyAttempts, errRoomLocked, errDenied, errBanned}

// request is any client → server message. Fields a type does not use are
// ignored, and unknown fields are allowed so that clients may add some.
type request struct {
	Type   string          `json:"type"`
	Nick   string          `json:"nick"`
	Room   string          `json:"room"`
	Text   string          `json:"text"`
	Since  *int64          `json:"since"`
	Before *int64          `json:"before"`
	Limit  *int            `json:"limit"`
	Epoch  string          `json:"epoch"`
	Action string          `json:"action"`
	To     string          `json:"to"`
	Data   json.RawMessage `json:"data"`

	// Meetings (meetings.go) and tokens (tokens.go). Passcode is a
	// pointer because settings tells "" (remove it) from absent.
	Passcode *string `json:"passcode"`
	HostKey  string  `json:"host_key"`
	Lobby    *bool   `json:"lobby"`
	Locked   *bool   `json:"locked"`
	Listed   *bool   `json:"listed"`
	ID       string  `json:"id"`
	Role     string  `json:"role"`
	Audio    *bool   `json:"audio"`
	Video    *bool   `json:"video"`
	Screen   *bool   `json:"screen"`
	Token    string  `json:"token"`
}

// reqError is a refused request: the code and message of its error frame.
type reqError struct {
	code, msg string
}

// decodeRequest parses one text message. A syntax error, a value that is not
// an object or a missing or non-string type is bad_json; a field of the wrong
// JSON type is bad_field; a type it does not know is unknown_type.
func decodeRequest(b []byte, req *request) *reqError {
	*req = request{}
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return &reqError{errBadJSON, "message must be a JSON object"}
	}
	err := json.Unmarshal(b, req)
	var te *json.UnmarshalTypeError
	switch {
	case err == nil:
	case errors.As(err, &te) && te.Field != "type":
		if req.Type == "" {
			return &reqError{errBadJSON, "missing string field type"}
		}
		return &reqError{errBadField, "field " + te.Field + " has the wrong type"}
	case errors.As(err, &te):
		return &reqError{errBadJSON, "field type must be a string"}
	default:
		return &reqError{errBadJSON, "invalid JSON"}
	}
	switch req.Type {
	case "":
		return &reqError{errBadJSON, "missing string field type"}
	case "nick", "join", "leave", "say", "rooms", "call", "signal", "history":
	case "auth", "settings", "role", "admit", "deny", "remove", "mute", "end", "media":
	default:
		return &reqError{errUnknownType, "unknown request type"}
	}
	return req.validate()
}

// validate checks the fields each request type needs.
func (r *request) validate() *reqError {
	switch r.Type {
	case "nick":
		nick, ok := normalizeNick(r.Nick)
		if !ok {
			return &reqError{errBadField, "nick must be 1-32 characters without control characters"}
		}
		r.Nick = nick
	case "join":
		if !validRoom(r.Room) {
			return badRoom
		}
		if r.Since != nil && *r.Since < 0 {
			return &reqError{errBadField, "since must not be negative"}
		}
		if len(r.Epoch) > 64 {
			return &reqError{errBadField, "epoch is too long"}
		}
		if r.Passcode != nil && len(*r.Passcode) > maxPasscodeBytes {
			return &reqError{errBadField, "passcode is too long"}
		}
		if len(r.HostKey) > maxHostKeyBytes {
			return &reqError{errBadField, "host_key is too long"}
		}
	case "leave":
		if !validRoom(r.Room) {
			return badRoom
		}
	case "say":
		if !validRoom(r.Room) {
			return badRoom
		}
		if len(r.Text) > maxTextBytes {
			return &reqError{errTooLarge, "text must be at most 4096 bytes"}
		}
		if r.Text == "" {
			return &reqError{errBadField, "text must not be empty"}
		}
	case "call":
		if !validRoom(r.Room) {
			return badRoom
		}
		if r.Action != "join" && r.Action != "leave" {
			return &reqError{errBadField, "action must be join or leave"}
		}
	case "signal":
		if !validRoom(r.Room) {
			return badRoom
		}
		if r.To == "" {
			return &reqError{errBadField, "missing field to"}
		}
		if len(r.Data) == 0 {
			return &reqError{errBadField, "missing field data"}
		}
		if len(r.Data) > maxSignalBytes {
			return &reqError{errTooLarge, "data must be at most 64 KiB"}
		}
	case "history":
		if !validRoom(r.Room) {
			return badRoom
		}
		if r.Before != nil && *r.Before < 1 {
			return &reqError{errBadField, "before must be a seq, at least 1"}
		}
		if r.Limit != nil && (*r.Limit < 1 || *r.Limit > maxHistoryPage) {
			return &reqError{errBadField, "limit must be 1-100"}
		}
	case "rooms":
	default:
		return r.validateMeeting()
	}
	return nil
}

var badRoom = &reqError{errBadField, "room must be 1-64 characters from A-Z a-z 0-9 _ - ."}

// validRoom reports whether s is a room name: 1-64 of A-Z a-z 0-9 _ - .
// (server/auth keeps the rule: a token's rooms are checked by it too).
func validRoom(s string) bool { return auth.ValidRoom(s) }

// normalizeNick trims spaces and checks the nick rules: 1-32 characters, no
// control characters.
func normalizeNick(s string) (string, bool) { return auth.NormalizeNick(s) }

// The encoders below append JSON by hand: every server frame is built once,
// directly into the buffer that becomes the WebSocket frame, with no
// reflection and one allocation per frame whatever the number of recipients.

// newFrame starts a text frame, reserving room for the longest header in
// front of the payload; finishFrame fills the header in.
func newFrame(payloadHint int) []byte {
	b := make([]byte, maxServerHeaderLen, maxServerHeaderLen+payloadHint)
	return b
}

// finishFrame writes the header right before the payload and returns the
// frame and the offset of its payload.
func finishFrame(b []byte) (frame []byte, payloadAt int) {
	n := len(b) - maxServerHeaderLen
	hl := serverHeaderLen(n)
	start := maxServerHeaderLen - hl
	putServerHeader(b[start:], opText, n)
	return b[start:], hl
}

// frameOf is finishFrame for callers that do not need the payload offset.
func frameOf(b []byte) []byte {
	f, _ := finishFrame(b)
	return f
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. s is valid UTF-8 here: text
// frames are validated and the JSON decoder replaces bad escapes.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendField appends ,"key": (key is a constant without escapes).
func appendKey(b []byte, key string) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	return append(b, '"', ':')
}

func appendStrField(b []byte, key, v string) []byte {
	return appendString(appendKey(b, key), v)
}

func appendIntField(b []byte, key string, v int64) []byte {
	return strconv.AppendInt(appendKey(b, key), v, 10)
}

// startObject appends {"type":"<typ>".
func startObject(b []byte, typ string) []byte {
	b = append(b, `{"type":"`...)
	b = append(b, typ...)
	return append(b, '"')
}

// member is an {id,nick} pair as listed in joined.members and call.peers.
type member struct{ id, nick string }

// appendMemberRoles appends ms as a JSON array of {id,nick,role} objects,
// for joined.members; roles[i] is ms[i]'s.
func appendMemberRoles(b []byte, ms []member, roles []string) []byte {
	b = append(b, '[')
	for i, m := range ms {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":`...)
		b = appendString(b, m.id)
		b = append(b, `,"nick":`...)
		b = appendString(b, m.nick)
		b = append(b, `,"role":`...)
		b = appendString(b, roles[i])
		b = append(b, '}')
	}
	return append(b, ']')
}

func encodeHello(id, nick, auth string) []byte {
	b := startObject(newFrame(80+len(nick)), "hello")
	b = appendStrField(b, "id", id)
	b = appendStrField(b, "nick", nick)
	b = appendIntField(b, "version", protocolVersion)
	b = appendStrField(b, "auth", auth)
	return frameOf(append(b, '}'))
}

func encodeNick(nick string) []byte {
	b := startObject(newFrame(32+len(nick)), "nick")
	b = appendStrField(b, "nick", nick)
	return frameOf(append(b, '}'))
}

// joinedInfo is what a joined frame reports.
type joinedInfo struct {
	room, epoch    string
	count          int
	members        []byte   // JSON array of {id,nick}, see room.memberList
	history        [][]byte // msg payloads, oldest first
	withRecovered  bool
	recovered      bool
	historyPayload int // total bytes of history, to size the buffer once
	// The joiner's role, the room's host key in clear for its creator only
	// (else ""), and the settings (meetings.go).
	role     string
	hostKey  string
	settings roomSettings
}

// encodeJoined builds a joined frame in three parts to be written back to
// back: head (the frame header and the first fields), the room's shared
// member list as is, and tail (history and the rest). In a big room the list
// is the bulk of the frame; this way a join copies none of it.
func encodeJoined(j *joinedInfo) (head, members, tail []byte) {
	h := startObject(newFrame(200+len(j.room)+len(j.epoch)), "joined")
	h = appendStrField(h, "room", j.room)
	h = appendStrField(h, "epoch", j.epoch)
	h = appendIntField(h, "count", int64(j.count))
	h = appendStrField(h, "role", j.role)
	if j.hostKey != "" {
		h = appendStrField(h, "host_key", j.hostKey)
	}
	h = appendSettings(h, j.settings)
	h = appendKey(h, "members")

	t := make([]byte, 0, 32+j.historyPayload)
	t = append(appendKey(t, "history"), '[')
	for i, m := range j.history {
		if i > 0 {
			t = append(t, ',')
		}
		t = append(t, m...)
	}
	t = append(t, ']')
	if j.withRecovered {
		t = append(appendKey(t, "recovered"), strconv.FormatBool(j.recovered)...)
	}
	t = append(t, '}')

	n := len(h) - maxServerHeaderLen + len(j.members) + len(t)
	start := maxServerHeaderLen - serverHeaderLen(n)
	putServerHeader(h[start:], opText, n)
	return h[start:], j.members, t
}

// encodeHistory builds a history reply from stored msg payloads, oldest
// first.
func encodeHistory(room string, msgs [][]byte, more bool) []byte {
	size := 64 + len(room)
	for _, m := range msgs {
		size += len(m) + 1
	}
	b := startObject(newFrame(size), "history")
	b = appendStrField(b, "room", room)
	b = append(appendKey(b, "messages"), '[')
	for i, m := range msgs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, m...)
	}
	b = append(b, ']')
	b = append(appendKey(b, "more"), strconv.FormatBool(more)...)
	return frameOf(append(b, '}'))
}

func encodeLeft(room string) []byte {
	b := startObject(newFrame(32+len(room)), "left")
	b = appendStrField(b, "room", room)
	return frameOf(append(b, '}'))
}

// encodeMsg builds a msg frame and returns it with the offset of its JSON
// payload, which the room keeps as history.
func encodeMsg(room string, seq uint64, from, nick, text string, ts int64) (frame []byte, payloadAt int) {
	b := startObject(newFrame(80+len(room)+len(from)+len(nick)+len(text)+len(text)/8), "msg")
	b = appendStrField(b, "room", room)
	b = appendIntField(b, "seq", int64(seq))
	b = appendStrField(b, "from", from)
	b = appendStrField(b, "nick", nick)
	b = appendStrField(b, "text", text)
	b = appendIntField(b, "ts", ts)
	return finishFrame(append(b, '}'))
}

func encodePresence(room, event, id, nick string, count int) []byte {
	b := startObject(newFrame(80+len(room)+len(id)+len(nick)), "presence")
	b = appendStrField(b, "room", room)
	b = appendStrField(b, "event", event)
	b = appendStrField(b, "id", id)
	b = appendStrField(b, "nick", nick)
	b = appendIntField(b, "count", int64(count))
	return frameOf(append(b, '}'))
}

func encodeCount(room string, count int) []byte {
	b := startObject(newFrame(48+len(room)), "count")
	b = appendStrField(b, "room", room)
	b = appendIntField(b, "count", int64(count))
	return frameOf(append(b, '}'))
}

// roomCount is one entry of the rooms list.
type roomCount struct {
	Room  string `json:"room"`
	Count int    `json:"count"`
}

func encodeRooms(rooms []roomCount) []byte {
	b := startObject(newFrame(32+len(rooms)*40), "rooms")
	b = append(appendKey(b, "rooms"), '[')
	for i, r := range rooms {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendRoomCount(b, r)
	}
	return frameOf(append(b, ']', '}'))
}

// appendRoomCount appends r as {"room":...,"count":...}.
func appendRoomCount(b []byte, r roomCount) []byte {
	b = append(b, `{"room":`...)
	b = appendString(b, r.Room)
	b = append(b, `,"count":`...)
	b = strconv.AppendInt(b, int64(r.Count), 10)
	return append(b, '}')
}

// encodeCall is the call frame: the room's call peers but skip, each with
// its media state once it announced one (PROTOCOL.md, media), and whether
// the server forwards the call's media (sfu).
func encodeCall(room string, peers []callPeer, skip string, sfu bool) []byte {
	b := startObject(newFrame(48+len(room)+len(peers)*96), "call")
	b = appendStrField(b, "room", room)
	b = append(appendKey(b, "peers"), '[')
	first := true
	for _, p := range peers {
		if p.id == skip {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, `{"id":`...)
		b = appendString(b, p.id)
		b = append(b, `,"nick":`...)
		b = appendString(b, p.nick)
		if p.media.known {
			b = appendMedia(b, p.media)
		}
		b = append(b, '}')
	}
	b = append(b, ']')
	if sfu {
		b = appendBoolField(b, "sfu", true)
	}
	return frameOf(append(b, '}'))
}

func encodeCallPeer(room, event, id, nick string) []byte {
	b := startObject(newFrame(80+len(room)+len(id)+len(nick)), "call_peer")
	b = appendStrField(b, "room", room)
	b = appendStrField(b, "event", event)
	b = appendStrField(b, "id", id)
	b = appendStrField(b, "nick", nick)
	return frameOf(append(b, '}'))
}

func encodeSignal(room, from, nick string, data []byte) []byte {
	b := startObject(newFrame(64+len(room)+len(from)+len(nick)+len(data)), "signal")
	b = appendStrField(b, "room", room)
	b = appendStrField(b, "from", from)
	b = appendStrField(b, "nick", nick)
	b = append(appendKey(b, "data"), data...)
	return frameOf(append(b, '}'))
}

// encodeRoomError is an error frame with the room of the request it
// refuses (a field PROTOCOL.md allows to add).
func encodeRoomError(code, msg, ref, room string) []byte {
	b := startObject(newFrame(80+len(msg)+len(ref)+len(room)), "error")
	b = appendStrField(b, "code", code)
	b = appendStrField(b, "message", msg)
	b = appendStrField(b, "ref", ref)
	b = appendStrField(b, "room", room)
	return frameOf(append(b, '}'))
}

func encodeError(code, msg, ref string) []byte {
	b := startObject(newFrame(64+len(msg)+len(ref)), "error")
	b = appendStrField(b, "code", code)
	b = appendStrField(b, "message", msg)
	b = appendStrField(b, "ref", ref)
	return frameOf(append(b, '}'))
}
