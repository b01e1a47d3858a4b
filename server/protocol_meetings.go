package main

import "strconv"

// The requests and frames of PROTOCOL.md's "Rooms that belong to someone"
// and "Tokens" (meetings.go, lobby.go, hostctl.go, tokens.go).

// Limits of the meeting fields. A passcode is compared through a slow hash,
// so its length costs nothing but the hash's input; 128 bytes is more than
// any person types. A host key is 22 characters (auth.NewHostKey); the
// bound only keeps junk short.
const (
	maxPasscodeBytes = 128
	maxHostKeyBytes  = 128
	maxTokenBytes    = 8 << 10
)

// Roles (PROTOCOL.md, "Roles").
const (
	roleHost   = "host"
	roleCohost = "cohost"
	roleMember = "member"
)

// validateMeeting checks the fields of the meeting and token requests.
func (r *request) validateMeeting() *reqError {
	switch r.Type {
	case "auth":
		if r.Token == "" {
			return &reqError{errBadField, "missing field token"}
		}
		if len(r.Token) > maxTokenBytes {
			return &reqError{errTooLarge, "token must be at most 8 KiB"}
		}
		return nil
	}
	if !validRoom(r.Room) {
		return badRoom
	}
	switch r.Type {
	case "settings":
		if r.Passcode == nil && r.Lobby == nil && r.Locked == nil && r.Listed == nil {
			return &reqError{errBadField, "settings needs one of passcode, lobby, locked, listed"}
		}
		if r.Passcode != nil && len(*r.Passcode) > maxPasscodeBytes {
			return &reqError{errBadField, "passcode must be at most 128 bytes"}
		}
	case "role":
		if r.ID == "" {
			return &reqError{errBadField, "missing field id"}
		}
		if r.Role != roleHost && r.Role != roleCohost && r.Role != roleMember {
			return &reqError{errBadField, "role must be host, cohost or member"}
		}
	case "admit", "deny", "remove", "mute":
		if r.ID == "" {
			return &reqError{errBadField, "missing field id"}
		}
	case "media":
		if r.Audio == nil || r.Video == nil || r.Screen == nil {
			return &reqError{errBadField, "media needs audio, video and screen (bools)"}
		}
	}
	return nil
}

// roomSettings is a room's settings as the protocol shows them: passcode
// says only whether one is set.
type roomSettings struct {
	passcode, lobby, locked, listed bool
}

func appendBoolField(b []byte, key string, v bool) []byte {
	return strconv.AppendBool(appendKey(b, key), v)
}

func appendSettings(b []byte, s roomSettings) []byte {
	b = append(appendKey(b, "settings"), `{"passcode":`...)
	b = strconv.AppendBool(b, s.passcode)
	b = appendBoolField(b, "lobby", s.lobby)
	b = appendBoolField(b, "locked", s.locked)
	b = appendBoolField(b, "listed", s.listed)
	return append(b, '}')
}

// roleEntry is one {id, role} of a room frame's roles.
type roleEntry struct{ id, role string }

// encodeRoom is the room frame: the settings and the hosts and cohosts.
func encodeRoom(room string, s roomSettings, roles []roleEntry) []byte {
	b := startObject(newFrame(128+len(room)+len(roles)*40), "room")
	b = appendStrField(b, "room", room)
	b = appendSettings(b, s)
	b = append(appendKey(b, "roles"), '[')
	for i, r := range roles {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":`...)
		b = appendString(b, r.id)
		b = append(b, `,"role":`...)
		b = appendString(b, r.role)
		b = append(b, '}')
	}
	return frameOf(append(b, ']', '}'))
}

// encodeRoomBy is the frame of removed, mute and ended: a room and who.
func encodeRoomBy(typ, room, by string) []byte {
	b := startObject(newFrame(48+len(room)+len(by)), typ)
	b = appendStrField(b, "room", room)
	b = appendStrField(b, "by", by)
	return frameOf(append(b, '}'))
}

func encodeWaiting(room string) []byte {
	b := startObject(newFrame(32+len(room)), "waiting")
	b = appendStrField(b, "room", room)
	return frameOf(append(b, '}'))
}

func encodeKnock(room, id, nick string) []byte {
	b := startObject(newFrame(64+len(room)+len(id)+len(nick)), "knock")
	b = appendStrField(b, "room", room)
	b = appendStrField(b, "id", id)
	b = appendStrField(b, "nick", nick)
	return frameOf(append(b, '}'))
}

// mediaState is a call peer's own announcement of what it sends.
type mediaState struct {
	known                bool // announced at least once
	audio, video, screen bool
}

func appendMedia(b []byte, m mediaState) []byte {
	b = appendBoolField(b, "audio", m.audio)
	b = appendBoolField(b, "video", m.video)
	return appendBoolField(b, "screen", m.screen)
}

func encodeCallMedia(room, id, nick string, m mediaState) []byte {
	b := startObject(newFrame(128+len(room)+len(id)+len(nick)), "call_peer")
	b = appendStrField(b, "room", room)
	b = appendStrField(b, "event", "media")
	b = appendStrField(b, "id", id)
	b = appendStrField(b, "nick", nick)
	b = appendMedia(b, m)
	return frameOf(append(b, '}'))
}

func encodeAuthed(sub, nick string, exp int64) []byte {
	b := startObject(newFrame(64+len(sub)+len(nick)), "authed")
	b = appendStrField(b, "sub", sub)
	b = appendStrField(b, "nick", nick)
	b = appendIntField(b, "exp", exp)
	return frameOf(append(b, '}'))
}
