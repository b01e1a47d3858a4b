package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	ltls "github.com/lesismal/llib/std/crypto/tls"
	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/nbhttp"
)

// HTTPS and WSS on the one listener. nbio terminates TLS itself with llib's
// non-blocking fork of crypto/tls: the poller feeds each read's ciphertext
// to the connection's TLS state machine and hands the plaintext to the HTTP
// parser, then to client.Parse, so TLS adds no goroutine per connection.
// llib's types are not crypto/tls's (ltls.Config, ltls.Certificate), though
// the API is the same.

// aeadSuites are the TLS 1.2 cipher suites offered: ECDHE for forward
// secrecy and AEAD only (Mozilla's "intermediate" list). llib would
// otherwise also offer the CBC suites with SHA-1 MACs. TLS 1.3 suites are
// not configurable and are all AEAD.
var aeadSuites = []uint16{
	ltls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	ltls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	ltls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	ltls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	ltls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	ltls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// selfSignedValidity is how long a -tls-self-signed certificate is valid.
// It is made afresh at every start, so this only has to outlast one run.
const selfSignedValidity = 365 * 24 * time.Hour

// tlsEnabled reports whether the listener serves HTTPS and WSS.
func (c *Config) tlsEnabled() bool {
	return c.TLSCert != "" || c.TLSKey != "" || c.TLSSelfSigned
}

// validateTLS checks the TLS flags against each other.
func (c *Config) validateTLS() []error {
	var errs []error
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("-tls-cert and -tls-key go together"))
	}
	if c.TLSSelfSigned && c.TLSCert != "" {
		errs = append(errs, errors.New("-tls-self-signed and -tls-cert are exclusive"))
	}
	if c.HTTPRedirect != "" && !c.tlsEnabled() {
		errs = append(errs, errors.New("-http-redirect needs -tls-cert/-tls-key or -tls-self-signed"))
	}
	if c.TLSReload < 0 || c.HSTSMaxAge < 0 {
		errs = append(errs, errors.New("-tls-reload and -hsts-max-age must not be negative"))
	}
	return errs
}

// tlsState is the server's TLS side; server.tls is nil without TLS.
type tlsState struct {
	certs        *certStore
	config       *ltls.Config
	hsts         string       // the Strict-Transport-Security value, "" for none
	redirect     []string     // the -http-redirect listener, rewritten by nbio to the bound address
	httpsPort    atomic.Value // string: the TLS listener's port once bound, for redirects
	stopWatch    chan struct{}
	watchStopped chan struct{}
}

// configureTLS turns conf's listener into a TLS one and adds the redirect
// listener. Without TLS it does nothing. It loads or makes the certificate,
// so a bad pair fails the start.
func (s *server) configureTLS(conf *nbhttp.Config) error {
	if !s.cfg.tlsEnabled() {
		return nil
	}
	t := &tlsState{certs: &certStore{certFile: s.cfg.TLSCert, keyFile: s.cfg.TLSKey, log: s.log}}
	if s.cfg.TLSSelfSigned {
		cert, names, err := selfSigned(time.Now())
		if err != nil {
			return fmt.Errorf("self-signed certificate: %w", err)
		}
		t.certs.cur.Store(cert)
		s.log.Info("tls: self-signed certificate made; browsers will warn once, compare this fingerprint with the one they show",
			"sha256", fingerprint(cert.Certificate[0]), "names", strings.Join(names, ","), "not_after", cert.Leaf.NotAfter.Format(time.DateOnly))
	} else if err := t.certs.reload(true); err != nil {
		return err
	}
	t.config = newTLSConfig(t.certs.getCertificate)
	if s.cfg.HSTSMaxAge > 0 {
		t.hsts = "max-age=" + strconv.FormatInt(int64(s.cfg.HSTSMaxAge/time.Second), 10)
	}
	t.httpsPort.Store("")
	conf.AddrsTLS = conf.Addrs // nbio writes the bound address back into this slice
	conf.Addrs = nil
	if s.cfg.HTTPRedirect != "" {
		t.redirect = []string{s.cfg.HTTPRedirect}
		conf.Addrs = t.redirect
	}
	conf.TLSConfig = t.config
	conf.Handler = s.tlsFront(conf.Handler)
	s.tls = t
	return nil
}

