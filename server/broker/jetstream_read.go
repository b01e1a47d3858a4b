package broker

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Reading a room's kept messages from the stream. A room's subject holds
// one lifetime at a time (a new one starts only on an empty subject), its
// messages in seq order at growing stream sequences, and retention drops
// them oldest first: what is kept is an unbroken run of seqs. A seq is
// found by bisecting the stream sequences between the subject's oldest and
// newest messages (a direct "next message on this subject from here" per
// step, about twenty for a stream of a million messages), then the page is
// fetched with one ordered consumer.

// head reads room's newest message without starting a lifetime; ok is
// false for an empty subject.
func (j *JetStream) head(ctx context.Context, room string) (StreamMsg, bool, error) {
	m, err := j.stream.GetLastMsgForSubject(ctx, j.Subject(room))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return StreamMsg{}, false, nil
	}
	if err != nil {
		return StreamMsg{}, false, j.offline(err)
	}
	return j.Decode(m.Header, m.Data, m.Sequence), true, nil
}

// next returns room's first message at stream sequence from or later.
func (j *JetStream) next(ctx context.Context, room string, from uint64) (StreamMsg, error) {
	m, err := j.stream.GetMsg(ctx, from, jetstream.WithGetMsgSubject(j.Subject(room)))
	if err != nil {
		return StreamMsg{}, j.offline(err)
	}
	return j.Decode(m.Header, m.Data, m.Sequence), nil
}

// span returns room's newest message and the first seq still kept of its
// lifetime (1 when the start marker is still there); ok is false when the
// room has no message.
func (j *JetStream) span(ctx context.Context, room string) (newest StreamMsg, first uint64, ok bool, err error) {
	newest, ok, err = j.head(ctx, room)
	if err != nil || !ok || newest.Seq == 0 {
		return newest, 0, false, err
	}
	oldest, err := j.next(ctx, room, 1)
	if err != nil {
		return newest, 0, false, err
	}
	return newest, max(oldest.Seq, 1), true, nil
}

// locate returns the stream sequence of room's message seq, which must be
// kept (first ≤ seq ≤ newest.Seq).
func (j *JetStream) locate(ctx context.Context, room string, newest StreamMsg, seq uint64) (uint64, error) {
	lo, hi, at := uint64(1), newest.StreamSeq, newest.StreamSeq
	for lo <= hi {
		mid := lo + (hi-lo)/2
		m, err := j.next(ctx, room, mid)
		if err != nil {
			return 0, err
		}
		if m.Seq >= seq && m.Epoch == newest.Epoch {
			at = m.StreamSeq
			hi = mid - 1
		} else {
			lo = m.StreamSeq + 1
		}
	}
	return at, nil
}

// fetch reads up to n of room's messages from stream sequence start on,
// oldest first, and keeps those with from ≤ seq < until of epoch.
func (j *JetStream) fetch(ctx context.Context, room string, start uint64, n int, epoch string, from, until uint64) ([]StreamMsg, error) {
	cons, err := j.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{j.Subject(room)}, DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq: start, InactiveThreshold: 10 * time.Second})
	if err != nil {
		return nil, j.offline(err)
	}
	defer func() {
		dctx, dcancel := context.WithTimeout(context.Background(), j.timeout)
		defer dcancel()
		_ = j.stream.DeleteConsumer(dctx, cons.CachedInfo().Name)
	}()
	out := make([]StreamMsg, 0, n)
	for len(out) < n {
		batch, err := cons.Fetch(n-len(out), jetstream.FetchMaxWait(j.timeout))
		if err != nil {
			return nil, j.offline(err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			meta, err := m.Metadata()
			if err != nil {
				return nil, err
			}
			sm := j.Decode(m.Headers(), m.Data(), meta.Sequence.Stream)
			sm.TS = meta.Timestamp.UnixMilli()
			if sm.Epoch == epoch && sm.Seq >= from && sm.Seq < until {
				out = append(out, sm)
			}
			if sm.Seq+1 >= until {
				return out, nil
			}
		}
		if err := batch.Error(); err != nil {
			return nil, j.offline(err)
		}
		if got == 0 { // nothing more on the subject
			break
		}
	}
	return out, nil
}

// History implements Messages.
func (j *JetStream) History(room string, before uint64, limit int) ([]Message, bool, error) {
	return j.HistoryIn(room, "", before, limit)
}

// HistoryIn implements Messages: a node's room may not have read a new
// lifetime yet.
func (j *JetStream) HistoryIn(room, epoch string, before uint64, limit int) ([]Message, bool, error) {
	msgs, more, err := j.page(room, epoch, before, limit)
	return messagesOf(msgs), more, err
}

func messagesOf(msgs []StreamMsg) []Message {
	if len(msgs) == 0 {
		return nil
	}
	out := make([]Message, len(msgs))
	for i, m := range msgs {
		out[i] = Message{Seq: m.Seq, TS: m.TS, Payload: m.Payload}
	}
	return out
}

// page is HistoryIn with the messages' stream sequences.
func (j *JetStream) page(room, epoch string, before uint64, limit int) ([]StreamMsg, bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*j.timeout)
	defer cancel()
	newest, first, ok, err := j.span(ctx, room)
	if err != nil || !ok || limit <= 0 || (epoch != "" && newest.Epoch != epoch) {
		return nil, false, err
	}
	if before == 0 || before > newest.Seq+1 {
		before = newest.Seq + 1
	}
	if before <= first {
		return nil, false, nil
	}
	from := first
	if before-first > uint64(limit) {
		from = before - uint64(limit)
	}
	start, err := j.locate(ctx, room, newest, from)
	if err != nil {
		return nil, false, err
	}
	msgs, err := j.fetch(ctx, room, start, int(before-from), newest.Epoch, from, before)
	if err != nil {
		return nil, false, err
	}
	return msgs, from > first, nil
}

// Since implements Messages.
func (j *JetStream) Since(room string, seq uint64, limit int) ([]Message, bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*j.timeout)
	defer cancel()
	newest, first, ok, err := j.span(ctx, room)
	switch {
	case err != nil:
		return nil, false, err
	case !ok || newest.Seq <= seq:
		return nil, newest.Seq == seq, nil
	case newest.Seq-seq > uint64(limit) || first > seq+1:
		return nil, false, nil
	}
	start, err := j.locate(ctx, room, newest, seq+1)
	if err != nil {
		return nil, false, err
	}
	n := int(newest.Seq - seq)
	msgs, err := j.fetch(ctx, room, start, n, newest.Epoch, seq+1, newest.Seq+1)
	if err != nil {
		return nil, false, err
	}
	if len(msgs) != n || msgs[0].Seq != seq+1 { // retention took some meanwhile
		return nil, false, nil
	}
	return messagesOf(msgs), true, nil
}
