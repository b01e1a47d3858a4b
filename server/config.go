package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"time"
)

// Config holds every tunable of the server. Each field's comment states its
// default and unit; the zero value of an optional feature means "off". Flags
// bind to it in one place, bindFlags.
type Config struct {
	// Addr is the listener address, HTTP and WebSocket on one port. Default ":8080".
	Addr string
	// AdminAddr is the operators' listener: /metrics, and /debug/pprof/
	// with Pprof (admin.go). Port 0 picks a free port, logged as "admin
	// listening"; empty turns it off. Default "127.0.0.1:9090": loopback,
	// because what it shows is for the machine's operators, not the
	// network.
	AdminAddr string
	// AdminPasswordFile is a file holding the password of the operator's
	// console, which the admin listener then serves at /admin/
	// (console_source.go, server/console); the environment variable
	// NOOM_ADMIN_PASSWORD may hold it instead. Never a flag's value: the
	// process list shows those. Default none: the console is off.
	AdminPasswordFile string
	// AdminReadOnly lets the console look but refuses every action.
	// Default off.
	AdminReadOnly bool
	// Hosts lists the host names (or IP literals, no ports) the server
	// answers to: a request whose Host names another gets 421, and a
	// WebSocket's own origin must name one of them too (hosts.go).
	// Normalized: lower case, IPv6 without brackets. Default none: any
	// host, which lets a DNS rebinding page in, so a start on an address
	// other machines reach says so in the log.
	Hosts []string

	// TLSCert and TLSKey are PEM files: the certificate chain, leaf first,
	// and its private key. With them Addr serves HTTPS and WSS only, and
	// the pair is reloaded when either file changes and on SIGHUP (tls.go).
	// Default none: plain HTTP.
	TLSCert, TLSKey string
	// TLSSelfSigned serves HTTPS with a certificate made at start for
	// localhost and this machine's names and addresses, for development
	// and calls across a LAN. Default off.
	TLSSelfSigned bool
	// TLSReload is how often the certificate files are checked for
	// changes; 0 checks only on SIGHUP. Default 5s.
	TLSReload time.Duration
	// HTTPRedirect is a plain-HTTP listen address whose every request is
	// redirected to HTTPS on Addr. Needs TLS. Default none.
	HTTPRedirect string
	// HSTSMaxAge is the max-age of the Strict-Transport-Security header
	// sent with every response over TLS; 0 sends none. Default 365 days.
	HSTSMaxAge time.Duration

	// MaxMessage is the largest inbound WebSocket message in bytes; larger
	// ones close the connection with 1009. Default 65536.
	MaxMessage int
	// Rate and Burst shape each connection's token bucket: Rate requests a
	// second on average, Burst at once. Requests over it are dropped and
	// answered with rate_limited. Default 20 and 40.
	Rate  float64
	Burst int
	// ErrorBudget is how many malformed requests (bad_json, unknown_type,
	// bad_field, too_large) a connection may send; the next one closes it
	// with 1008. Default 100.
	ErrorBudget int
	// MaxRooms is how many rooms one connection may be in at once. Default 16.
	MaxRooms int
	// HistorySize is how many recent messages a room keeps in memory for
	// joins and reconnects: joined.history. Default 50.
	HistorySize int
	// Data is the directory of the standalone node's store, created on
	// first start; "" keeps rooms' messages in memory only (tests,
	// benchmarks). Unused with NATS, whose stream keeps them. Default
	// ./noom-data.
	Data string
	// HistoryKeep is how many messages the store keeps per room. Default
	// 10,000.
	HistoryKeep int
	// Retention is how long the store keeps a message. Default 30 days.
	Retention time.Duration
	// PresenceLimit is the member count above which presence events are
	// folded into one count frame a second. Default 500.
	PresenceLimit int
	// CallLimit is the most peers in one room's video call. Default 0:
	// 25 with the SFU (-sfu auto or on), 6 for a mesh (-sfu off).
	CallLimit int
	// SFU says how calls carry media: "auto" (default: calls of more than
	// two peers go through the server's SFU), "on" (every call) or "off"
	// (a WebRTC mesh between the pages, at most 6).
	SFU string
	// RTCUDP is the one UDP address of the SFU's media. Default :7882.
	// Left at the default and taken, the server starts without the SFU
	// and warns; an address given explicitly must bind.
	RTCUDP string
	// RTCTCP, if set, also takes ICE over TCP on this address, for
	// clients whose network blocks UDP. Default none.
	RTCTCP string
	// RTCPublicIPs are the addresses advertised to browsers instead of the
	// local ones: a server behind 1:1 NAT or in a container. Default none.
	RTCPublicIPs []string
	// MaxConns caps WebSocket connections; further upgrades get 503.
	// Default: the open-file limit minus a reserve for listeners, HTTP
	// requests and the process's own files.
	MaxConns int
	// MaxConnsPerIP caps WebSocket connections from one remote address;
	// further upgrades get 429. Default 0 (off).
	MaxConnsPerIP int
	// SendBuffer caps a connection's unsent bytes; a connection over it is a
	// slow consumer and is closed with 1013. The socket's own kernel send
	// buffer is set to a quarter of it (the kernel doubles that; at least
	// two worker rounds), so what a stalled reader holds stays within about
	// 1.5 times the cap. Default 1 MiB.
	SendBuffer int

	// Origins lists the browser origins allowed besides the page's own, as
	// "scheme://host[:port]"; "*" allows any. Default none.
	Origins []string
	// ICEServers is the WebRTC ICE server list handed to the page through
	// /api/config. Default none (host candidates only, enough on one LAN).
	ICEServers []ICEServer

	// PingInterval is how often the server pings each connection; browsers
	// answer pings by themselves. Default 25s. It must be shorter than
	// IdleTimeout, or healthy idle clients would be dropped.
	PingInterval time.Duration
	// IdleTimeout closes a connection that sent nothing, not even a pong,
	// for this long. Default 60s.
	IdleTimeout time.Duration
	// HeaderTimeout closes HTTP connections that have not completed a
	// request for this long (slowloris). Default 10s.
	HeaderTimeout time.Duration
	// MaxHeaderBytes caps an HTTP request's head. Default 16 KiB.
	MaxHeaderBytes int
	// ShutdownTimeout bounds a graceful shutdown: connections that have not
	// closed by then are dropped. Default 10s.
	ShutdownTimeout time.Duration

	// Shards is the number of room table shards, each with its own lock.
	// Default 0: 8 × GOMAXPROCS, rounded up to a power of two.
	Shards int
	// Workers is the number of fan-out goroutines that write to
	// connections. Default 0: half of GOMAXPROCS, at least one; the other
	// half reads and parses (nbio's pollers), runs the GC and the HTTP
	// side. With 2 cores, one writer measured better in every scenario
	// than two (README, "Performance").
	Workers int

	// AuthSecretFile is a file holding the HS256 secret for tokens (at
	// least 32 bytes); the environment variable NOOM_AUTH_SECRET gives it
	// too. Never a command-line value: every user of the machine can read
	// the process list. Default none (tokens off).
	AuthSecretFile string
	// AuthPublicKey is a PEM file with the ES256 or RS256 public key that
	// signs tokens, instead of a secret. Default none.
	AuthPublicKey string
	// AuthIssuer, when set, is the only iss a token may carry.
	AuthIssuer string
	// AuthRequired makes every connection send a valid token within 10 s
	// of hello (PROTOCOL.md, "Tokens"). Default false.
	AuthRequired bool
	// HostGrace is how long a room may have members but no host or cohost
	// before its longest-present member becomes cohost. Default 20s
	// (PROTOCOL.md).
	HostGrace time.Duration

	// NATS is the URL of the NATS server (with JetStream) through which
	// nodes form one service; empty means standalone. Several URLs may be
	// given comma-separated. Credentials go in it as nats://user:pass@host
	// or nats://token@host; logs and errors show it redacted. Default none.
	NATS string
	// NATSCreds is a NATS credentials file (a user JWT and its NKey seed)
	// to authenticate to -nats with. Default none.
	NATSCreds string
	// NATSCA is a PEM file of the CA certificates that sign the -nats
	// server's; setting it makes TLS required. Default none: TLS only if
	// the server asks or the URL is tls://, verified with the system's
	// roots.
	NATSCA string
	// NATSCert and NATSKey are a PEM client certificate and its key, for
	// a -nats server that requires mutual TLS. Default none.
	NATSCert, NATSKey string
	// NATSEmbedded runs a NATS server with JetStream inside this process,
	// listening on this address, for other nodes to join; the node joins
	// it too unless NATS names another. It has no authentication, so a
	// bare port (":4222" or "4222") listens on 127.0.0.1 only; a host
	// given explicitly is used as is, with a warning in the log when it is
	// not loopback. Port 0 picks a free port. Default none.
	NATSEmbedded string
	// NATSStore is the embedded NATS server's JetStream directory.
	// Default: noom-nats-<port> in the temporary directory (a new one at
	// every start for port 0).
	NATSStore string
	// NATSRetention is how long the cluster keeps a room's messages (its
	// history and seq). Default 24h.
	NATSRetention time.Duration

	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string
	// Pprof serves Go's profiler at /debug/pprof/ on the admin listener
	// (never the public one), so it needs AdminAddr. Default off: profiles
	// expose internals and cost CPU.
	Pprof bool
}

