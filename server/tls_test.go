package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	ltls "github.com/lesismal/llib/std/crypto/tls"
)

// HTTPS and WSS (tls.go), with Go's crypto/tls as the client: a real
// engine on 127.0.0.1:0, the raw-frame client of helpers_test.go over a
// *tls.Conn.

// testPair is a certificate for 127.0.0.1 written as PEM files.
type testPair struct {
	cert     *x509.Certificate
	certFile string
	keyFile  string
}

// newTestPair makes a certificate and writes it into dir as cert.pem and
// key.pem, replacing any there by rename, as renewal tools do.
func newTestPair(t *testing.T, dir string) testPair {
	t.Helper()
	c, _, err := selfSigned(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	p := testPair{cert: c.Leaf, certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem")}
	writeAtomic(t, p.keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: key}))
	writeAtomic(t, p.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}))
	return p
}

func writeAtomic(t *testing.T, name string, b []byte) {
	t.Helper()
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, name); err != nil {
		t.Fatal(err)
	}
}

// startTLSServer runs a server with TLS from a fresh pair, with cfg
// adjusted by mutate.
func startTLSServer(t *testing.T, mutate func(*Config)) (*server, testPair) {
	t.Helper()
	p := newTestPair(t, t.TempDir())
	srv := startServer(t, func(c *Config) {
		c.TLSCert, c.TLSKey = p.certFile, p.keyFile
		if mutate != nil {
			mutate(c)
		}
	})
	return srv, p
}

// clientTLS trusts the given certificates, for 127.0.0.1.
func clientTLS(certs ...*x509.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{"h2", "http/1.1"}}
}

// dialTLS opens a TLS connection to addr, handshake done.
func dialTLS(addr string, cfg *tls.Config, d *net.Dialer) (*tls.Conn, error) {
	if d == nil {
		d = &net.Dialer{}
	}
	d.Timeout = 5 * time.Second
	return tls.DialWithDialer(d, "tcp", addr, cfg)
}

