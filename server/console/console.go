// Package console is the operator's console: a page and a JSON API on the
// admin listener, under /admin/, that show every node of the cluster, its
// rooms and its connections, and act on them.
//
// The package knows nothing of the server's internals: it is given a
// Source, which the server implements over its hub (and, in a cluster,
// over NATS), and serves what the Source returns. It adds what every
// console needs and no Source should: access control, a ten-minute history
// of each node's numbers, the page, and a log line for every action.
//
// # Access
//
// The console is off unless it is given a password (Options.Password): every
// route under /admin/ then answers 404 with one line that says how to turn it
// on. With a password:
//
//   - POST /admin/api/login with {"password": "..."} (JSON, or a form field
//     named password) compares it in constant time and answers with a
//     session cookie, noom_admin: signed with HMAC-SHA256 under a key made at
//     start, expiring after Options.SessionTTL (12 h), HttpOnly,
//     SameSite=Strict, Path=/admin, and Secure when the request came over
//     TLS. The answer carries the session's CSRF token, {"csrf": "..."}.
//   - Every state-changing request made with the cookie must send that token
//     as the header X-CSRF-Token, or it is refused with 403.
//   - Scripts may instead send Authorization: Bearer <password> with each
//     request; no cookie is involved, so no CSRF token either.
//   - Failed logins (and wrong bearer passwords) are limited per remote
//     address: loginBurst of them, then one more every loginRefill; past that
//     429 with Retry-After, the password not even compared.
//   - With Options.ReadOnly every action is refused with 403; looking works.
//
// Every action is logged (slog, "admin action") with who did it (the
// session's id or "bearer", and the remote address), what, on what, and how
// it ended. Neither the password nor a cookie is ever logged or answered.
//
// # Endpoints
//
// Errors are JSON, {"error": "..."}, with 400, 401, 403, 404, 429 or 503
// as fits.
//
//	GET  /admin/                              the page (and its files)
//	POST /admin/api/login                     {"password"} → {"csrf","expires","readonly"} + cookie
//	POST /admin/api/logout                    ends the session
//	GET  /admin/api/session                   {"csrf","expires","readonly","who"} or 401
//	GET  /admin/api/nodes[?since=MS]          every node, the total, and their series
//	GET  /admin/api/rooms[?q=]                rooms, most members first
//	GET  /admin/api/rooms/{room}              members, lobby, settings, call, newest messages
//	GET  /admin/api/connections[?q=]          connections by id, nick or address
//	POST /admin/api/connections/{id}/disconnect
//	POST /admin/api/rooms/{room}/members/{id}/remove
//	POST /admin/api/rooms/{room}/lock         {"locked": true|false}, default true
//	POST /admin/api/rooms/{room}/end          every member leaves the room
//	POST /admin/api/drain                     drain the node serving the console
//
// GET /admin/api/nodes is served from the console's own samples, not from
// the Source: the console asks Source.Nodes once a second and keeps the last
// ten minutes of answers (see series.go), so the page shows ten minutes of
// charts as soon as it opens, and a page open in ten browsers costs the
// cluster nothing more. ?since= returns only the samples after that time
// (Unix milliseconds), for a page that has the rest.
package console

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"time"
)

// Source is what the console shows and acts on. The server implements it;
// each method may take a while (a cluster asks other nodes over the
// network), and must give up when ctx ends. Errors that wrap ErrNotFound
// or ErrUnavailable are answered 404 and 503; any other error 500. by names who asked, for the Source's own logs.
type Source interface {
	// Nodes reports every node of the cluster (one when standalone); nodes
	// known but silent come back with Missing set, not as an error.
	Nodes(ctx context.Context) ([]Node, error)
	// Rooms lists the rooms with members or a call whose name contains q
	// (any case), on every node.
	Rooms(ctx context.Context, q string) ([]Room, error)
	// Room describes one room.
	Room(ctx context.Context, name string) (RoomDetail, error)
	// Connections lists the connections whose id, nick or address contains
	// q (any case), on every node. An error that comes with a non-nil slice,
	// empty or not, is a partial answer (a node did not answer): both are
	// served.
	Connections(ctx context.Context, q string) ([]Conn, error)
	// Disconnect closes connection id, on whichever node holds it.
	Disconnect(ctx context.Context, id, by string) error
	// Remove takes member id out of room.
	Remove(ctx context.Context, room, id, by string) error
	// Lock locks or unlocks room.
	Lock(ctx context.Context, room string, locked bool, by string) error
	// End takes every member out of room and reports how many that was.
	End(ctx context.Context, room, by string) (int, error)
	// Drain makes the node serving the console stop taking connections and
	// send its own elsewhere.
	Drain(ctx context.Context, by string) error
}