// ICEServer is one entry of RTCConfiguration.iceServers.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// defaultMaxConns leaves room under the open-file limit for the listener,
// epoll, plain HTTP requests and whatever else the process opens.
func defaultMaxConns() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur == 0 {
		return 1000
	}
	n := int(lim.Cur)
	if lim.Cur > 1<<22 {
		n = 1 << 22
	}
	reserve := n / 50
	if reserve < 64 {
		reserve = 64
	}
	if n-reserve < 16 {
		return 16
	}
	return n - reserve
}

// bindFlags registers a flag for every Config field on fs, with the current
// field values as defaults.
func (c *Config) bindFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "addr", c.Addr, "listen `address` for HTTP and WebSocket")
	fs.StringVar(&c.AdminAddr, "admin-addr", c.AdminAddr, "listen `address` for operators: /metrics, and /debug/pprof/ with -pprof (port 0: a free port, logged; empty: off)")
	fs.StringVar(&c.AdminPasswordFile, "admin-password-file", c.AdminPasswordFile, "`file` holding the password of the operator's console at /admin/ on -admin-addr (or set NOOM_ADMIN_PASSWORD); without either the console is off")
	fs.BoolVar(&c.AdminReadOnly, "admin-readonly", c.AdminReadOnly, "the console shows everything and refuses every action")
	fs.Func("hosts", "comma-separated host `names` (no ports) the server answers to; other Hosts get 421 (default: any, with a warning at start when -addr is not loopback)", func(s string) error {
		hosts, err := parseHosts(s)
		c.Hosts = hosts
		return err
	})
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "PEM certificate chain `file`: serve HTTPS and WSS on -addr (with -tls-key)")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "PEM private key `file` for -tls-cert")
	fs.BoolVar(&c.TLSSelfSigned, "tls-self-signed", c.TLSSelfSigned, "serve HTTPS with a certificate made at start for localhost and this machine's addresses")
	fs.DurationVar(&c.TLSReload, "tls-reload", c.TLSReload, "how often to check the -tls-cert/-tls-key files for changes (0: on SIGHUP only)")
	fs.StringVar(&c.HTTPRedirect, "http-redirect", c.HTTPRedirect, "plain-HTTP listen `address` that redirects to HTTPS (needs TLS)")
	fs.DurationVar(&c.HSTSMaxAge, "hsts-max-age", c.HSTSMaxAge, "Strict-Transport-Security max-age sent over TLS (0: no header)")
	fs.IntVar(&c.MaxMessage, "max-message", c.MaxMessage, "largest inbound WebSocket message in `bytes` (over it: close 1009)")
	fs.Float64Var(&c.Rate, "rate", c.Rate, "requests a second per connection, on average")
	fs.IntVar(&c.Burst, "burst", c.Burst, "requests per connection at once, above -rate")
	fs.IntVar(&c.ErrorBudget, "error-budget", c.ErrorBudget, "malformed requests a connection may send before it is closed with 1008")
	fs.IntVar(&c.MaxRooms, "max-rooms", c.MaxRooms, "rooms one connection may be in at once")
	fs.IntVar(&c.HistorySize, "history", c.HistorySize, "messages a room keeps in memory for joins and reconnects (joined.history)")
	fs.StringVar(&c.Data, "data", c.Data, "`directory` of the store that keeps rooms' messages across restarts (\"\": in memory only)")
	fs.IntVar(&c.HistoryKeep, "history-keep", c.HistoryKeep, "messages the store keeps per room")
	fs.DurationVar(&c.Retention, "retention", c.Retention, "how long the store keeps a message")
	fs.IntVar(&c.PresenceLimit, "presence-limit", c.PresenceLimit, "members above which presence events fold into one count frame a second")
	fs.IntVar(&c.CallLimit, "call-limit", c.CallLimit, "peers in one room's video call (0: 25 with the SFU, 6 for a mesh)")
	fs.StringVar(&c.SFU, "sfu", c.SFU, "media of calls: auto (through the server above 2 peers), on (always), off (a mesh between the pages)")
	fs.StringVar(&c.RTCUDP, "rtc-udp", c.RTCUDP, "UDP `address` of all the SFU's media (one port)")
	fs.StringVar(&c.RTCTCP, "rtc-tcp", c.RTCTCP, "TCP `address` for ICE over TCP, for clients whose network blocks UDP (empty: off)")
	fs.Func("rtc-public-ip", "comma-separated IP `addresses` the SFU advertises instead of its own (1:1 NAT, containers)", func(s string) error {
		c.RTCPublicIPs = nil
		for _, ip := range strings.Split(s, ",") {
			if ip = strings.TrimSpace(ip); ip != "" {
				if net.ParseIP(ip) == nil {
					return fmt.Errorf("%q is not an IP address", ip)
				}
				c.RTCPublicIPs = append(c.RTCPublicIPs, ip)
			}
		}
		return nil
	})
	fs.IntVar(&c.MaxConns, "max-conns", c.MaxConns, "WebSocket connections in all (over it: 503); the default leaves 2% of the open-file limit for other files")
	fs.IntVar(&c.MaxConnsPerIP, "max-conns-per-ip", c.MaxConnsPerIP, "WebSocket connections per remote address (over it: 429); 0 is off")
	fs.IntVar(&c.SendBuffer, "send-buffer", c.SendBuffer, "unsent `bytes` a connection may have queued before it is closed with 1013")
	fs.Func("origins", "comma-separated browser origins allowed besides the page's own (scheme://host[:port], or *)", func(s string) error {
		c.Origins = nil
		for _, o := range strings.Split(s, ",") {
			if o = strings.TrimSpace(o); o != "" {
				c.Origins = append(c.Origins, strings.TrimRight(o, "/"))
			}
		}
		return nil
	})
	fs.Func("ice-servers", "ICE servers for calls: comma-separated URLs (stun:host:port) or a JSON array of RTCIceServer", func(s string) error {
		servers, err := parseICEServers(s)
		c.ICEServers = servers
		return err
	})
	fs.DurationVar(&c.PingInterval, "ping-interval", c.PingInterval, "how often to ping each connection")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", c.IdleTimeout, "close connections silent for this long")
	fs.DurationVar(&c.HeaderTimeout, "header-timeout", c.HeaderTimeout, "close HTTP connections that have not sent a whole request for this long")
	fs.IntVar(&c.MaxHeaderBytes, "max-header-bytes", c.MaxHeaderBytes, "largest HTTP request head in `bytes`")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "how long a graceful shutdown may take")
	fs.IntVar(&c.Shards, "shards", c.Shards, "room table shards (0: 8 × GOMAXPROCS)")
	fs.IntVar(&c.Workers, "workers", c.Workers, "fan-out writer goroutines (0: half of GOMAXPROCS, at least 1)")
	fs.StringVar(&c.AuthSecretFile, "auth-secret-file", c.AuthSecretFile, "`file` holding the HS256 secret (32 bytes or more) that signs tokens; or set NOOM_AUTH_SECRET")
	fs.StringVar(&c.AuthPublicKey, "auth-public-key", c.AuthPublicKey, "PEM `file` of the ES256 or RS256 public key that signs tokens")
	fs.StringVar(&c.AuthIssuer, "auth-issuer", c.AuthIssuer, "the only token issuer (iss) accepted; empty: any")
	fs.BoolVar(&c.AuthRequired, "auth-required", c.AuthRequired, "every connection must send a valid token within 10 s (needs a key)")
	fs.DurationVar(&c.HostGrace, "host-grace", c.HostGrace, "how long a room may have no host or cohost before its longest-present member becomes cohost")
	fs.StringVar(&c.NATS, "nats", c.NATS, "NATS `URL` (JetStream enabled) to join the cluster of every node using it, credentials as nats://user:pass@host or nats://token@host; empty: standalone")
	fs.StringVar(&c.NATSCreds, "nats-creds", c.NATSCreds, "NATS credentials `file` (user JWT and NKey seed) for -nats")
	fs.StringVar(&c.NATSCA, "nats-ca", c.NATSCA, "PEM `file` of the CAs that sign the -nats server's certificate (makes TLS required)")
	fs.StringVar(&c.NATSCert, "nats-cert", c.NATSCert, "PEM client certificate `file` for -nats servers that require mutual TLS (with -nats-key)")
	fs.StringVar(&c.NATSKey, "nats-key", c.NATSKey, "PEM private key `file` for -nats-cert")
	fs.StringVar(&c.NATSEmbedded, "nats-embedded", c.NATSEmbedded, "run a NATS server with JetStream (no authentication) in this process on this `address`, and join it; a bare port listens on 127.0.0.1 only")
	fs.StringVar(&c.NATSStore, "nats-store", c.NATSStore, "JetStream `directory` of -nats-embedded (default: noom-nats-PORT in the temporary directory)")
	fs.DurationVar(&c.NATSRetention, "nats-retention", c.NATSRetention, "how long the cluster keeps rooms' messages")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log `level`: debug, info, warn or error")
	fs.BoolVar(&c.Pprof, "pprof", c.Pprof, "serve Go's profiler at /debug/pprof/ on -admin-addr (for measuring, not for production)")
}

