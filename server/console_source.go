package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"noom/server/console"
	"noom/static"
)

// The operator's console in this server: its password, its place on the
// admin listener, and consoleSource, the console.Source over this node
// (console_local.go) and, in a cluster, the others (cluster_admin.go).

// adminPasswordEnv is the environment variable that may hold the
// console's password, instead of -admin-password-file.
const adminPasswordEnv = "NOOM_ADMIN_PASSWORD"

// minPasswordLen is the length under which the password is called weak
// in the log: the login limit slows guessing, it does not stop it.
const minPasswordLen = 12

// adminConsole is the console's state in the server. It exists from the
// start, console or not: the cluster's admin subjects are answered by
// every node.
type adminConsole struct {
	ui      *console.Console // nil without the admin listener
	started time.Time
	sem     chan struct{} // bounds the other nodes' requests in flight (cluster_admin.go)
	subs    []*nats.Subscription
	// ready is set once start has wired everything (the cluster link
	// above all): the admin listener serves before that, and its console
	// reads nothing of the server until it sees ready.
	ready atomic.Bool
}

// adminState returns the console's state, making it on first use (in
// start, before anything runs concurrently).
func (s *server) adminState() *adminConsole {
	if s.console == nil {
		s.console = &adminConsole{started: time.Now(), sem: make(chan struct{}, maxAdminHandlers)}
	}
	return s.console
}

// adminPassword reads the console's password: from -admin-password-file,
// or else NOOM_ADMIN_PASSWORD; none leaves the console off. A file's
// trailing line break is not part of the password. Setting both is an
// error, so that nobody wonders which one counts.
func adminPassword(cfg *Config) ([]byte, error) {
	env := os.Getenv(adminPasswordEnv)
	if cfg.AdminPasswordFile == "" {
		return []byte(env), nil
	}
	if env != "" {
		return nil, fmt.Errorf("the console's password is given twice, by -admin-password-file and %s: keep one", adminPasswordEnv)
	}
	b, err := os.ReadFile(cfg.AdminPasswordFile)
	if err != nil {
		return nil, fmt.Errorf("-admin-password-file: %w", err)
	}
	pw := strings.TrimRight(string(b), "\r\n")
	if pw == "" {
		return nil, fmt.Errorf("-admin-password-file %s is empty", cfg.AdminPasswordFile)
	}
	return []byte(pw), nil
}

// newConsole builds the console handler for the admin listener: off (every
// /admin/ route answers 404 saying how to turn it on) without a password.
func (s *server) newConsole() (*console.Console, error) {
	pw, err := adminPassword(&s.cfg)
	if err != nil {
		return nil, err
	}
	c := console.New(&consoleSource{s}, console.Options{Password: pw, ReadOnly: s.cfg.AdminReadOnly, Log: s.log, Page: static.AdminFS()})
	if !c.Enabled() {
		return c, nil
	}
	if len(pw) < minPasswordLen {
		s.log.Warn("the console's password is short: use a long random one", "min", minPasswordLen)
	}
	if host, _, err := net.SplitHostPort(s.cfg.AdminAddr); err == nil && !isLoopbackHost(host) {
		s.log.Warn("the console is served over plain HTTP beyond loopback: its password and sessions cross the network unencrypted",
			"addr", s.cfg.AdminAddr)
	}
	return c, nil
}

// startConsole runs once the server is up: the console samples the nodes,
// and the cluster's admin subjects are answered. It comes last in start
// because both read the hub's cluster link, set while starting.
func (s *server) startConsole() {
	st := s.adminState()
	st.ready.Store(true)
	if cl := s.hub.cl; cl != nil {
		if err := s.serveClusterAdmin(cl); err != nil {
			s.log.Warn("other nodes' consoles cannot reach this node", "err", err)
		}
	}
	if st.ui != nil && s.admin != nil {
		st.ui.Start()
		if st.ui.Enabled() {
			s.log.Info("console", "url", "http://"+s.adminAddr+"/admin/", "readonly", s.cfg.AdminReadOnly)
		}
	}
}

// stopConsole stops the sampling. The admin subscriptions end with the
// NATS connection.
func (s *server) stopConsole() {
	if s.console != nil && s.console.ui != nil {
		s.console.ui.Close()
	}
}

// consoleSource is console.Source over this server. Every method answers
// ErrUnavailable until the server has started (adminConsole.ready).
type consoleSource struct{ s *server }

var _ console.Source = (*consoleSource)(nil)

// errStarting answers the console while the server starts.
var errStarting = fmt.Errorf("the server is still starting: %w", console.ErrUnavailable)

func (src *consoleSource) started() bool { return src.s.console.ready.Load() }

// Nodes implements console.Source: this node, and in a cluster every other
// that answers within gatherWait, and those that did not as missing.
func (src *consoleSource) Nodes(ctx context.Context) ([]console.Node, error) {
	if !src.started() {
		return nil, errStarting
	}
	s := src.s
	self := s.nodeState()
	self.Self = true
	nodes := []console.Node{self}
	if cl := s.hub.cl; cl != nil {
		got, missing := cl.gather(ctx, adminReq{Op: opNodes})
		for _, r := range got {
			if r.State != nil {
				nodes = append(nodes, *r.State)
			}
		}
		for _, name := range missing {
			nodes = append(nodes, console.Node{Name: name, Missing: true})
		}
	}
	return nodes, nil
}

