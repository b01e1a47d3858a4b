package sfu

import (
	"cmp"
	"slices"
	"sync/atomic"
)

// Speaker detection follows LiveKit's rule (pkg/sfu/audio/audiolevel.go):
// a peer speaks in a window if at least activePercent of its audio packets
// carry an RFC 6464 level at or under activeLevel (the level is −dBov:
// 0 is loudest, 127 silence). Speakers are ranked loudest first by their
// mean level over the active packets.
const (
	activeLevel   = 35
	activePercent = 40
)

// audioLevels accumulates one published audio track's levels over the
// current window. The forwarder adds with atomics; the call's speaker
// ticker takes and resets the sums, so neither waits for the other.
type audioLevels struct {
	packets atomic.Uint32 // packets with a level in the window
	active  atomic.Uint32 // of which at or under activeLevel
	sum     atomic.Uint32 // sum of the active packets' levels
}

// observe records one packet's level.
func (a *audioLevels) observe(level uint8) {
	a.packets.Add(1)
	if level <= activeLevel {
		a.active.Add(1)
		a.sum.Add(uint32(level))
	}
}

// window ends the window: the mean active level, and whether the track
// was speaking. A packet observed during the swaps may fall into either
// window; no matter at this resolution.
func (a *audioLevels) window() (mean float64, speaking bool) {
	n := a.packets.Swap(0)
	act := a.active.Swap(0)
	sum := a.sum.Swap(0)
	if n == 0 || act*100 < activePercent*n {
		return 0, false
	}
	return float64(sum) / float64(act), true
}

// speaker is one peer's standing in a window.
type speaker struct {
	id    string
	level float64 // mean active level: lower is louder
}

// rank orders speakers loudest first (ties by id, so the list is stable)
// and returns their ids; a peer publishing two audio tracks counts once.
func rank(ss []speaker) []string {
	slices.SortFunc(ss, func(a, b speaker) int {
		if c := cmp.Compare(a.level, b.level); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
	ids := make([]string, 0, len(ss))
	for _, s := range ss {
		if !slices.Contains(ids, s.id) {
			ids = append(ids, s.id)
		}
	}
	return ids
}