// Errors a Source wraps to choose the answer's status.
var (
	ErrNotFound    = errors.New("not found")
	ErrUnavailable = errors.New("unavailable")
)

// Node is one node's state: what it is, and its Load.
type Node struct {
	Name string `json:"name"`
	// Self marks the node serving this console.
	Self bool `json:"self,omitempty"`
	// Missing marks a node the cluster knows that did not answer in time;
	// nothing else of it is set.
	Missing  bool    `json:"missing,omitempty"`
	Version  string  `json:"version,omitempty"`
	Addr     string  `json:"addr,omitempty"`
	Uptime   float64 `json:"uptime_s"`
	Degraded bool    `json:"degraded"`
	Draining bool    `json:"draining"`
	Load
}

// Load is what a node carries and has done: gauges, and counters that only
// grow (from which the console computes rates). Several nodes' load is
// their sum (add): the console's total.
type Load struct {
	Connections int64 `json:"connections"`
	Rooms       int64 `json:"rooms"`
	// Calls counts the calls with a peer on this node, CallPeers those
	// peers: a call across two nodes counts on both.
	Calls     int64 `json:"calls"`
	CallPeers int64 `json:"call_peers"`

	Deliveries uint64            `json:"deliveries_total"`
	FramesIn   uint64            `json:"frames_in_total"`
	FramesOut  uint64            `json:"frames_out_total"`
	BytesOut   uint64            `json:"bytes_out_total"`
	SlowCloses uint64            `json:"slow_closes_total"`
	Errors     map[string]uint64 `json:"errors_total"` // error frames sent, by code
	CPUSeconds float64           `json:"cpu_seconds_total"`
	RSS        uint64            `json:"rss_bytes"`
	Goroutines int               `json:"goroutines"`
}

// add adds o to l.
func (l *Load) add(o Load) {
	l.Connections += o.Connections
	l.Rooms += o.Rooms
	l.Calls += o.Calls
	l.CallPeers += o.CallPeers
	l.Deliveries += o.Deliveries
	l.FramesIn += o.FramesIn
	l.FramesOut += o.FramesOut
	l.BytesOut += o.BytesOut
	l.SlowCloses += o.SlowCloses
	l.CPUSeconds += o.CPUSeconds
	l.RSS += o.RSS
	l.Goroutines += o.Goroutines
	if l.Errors == nil {
		l.Errors = map[string]uint64{}
	}
	for code, v := range o.Errors {
		l.Errors[code] += v
	}
}

// Room is one entry of the rooms list.
type Room struct {
	Name    string `json:"room"`
	Members int    `json:"members"`
	// Nodes counts the members on each node.
	Nodes     map[string]int `json:"nodes,omitempty"`
	CallPeers int            `json:"call_peers"`
	Locked    bool           `json:"locked"`
}

// Member is a member of a room, a peer of its call or someone in its lobby.
type Member struct {
	ID   string `json:"id"`
	Nick string `json:"nick"`
	Role string `json:"role,omitempty"`
	Node string `json:"node,omitempty"`
}

// Message is one kept message of a room.
type Message struct {
	Seq  uint64 `json:"seq"`
	From string `json:"from"`
	Nick string `json:"nick"`
	Text string `json:"text"`
	TS   int64  `json:"ts"` // Unix milliseconds
}

// RoomDetail is a room's page.
type RoomDetail struct {
	Name  string `json:"room"`
	Epoch string `json:"epoch,omitempty"`
	Seq   uint64 `json:"seq"`
	// Members lists at most a thousand members; MembersTotal counts all.
	Members      []Member       `json:"members"`
	MembersTotal int            `json:"members_total"`
	Lobby        []Member       `json:"lobby"`
	Locked       bool           `json:"locked"`
	Settings     map[string]any `json:"settings"`
	Call         []Member       `json:"call"`
	// Media says how the call's media flows.
	Media    string    `json:"media,omitempty"`
	Messages []Message `json:"messages"` // newest last
}