// Rooms implements console.Source from this node's room table alone: in a
// cluster it holds every room with members anywhere (localRooms).
func (src *consoleSource) Rooms(_ context.Context, q string) ([]console.Room, error) {
	if !src.started() {
		return nil, errStarting
	}
	return src.s.localRooms(q), nil
}

// Room implements console.Source. A room this node holds only for members
// elsewhere has no messages here: a node of one of them tells them.
func (src *consoleSource) Room(ctx context.Context, name string) (console.RoomDetail, error) {
	if !src.started() {
		return console.RoomDetail{}, errStarting
	}
	s := src.s
	d, found, loaded, remote := s.roomDetail(name)
	if !found {
		return d, fmt.Errorf("no room %s with members: %w", name, console.ErrNotFound)
	}
	if cl := s.hub.cl; !loaded && cl != nil && remote != "" {
		if r, err := cl.ask(ctx, remote, adminReq{Op: opRoom, Room: name}); err == nil && r.Room != nil {
			d.Messages, d.Epoch, d.Seq = r.Room.Messages, r.Room.Epoch, r.Room.Seq
		}
	}
	return d, nil
}

// Connections implements console.Source: this node's, and every other
// node's that answers. Nodes that did not answer are named in an error
// that comes with what the others said.
func (src *consoleSource) Connections(ctx context.Context, q string) ([]console.Conn, error) {
	if !src.started() {
		return nil, errStarting
	}
	s := src.s
	conns := append([]console.Conn{}, s.localConns(q)...) // not nil: a partial answer is still one
	cl := s.hub.cl
	if cl == nil {
		return conns, nil
	}
	got, missing := cl.gather(ctx, adminReq{Op: opConns, Q: q})
	for _, r := range got {
		conns = append(conns, r.Conns...)
	}
	if len(missing) > 0 {
		return conns, fmt.Errorf("nodes %s did not answer: %w", strings.Join(missing, ", "), console.ErrUnavailable)
	}
	return conns, nil
}

// Disconnect implements console.Source, on the node the id names.
func (src *consoleSource) Disconnect(ctx context.Context, id, by string) error {
	if !src.started() {
		return errStarting
	}
	s := src.s
	if node := src.remoteNode(id); node != "" {
		_, err := s.hub.cl.ask(ctx, node, adminReq{Op: opDisconnect, ID: id, By: by})
		return notFound(err, "no connection "+id)
	}
	if !s.disconnectLocal(id) {
		return fmt.Errorf("no connection %s: %w", id, console.ErrNotFound)
	}
	return nil
}

// Remove implements console.Source, on the node the id names.
func (src *consoleSource) Remove(ctx context.Context, room, id, by string) error {
	if !src.started() {
		return errStarting
	}
	s := src.s
	if node := src.remoteNode(id); node != "" {
		_, err := s.hub.cl.ask(ctx, node, adminReq{Op: opRemove, Room: room, ID: id, By: by})
		return notFound(err, "no member "+id+" in room "+room)
	}
	if !s.removeLocal(room, id) {
		return fmt.Errorf("no member %s in room %s: %w", id, room, console.ErrNotFound)
	}
	return nil
}

// Lock implements console.Source: the room's locked setting, changed
// here (in a cluster, in the bucket every node applies).
func (src *consoleSource) Lock(_ context.Context, room string, locked bool, _ string) error {
	if !src.started() {
		return errStarting
	}
	found, err := src.s.lockRoom(room, locked)
	switch {
	case err != nil:
		return fmt.Errorf("%v: %w", err, console.ErrUnavailable)
	case !found:
		return fmt.Errorf("no room %s with members: %w", room, console.ErrNotFound)
	}
	return nil
}

// End implements console.Source: this node's members leave the room, and
// every other node with members in it is asked to do the same.
func (src *consoleSource) End(ctx context.Context, room, by string) (int, error) {
	if !src.started() {
		return 0, errStarting
	}
	s := src.s
	nodes, found := s.roomNodes(room)
	if !found {
		return 0, fmt.Errorf("no room %s with members: %w", room, console.ErrNotFound)
	}
	n := s.endLocal(room)
	cl := s.hub.cl
	if cl == nil {
		return n, nil
	}
	var errs []error
	for _, node := range nodes {
		r, err := cl.ask(ctx, node, adminReq{Op: opEnd, Room: room, By: by})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		n += r.N
	}
	if len(errs) > 0 {
		return n, fmt.Errorf("%d members left, but: %w", n, errors.Join(errs...))
	}
	return n, nil
}

// Drain implements console.Source (drain).
func (src *consoleSource) Drain(_ context.Context, by string) error {
	if !src.started() {
		return errStarting
	}
	src.s.drain(by)
	return nil
}

// remoteNode is the node connection id lives on if that is another one;
// "" for this node's (and every id, standalone). An id whose node part
// could be no node's name (node names are base 36: no dot, no wildcard,
// which would make a NATS subject of several nodes) is taken as this
// node's, where it is not found; so is one of another length than node
// names have ("all" among them, the subject every node listens to).
func (src *consoleSource) remoteNode(id string) string {
	cl := src.s.hub.cl
	if cl == nil {
		return ""
	}
	if node := nodeOf(id); node != "" && node != cl.node && len(node) == len(cl.node) && isBase36(node) {
		return node
	}
	return ""
}

func isBase36(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'z') {
			return false
		}
	}
	return true
}

// notFound words a node's "not here" (ask returns the bare ErrNotFound
// for it) as what was not found.
func notFound(err error, what string) error {
	if err == console.ErrNotFound {
		return fmt.Errorf("%s: %w", what, console.ErrNotFound)
	}
	return err
}
