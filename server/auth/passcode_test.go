package auth

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/crypto/argon2"
)

func TestPasscodeRoundTrip(t *testing.T) {
	t.Parallel()
	for _, pc := range []string{"1234", "correct horse battery staple", "  spaces  ", "ünï€ødé", strings.Repeat("x", 10000)} {
		h, err := HashPasscode(pc)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(h, pc) {
			t.Errorf("the hash %q holds the passcode", h)
		}
		if !strings.HasPrefix(h, "$argon2id$v=19$m=12288,t=3,p=1$") {
			t.Errorf("hash %q: unexpected format", h)
		}
		if !CheckPasscode(h, pc) {
			t.Errorf("%.20q does not match its own hash", pc)
		}
	}
}

func TestPasscodeWrong(t *testing.T) {
	t.Parallel()
	h, err := HashPasscode("1234")
	if err != nil {
		t.Fatal(err)
	}
	for _, wrong := range []string{"", "1235", "12345", "123", " 1234", "1234 ", "1234\n"} {
		if CheckPasscode(h, wrong) {
			t.Errorf("%q matches the hash of 1234", wrong)
		}
	}
}

func TestPasscodeSalted(t *testing.T) {
	t.Parallel()
	a, err := HashPasscode("same")
	if err != nil {
		t.Fatal(err)
	}
	b, err := HashPasscode("same")
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatalf("two hashes of one passcode are equal: %q", a)
	}
	saltA, saltB := strings.Split(a, "$")[4], strings.Split(b, "$")[4]
	if saltA == saltB {
		t.Fatalf("same salt %q", saltA)
	}
}

func TestHashPasscodeEmpty(t *testing.T) {
	t.Parallel()
	if h, err := HashPasscode(""); err == nil {
		t.Fatalf("hashed the empty passcode: %q", h)
	}
}

// TestCheckPasscodeOtherParams: the parameters come from the encoded string,
// so hashes made with other settings keep working after a change.
func TestCheckPasscodeOtherParams(t *testing.T) {
	t.Parallel()
	salt := []byte("0123456789abcdef")
	key := argon2.IDKey([]byte("pw"), salt, 1, 8<<10, 2, 24)
	enc := fmt.Sprintf("$argon2id$v=19$m=%d,t=1,p=2$%s$%s", 8<<10, b64.EncodeToString(salt), b64.EncodeToString(key))
	if !CheckPasscode(enc, "pw") {
		t.Fatal("a hash with m=8192,t=1,p=2, a 24-byte key, does not match")
	}
	if CheckPasscode(enc, "pw2") {
		t.Fatal("wrong passcode matched")
	}
}

func TestCheckPasscodeMalformed(t *testing.T) {
	t.Parallel()
	good, err := HashPasscode("pw")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, "$")
	salt, key := parts[4], parts[5]
	with := func(i int, s string) string {
		p := append([]string{}, parts...)
		p[i] = s
		return strings.Join(p, "$")
	}
	for _, enc := range []string{
		"",
		"pw",
		"$",
		"$$$$$",
		"$argon2id$",
		good + "$",
		"x" + good,
		strings.TrimPrefix(good, "$"),
		with(1, "argon2i"),
		with(1, "argon2d"),
		with(1, "scrypt"),
		with(2, "v=16"),
		with(2, "v=019x"),
		with(3, "m=12288,t=3"),
		with(3, "m=12288,t=3,p=1,x=1"),
		with(3, "t=3,m=12288,p=1"),
		with(3, "m=0,t=3,p=1"),
		with(3, "m=12288,t=0,p=1"),
		with(3, "m=12288,t=3,p=0"),
		with(3, "m=4,t=3,p=1"),           // below 8*p KiB
		with(3, "m=99999999,t=3,p=1"),    // 95 GiB
		with(3, "m=12288,t=100000,p=1"),  // minutes
		with(3, "m=12288,t=3,p=255"),     // threads
		with(3, "m=+12288,t=3,p=1"),      // sign
		with(3, "m=0x3000,t=3,p=1"),      // hex
		with(3, "m=12_288,t=3,p=1"),      // underscore
		with(3, "m=99999999999,t=3,p=1"), // overflows uint32
		with(3, "m=-1,t=3,p=1"),
		with(3, "m=,t=3,p=1"),
		with(4, ""),
		with(4, "c2FsdA"),                 // 4-byte salt
		with(4, salt+"=="),                // padding
		with(4, salt+"!"),                 // not base64
		with(4, "AAAAAAAAAAAAAAAAAAAAAB"), // non-canonical trailing bits
		with(5, ""),
		with(5, key[:10]), // short key
		with(5, key+"$x"),
		with(5, strings.Repeat("A", 100)), // 75-byte key
	} {
		if CheckPasscode(enc, "pw") {
			t.Errorf("%q matched", enc)
		}
	}
	if !CheckPasscode(good, "pw") {
		t.Fatal("the good hash does not match")
	}
}

