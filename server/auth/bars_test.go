package auth

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestBars(t *testing.T) {
	t.Parallel()
	b := NewBars()
	until := now.Add(BarDuration)
	b.Bar("r", "user-1", until)
	if !b.Barred("r", "user-1", now) || !b.Barred("r", "user-1", until.Add(-time.Nanosecond)) {
		t.Fatal("not barred during the hour")
	}
	if b.Barred("r", "user-1", until) {
		t.Fatal("barred at its end")
	}
	if b.Barred("other", "user-1", now) || b.Barred("r", "user-2", now) {
		t.Fatal("another room or person barred")
	}
	// A second bar replaces the first, later or earlier.
	b.Bar("r", "user-1", until.Add(time.Hour))
	if !b.Barred("r", "user-1", until.Add(time.Minute)) {
		t.Fatal("not extended")
	}
	b.Bar("r", "user-1", now.Add(time.Minute))
	if b.Barred("r", "user-1", now.Add(2*time.Minute)) {
		t.Fatal("not shortened")
	}
	if b.Len() != 1 {
		t.Fatalf("len %d", b.Len())
	}
	b.Lift("r", "user-1")
	if b.Barred("r", "user-1", now) || b.Len() != 0 {
		t.Fatal("barred after Lift")
	}
	b.Lift("r", "never")
	b.Bar("", "x", until)
	b.Bar("r", "", until)
	if b.Len() != 0 || b.Barred("r", "", now) {
		t.Fatal("an empty room or who was barred")
	}
}

func TestBarsExpire(t *testing.T) {
	t.Parallel()
	b := NewBars()
	for i := range 10 {
		b.Bar("r", fmt.Sprint(i), now.Add(time.Duration(10-i)*time.Minute))
	}
	b.Expire(now.Add(5 * time.Minute)) // ends at 1..5 min: 5 gone
	if b.Len() != 5 {
		t.Fatalf("len %d, want 5", b.Len())
	}
	for i := range 10 {
		if want := i < 5; b.Barred("r", fmt.Sprint(i), now.Add(5*time.Minute)) != want {
			t.Errorf("%d barred: %v", i, !want)
		}
	}
	b.Expire(now.Add(time.Hour))
	if b.Len() != 0 {
		t.Fatalf("len %d, want 0", b.Len())
	}
}

func TestBarsBound(t *testing.T) {
	t.Parallel()
	b := NewBars()
	b.max = 3
	b.Bar("r", "long", now.Add(time.Hour))
	b.Bar("r", "ended", now.Add(-time.Minute))
	b.Bar("r", "short", now.Add(time.Minute))
	b.Bar("r", "new", now.Add(30*time.Minute)) // drops "ended"
	if b.Len() != 3 || !b.Barred("r", "long", now) || !b.Barred("r", "short", now) || !b.Barred("r", "new", now) {
		t.Fatal("the ended bar was not the one dropped")
	}
	b.Bar("r", "newer", now.Add(40*time.Minute)) // drops "short", the soonest to end
	if b.Len() != 3 || b.Barred("r", "short", now) || !b.Barred("r", "long", now) || !b.Barred("r", "newer", now) {
		t.Fatal("the soonest-ending bar was not the one dropped")
	}
}

func TestBarsConcurrent(t *testing.T) {
	t.Parallel()
	b := NewBars()
	b.max = 100
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				who := fmt.Sprintf("%d-%d", g, i%150)
				at := now.Add(time.Duration(i) * time.Second)
				b.Bar("r", who, at.Add(time.Minute))
				b.Barred("r", who, at)
				if i%7 == 0 {
					b.Lift("r", who)
				}
				if i%50 == 0 {
					b.Expire(at)
				}
			}
		})
	}
	wg.Wait()
	if b.Len() > 100 {
		t.Fatalf("len %d over the bound", b.Len())
	}
	// The heap's indexes still match after all that.
	for i, e := range b.heap {
		if e.index != i || b.byKey[e.key] != e {
			t.Fatalf("heap entry %d inconsistent", i)
		}
	}
}
