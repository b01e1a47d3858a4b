package main

import (
	"net"
	"testing"
)

// TestEmbeddedNATSLoopback: -nats-embedded with a bare port listens on
// loopback only, on a free port for port 0, and the node joins it.
func TestEmbeddedNATSLoopback(t *testing.T) {
	srv := startServer(t, func(c *Config) { c.NATSEmbedded, c.NATSStore = ":0", t.TempDir() })
	host, port, err := net.SplitHostPort(srv.natsServer.Addr().String())
	if err != nil || host != "127.0.0.1" || port == "4222" || port == "0" {
		t.Fatalf("embedded NATS listens on %v, want 127.0.0.1 and a free port", srv.natsServer.Addr())
	}
	if srv.hub.cl == nil || !srv.hub.cl.ready.Load() {
		t.Fatal("the node did not join its embedded NATS server")
	}
}

func TestEmbeddedNATSAddr(t *testing.T) {
	for _, tc := range []struct {
		in   string
		host string
		port int
	}{
		{":4222", "127.0.0.1", 4222},
		{"4222", "127.0.0.1", 4222},
		{":0", "127.0.0.1", -1},
		{"0.0.0.0:4222", "0.0.0.0", 4222},
		{"10.1.2.3:4222", "10.1.2.3", 4222},
		{"[::1]:4222", "::1", 4222},
		{"[::]:4222", "::", 4222},
		{"localhost:4222", "localhost", 4222},
	} {
		host, port, err := embeddedNATSAddr(tc.in)
		if err != nil || host != tc.host || port != tc.port {
			t.Errorf("%q: %q %d %v, want %q %d", tc.in, host, port, err, tc.host, tc.port)
		}
	}
	for _, bad := range []string{"", "x", ":x", "1.2.3.4", ":70000", ":-2", "[::1"} {
		if _, _, err := embeddedNATSAddr(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestIsLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1": true, "127.1.2.3": true, "::1": true, "[::1]": true, "localhost": true, "LocalHost": true,
		"": false, "0.0.0.0": false, "::": false, "10.1.2.3": false, "example.com": false, "localhost.example": false,
	} {
		if got := isLoopbackHost(host); got != want {
			t.Errorf("isLoopbackHost(%q) = %v", host, got)
		}
	}
}
