package main

import (
	"fmt"
	"net"
	"net/http"
	"strings"
)

// -hosts: the host names this server answers to. A browser's same-origin
// rule is about names, not addresses: a page on evil.example whose DNS
// name is then re-pointed at this server's address (DNS rebinding) makes
// requests that are same-origin to the browser, with Host and Origin both
// evil.example, so the WebSocket origin check (Origin against Host) passes
// them. Only the server can tell that evil.example is not one of its
// names. With -hosts set, a request naming another host is answered 421
// Misdirected Request (RFC 9110 §15.5.20: "not able to produce a response
// for this target"), which says what is wrong without pretending to be
// about the client's permissions, as 403 would.

// parseHosts reads -hosts: comma-separated host names or IP literals,
// without ports, IPv6 in brackets or bare. It returns them normalized as
// hostOf would a Host header.
func parseHosts(s string) ([]string, error) {
	var out []string
	for _, h := range strings.Split(s, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		n := normalizeHost(h)
		if n == "" {
			return nil, fmt.Errorf("-hosts %q: want a host name or IP literal without a port", h)
		}
		out = append(out, n)
	}
	return out, nil
}

// normalizeHost lower-cases a host name or IP literal and drops IPv6
// brackets and a DNS name's trailing dot (the same name, fully qualified).
// It returns "" for anything else, a port included.
func normalizeHost(h string) string {
	if strings.HasPrefix(h, "[") {
		inner, ok := strings.CutSuffix(h[1:], "]")
		if ip := net.ParseIP(inner); !ok || ip == nil || ip.To4() != nil {
			return ""
		}
		return strings.ToLower(inner)
	}
	if strings.Contains(h, ":") { // only an IPv6 literal may have colons without brackets
		if ip := net.ParseIP(h); ip == nil || ip.To4() != nil {
			return ""
		}
		return strings.ToLower(h)
	}
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if !validHost(h) || strings.HasPrefix(h, ".") || strings.Contains(h, "..") {
		return ""
	}
	return h
}

// hostOf is the host part of a Host header (or an Origin's host), as
// normalizeHost makes it, or "" if it is malformed.
func hostOf(hostport string) string {
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
		if strings.HasPrefix(hostport, "[") {
			h = "[" + h + "]" // SplitHostPort took the brackets off; only an IPv6 literal may have them
		}
	}
	return normalizeHost(h)
}

// hostAllowed reports whether hostport names one of -hosts; any host
// does when -hosts is not set.
func (s *server) hostAllowed(hostport string) bool {
	if len(s.cfg.Hosts) == 0 {
		return true
	}
	h := hostOf(hostport)
	if h == "" {
		return false
	}
	for _, a := range s.cfg.Hosts {
		if a == h {
			return true
		}
	}
	return false
}

// checkHost answers 421 to a request whose Host is not in -hosts: the
// page, the API and the WebSocket upgrade alike. /healthz is exempt: load
// balancers and orchestrators probe it by address (Kubernetes sends the
// pod's IP as Host), and what it says (ok, degraded, draining) is no
// secret worth a rebinding. Without -hosts it is not in the chain at all.
func (s *server) checkHost(next http.Handler) http.Handler {
	if len(s.cfg.Hosts) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" && !s.hostAllowed(r.Host) {
			s.stats.misdirected.Add(1)
			w.Header().Set("Connection", "close") // the client should try another connection, if any
			http.Error(w, "misdirected request: this server does not answer for that host", http.StatusMisdirectedRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// warnAnyHost says at start when the public listener is reachable from
// other machines and -hosts is not set: every name that resolves to this
// address is then served, rebinding included.
func (s *server) warnAnyHost() {
	host, _, err := net.SplitHostPort(s.addr)
	if len(s.cfg.Hosts) > 0 || (err == nil && isLoopbackHost(host)) {
		return
	}
	s.log.Warn("-hosts not set: any Host header is served, so a page on another site can reach this server through DNS rebinding; set -hosts to the names it is reached by",
		"addr", s.addr)
}

// isLoopbackHost reports whether a listen address's host part binds to
// loopback only: "localhost" or a loopback IP. An empty host, "0.0.0.0"
// and "::" listen on every interface.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	return ip != nil && ip.IsLoopback()
}