// defaultAdminAddr is -admin-addr's default. Left at it, the admin listener
// is optional: a second node on the machine, or anything else holding the
// port (Prometheus's own default is 9090), leaves it off with a warning
// instead of failing the start (admin.go).
const defaultAdminAddr = "127.0.0.1:9090"

// defaultConfig returns the documented defaults.
func defaultConfig() Config {
	return Config{
		Addr:            ":8080",
		AdminAddr:       defaultAdminAddr,
		TLSReload:       5 * time.Second,
		HSTSMaxAge:      365 * 24 * time.Hour,
		MaxMessage:      64 << 10,
		Rate:            20,
		Burst:           40,
		ErrorBudget:     100,
		MaxRooms:        16,
		HistorySize:     50,
		Data:            "./noom-data",
		HistoryKeep:     10000,
		Retention:       30 * 24 * time.Hour,
		PresenceLimit:   500,
		SFU:             sfuAuto,
		RTCUDP:          defaultRTCUDP,
		MaxConns:        defaultMaxConns(),
		SendBuffer:      1 << 20,
		PingInterval:    25 * time.Second,
		IdleTimeout:     60 * time.Second,
		HeaderTimeout:   10 * time.Second,
		MaxHeaderBytes:  16 << 10,
		ShutdownTimeout: 10 * time.Second,
		NATSRetention:   24 * time.Hour,
		LogLevel:        "info",
		HostGrace:       20 * time.Second,
	}
}

