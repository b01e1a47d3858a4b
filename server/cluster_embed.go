package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// startCluster joins the cluster when -nats or -nats-embedded is set,
// first starting the embedded NATS server if asked.
func (s *server) startCluster() error {
	url := s.cfg.NATS
	if s.cfg.NATSEmbedded != "" {
		ns, err := startEmbeddedNATS(s.cfg.NATSEmbedded, s.cfg.NATSStore)
		if err != nil {
			return err
		}
		s.natsServer = ns
		s.log.Info("embedded NATS server", "url", ns.ClientURL(), "store", ns.StoreDir())
		if host, _, _ := net.SplitHostPort(ns.Addr().String()); !isLoopbackHost(host) {
			s.log.Warn("embedded NATS server listens beyond loopback with no authentication: whoever reaches it can read, write and delete every room",
				"addr", ns.Addr().String())
		}
		if url == "" {
			url = ns.ClientURL()
		}
	}
	if url == "" {
		return nil
	}
	var opts []nats.Option
	if url == s.cfg.NATS {
		opts = s.cfg.natsOptions() // -nats-creds and the rest are for -nats, not the embedded server
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := startCluster(ctx, s.hub, url, opts, s.log); err != nil {
		s.stopCluster()
		return redactErr(err, url)
	}
	return nil
}

// stopCluster leaves the cluster and stops the embedded NATS server.
func (s *server) stopCluster() {
	s.hub.cl.close()
	if s.natsServer != nil {
		s.natsServer.Shutdown()
		s.natsServer.WaitForShutdown()
		s.natsServer = nil
	}
}

// embeddedNATSAddr splits -nats-embedded into the host and port the NATS
// server listens on. The embedded server has no authentication, so a bare
// port (":4222", "4222") means 127.0.0.1: on every interface, anyone who
// can reach the port could read and rewrite every room. A host given
// explicitly ("0.0.0.0:4222", "10.1.2.3:4222") is the operator's choice.
// Port 0 becomes NATS's "any free port" (-1); to NATS, 0 means 4222.
func embeddedNATSAddr(addr string) (host string, port int, err error) {
	portStr := addr
	if strings.Contains(addr, ":") {
		if host, portStr, err = net.SplitHostPort(addr); err != nil {
			return "", 0, fmt.Errorf("-nats-embedded %q: %w", addr, err)
		}
	}
	port, err = strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("-nats-embedded %q: bad port", addr)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	if port == 0 {
		port = natsserver.RANDOM_PORT
	}
	return host, port, nil
}

// startEmbeddedNATS runs a NATS server with JetStream on addr (see
// embeddedNATSAddr).
func startEmbeddedNATS(addr, store string) (*natsserver.Server, error) {
	host, port, err := embeddedNATSAddr(addr)
	if err != nil {
		return nil, err
	}
	portStr := strconv.Itoa(port)
	if store == "" && port == natsserver.RANDOM_PORT {
		// A port picked at random is never the same twice, so neither
		// is its store: a fresh directory rather than one shared by
		// every such server.
		if store, err = os.MkdirTemp("", "noom-nats-"); err != nil {
			return nil, fmt.Errorf("embedded NATS store: %w", err)
		}
		portStr = filepath.Base(store)[len("noom-nats-"):]
	}
	if store == "" {
		store = filepath.Join(os.TempDir(), "noom-nats-"+portStr)
	}
	opts := &natsserver.Options{
		ServerName: "noom-" + portStr,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   store,
		NoSigs:     true, // noom handles the process's signals
		NoLog:      true,
	}
	ns, err := natsserver.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded NATS on %s did not start", addr)
	}
	return ns, nil
}
