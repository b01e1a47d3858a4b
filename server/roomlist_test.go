package main

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestTopRooms checks the partial ranking against a full sort, with many
// ties on the count so that names decide.
func TestTopRooms(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 5, 99, 100, 101, 1000, 5000} {
		for _, k := range []int{1, 3, 100} {
			all := make([]roomCount, n)
			for i := range all {
				all[i] = roomCount{fmt.Sprintf("r%d", rng.IntN(n*2+1)), 1 + rng.IntN(20)}
			}
			want := slices.Clone(all)
			slices.SortFunc(want, compareRooms)
			want = want[:min(k, n)]
			if got := topRooms(all, k); !slices.Equal(got, want) {
				t.Fatalf("n=%d k=%d: got %v, want %v", n, k, got, want)
			}
		}
	}
}
