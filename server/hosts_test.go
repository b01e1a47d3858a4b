package main

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
)

func TestParseHosts(t *testing.T) {
	got, err := parseHosts(" Chat.Example ,10.0.0.5,[::1], fe80::1 ,chat.example.,")
	if err != nil || strings.Join(got, " ") != "chat.example 10.0.0.5 ::1 fe80::1 chat.example" {
		t.Fatalf("parsed %q, %v", got, err)
	}
	cfg, err := parseConfig([]string{"-hosts", "A.example,[::1]", "-admin-addr", ""}, io.Discard)
	if err != nil || strings.Join(cfg.Hosts, " ") != "a.example ::1" || cfg.AdminAddr != "" {
		t.Fatalf("-hosts parsed to %q, -admin-addr %q, %v", cfg.Hosts, cfg.AdminAddr, err)
	}
	if _, err := parseConfig([]string{"-hosts", "a.example:8080"}, io.Discard); err == nil {
		t.Error("-hosts with a port accepted by the flag")
	}
	for _, bad := range []string{"chat.example:8080", "[::1]:8080", "10.0.0.5:80", "[10.0.0.5]", "[::1", "a b", "*.example", "a/b", ".example", "a..b", "http://chat.example"} {
		if _, err := parseHosts(bad); err == nil {
			t.Errorf("-hosts %q accepted", bad)
		}
	}
}

func TestHostAllowed(t *testing.T) {
	s := &server{cfg: Config{Hosts: []string{"chat.example", "10.0.0.5", "::1"}}}
	for host, want := range map[string]bool{
		"chat.example":        true,
		"CHAT.Example:8080":   true,
		"chat.example.":       true,
		"chat.example.:443":   true,
		"10.0.0.5":            true,
		"10.0.0.5:80":         true,
		"[::1]":               true,
		"[::1]:8080":          true,
		"[0:0:0:0:0:0:0:1]":   false, // the same address written otherwise: names are compared, not addresses
		"evil.example":        false,
		"evil.example:8080":   false,
		"chat.example.evil":   false,
		"xchat.example":       false,
		"10.0.0.6:80":         false,
		"[::2]:8080":          false,
		"":                    false,
		"chat.example:80:80":  false,
		"chat.example@evil":   false,
		"[chat.example]:8080": false,
	} {
		if got := s.hostAllowed(host); got != want {
			t.Errorf("Host %q: allowed %v, want %v", host, got, want)
		}
	}
	if !(&server{}).hostAllowed("anything.example:1") {
		t.Error("without -hosts a host was refused")
	}
}

// TestHostsRefuseOtherNames: with -hosts, a request naming another host
// gets 421, page, API and upgrade alike, and so does a DNS-rebinding
// upgrade (Origin and Host both the attacker's name); the listed names
// and /healthz still work. Without -hosts that upgrade is accepted.
func TestHostsRefuseOtherNames(t *testing.T) {
	srv := startServer(t, func(c *Config) { c.Hosts = []string{"localhost", "127.0.0.1"} })
	_, port, _ := net.SplitHostPort(srv.addr)
	get := func(path, host string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+srv.addr+path, nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		path, host string
		want       int
	}{
		{"/", "evil.example", http.StatusMisdirectedRequest},
		{"/", "evil.example:" + port, http.StatusMisdirectedRequest},
		{"/api/rooms", "evil.example:" + port, http.StatusMisdirectedRequest},
		{"/api/config", "localhost.evil.example", http.StatusMisdirectedRequest},
		{"/ws", "evil.example", http.StatusMisdirectedRequest},
		{"/healthz", "evil.example", http.StatusOK},
		{"/healthz", "10.1.2.3:" + port, http.StatusOK},
		{"/", "localhost:" + port, http.StatusOK},
		{"/", "LOCALHOST", http.StatusOK},
		{"/api/rooms", "127.0.0.1:" + port, http.StatusOK},
	} {
		if got := get(tc.path, tc.host); got != tc.want {
			t.Errorf("%s with Host %s: %d, want %d", tc.path, tc.host, got, tc.want)
		}
	}

	rebind := dialOpts{headers: map[string]string{"Host": "evil.example:" + port, "Origin": "http://evil.example:" + port}}
	c, _, resp := handshakeRaw(t, srv.addr, rebind)
	c.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("rebinding upgrade: %d, want 421", resp.StatusCode)
	}
	own := dialOpts{headers: map[string]string{"Host": "localhost:" + port, "Origin": "http://localhost:" + port}}
	dialWith(t, srv, own).join("r")
	if _, body := adminGet(t, srv, "/metrics"); !strings.Contains(body, "noom_misdirected_requests_total 6") {
		t.Errorf("misdirected requests not counted:\n%s", grepLines(body, "misdirected"))
	}

	open := startServer(t, nil)
	_, port, _ = net.SplitHostPort(open.addr)
	rebind.headers = map[string]string{"Host": "evil.example:" + port, "Origin": "http://evil.example:" + port}
	dialWith(t, open, rebind) // without -hosts: accepted, as the README says
}

// TestOriginNeedsHosts: with -hosts, the page's own origin must be one of
// the names even where the Host check did not run; an origin listed in
// -origins stays allowed.
func TestOriginNeedsHosts(t *testing.T) {
	s := &server{cfg: Config{Hosts: []string{"chat.example"}, Origins: []string{"https://app.example"}}}
	for _, tc := range []struct {
		host, origin string
		want         bool
	}{
		{"chat.example:8080", "http://chat.example:8080", true},
		{"evil.example:8080", "http://evil.example:8080", false},
		{"chat.example:8080", "https://app.example", true},
		{"chat.example:8080", "http://evil.example:8080", false},
	} {
		r, _ := http.NewRequest(http.MethodGet, "http://"+tc.host+"/ws", nil)
		r.Host = tc.host
		r.Header.Set("Origin", tc.origin)
		if got := s.originAllowed(r); got != tc.want {
			t.Errorf("Host %s, Origin %s: %v, want %v", tc.host, tc.origin, got, tc.want)
		}
	}
}

// TestWarnAnyHost: without -hosts, a start on an address other machines
// reach logs a warning; on loopback, or with -hosts, it does not.
func TestWarnAnyHost(t *testing.T) {
	for _, tc := range []struct {
		addr  string
		hosts []string
		warn  bool
	}{
		{"[::]:8080", nil, true},
		{"0.0.0.0:8080", nil, true},
		{"10.1.2.3:8080", nil, true},
		{"[::]:8080", []string{"chat.example"}, false},
		{"127.0.0.1:8080", nil, false},
		{"[::1]:8080", nil, false},
		{"localhost:8080", nil, false},
	} {
		var logs strings.Builder
		s := &server{cfg: Config{Hosts: tc.hosts}, addr: tc.addr, log: newLogger(&logs, slog.LevelInfo)}
		s.warnAnyHost()
		if got := strings.Contains(logs.String(), "level=WARN") && strings.Contains(logs.String(), "-hosts not set"); got != tc.warn {
			t.Errorf("%s, -hosts %v: warned %v:\n%s", tc.addr, tc.hosts, got, logs.String())
		}
	}
}
