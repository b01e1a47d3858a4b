package auth

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestAttemptsLimit(t *testing.T) {
	t.Parallel()
	a := NewAttempts(5, time.Minute)
	t0 := now
	for i := range 5 {
		at := t0.Add(time.Duration(i) * time.Second)
		if !a.Allow("1.2.3.4", "r", at) {
			t.Fatalf("attempt %d refused", i+1)
		}
		a.Fail("1.2.3.4", "r", at)
	}
	// Five failures within the minute: the sixth attempt is not checked.
	if a.Allow("1.2.3.4", "r", t0.Add(5*time.Second)) {
		t.Fatal("a sixth attempt allowed")
	}
	if a.Allow("1.2.3.4", "r", t0.Add(time.Minute-time.Nanosecond)) {
		t.Fatal("allowed before the first failure is a minute old")
	}
	// Other rooms and other addresses are not affected.
	if !a.Allow("1.2.3.4", "other", t0) || !a.Allow("5.6.7.8", "r", t0) {
		t.Fatal("another pair refused")
	}
	// Sliding: at t0+1m the first failure leaves the window, so one more.
	at := t0.Add(time.Minute)
	if !a.Allow("1.2.3.4", "r", at) {
		t.Fatal("refused once the first failure is a minute old")
	}
	a.Fail("1.2.3.4", "r", at)
	if a.Allow("1.2.3.4", "r", at) {
		t.Fatal("allowed right after a sixth failure in a sliding minute")
	}
	if !a.Allow("1.2.3.4", "r", t0.Add(time.Minute+time.Second)) {
		t.Fatal("refused when only four failures are in the last minute")
	}
	// Forget, after a right passcode.
	a.Forget("1.2.3.4", "r")
	if !a.Allow("1.2.3.4", "r", at) {
		t.Fatal("refused after Forget")
	}
	a.Forget("never", "seen")
}

func TestAttemptsDefaults(t *testing.T) {
	t.Parallel()
	a := NewAttempts(0, 0)
	if a.limit != AttemptLimit || a.window != AttemptWindow || a.max != MaxAttemptEntries {
		t.Fatalf("limit %d window %v max %d", a.limit, a.window, a.max)
	}
}

func TestAttemptsExpire(t *testing.T) {
	t.Parallel()
	a := NewAttempts(5, time.Minute)
	a.Fail("a", "r", now)
	a.Fail("a", "r2", now.Add(10*time.Second))
	a.Fail("b", "r", now.Add(30*time.Second))
	a.Expire(now.Add(time.Minute - time.Nanosecond))
	if a.Len() != 3 {
		t.Fatalf("len %d before any window passed", a.Len())
	}
	a.Expire(now.Add(70 * time.Second))
	if a.Len() != 1 || a.Allow("b", "r", now.Add(70*time.Second)) != true {
		t.Fatalf("len %d, want 1 (b)", a.Len())
	}
	// A pair with a recent failure stays even if its first one is old.
	a.Fail("b", "r", now.Add(80*time.Second))
	a.Expire(now.Add(100 * time.Second))
	if a.Len() != 1 {
		t.Fatalf("len %d, want 1", a.Len())
	}
	a.Expire(now.Add(140 * time.Second))
	if a.Len() != 0 {
		t.Fatalf("len %d, want 0", a.Len())
	}
}

func TestAttemptsBound(t *testing.T) {
	t.Parallel()
	// Full of pairs still in their window: the least recently failed goes.
	a := NewAttempts(2, time.Minute)
	a.max = 3
	a.Fail("v", "r", now)
	a.Fail("v", "r", now)
	a.Fail("x", "r", now.Add(time.Second))
	a.Fail("v2", "r", now.Add(2*time.Second))
	a.Fail("v2", "r", now.Add(2*time.Second))
	a.Fail("x", "r", now.Add(3*time.Second)) // x is now more recent than v
	if a.Allow("v", "r", now.Add(4*time.Second)) || a.Allow("v2", "r", now.Add(4*time.Second)) {
		t.Fatal("v and v2 not locked out")
	}
	a.Fail("y", "r", now.Add(4*time.Second))
	if a.Len() != 3 {
		t.Fatalf("len %d after eviction, want 3", a.Len())
	}
	if !a.Allow("v", "r", now.Add(5*time.Second)) {
		t.Fatal("v, the least recently failed, was not the one evicted")
	}
	if a.Allow("v2", "r", now.Add(5*time.Second)) {
		t.Fatal("v2 evicted")
	}

	// Pairs past their window go before any fresh one.
	b := NewAttempts(1, time.Minute)
	b.max = 3
	b.Fail("stale1", "r", now)
	b.Fail("stale2", "r", now.Add(time.Second))
	b.Fail("x", "r", now.Add(30*time.Second))
	b.Fail("new", "r", now.Add(62*time.Second))
	if b.Len() != 2 {
		t.Fatalf("len %d, want 2: both stale pairs dropped", b.Len())
	}
	if b.Allow("x", "r", now.Add(62*time.Second)) {
		t.Fatal("a fresh pair was evicted")
	}
}

func TestAttemptsConcurrent(t *testing.T) {
	t.Parallel()
	a := NewAttempts(5, time.Minute)
	a.max = 50
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				addr := fmt.Sprintf("10.0.%d.%d", g, i%70)
				at := now.Add(time.Duration(i) * time.Millisecond)
				if a.Allow(addr, "r", at) {
					a.Fail(addr, "r", at)
				}
				if i%50 == 0 {
					a.Expire(at)
					a.Forget(addr, "r")
				}
			}
		})
	}
	wg.Wait()
	if a.Len() > 50 {
		t.Fatalf("len %d over the bound", a.Len())
	}
}

func TestAddrKey(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, want string }{
		{"192.0.2.7:51234", "192.0.2.7"},
		{"192.0.2.7", "192.0.2.7"},
		{"[::ffff:192.0.2.7]:80", "192.0.2.7"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"},
		{"[fe80::1%eth0]:80", "fe80::/64"},
		{"[::1]:80", "::/64"},
		{"unix-socket", "unix-socket"},
		{"", ""},
	} {
		if got := AddrKey(tt.in); got != tt.want {
			t.Errorf("AddrKey(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