// parseConfig builds a Config from command-line arguments.
func parseConfig(args []string, stderr io.Writer) (Config, error) {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("noom", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "noom: a real-time chat and video-call server.\n\nUsage: noom [flags]\n\n")
		fs.PrintDefaults()
	}
	cfg.bindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return cfg, cfg.validate()
}

// validate rejects settings the server cannot run with.
func (c *Config) validate() error {
	var errs []error
	positive := func(name string, v int) {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("-%s must be positive", name))
		}
	}
	positive("max-message", c.MaxMessage)
	positive("burst", c.Burst)
	positive("error-budget", c.ErrorBudget)
	positive("max-rooms", c.MaxRooms)
	positive("history", c.HistorySize)
	positive("history-keep", c.HistoryKeep)
	if c.Retention <= 0 {
		errs = append(errs, errors.New("-retention must be positive"))
	}
	positive("presence-limit", c.PresenceLimit)
	switch c.SFU {
	case sfuAuto, sfuOn:
		if c.CallLimit == 0 {
			c.CallLimit = 25
		}
	case sfuOff:
		if c.CallLimit == 0 {
			c.CallLimit = 6
		}
	default:
		errs = append(errs, errors.New("-sfu must be auto, on or off"))
	}
	if c.SFU != sfuOff && c.RTCUDP == "" {
		errs = append(errs, errors.New("-rtc-udp is needed for the SFU (or -sfu off)"))
	}
	positive("call-limit", c.CallLimit)
	positive("max-conns", c.MaxConns)
	positive("send-buffer", c.SendBuffer)
	if c.SendBuffer > 1<<30 {
		errs = append(errs, errors.New("-send-buffer must be at most 1 GiB"))
	}
	positive("max-header-bytes", c.MaxHeaderBytes)
	if c.Rate <= 0 {
		errs = append(errs, errors.New("-rate must be positive"))
	}
	if c.MaxConnsPerIP < 0 {
		errs = append(errs, errors.New("-max-conns-per-ip must not be negative"))
	}
	if c.PingInterval <= 0 || c.IdleTimeout <= c.PingInterval {
		errs = append(errs, errors.New("-ping-interval must be positive and shorter than -idle-timeout"))
	}
	if c.HeaderTimeout <= 0 || c.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("-header-timeout and -shutdown-timeout must be positive"))
	}
	if c.Shards < 0 || c.Workers < 0 {
		errs = append(errs, errors.New("-shards and -workers must not be negative"))
	}
	if c.NATSRetention <= 0 {
		errs = append(errs, errors.New("-nats-retention must be positive"))
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	if c.Pprof && c.AdminAddr == "" {
		errs = append(errs, errors.New("-pprof is served on the admin listener: it needs -admin-addr"))
	}
	errs = append(errs, c.validateTLS()...)
	errs = append(errs, c.validateNATS()...)
	return errors.Join(errs...)
}

// parseICEServers accepts "stun:a:3478,turn:b" or a JSON array of
// RTCIceServer objects (for TURN credentials).
func parseICEServers(s string) ([]ICEServer, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	if strings.HasPrefix(s, "[") {
		var raw []struct {
			URLs       json.RawMessage `json:"urls"`
			Username   string          `json:"username"`
			Credential string          `json:"credential"`
		}
		if err := json.Unmarshal([]byte(s), &raw); err != nil {
			return nil, fmt.Errorf("-ice-servers: %w", err)
		}
		out := make([]ICEServer, 0, len(raw))
		for _, r := range raw {
			var urls []string
			var one string
			if json.Unmarshal(r.URLs, &one) == nil {
				urls = []string{one}
			} else if err := json.Unmarshal(r.URLs, &urls); err != nil {
				return nil, fmt.Errorf("-ice-servers: urls must be a string or a list of strings")
			}
			out = append(out, ICEServer{URLs: urls, Username: r.Username, Credential: r.Credential})
		}
		return out, nil
	}
	var urls []string
	for _, u := range strings.Split(s, ",") {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	return []ICEServer{{URLs: urls}}, nil
}

// parseLevel maps -log-level to a slog level.
func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("-log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}
