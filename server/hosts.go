package main

import (
	"net"
	"strings"
)

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
