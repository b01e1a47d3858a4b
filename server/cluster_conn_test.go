package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"nats://127.0.0.1:4222":                   "nats://127.0.0.1:4222",
		"nats://noom:s3cret@10.0.0.5:4222":        "nats://noom:xxxxx@10.0.0.5:4222",
		"nats://t0ken@10.0.0.5:4222":              "nats://xxxxx@10.0.0.5:4222",
		"tls://noom:p%40ss@nats.example:4222":     "tls://noom:xxxxx@nats.example:4222",
		"noom:s3cret@10.0.0.5:4222":               "noom:xxxxx@10.0.0.5:4222", // nats.go adds nats://
		"nats://noom:pa/ss@w@rd@h:4222":           "nats://noom:xxxxx@h:4222", // unescaped '/' and '@'
		"nats://noom:@h:4222":                     "nats://noom:xxxxx@h:4222",
		"nats://a:one@h1:4222,nats://two@h2:4222": "nats://a:xxxxx@h1:4222,nats://xxxxx@h2:4222",
		"nats://h1:4222, nats://b:three@h2:4222":  "nats://h1:4222, nats://b:xxxxx@h2:4222",
		"":                                        "",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRedactErr(t *testing.T) {
	const urls = "nats://noom:p%40ss%22w@h1:4222,nats://t0ken@h2:4222"
	base := errors.New("boom")
	for _, msg := range []string{
		`parse "nats://noom:p%40ss%22w@h1:4222": invalid port`, // as written
		`auth failed for p@ss"w`,                               // decoded
		`parse "nats://noom:p@ss\"w@h1": bad`,                  // decoded and %q-escaped
		`token t0ken refused`,
	} {
		err := redactErr(fmt.Errorf("%s: %w", msg, base), urls)
		for _, secret := range []string{"p%40ss", "p@ss", "t0ken"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%q: redacted to %q, still holds %q", msg, err.Error(), secret)
			}
		}
		if !strings.Contains(err.Error(), redacted) || !errors.Is(err, base) {
			t.Errorf("%q: redacted to %q (errors.Is %v)", msg, err.Error(), errors.Is(err, base))
		}
	}
	if err := redactErr(base, urls); err != base {
		t.Errorf("an error without secrets was rewrapped: %v", err)
	}
	if redactErr(nil, urls) != nil {
		t.Error("nil became an error")
	}
}

// lockedBuffer collects a server's log lines for a test to search.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// testNATSWith runs a NATS server with JetStream on a free loopback port,
// with the authentication or TLS that opts sets.
func testNATSWith(t *testing.T, opts natsserver.Options) *natsserver.Server {
	t.Helper()
	opts.Host, opts.Port, opts.JetStream, opts.StoreDir, opts.NoSigs, opts.NoLog = "127.0.0.1", -1, true, t.TempDir(), true, true
	return startTestNATS(t, opts)
}

// startNATSNode starts a node joining NATS with cfg adjusted by mutate, its
// log in logs; the node is shut down when the test ends. It returns the
// start's error.
func startNATSNode(t *testing.T, logs io.Writer, mutate func(*Config)) error {
	t.Helper()
	cfg := defaultConfig()
	cfg.Data = "" // no store in the package directory
	cfg.Addr, cfg.AdminAddr, cfg.MaxConns = "127.0.0.1:0", "", 100
	mutate(&cfg)
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	srv := newServer(cfg, newLogger(logs, slog.LevelDebug))
	if err := srv.start(); err != nil {
		return err
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.shutdown(ctx)
	})
	if srv.hub.cl == nil || !srv.hub.cl.ready.Load() {
		t.Fatal("started, but not in the cluster")
	}
	return nil
}