// dialWSS connects a WebSocket client over TLS, through d if given, and
// reads its hello.
func dialWSS(t *testing.T, srv *server, cfg *tls.Config, d ...*net.Dialer) *wsConn {
	t.Helper()
	c, err := dialTLS(srv.addr, cfg, append(d, nil)[0])
	if err != nil {
		t.Fatalf("TLS dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	br, resp := upgradeOver(t, c, srv.addr, dialOpts{})
	return upgraded(t, c, br, resp)
}

// httpsClient trusts cfg's roots and never follows redirects.
func httpsClient(cfg *tls.Config) *http.Client {
	return &http.Client{
		Timeout:       5 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: false},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func getBody(t *testing.T, cl *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := cl.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func certSHA256(c *x509.Certificate) [32]byte { return sha256.Sum256(c.Raw) }

// certServed returns the hash of the certificate a new handshake with addr
// gets, trusting the given ones.
func certServed(t testing.TB, addr string, trust ...*x509.Certificate) [32]byte {
	t.Helper()
	c, err := dialTLS(addr, clientTLS(trust...), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return certSHA256(c.ConnectionState().PeerCertificates[0])
}

// TestTLSWebSocket runs the protocol over WSS: two clients chat through a
// room, under TLS 1.3 and under TLS 1.2 with each AEAD suite, and ALPN
// picks HTTP/1.1 although the client offers h2 first.
func TestTLSWebSocket(t *testing.T) {
	srv, p := startTLSServer(t, nil)
	cases := []struct {
		name   string
		max    uint16
		suites []uint16
	}{
		{"TLS1.3", tls.VersionTLS13, nil},
		{"TLS1.2-ECDSA-AES128-GCM", tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}},
		{"TLS1.2-ECDSA-AES256-GCM", tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}},
		{"TLS1.2-ECDSA-CHACHA20", tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := clientTLS(p.cert)
			cfg.MaxVersion, cfg.CipherSuites = tc.max, tc.suites
			a := dialWSS(t, srv, cfg)
			b := dialWSS(t, srv, cfg)
			st := a.c.(*tls.Conn).ConnectionState()
			if st.Version != tc.max || st.NegotiatedProtocol != "http/1.1" {
				t.Fatalf("negotiated version %x, ALPN %q; want %x, http/1.1", st.Version, st.NegotiatedProtocol, tc.max)
			}
			if tc.suites != nil && st.CipherSuite != tc.suites[0] {
				t.Fatalf("cipher suite %s", tls.CipherSuiteName(st.CipherSuite))
			}
			a.join("r")
			b.join("r")
			a.expect("presence")
			a.send(map[string]any{"type": "say", "room": "r", "text": "over tls"})
			for _, ws := range []*wsConn{a, b} {
				if m := ws.expect("msg"); m.str("text") != "over tls" || m.str("from") != a.id {
					t.Fatalf("got %v", m)
				}
			}
			// A message far larger than one TLS record arrives whole.
			big := strings.Repeat("y", 4000)
			for i := 0; i < 20; i++ {
				a.send(map[string]any{"type": "say", "room": "r", "text": big})
			}
			for i := 0; i < 20; i++ {
				if m := b.expect("msg"); m.str("text") != big {
					t.Fatalf("message %d: %d bytes", i, len(m.str("text")))
				}
			}
			if err := a.writeFrame(opPing, true, []byte("p")); err != nil {
				t.Fatal(err)
			}
			for {
				f, err := a.readFrame(5 * time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if f.op == opPong {
					break
				}
			}
			if err := a.writeFrame(opClose, true, []byte{0x03, 0xE8}); err != nil {
				t.Fatal(err)
			}
			a.expectClose(closeNormal)
		})
	}
}

// TestTLSRefusesOldVersionsAndWeakSuites: TLS 1.0 and 1.1 fail, and so does
// a TLS 1.2 client offering only CBC suites.
func TestTLSRefusesOldVersionsAndWeakSuites(t *testing.T) {
	srv, p := startTLSServer(t, nil)
	cases := []struct {
		name     string
		min, max uint16
		suites   []uint16
	}{
		{"TLS1.0", tls.VersionTLS10, tls.VersionTLS10, nil},
		{"TLS1.1", tls.VersionTLS10, tls.VersionTLS11, nil},
		{"TLS1.2-CBC-only", tls.VersionTLS12, tls.VersionTLS12, []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := clientTLS(p.cert)
			cfg.MinVersion, cfg.MaxVersion, cfg.CipherSuites = tc.min, tc.max, tc.suites
			c, err := dialTLS(srv.addr, cfg, nil)
			if err == nil {
				st := c.ConnectionState()
				c.Close()
				t.Fatalf("handshake succeeded: version %x, suite %s", st.Version, tls.CipherSuiteName(st.CipherSuite))
			}
			t.Logf("refused: %v", err)
		})
	}
	// Plain HTTP on the TLS port gets no HTTP answer.
	c, err := net.Dial("tcp", srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	b, _ := io.ReadAll(c)
	if strings.Contains(string(b), "HTTP/1.1") {
		t.Fatalf("plain request on the TLS port answered: %q", b)
	}
}

// TestTLSHTTP: the page, /healthz and the API over HTTPS, with HSTS.
func TestTLSHTTP(t *testing.T) {
	srv, p := startTLSServer(t, nil)
	cl := httpsClient(clientTLS(p.cert))
	base := "https://" + srv.addr
	for _, path := range []string{"/", "/healthz", "/api/config"} {
		resp, body := getBody(t, cl, base+path)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %.80s", path, resp.StatusCode, body)
		}
		if got := resp.Header.Get("Strict-Transport-Security"); got != "max-age=31536000" {
			t.Errorf("%s: Strict-Transport-Security %q", path, got)
		}
		if resp.TLS == nil || resp.TLS.NegotiatedProtocol != "http/1.1" || resp.ProtoMajor != 1 {
			t.Errorf("%s: protocol %s, ALPN %v", path, resp.Proto, resp.TLS)
		}
		switch path {
		case "/":
			if !strings.Contains(body, "<html") || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
				t.Errorf("/: %.80s, CSP %q", body, resp.Header.Get("Content-Security-Policy"))
			}
		case "/healthz":
			if body != "ok\n" {
				t.Errorf("/healthz: %q", body)
			}
		}
	}
	// Refusals carry it too.
	resp, _ := getBody(t, cl, base+"/ws")
	if resp.StatusCode != http.StatusUpgradeRequired || resp.Header.Get("Strict-Transport-Security") == "" {
		t.Errorf("/ws without upgrade: %d, HSTS %q", resp.StatusCode, resp.Header.Get("Strict-Transport-Security"))
	}

	t.Run("off", func(t *testing.T) {
		srv, p := startTLSServer(t, func(c *Config) { c.HSTSMaxAge = 0 })
		resp, _ := getBody(t, httpsClient(clientTLS(p.cert)), "https://"+srv.addr+"/healthz")
		if resp.StatusCode != 200 || resp.Header.Get("Strict-Transport-Security") != "" {
			t.Fatalf("-hsts-max-age 0: %d, HSTS %q", resp.StatusCode, resp.Header.Get("Strict-Transport-Security"))
		}
	})
}

// TestTLSCertificateReload: replaced files are picked up by the watcher,
// and by reloadTLS (what SIGHUP calls: TestSIGHUPReloadsCertificate sends
// the signal); a bad pair keeps the old one; connections made before a
// reload keep working.
func TestTLSCertificateReload(t *testing.T) {
	seen := func(t *testing.T, srv *server, trust ...*x509.Certificate) [32]byte {
		t.Helper()
		return certServed(t, srv.addr, trust...)
	}

	t.Run("files change", func(t *testing.T) {
		dir := t.TempDir()
		a := newTestPair(t, dir)
		srv := startServer(t, func(c *Config) {
			c.TLSCert, c.TLSKey, c.TLSReload = a.certFile, a.keyFile, 20*time.Millisecond
		})
		if seen(t, srv, a.cert) != certSHA256(a.cert) {
			t.Fatal("first connection does not see certificate A")
		}
		old := dialWSS(t, srv, clientTLS(a.cert))
		old.join("r")
		b := newTestPair(t, dir)
		eventually(t, 5*time.Second, "certificate B", func() bool {
			return seen(t, srv, a.cert, b.cert) == certSHA256(b.cert)
		})
		old.send(map[string]any{"type": "say", "room": "r", "text": "still here"})
		if m := old.expect("msg"); m.str("text") != "still here" {
			t.Fatalf("got %v", m)
		}
	})

	t.Run("reloadTLS", func(t *testing.T) {
		dir := t.TempDir()
		a := newTestPair(t, dir)
		srv := startServer(t, func(c *Config) {
			c.TLSCert, c.TLSKey, c.TLSReload = a.certFile, a.keyFile, 0 // SIGHUP only
		})
		b := newTestPair(t, dir)
		time.Sleep(50 * time.Millisecond)
		if seen(t, srv, a.cert, b.cert) != certSHA256(a.cert) {
			t.Fatal("reloaded without reloadTLS")
		}
		if err := srv.reloadTLS(); err != nil {
			t.Fatal(err)
		}
		if seen(t, srv, a.cert, b.cert) != certSHA256(b.cert) {
			t.Fatal("reloadTLS did not switch to certificate B")
		}

		// A key that does not match the certificate: B stays.
		c := newTestPair(t, t.TempDir())
		key, _ := os.ReadFile(c.keyFile)
		writeAtomic(t, filepath.Join(dir, "key.pem"), key)
		if err := srv.reloadTLS(); err == nil {
			t.Fatal("mismatched pair loaded")
		}
		if seen(t, srv, b.cert) != certSHA256(b.cert) {
			t.Fatal("a bad pair replaced certificate B")
		}
		writeAtomic(t, filepath.Join(dir, "key.pem"), []byte("not a key"))
		if err := srv.reloadTLS(); err == nil {
			t.Fatal("garbage key loaded")
		}
		if seen(t, srv, b.cert) != certSHA256(b.cert) {
			t.Fatal("a garbage key replaced certificate B")
		}
	})
}

// TestTLSSlowConsumer: over WSS the cap counts ciphertext and still closes
// a member that does not read with 1013, while a reading member gets
// every message. The default cap (1 MiB) this time.
func TestTLSSlowConsumer(t *testing.T) {
	srv, p := startTLSServer(t, func(c *Config) { c.Rate, c.Burst = 1e6, 1e6 })
	cfg := clientTLS(p.cert)
	checkSlowConsumer(t, dialWSS(t, srv, cfg, smallReceiveBuffer()), dialWSS(t, srv, cfg), dialWSS(t, srv, cfg), func() string {
		_, body := adminGet(t, srv, "/metrics") // plain HTTP: the admin listener has no TLS
		return body
	})
}

// TestTLSUpgradedConnection: once upgraded, a WSS connection no longer
// holds its handshake state (dropHandshakeState) and still works, under
// TLS 1.2 and 1.3; and its handed and written counters both count
// ciphertext: with nothing left to send they are equal, where counting
// plaintext would leave them apart by the records' overhead.
func TestTLSUpgradedConnection(t *testing.T) {
	if len(handshakeLeftovers) != 4 {
		t.Fatalf("llib's tls.Conn fields moved: %d of 4 found", len(handshakeLeftovers))
	}
	srv, p := startTLSServer(t, nil)
	for _, max := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		cfg := clientTLS(p.cert)
		cfg.MaxVersion = max
		ws := dialWSS(t, srv, cfg)
		c := srv.hub.lookup(ws.id)
		if c == nil || c.conn == nil || !c.sinkCounts {
			t.Fatal("no TLS client counting ciphertext on the server")
		}
		if c.conn.Conn.(*ltls.Conn).ClientHello() != nil {
			t.Fatalf("TLS %x: the ClientHello is still held", max)
		}
		ws.join("r")
		for i := 0; i < 10; i++ {
			text := strings.Repeat("z", 100*i+1)
			ws.send(map[string]any{"type": "say", "room": "r", "text": text})
			if m := ws.expect("msg"); m.str("text") != text {
				t.Fatalf("got %v", m)
			}
		}
		eventually(t, 2*time.Second, "handed == written", func() bool {
			return c.handed.Load() == c.written.Load()
		})
		// Ten frames of 1..901 bytes, with at least 22 bytes of TLS
		// overhead each (24 under 1.2 with AES-GCM, 22 under 1.3).
		if c.written.Load() < int64(10*22+100*45) {
			t.Fatalf("written %d: not ciphertext", c.written.Load())
		}
	}
}