func TestCheckerBusy(t *testing.T) {
	t.Parallel()
	h, err := HashPasscode("pw")
	if err != nil {
		t.Fatal(err)
	}
	c := NewChecker(2)
	if cap(c.slots) != 2 {
		t.Fatalf("slots %d", cap(c.slots))
	}
	if cap(NewChecker(0).slots) != DefaultCheckers {
		t.Fatal("NewChecker(0) is not the default size")
	}
	// Take both slots, as two checks in progress would.
	for i := range 2 {
		if !c.acquire() {
			t.Fatalf("could not take slot %d", i+1)
		}
	}
	if ok, err := c.TryCheck(h, "pw"); !errors.Is(err, ErrBusy) || ok {
		t.Fatalf("TryCheck while saturated: %v, %v", ok, err)
	}
	if err := c.CheckAsync(h, "pw", func(bool) { t.Error("done called while busy") }); !errors.Is(err, ErrBusy) {
		t.Fatalf("CheckAsync while saturated: %v", err)
	}
	if err := c.HashAsync("pw", func(string, error) { t.Error("done called while busy") }); !errors.Is(err, ErrBusy) {
		t.Fatalf("HashAsync while saturated: %v", err)
	}
	c.release()
	if ok, err := c.TryCheck(h, "pw"); err != nil || !ok {
		t.Fatalf("TryCheck with a free slot: %v, %v", ok, err)
	}
	if ok, err := c.TryCheck(h, "nope"); err != nil || ok {
		t.Fatalf("TryCheck, wrong passcode: %v, %v", ok, err)
	}
	c.release()
	if len(c.slots) != 0 {
		t.Fatalf("%d slots still taken", len(c.slots))
	}
}

func TestCheckerAsync(t *testing.T) {
	t.Parallel()
	c := NewChecker(1)
	hashed := make(chan string, 1)
	if err := c.HashAsync("pw", func(enc string, err error) {
		if err != nil {
			t.Error(err)
		}
		hashed <- enc
	}); err != nil {
		t.Fatal(err)
	}
	enc := <-hashed
	// The slot is freed before done runs, so done may start the next one.
	results := make(chan bool, 2)
	for _, pc := range []string{"pw", "wrong"} {
		if err := c.CheckAsync(enc, pc, func(ok bool) { results <- ok }); err != nil {
			t.Fatalf("CheckAsync(%q): %v", pc, err)
		}
		if ok := <-results; ok != (pc == "pw") {
			t.Errorf("CheckAsync(%q) = %v", pc, ok)
		}
	}
	if err := c.HashAsync("", func(_ string, err error) {
		if err == nil {
			t.Error("HashAsync of the empty passcode: no error")
		}
		results <- true
	}); err != nil {
		t.Fatal(err)
	}
	<-results
}

// BenchmarkPasscode measures one hash and one check at the chosen
// parameters: ns/op is the CPU a join with a passcode costs, B/op the memory
// each concurrent check holds.
func BenchmarkPasscode(b *testing.B) {
	b.Run("hash", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := HashPasscode("123456"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("check", func(b *testing.B) {
		h, err := HashPasscode("123456")
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if !CheckPasscode(h, "123456") {
				b.Fatal("no match")
			}
		}
	})
	b.Run("check-malformed", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			CheckPasscode("$argon2id$v=19$m=99999999,t=3,p=1$c2FsdHNhbHRzYWx0$a2V5a2V5a2V5a2V5a2V5a2V5", "123456")
		}
	})
}