// TestNATSCredentialsInURL: a NATS server that wants a user and password,
// or a token. The wrong secret fails the start with NATS's own reason and
// without the secret; the right one joins; neither reaches the log.
func TestNATSCredentialsInURL(t *testing.T) {
	for _, tc := range []struct {
		name         string
		opts         natsserver.Options
		right, wrong string // userinfo
		secrets      []string
	}{
		{"password", natsserver.Options{Username: "noom", Password: "right-pw"}, "noom:right-pw", "noom:wrong-pw", []string{"right-pw", "wrong-pw"}},
		{"token", natsserver.Options{Authorization: "right-token"}, "right-token", "wrong-token", []string{"right-token", "wrong-token"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := testNATSWith(t, tc.opts)
			addr := ns.Addr().String()
			var logs lockedBuffer
			err := startNATSNode(t, &logs, func(c *Config) { c.NATS = "nats://" + tc.wrong + "@" + addr })
			if err == nil || !strings.Contains(strings.ToLower(err.Error()), "authorization violation") ||
				!strings.Contains(err.Error(), "xxxxx@"+addr) {
				t.Fatalf("wrong credentials: start error %v, want an authorization violation naming the redacted URL", err)
			}
			t.Logf("wrong credentials: %v", err)
			if err := startNATSNode(t, &logs, func(c *Config) { c.NATS = "nats://" + tc.right + "@" + addr }); err != nil {
				t.Fatalf("right credentials: %v", err)
			}
			if !strings.Contains(logs.String(), "joined the cluster") {
				t.Fatalf("no join in the log:\n%s", logs.String())
			}
			for _, s := range tc.secrets {
				if strings.Contains(err.Error(), s) || strings.Contains(logs.String(), s) {
					t.Errorf("%q in the start error %q or the log:\n%s", s, err, logs.String())
				}
			}
		})
	}
}

// TestNATSCA: a NATS server with TLS whose certificate no system root
// signs; -nats-ca trusts it.
func TestNATSCA(t *testing.T) {
	p := newTestPair(t, t.TempDir())
	cert, err := tls.LoadX509KeyPair(p.certFile, p.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ns := testNATSWith(t, natsserver.Options{TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		TLSTimeout: 2})
	url := "tls://" + ns.Addr().String()
	err = startNATSNode(t, io.Discard, func(c *Config) { c.NATS = url })
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without -nats-ca: %v, want a certificate error", err)
	}
	t.Logf("without -nats-ca: %v", err)
	if err := startNATSNode(t, io.Discard, func(c *Config) { c.NATS, c.NATSCA = url, p.certFile }); err != nil {
		t.Fatalf("with -nats-ca: %v", err)
	}
}

// TestNATSMutualTLS: a NATS server that requires a client certificate
// lets the node in with -nats-cert and -nats-key, not without.
func TestNATSMutualTLS(t *testing.T) {
	dir := t.TempDir()
	srvPair := newTestPair(t, dir)
	serverCert, err := tls.LoadX509KeyPair(srvPair.certFile, srvPair.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	clientCert, clientFile, clientKey := clientPair(t, dir)
	pool := x509.NewCertPool()
	pool.AddCert(clientCert)
	ns := testNATSWith(t, natsserver.Options{TLSVerify: true, TLSTimeout: 2, TLSConfig: &tls.Config{
		Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, MinVersion: tls.VersionTLS12}})
	url := "tls://" + ns.Addr().String()
	if err := startNATSNode(t, io.Discard, func(c *Config) { c.NATS, c.NATSCA = url, srvPair.certFile }); err == nil {
		t.Fatal("joined without a client certificate")
	}
	if err := startNATSNode(t, io.Discard, func(c *Config) {
		c.NATS, c.NATSCA, c.NATSCert, c.NATSKey = url, srvPair.certFile, clientFile, clientKey
	}); err != nil {
		t.Fatalf("with -nats-cert: %v", err)
	}
}

// clientPair writes a self-signed client certificate (clientAuth) and its
// key into dir.
func clientPair(t *testing.T, dir string) (*x509.Certificate, string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "noom node"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	writeAtomic(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	writeAtomic(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	return cert, certFile, keyFile
}

func TestNATSFlags(t *testing.T) {
	dir := t.TempDir()
	creds := filepath.Join(dir, "noom.creds")
	if err := os.WriteFile(creds, []byte("-----BEGIN NATS USER JWT-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := parseConfig([]string{"-nats", "nats://10.0.0.5:4222", "-nats-creds", creds, "-nats-ca", creds}, io.Discard)
	if err != nil || cfg.NATSCreds != creds || cfg.NATSCA != creds || len(cfg.natsOptions()) != 2 {
		t.Fatalf("parsed %+v, %v", cfg, err)
	}
	for _, args := range [][]string{
		{"-nats-creds", creds},                                                   // no -nats
		{"-nats", "nats://h:4222", "-nats-cert", creds},                          // no key
		{"-nats", "nats://h:4222", "-nats-creds", filepath.Join(dir, "missing")}, // no file
	} {
		if _, err := parseConfig(args, io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}