// newTLSConfig is the server's TLS policy: TLS 1.2 or later, AEAD suites
// only, HTTP/1.1 only, certificates from getCert.
func newTLSConfig(getCert func(*ltls.ClientHelloInfo) (*ltls.Certificate, error)) *ltls.Config {
	return &ltls.Config{
		// llib v1.2.5 defaults to 1.2 already; saying so keeps it that way
		// whatever a later llib does (older ones allowed 1.0).
		MinVersion:   ltls.VersionTLS12,
		CipherSuites: aeadSuites,
		// nbio speaks HTTP/1.1 only: announcing h2 would make browsers
		// send HTTP/2 frames to the HTTP/1 parser.
		NextProtos:     []string{"http/1.1"},
		GetCertificate: getCert,
		// Records at full size from the first byte: a worker's round of
		// coalesced frames (up to 16 KiB) becomes one record and one write
		// call, instead of a run of MSS-sized records and a write each.
		DynamicRecordSizingDisabled: true,
	}
}

// hookTLSSockets puts a tlsSocket under every TLS connection before its
// first byte is read, so that it is there before anything can be written
// (see tlsSocket). It must run before the engine starts. Built with -race
// it also shows the race detector nbio's accept hand-off (race.go), for
// plain connections too: this is the one place that sets the engine's
// socket callbacks.
func (s *server) hookTLSSockets() {
	if raceEnabled {
		s.engine.Engine.OnOpen(raceAccepted)
	}
	if s.tls == nil {
		if raceEnabled {
			s.engine.Engine.OnData(func(c *nbio.Conn, data []byte) {
				raceReading(c)
				c.DataHandler()(c, data)
			})
		}
		return
	}
	// nbio reads for every connection, then calls this engine-wide data
	// handler, which nbhttp sets to "call the connection's own handler"
	// (the TLS one here). Doing the same after the swap keeps that. The
	// swap happens once per connection, on its poller goroutine, while
	// nothing else can touch it yet: the TLS handshake has not started.
	s.engine.Engine.OnData(func(c *nbio.Conn, data []byte) {
		raceReading(c)
		if p, ok := c.Session().(*nbhttp.Parser); ok {
			if hc, ok := p.Conn.(*nbhttp.Conn); ok {
				if tc, ok := hc.Conn.(*ltls.Conn); ok && tc.Conn() == net.Conn(c) {
					tc.ResetConn(&tlsSocket{Conn: c}, true)
				}
			}
		}
		c.DataHandler()(c, data)
	})
}

// tlsStarted records the bound addresses and starts watching the
// certificate files; called once the engine listens.
func (s *server) tlsStarted() {
	t := s.tls
	if t == nil {
		return
	}
	if _, port, err := net.SplitHostPort(s.addr); err == nil {
		t.httpsPort.Store(port)
	}
	if len(t.redirect) > 0 {
		s.redirectAddr = t.redirect[0]
	}
	s.log.Info("tls: serving HTTPS and WSS", "addr", s.addr, "redirect", s.redirectAddr, "hsts", t.hsts)
	t.stopWatch = make(chan struct{})
	t.watchStopped = make(chan struct{})
	if s.cfg.TLSCert == "" || s.cfg.TLSReload <= 0 {
		close(t.watchStopped)
		return
	}
	go t.certs.watch(s.cfg.TLSReload, t.stopWatch, t.watchStopped)
}

// tlsStopped ends the certificate watcher.
func (s *server) tlsStopped() {
	if t := s.tls; t != nil && t.stopWatch != nil {
		close(t.stopWatch)
		<-t.watchStopped
	}
}

// reloadTLS reloads the certificate pair now, whether or not the files
// look changed: SIGHUP calls it. A failure keeps the current certificate.
func (s *server) reloadTLS() error {
	if s.tls == nil || s.cfg.TLSCert == "" {
		s.log.Info("tls: nothing to reload (no -tls-cert)")
		return nil
	}
	err := s.tls.certs.reload(true)
	if err != nil {
		s.log.Error("tls: reload failed, keeping the current certificate", "err", err)
	}
	return err
}

// reloadOnSignal calls reloadTLS for every value on sig until ctx ends.
func (s *server) reloadOnSignal(ctx context.Context, sig <-chan os.Signal) {
	for {
		select {
		case <-sig:
			_ = s.reloadTLS()
		case <-ctx.Done():
			return
		}
	}
}

// tlsSocket sits between a TLS connection and its nbio socket and counts
// the ciphertext written, for the slow-consumer measure: client.handed must
// grow by what is handed to the socket, as the kernel's progress
// (client.written, from nbio's OnWrittenSize) is counted in the same bytes.
// Before the upgrade handed is nil and nothing is counted.
//
// It is installed before the connection's first read (hookTLSSockets)
// rather than at the upgrade because llib's Conn.ResetConn is not
// synchronized: at the upgrade the poller goroutine could be writing a TLS
// alert through the very field being replaced.
type tlsSocket struct {
	*nbio.Conn
	handed atomic.Pointer[atomic.Int64]
}

