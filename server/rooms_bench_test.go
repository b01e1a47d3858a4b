package main

import (
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strconv"
	"testing"
)

// The rooms list at many rooms: what one `rooms` request and one
// GET /api/rooms cost the goroutine that serves them, and what the
// once-a-second rebuild costs the housekeeping goroutine.

// listHub returns a hub, its workers not started, with n rooms of 1 to 50
// members and the rooms list built once. The members are nil: the list
// reads only counts.
func listHub(b *testing.B, n int) *hub {
	cfg := defaultConfig()
	h := newHub(&cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), &stats{}, newClock())
	for i := 0; i < n; i++ {
		name := "room-" + strconv.Itoa(i)
		r := h.newRoom(name)
		r.members = make([]*client, 1+i*7919%50)
		h.shardOf(name).rooms[name] = r
	}
	h.start() // to take the rooms frames the tick pushes
	b.Cleanup(h.stop)
	h.roomsDirty.Store(true)
	h.tick()
	return h
}

var roomCounts = []int{1000, 100000, 300000}

// benchRooms runs fn for each of roomCounts rooms, on a hub holding them.
func benchRooms(b *testing.B, fn func(b *testing.B, h *hub)) {
	for _, n := range roomCounts {
		b.Run(fmt.Sprintf("rooms=%d", n), func(b *testing.B) {
			h := listHub(b, n)
			b.ReportAllocs()
			b.ResetTimer()
			fn(b, h)
		})
	}
}

// BenchmarkRoomsRequest is the `rooms` request as conn.go answers it.
func BenchmarkRoomsRequest(b *testing.B) {
	benchRooms(b, func(b *testing.B, h *hub) {
		for i := 0; i < b.N; i++ {
			_ = h.roomsFrame()
		}
	})
}

// BenchmarkAPIRooms is GET /api/rooms with its default limit.
func BenchmarkAPIRooms(b *testing.B) {
	benchRooms(b, func(b *testing.B, h *hub) {
		s := &server{hub: h}
		req := httptest.NewRequest("GET", "/api/rooms", nil)
		for i := 0; i < b.N; i++ {
			s.apiRooms(httptest.NewRecorder(), req)
		}
	})
}

// BenchmarkRoomsRebuild is the tick's rebuild of a changed list, on the
// housekeeping goroutine.
func BenchmarkRoomsRebuild(b *testing.B) {
	benchRooms(b, func(b *testing.B, h *hub) {
		for i := 0; i < b.N; i++ {
			h.roomsDirty.Store(true)
			h.tick()
		}
	})
}