// Conn is one connection.
type Conn struct {
	ID    string   `json:"id"`
	Nick  string   `json:"nick"`
	Node  string   `json:"node,omitempty"`
	Addr  string   `json:"addr"`
	Rooms []string `json:"rooms"`
	State string   `json:"state"`
	// Unsent is what the kernel has not taken yet; BytesOut what the server
	// handed the socket in all.
	Unsent   int64   `json:"unsent_bytes"`
	BytesOut int64   `json:"bytes_out"`
	Idle     float64 `json:"idle_s"` // since the connection last sent anything
	// Age and the frame counts are nil where the server does not track them.
	Age       *float64 `json:"age_s,omitempty"`
	FramesIn  *uint64  `json:"frames_in,omitempty"`
	FramesOut *uint64  `json:"frames_out,omitempty"`
}

// Options configure a Console. The zero value of each field is its
// default.
type Options struct {
	// Password turns the console on. Empty: off, every route 404.
	Password []byte
	// ReadOnly refuses every action. Default off.
	ReadOnly bool
	// Log receives login and action lines. Default: slog.Default().
	Log *slog.Logger
	// Page is the console page's files, index.html at its root. Default
	// none: GET /admin/ is 404, the API works.
	Page fs.FS
	// SessionTTL is how long a login lasts. Default 12 h.
	SessionTTL time.Duration
	// SampleEvery is how often Source.Nodes is sampled, and Samples how
	// many samples are kept per node. Default 1 s and 600: ten minutes.
	SampleEvery time.Duration
	Samples     int
	// Timeout bounds every call into the Source. Default 5 s; a sample
	// gets at most SampleEvery.
	Timeout time.Duration
}

// Console is the console's http.Handler, to be mounted at /admin/.
type Console struct {
	src  Source
	opt  Options
	log  *slog.Logger
	auth *auth
	ser  *series
	mux  *http.ServeMux

	stop chan struct{}
	done chan struct{}
}

// New builds a console over src. It samples nothing until Start.
func New(src Source, opt Options) *Console {
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	if opt.SessionTTL <= 0 {
		opt.SessionTTL = 12 * time.Hour
	}
	if opt.SampleEvery <= 0 {
		opt.SampleEvery = time.Second
	}
	if opt.Samples <= 1 {
		opt.Samples = 600
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 5 * time.Second
	}
	c := &Console{src: src, opt: opt, log: opt.Log.With("component", "console"), ser: newSeries(opt.Samples)}
	if len(opt.Password) > 0 {
		c.auth = newAuth(opt.Password, opt.SessionTTL)
	}
	c.mux = c.routes()
	return c
}

// Enabled reports whether the console is on: it has a password.
func (c *Console) Enabled() bool { return c.auth != nil }

// offText is the whole answer of every route while the console is off.
const offText = "console off: set -admin-password-file or NOOM_ADMIN_PASSWORD\n"

// ServeHTTP implements http.Handler.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if c.auth == nil {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(offText))
		return
	}
	c.mux.ServeHTTP(w, r)
}

// Start samples the Source every SampleEvery until Close; it does nothing
// while the console is off, as nobody could read the samples. Start and
// Close are called by whoever owns the console, one at a time.
func (c *Console) Start() {
	if c.auth == nil || c.stop != nil {
		return
	}
	c.stop, c.done = make(chan struct{}), make(chan struct{})
	go c.sample()
}

// Close stops the sampling and waits for a sample under way.
func (c *Console) Close() {
	if c.stop == nil {
		return
	}
	close(c.stop)
	<-c.done
	c.stop = nil
}

// sample is the sampling goroutine. A sample that fails records no node
// (a gap in every chart) rather than stopping the history.
func (c *Console) sample() {
	defer close(c.done)
	t := time.NewTicker(c.opt.SampleEvery)
	defer t.Stop()
	c.sampleOnce(time.Now())
	for {
		select {
		case <-c.stop:
			return
		case now := <-t.C:
			c.sampleOnce(now)
		}
	}
}

func (c *Console) sampleOnce(now time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), c.opt.SampleEvery*9/10)
	defer cancel()
	nodes, err := c.src.Nodes(ctx)
	if err != nil {
		c.log.Debug("sampling nodes", "err", err)
	}
	c.ser.add(now, nodes)
}