// TestTLSRedirect: the plain listener answers every request with a
// redirect to the same host, path and query on the TLS port.
func TestTLSRedirect(t *testing.T) {
	srv, _ := startTLSServer(t, func(c *Config) { c.HTTPRedirect = "127.0.0.1:0" })
	if srv.redirectAddr == "" || srv.redirectAddr == srv.addr {
		t.Fatalf("redirect listener %q, TLS %q", srv.redirectAddr, srv.addr)
	}
	_, tlsPort, _ := net.SplitHostPort(srv.addr)
	cl := httpsClient(nil)
	cases := []struct {
		method, host, path string
		status             int
		location           string
	}{
		{"GET", "", "/room?x=1&y=%20", http.StatusMovedPermanently, "https://127.0.0.1:" + tlsPort + "/room?x=1&y=%20"},
		{"HEAD", "chat.example:8080", "/", http.StatusMovedPermanently, "https://chat.example:" + tlsPort + "/"},
		{"POST", "[::1]:80", "/api/rooms", http.StatusPermanentRedirect, "https://[::1]:" + tlsPort + "/api/rooms"},
		{"GET", "chat.example", "/ws", http.StatusMovedPermanently, "https://chat.example:" + tlsPort + "/ws"},
		{"GET", "evil/x", "/", http.StatusBadRequest, ""},
	}
	for _, tc := range cases {
		req, _ := http.NewRequest(tc.method, "http://"+srv.redirectAddr+tc.path, nil)
		if tc.host != "" {
			req.Host = tc.host
		}
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status || resp.Header.Get("Location") != tc.location {
			t.Errorf("%s %s Host %q: %d %q, want %d %q", tc.method, tc.path, tc.host, resp.StatusCode,
				resp.Header.Get("Location"), tc.status, tc.location)
		}
		if resp.Header.Get("Strict-Transport-Security") != "" {
			t.Errorf("HSTS sent over plain HTTP")
		}
	}
	if got := redirectTarget(t, srv, "443"); got != "https://chat.example/p" {
		t.Errorf("to port 443: %q", got)
	}
}

