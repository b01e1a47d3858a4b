package main

import (
	"context"
	"os"
	"os/signal"
	"regexp"
	"syscall"
	"testing"
	"time"
)

// TestSIGHUPReloadsCertificate runs the program as main does (run, with
// certificate files that nothing watches), replaces the files, sends the
// process a real SIGHUP and expects the new certificate on the next
// handshake: the signal wiring of run, not only what it calls.
func TestSIGHUPReloadsCertificate(t *testing.T) {
	t.Setenv("GOGC", "100") // or run would lower this test process's GC target
	// Were run's wiring missing, SIGHUP's default action would end the test
	// binary; caught here as well, the signal can only fail the test.
	caught := make(chan os.Signal, 1)
	signal.Notify(caught, syscall.SIGHUP)
	defer signal.Stop(caught)

	dir := t.TempDir()
	a := newTestPair(t, dir)
	logs := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0", "-data", "", "-tls-cert", a.certFile, "-tls-key", a.keyFile, "-tls-reload", "0"}, logs)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		bridgeTestLogs() // run pointed nbio's logger at its own
	}()

	listening := regexp.MustCompile(`msg=listening addr=(\S+)`)
	var addr string
	eventually(t, 10*time.Second, "the listening line", func() bool {
		if m := listening.FindStringSubmatch(logs.String()); m != nil {
			addr = m[1]
		}
		return addr != ""
	})
	if certServed(t, addr, a.cert) != certSHA256(a.cert) {
		t.Fatal("not serving certificate A")
	}
	b := newTestPair(t, dir)
	if certServed(t, addr, a.cert, b.cert) != certSHA256(a.cert) {
		t.Fatal("reloaded before SIGHUP")
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "certificate B after SIGHUP", func() bool {
		return certServed(t, addr, a.cert, b.cert) == certSHA256(b.cert)
	})
}
