package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
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
		if url == "" {
			url = ns.ClientURL()
		}
	}
	if url == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := startCluster(ctx, s.hub, url, s.log); err != nil {
		s.stopCluster()
		return err
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

// startEmbeddedNATS runs a NATS server with JetStream on addr.
func startEmbeddedNATS(addr, store string) (*natsserver.Server, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("-nats-embedded %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("-nats-embedded %q: bad port", addr)
	}
	if host == "" {
		host = "0.0.0.0"
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