// redirectTarget is the Location for GET /p with Host chat.example when the
// TLS listener is taken to be on port.
func redirectTarget(t *testing.T, srv *server, port string) string {
	t.Helper()
	old := srv.tls.httpsPort.Load()
	srv.tls.httpsPort.Store(port)
	defer srv.tls.httpsPort.Store(old)
	req, _ := http.NewRequest("GET", "http://"+srv.redirectAddr+"/p", nil)
	req.Host = "chat.example"
	resp, err := httpsClient(nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.Header.Get("Location")
}

// TestTLSOriginPolicy: with TLS the page's own origin is https only.
func TestTLSOriginPolicy(t *testing.T) {
	srv, p := startTLSServer(t, func(c *Config) { c.Origins = []string{"https://chat.example"} })
	cases := []struct {
		origin string
		status int
	}{
		{"https://" + srv.addr, http.StatusSwitchingProtocols},
		{"http://" + srv.addr, http.StatusForbidden},
		{"https://chat.example", http.StatusSwitchingProtocols},
		{"https://evil.example", http.StatusForbidden},
		{"null", http.StatusForbidden},
	}
	for _, tc := range cases {
		c, err := dialTLS(srv.addr, clientTLS(p.cert), nil)
		if err != nil {
			t.Fatal(err)
		}
		_, resp := upgradeOver(t, c, srv.addr, dialOpts{headers: map[string]string{"Origin": tc.origin}})
		c.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("Origin %q: status %d, want %d", tc.origin, resp.StatusCode, tc.status)
		}
	}
}