// Write counts b, then hands it to nbio. Counting first keeps
// handed >= written at every moment, as nbio reports progress from inside
// Write.
func (t *tlsSocket) Write(b []byte) (int, error) {
	if h := t.handed.Load(); h != nil {
		h.Add(int64(len(b)))
	}
	return t.Conn.Write(b)
}

// upgradeTLS prepares the TLS connection under a new WebSocket client c:
// it drops what the handshake left behind, and makes c's sink count its own
// writes, in ciphertext. It reports false if tc is not over a tlsSocket,
// and c then counts plaintext.
func upgradeTLS(c *client, tc *ltls.Conn) bool {
	dropHandshakeState(tc)
	ts, ok := tc.Conn().(*tlsSocket)
	if !ok {
		return false
	}
	ts.handed.Store(&c.handed)
	return true
}

// handshakeLeftovers are the offsets of the fields of llib's tls.Conn
// that only its handshake reads, yet that it keeps for the connection's
// life: the handshake state (hs for TLS 1.2, hs13 for 1.3, holding the
// ServerHello and the transcript), the parsed ClientHello with a copy of
// its bytes, and the pooled buffer that reassembled handshake messages.
// With the X25519MLKEM768 key shares browsers and Go send, that is about
// 7.5 KiB per connection, three times what everything else a WSS
// connection holds (measured in the README). llib has no call to release them, so
// dropHandshakeState clears them through these offsets.
//
// They are found by name and checked to be pointers; with an llib that
// lacks any of them the list is empty and nothing is cleared (a test
// fails, so an llib upgrade cannot lose this silently).
var handshakeLeftovers = pointerFields(reflect.TypeFor[ltls.Conn](), "hs", "hs13", "clientHello", "hand")

func pointerFields(t reflect.Type, names ...string) []uintptr {
	offs := make([]uintptr, 0, len(names))
	for _, name := range names {
		f, ok := t.FieldByName(name)
		if !ok || f.Type.Kind() != reflect.Pointer {
			return nil
		}
		offs = append(offs, f.Offset)
	}
	return offs
}

// dropHandshakeState clears handshakeLeftovers in tc, whose handshake is
// complete. Why that is safe: once the handshake is complete, llib reads
// hs, hs13 and clientHello nowhere (Conn.handshake returns before them);
// hand is read only for a post-handshake message (a TLS 1.3 KeyUpdate),
// and when it is nil the next one allocates a new buffer. The buffer is
// left to the GC rather than returned to the pool, as the poller could be
// appending a KeyUpdate to it at this moment; at worst that one message
// is lost and that one connection fails its next record. Nothing closes
// the hijacked tls.Conn (which would free the same buffer): noom closes
// the socket under it.
func dropHandshakeState(tc *ltls.Conn) {
	for _, off := range handshakeLeftovers {
		*(*unsafe.Pointer)(unsafe.Add(unsafe.Pointer(tc), off)) = nil
	}
}

// overTLS reports whether the response w goes out over a TLS connection.
// Unknown writers count as plain, so that nothing is ever served in clear
// by mistake; a mistake the other way shows as a redirect loop in tests.
func overTLS(w http.ResponseWriter) bool {
	res, ok := w.(*nbhttp.Response)
	if !ok || res.Parser == nil {
		return false
	}
	hc, ok := res.Parser.Conn.(*nbhttp.Conn)
	if !ok {
		return false
	}
	_, ok = hc.Conn.(*ltls.Conn)
	return ok
}

// tlsFront wraps every route when TLS is on: requests that came over TLS
// get Strict-Transport-Security; the others, which can only come from the
// -http-redirect listener, are redirected to HTTPS.
func (s *server) tlsFront(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !overTLS(w) {
			s.redirectHTTPS(w, r)
			return
		}
		if s.tls.hsts != "" {
			w.Header().Set("Strict-Transport-Security", s.tls.hsts)
		}
		next.ServeHTTP(w, r)
	})
}

// redirectHTTPS answers a plain-HTTP request with a permanent redirect to
// the same host, path and query on the TLS listener's port: 301 for GET and
// HEAD, 308 (method and body kept) for anything else.
func (s *server) redirectHTTPS(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	port, _ := s.tls.httpsPort.Load().(string)
	if !validHost(host) || port == "" {
		http.Error(w, "use https", http.StatusBadRequest)
		return
	}
	if port != "443" {
		host = net.JoinHostPort(host, port)
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	code := http.StatusMovedPermanently
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		code = http.StatusPermanentRedirect
	}
	http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), code)
}

// validHost accepts a DNS name or an IP literal: the Host header is the
// client's to choose, and it goes into a Location header.
func validHost(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	if net.ParseIP(h) != nil {
		return true
	}
	for i := 0; i < len(h); i++ {
		b := h[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '.') {
			return false
		}
	}
	return true
}

