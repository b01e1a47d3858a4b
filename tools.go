//go:build tools

// Package tools pins the modules the project will import so that helpers
// working in parallel never have to edit go.mod at the same time.
package tools

import (
	_ "github.com/gorilla/websocket"
	_ "github.com/lesismal/llib/std/crypto/tls"
	_ "github.com/lesismal/nbio/nbhttp"
	_ "github.com/nats-io/nats-server/v2/server"
	_ "github.com/nats-io/nats.go"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/client_golang/prometheus/collectors"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
)
