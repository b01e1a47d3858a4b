package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Call lists in the stream: a room's list is the last message on its
// subject under CallPrefix, its version that message's stream sequence,
// and a change is a publish expecting that sequence as the subject's last.
// A change whose answer was lost is not sent again: the caller reads the
// newest list and decides again, and a list it finds already changed as it
// wanted is simply kept (Change's keep), so a change is never applied
// twice.

// callSubject is room's call subject.
func (j *JetStream) callSubject(room string) string {
	return j.callPrefix + strings.ReplaceAll(room, ".", "~")
}

// Call implements Calls.
func (j *JetStream) Call(room string) (Call, error) {
	ctx, cancel := context.WithTimeout(context.Background(), j.timeout)
	defer cancel()
	m, err := j.stream.GetLastMsgForSubject(ctx, j.callSubject(room))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return Call{}, nil
	case err != nil:
		return Call{}, j.offline(err)
	}
	return DecodeCall(m.Data, m.Sequence), nil
}

// SetCall implements Calls.
func (j *JetStream) SetCall(room string, version uint64, peers []Peer, sfu bool) (Call, error) {
	if j.callPrefix == "" {
		return Call{}, errors.New("broker: no call subjects configured (JetStreamConfig.CallPrefix)")
	}
	ack, err := j.send(&nats.Msg{Subject: j.callSubject(room), Data: encodeCall(peers, sfu)}, version)
	switch {
	case err == nil:
		return Call{Peers: peers, SFU: sfu && len(peers) > 0, Version: ack.Sequence}, nil
	case WrongLastSeq(err):
		newest, rerr := j.Call(room)
		if rerr != nil {
			newest = Call{}
		}
		return newest, fmt.Errorf("%w: call of %q changed since %d", ErrSeq, room, version)
	}
	return Call{}, j.offline(err)
}