// certStore holds the serving certificate and reloads it from its files.
// GetCertificate reads it lock-free on every handshake; reloads (the file
// watcher, SIGHUP) are serialized by mu.
type certStore struct {
	certFile, keyFile string
	log               *slog.Logger
	cur               atomic.Pointer[ltls.Certificate]

	mu     sync.Mutex
	stamps [2]fileStamp // guarded by mu: the files as last loaded or tried
}

// fileStamp is what a poll compares to tell that a file changed.
type fileStamp struct {
	mod  time.Time
	size int64
}

// getCertificate is the ltls.Config.GetCertificate hook.
func (cs *certStore) getCertificate(*ltls.ClientHelloInfo) (*ltls.Certificate, error) {
	return cs.cur.Load(), nil
}

// reload loads the pair if either file changed since the last attempt, or
// always with force. On failure the current certificate stays; the stamps
// are still recorded, so a broken pair is reported once, not every poll.
func (cs *certStore) reload(force bool) error {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	// Stat before reading: a file replaced in between is then seen as
	// changed again at the next poll, never missed.
	var st [2]fileStamp
	for i, name := range []string{cs.certFile, cs.keyFile} {
		fi, err := os.Stat(name)
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		st[i] = fileStamp{fi.ModTime(), fi.Size()}
	}
	if !force && st == cs.stamps {
		return nil
	}
	cs.stamps = st
	cert, err := loadPair(cs.certFile, cs.keyFile)
	if err != nil {
		return err
	}
	old := cs.cur.Swap(cert)
	if old == nil || !equalChain(old, cert) {
		cs.log.Info("tls: certificate loaded", "file", cs.certFile, "subject", cert.Leaf.Subject.String(),
			"not_after", cert.Leaf.NotAfter.Format(time.RFC3339), "sha256", fingerprint(cert.Certificate[0]))
	}
	return nil
}

// watch polls the files every interval and reloads them when they change,
// until stop closes. Polling costs two stat calls a tick and works the same
// for files replaced in place, renamed over or swapped through symlinks
// (certbot's live/, Kubernetes secrets), without an inotify dependency.
func (cs *certStore) watch(interval time.Duration, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if err := cs.reload(false); err != nil {
				cs.log.Error("tls: reload failed, keeping the current certificate", "err", err)
			}
		case <-stop:
			return
		}
	}
}

// loadPair reads a PEM certificate chain and key and checks that they
// match and that the leaf parses.
func loadPair(certFile, keyFile string) (*ltls.Certificate, error) {
	cert, err := ltls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: load %s and %s: %w", certFile, keyFile, err)
	}
	// llib leaves Leaf nil; parsed once here, it is not parsed again at
	// every handshake, and the log can show its names and expiry.
	if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
		return nil, fmt.Errorf("tls: parse %s: %w", certFile, err)
	}
	return &cert, nil
}

func equalChain(a, b *ltls.Certificate) bool {
	if len(a.Certificate) != len(b.Certificate) {
		return false
	}
	for i := range a.Certificate {
		if string(a.Certificate[i]) != string(b.Certificate[i]) {
			return false
		}
	}
	return true
}

// fingerprint is the SHA-256 of a DER certificate as browsers show it:
// colon-separated upper-case hex.
func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	var b strings.Builder
	for i, x := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", x)
	}
	return b.String()
}

// selfSigned makes an ECDSA P-256 certificate for localhost, the loopback
// addresses, this machine's host name (and its mDNS name, host.local) and
// every non-link-local interface address, valid from an hour before now.
// ECDSA because handshakes run on the pollers: a P-256 signature costs a
// fraction of an RSA-2048 one. It returns the certificate and its names.
func selfSigned(now time.Time) (*ltls.Certificate, []string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	dns := []string{"localhost"}
	if h, err := os.Hostname(); err == nil && h != "" && h != "localhost" {
		dns = append(dns, h)
		if !strings.Contains(h, ".") {
			dns = append(dns, h+".local")
		}
	}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || ipn.IP.IsLoopback() || ipn.IP.IsLinkLocalUnicast() {
				continue
			}
			ips = append(ips, ipn.IP)
		}
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "noom self-signed", Organization: []string{"noom development"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(selfSignedValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		// A leaf, not a CA: Firefox refuses a CA certificate used as a
		// server's own, even after the warning is accepted.
		BasicConstraintsValid: true,
		DNSNames:              dns,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	names := append([]string(nil), dns...)
	for _, ip := range ips {
		names = append(names, ip.String())
	}
	return &ltls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, names, nil
}
