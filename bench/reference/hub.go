package main

import (
	"encoding/json"
	"strconv"
	"time"
)

// badJSON marks a request whose frame did not decode.
const badJSON = "\x00bad_json"

// request is one decoded client frame, handed from a reader to the hub.
type request struct {
	c    *client
	Type string `json:"type"`
	Room string `json:"room"`
	Text string `json:"text"`
}

type room struct {
	members map[*client]bool
	seq     int64
}

// hub owns every room and client; only its run goroutine touches them.
type hub struct {
	register   chan *client
	unregister chan *client
	requests   chan request
	clients    map[*client]bool
	rooms      map[string]*room
	nextID     int64
}

func newHub() *hub {
	return &hub{
		register:   make(chan *client),
		unregister: make(chan *client),
		requests:   make(chan request, 256),
		clients:    map[*client]bool{},
		rooms:      map[string]*room{},
	}
}

func (h *hub) run() {
	for {
		select {
		case c := <-h.register:
			h.nextID++
			c.id = strconv.FormatInt(h.nextID, 36)
			h.clients[c] = true
			connections.Inc()
			h.reply(c, map[string]any{"type": "hello", "id": c.id, "nick": "guest-" + c.id, "version": 1})
		case c := <-h.unregister:
			h.drop(c)
		case r := <-h.requests:
			if h.clients[r.c] {
				h.handle(r)
			}
		}
	}
}

// drop removes a client from everything and ends its writer.
func (h *hub) drop(c *client) {
	if !h.clients[c] {
		return
	}
	for name := range c.rooms {
		h.leave(c, name)
	}
	delete(h.clients, c)
	close(c.send)
	connections.Dec()
}

func (h *hub) leave(c *client, name string) {
	rm := h.rooms[name]
	if rm == nil {
		return
	}
	delete(rm.members, c)
	delete(c.rooms, name)
	if len(rm.members) == 0 {
		delete(h.rooms, name)
	}
}

func (h *hub) handle(r request) {
	c := r.c
	switch r.Type {
	case "join":
		if !validRoom(r.Room) {
			h.fail(c, "bad_field", "room: 1-64 of A-Z a-z 0-9 _ - .", r.Type)
			return
		}
		rm := h.rooms[r.Room]
		if rm == nil {
			rm = &room{members: map[*client]bool{}}
			h.rooms[r.Room] = rm
		}
		rm.members[c] = true
		c.rooms[r.Room] = true
		h.reply(c, map[string]any{"type": "joined", "room": r.Room, "members": []any{}, "count": len(rm.members), "history": []any{}})
	case "leave":
		if !c.rooms[r.Room] {
			h.fail(c, "not_in_room", "not in room "+r.Room, r.Type)
			return
		}
		h.leave(c, r.Room)
		h.reply(c, map[string]any{"type": "left", "room": r.Room})
	case "say":
		switch {
		case !c.rooms[r.Room]:
			h.fail(c, "not_in_room", "not in room "+r.Room, r.Type)
		case len(r.Text) == 0:
			h.fail(c, "bad_field", "text: 1-4096 bytes", r.Type)
		case len(r.Text) > 4096:
			h.fail(c, "too_large", "text: 1-4096 bytes", r.Type)
		default:
			h.broadcast(c, r)
		}
	case badJSON:
		h.fail(c, "bad_json", "not a JSON object", "")
	default:
		h.fail(c, "unknown_type", "unknown type "+strconv.Quote(r.Type), r.Type)
	}
}

// broadcast encodes the message once and queues it to every member; a
// member whose queue is full is dropped, as in gorilla's example.
func (h *hub) broadcast(from *client, r request) {
	rm := h.rooms[r.Room]
	rm.seq++
	b, _ := json.Marshal(map[string]any{
		"type": "msg", "room": r.Room, "seq": rm.seq, "from": from.id, "nick": "guest-" + from.id,
		"text": r.Text, "ts": time.Now().UnixMilli(),
	})
	n := 0
	for m := range rm.members {
		select {
		case m.send <- b:
			n++
		default:
			h.drop(m)
		}
	}
	deliveries.Add(float64(n))
}

func (h *hub) reply(c *client, v map[string]any) {
	b, _ := json.Marshal(v)
	select {
	case c.send <- b:
	default:
		h.drop(c)
	}
}

func (h *hub) fail(c *client, code, msg, ref string) {
	h.reply(c, map[string]any{"type": "error", "code": code, "message": msg, "ref": ref})
}

func validRoom(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '_' || ch == '-' || ch == '.') {
			return false
		}
	}
	return true
}
