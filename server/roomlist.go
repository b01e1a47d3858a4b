package main

import (
	"slices"
	"strings"
)

// The list of rooms with members, largest first, for the `rooms` request,
// the push to connections in no room and GET /api/rooms.
//
// Building it means visiting every room under its shard's lock and ranking
// them. Done per request, on the poller goroutine that read the request,
// with a full sort, it took 40–120 ms at 100,000 rooms and stalled every
// other connection of that poller meanwhile, and anyone could ask in a
// loop. So the list is built by the housekeeping tick, once a second and
// only when a count changed, keeping the top maxAPIRooms with a bounded
// heap (4–25 ms at 100,000–300,000 rooms, BenchmarkRoomsRebuild); readers
// take the last build: an immutable value behind an atomic pointer, its
// JSON encoded once (a few microseconds a request, BenchmarkRoomsRequest,
// BenchmarkAPIRooms). The price is staleness: a new room, or a new count,
// shows in the list within a second.

// maxAPIRooms is the most rooms the list keeps, and so the largest limit
// GET /api/rooms takes; the rooms frame lists at most maxListRooms of them.
const maxAPIRooms = 1000

// roomsList is the rooms list of one build. It is never modified once
// stored in hub.list.
type roomsList struct {
	rooms []roomCount // largest first, at most maxAPIRooms
	frame []byte      // the rooms frame of the first maxListRooms, sent as is to every asker
	// json is the JSON array of rooms without its closing bracket, and
	// ends[i] the length of its first i+1 entries: any prefix of the list is
	// json[:ends[i]] plus "]", with no encoding per request.
	json []byte
	ends []int
}

// newRoomsList encodes top, which it keeps.
func newRoomsList(top []roomCount) *roomsList {
	l := &roomsList{rooms: top, frame: encodeRooms(top[:min(len(top), maxListRooms)]), ends: make([]int, len(top))}
	l.json = make([]byte, 0, 1+len(top)*40)
	l.json = append(l.json, '[')
	for i, r := range top {
		if i > 0 {
			l.json = append(l.json, ',')
		}
		l.json = appendRoomCount(l.json, r)
		l.ends[i] = len(l.json)
	}
	return l
}

// roomList returns the rooms list of the last build, largest first, at
// most limit (all it keeps for limit 0). The slice is shared: callers must
// not modify it.
func (h *hub) roomList(limit int) []roomCount {
	rooms := h.list.Load().rooms
	if limit > 0 && len(rooms) > limit {
		rooms = rooms[:limit]
	}
	return rooms[:len(rooms):len(rooms)]
}

// roomsFrame returns the rooms frame of the last build, which every
// `rooms` request is sent as is (frames are shared like a broadcast's).
func (h *hub) roomsFrame() []byte { return h.list.Load().frame }

// roomsJSON returns the body of GET /api/rooms, {"rooms":[...]}, with the
// first limit rooms of the last build (1 ≤ limit ≤ maxAPIRooms).
func (h *hub) roomsJSON(limit int) []byte {
	l := h.list.Load()
	const head, tail = `{"rooms":`, "]}\n"
	list := []byte("[")
	if n := min(limit, len(l.rooms)); n > 0 {
		list = l.json[:l.ends[n-1]]
	}
	b := make([]byte, 0, len(head)+len(list)+len(tail))
	return append(append(append(b, head...), list...), tail...)
}

// rebuildRooms builds the rooms list from the room table and stores it.
// Called by the tick; listMu keeps two builds (a test calling tick beside
// the housekeeping goroutine) off the same scratch slice.
func (h *hub) rebuildRooms() {
	h.listMu.Lock()
	defer h.listMu.Unlock()
	all := h.listScratch[:0]
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for name, r := range sh.rooms {
			// A room with a passcode, or not listed, is never shown
			// (PROTOCOL.md, "Settings").
			if n := r.count(); n > 0 && r.meet.listed() {
				all = append(all, roomCount{name, n})
			}
		}
		sh.mu.Unlock()
	}
	top := slices.Clone(topRooms(all, maxAPIRooms))
	clear(all) // the scratch must not keep room names alive
	h.listScratch = all[:0]
	h.list.Store(newRoomsList(top))
}

// roomBefore orders the rooms list: larger count first, then by name.
func roomBefore(a, b roomCount) bool {
	if a.Count != b.Count {
		return a.Count > b.Count
	}
	return a.Room < b.Room
}

func compareRooms(a, b roomCount) int {
	if a.Count != b.Count {
		return b.Count - a.Count
	}
	return strings.Compare(a.Room, b.Room)
}

// topRooms returns the first k of all in list order, sorted, reordering
// all. It keeps the best k in a heap whose root is the worst of them, so
// that ranking 300,000 rooms costs one comparison for most of them instead
// of a full sort.
func topRooms(all []roomCount, k int) []roomCount {
	if len(all) <= k {
		slices.SortFunc(all, compareRooms)
		return all
	}
	heap := all[:k]
	for i := k/2 - 1; i >= 0; i-- {
		siftDown(heap, i)
	}
	for _, r := range all[k:] {
		if roomBefore(r, heap[0]) {
			heap[0] = r
			siftDown(heap, 0)
		}
	}
	slices.SortFunc(heap, compareRooms)
	return heap
}

// siftDown restores the heap below i: every entry ranks after its
// children, so the root is the one that ranks last.
func siftDown(heap []roomCount, i int) {
	for {
		worst, l, r := i, 2*i+1, 2*i+2
		if l < len(heap) && roomBefore(heap[worst], heap[l]) {
			worst = l
		}
		if r < len(heap) && roomBefore(heap[worst], heap[r]) {
			worst = r
		}
		if worst == i {
			return
		}
		heap[i], heap[worst] = heap[worst], heap[i]
		i = worst
	}
}
