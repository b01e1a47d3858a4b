package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"noom/server/console"
)

// The console across the cluster: every node answers requests on
// noom.admin.<node> (for it alone) and noom.admin.all (for everyone), so
// that the console of any node shows every node, and its actions reach
// the node that holds the connection. Plain NATS request and reply, not
// the stream: nothing here needs keeping.
//
// A gather (nodes, connections) publishes once on noom.admin.all and
// collects answers until every node this node knows of has answered or
// gatherWait passed: a node that does not answer is reported missing, and
// the page is never held up by it. An action goes to one node and waits
// askWait at most.
//
// Every node answers, console or not: a node needs no password of its own
// to be seen and acted on from another node's console. Whoever can
// publish on the cluster's NATS can ask these too, as they can already
// write every room's stream: NATS access is the cluster's trust boundary
// (README, "A cluster through NATS").

const (
	subjAdmin    = "noom.admin."
	subjAdminAll = subjAdmin + "all" // node names have six characters: no node is "all"
	gatherWait   = time.Second
	askWait      = 3 * time.Second
	// maxAdminHandlers bounds the requests of other consoles handled at
	// once; past it a request goes unanswered and its asker calls this
	// node missing.
	maxAdminHandlers = 16
)

// Admin operations.
const (
	opNodes      = "nodes"
	opConns      = "conns"
	opRoom       = "room"
	opDisconnect = "disconnect"
	opRemove     = "remove"
	opEnd        = "end"
)

// adminReq is a request of another node's console.
type adminReq struct {
	Op   string `json:"op"`
	From string `json:"from"` // the asking node, which ignores its own broadcast
	Q    string `json:"q,omitempty"`
	Room string `json:"room,omitempty"`
	ID   string `json:"id,omitempty"`
	By   string `json:"by,omitempty"` // who asked, for this node's log
}

// adminResp is a node's answer.
type adminResp struct {
	Node  string              `json:"node"`
	Error string              `json:"error,omitempty"`
	State *console.Node       `json:"state,omitempty"`
	Conns []console.Conn      `json:"conns,omitempty"`
	Room  *console.RoomDetail `json:"room,omitempty"`
	N     int                 `json:"n,omitempty"`
	// NotFound says the connection, member or room is not on that node.
	NotFound bool `json:"not_found,omitempty"`
}

// serveClusterAdmin subscribes this node to its admin subjects.
func (s *server) serveClusterAdmin(cl *cluster) error {
	st := s.adminState()
	for _, subj := range []string{subjAdmin + cl.node, subjAdminAll} {
		sub, err := cl.nc.Subscribe(subj, func(m *nats.Msg) { s.onAdminRequest(cl, m) })
		if err != nil {
			return fmt.Errorf("admin subject %s: %w", subj, err)
		}
		st.subs = append(st.subs, sub)
	}
	return nil
}

// onAdminRequest answers another node's console, off NATS's delivery
// goroutine: an answer walks the room table and may push close frames.
func (s *server) onAdminRequest(cl *cluster, m *nats.Msg) {
	var req adminReq
	if m.Reply == "" || json.Unmarshal(m.Data, &req) != nil || req.From == cl.node {
		return
	}
	sem := s.adminState().sem
	select {
	case sem <- struct{}{}:
	default:
		return // busy: the asker calls this node missing
	}
	go func() {
		defer func() { <-sem }()
		resp := s.answerAdmin(req)
		b, _ := json.Marshal(resp)
		if len(b) > int(cl.nc.MaxPayload()) && resp.Room != nil { // huge messages: the page does without them
			resp.Room.Messages = nil
			b, _ = json.Marshal(resp)
		}
		_ = m.Respond(b)
	}()
}

// answerAdmin carries out req on this node.
func (s *server) answerAdmin(req adminReq) adminResp {
	resp := adminResp{Node: s.nodeName()}
	switch req.Op {
	case opNodes:
		n := s.nodeState()
		resp.State = &n
	case opConns:
		resp.Conns = s.localConns(req.Q)
	case opRoom:
		d, found, _, _ := s.roomDetail(req.Room)
		resp.Room, resp.NotFound = &d, !found
	case opDisconnect, opRemove, opEnd:
		switch req.Op {
		case opDisconnect:
			resp.NotFound = !s.disconnectLocal(req.ID)
		case opRemove:
			resp.NotFound = !s.removeLocal(req.Room, req.ID)
		case opEnd:
			resp.N = s.endLocal(req.Room)
		}
		s.log.Info("admin action from another node", "action", req.Op, "room", req.Room, "id", req.ID,
			"by", req.By, "from", req.From, "not_found", resp.NotFound)
	default:
		resp.Error = "unknown operation " + req.Op
	}
	return resp
}

// peerNames lists the other nodes this node hears from.
func (cl *cluster) peerNames() []string { return cl.members.Nodes() }

// gather asks every other node and returns the answers that came within
// gatherWait (or ctx), and the nodes this node knows that did not answer.
func (cl *cluster) gather(ctx context.Context, req adminReq) (got []adminResp, missing []string) {
	want := cl.peerNames()
	if len(want) == 0 {
		return nil, nil
	}
	if !cl.online() {
		return nil, want
	}
	req.From = cl.node
	data, _ := json.Marshal(req)
	inbox := cl.nc.NewInbox()
	sub, err := cl.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, want
	}
	defer func() { _ = sub.Unsubscribe() }()
	_ = sub.SetPendingLimits(-1, 64<<20)
	if err := cl.nc.PublishRequest(subjAdminAll, inbox, data); err != nil {
		return nil, want
	}
	wctx, cancel := context.WithTimeout(ctx, gatherWait)
	defer cancel()
	seen := map[string]bool{}
	waiting := len(want)
	for waiting > 0 {
		m, err := sub.NextMsgWithContext(wctx)
		if err != nil {
			break
		}
		var r adminResp
		if json.Unmarshal(m.Data, &r) != nil || r.Node == "" || seen[r.Node] {
			continue
		}
		seen[r.Node] = true
		got = append(got, r)
		if slices.Contains(want, r.Node) {
			waiting--
		}
	}
	for _, n := range want {
		if !seen[n] {
			missing = append(missing, n)
		}
	}
	return got, missing
}

// ask sends req to node and returns its answer; a node that does not
// answer within askWait is ErrUnavailable, and one that has not what req
// names, ErrNotFound.
func (cl *cluster) ask(ctx context.Context, node string, req adminReq) (adminResp, error) {
	req.From = cl.node
	data, _ := json.Marshal(req)
	actx, cancel := context.WithTimeout(ctx, askWait)
	defer cancel()
	m, err := cl.nc.RequestWithContext(actx, subjAdmin+node, data)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return adminResp{}, fmt.Errorf("node %s is not in the cluster: %w", node, console.ErrNotFound)
	case err != nil:
		return adminResp{}, fmt.Errorf("node %s did not answer: %w", node, console.ErrUnavailable)
	}
	var r adminResp
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return adminResp{}, fmt.Errorf("node %s answered nonsense: %w", node, console.ErrUnavailable)
	}
	switch {
	case r.Error != "":
		return r, fmt.Errorf("node %s: %s", node, r.Error)
	case r.NotFound:
		return r, console.ErrNotFound
	}
	return r, nil
}