// TestTLSSelfSigned: the made certificate is ECDSA P-256, names localhost
// and the loopback addresses, and is a leaf.
func TestTLSSelfSigned(t *testing.T) {
	srv := startServer(t, func(c *Config) { c.TLSSelfSigned = true })
	c, err := dialTLS(srv.addr, &tls.Config{InsecureSkipVerify: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	leaf := c.ConnectionState().PeerCertificates[0]
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err != nil {
			t.Errorf("not valid for %s: %v", name, err)
		}
	}
	key, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || key.Curve != elliptic.P256() || leaf.IsCA {
		t.Fatalf("key %T, CA %v", leaf.PublicKey, leaf.IsCA)
	}
	if f := fingerprint(leaf.Raw); len(f) != 95 || strings.ToUpper(f) != f {
		t.Fatalf("fingerprint %q", f)
	}
}

// TestTLSConfig: flag combinations that make no sense are refused.
func TestTLSConfig(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"-tls-cert", "c.pem"}, "go together"},
		{[]string{"-tls-key", "k.pem"}, "go together"},
		{[]string{"-tls-self-signed", "-tls-cert", "c.pem", "-tls-key", "k.pem"}, "exclusive"},
		{[]string{"-http-redirect", ":8080"}, "needs"},
		{[]string{"-tls-self-signed", "-hsts-max-age", "-1s"}, "negative"},
	}
	for _, tc := range cases {
		_, err := parseConfig(tc.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error about %q", tc.args, err, tc.want)
		}
	}
	cfg := defaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.TLSCert, cfg.TLSKey = "/nonexistent/c.pem", "/nonexistent/k.pem"
	if err := newServer(cfg, newLogger(io.Discard, 0)).start(); err == nil {
		t.Fatal("started without its certificate")
	}
}

// TestTLSNoGoroutinePerConnection: TLS adds no goroutine per connection.
func TestTLSNoGoroutinePerConnection(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 500 connections")
	}
	srv, p := startTLSServer(t, nil)
	cfg := clientTLS(p.cert)
	time.Sleep(200 * time.Millisecond)
	base := runtime.NumGoroutine()
	for i := 0; i < 500; i++ {
		dialWSS(t, srv, cfg).send(map[string]any{"type": "join", "room": "flat"})
	}
	if n := srv.stats.connections.Load(); n != 500 {
		t.Fatalf("%d connections open", n)
	}
	settleGoroutines(t, base+20)
}
