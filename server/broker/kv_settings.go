package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// KVSettings keeps a cluster's room settings in a JetStream key-value
// bucket, one entry per room, shared by every node. An entry's value is the
// settings object with its version in it (member "v"), because the nodes
// apply the puts they hear on the bucket's subject, which carry no
// revision; a change is a compare-and-set on the entry's revision, so of
// two nodes changing the same version one is kept and the other gets
// ErrSeq. Entries live for the bucket's TTL; a read refreshes one older
// than half of it, so a room in use keeps its settings (and host key).
type KVSettings struct {
	kv      jetstream.KeyValue
	timeout time.Duration
	ttl     time.Duration
}

// NewKVSettings returns settings kept in kv (whose entries live for ttl,
// 0 for ever), each request bounded by timeout.
func NewKVSettings(kv jetstream.KeyValue, ttl, timeout time.Duration) *KVSettings {
	return &KVSettings{kv: kv, timeout: timeout, ttl: ttl}
}

// Key is room's key in the bucket: NATS tokens cannot hold dots.
func (k *KVSettings) Key(room string) string { return strings.ReplaceAll(room, ".", "~") }

// ReadSettings implements Settings.
func (k *KVSettings) ReadSettings(room, _ string, create func() []byte) ([]byte, uint64, bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), k.timeout)
	defer cancel()
	key := k.Key(room)
	for attempt := 0; attempt < 3; attempt++ {
		got, err := k.kv.Get(ctx, key)
		switch {
		case err == nil:
			if k.ttl > 0 && time.Since(got.Created()) > k.ttl/2 { // in use: keep it alive
				_, _ = k.kv.Update(ctx, key, got.Value(), got.Revision())
			}
			return got.Value(), versionOf(got.Value()), false, nil
		case !errors.Is(err, jetstream.ErrKeyNotFound):
			return nil, 0, false, err
		case create == nil:
			return nil, 0, false, nil
		}
		first, err := withVersion(create(), 1)
		if err != nil {
			return nil, 0, false, err
		}
		if _, err = k.kv.Create(ctx, key, first); err == nil {
			return first, 1, true, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, 0, false, err
		}
	}
	return nil, 0, false, errors.New("broker: room settings: too many conflicts")
}

// UpdateSettings implements Settings.
func (k *KVSettings) UpdateSettings(room, _ string, version uint64, next []byte) (uint64, error) {
	b, err := withVersion(next, version+1)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), k.timeout)
	defer cancel()
	key := k.Key(room)
	got, err := k.kv.Get(ctx, key)
	var rev uint64 // 0: create, for a room without settings yet
	switch {
	case err == nil:
		if v := versionOf(got.Value()); v != version {
			return v, fmt.Errorf("%w: settings of %q at %d, not %d", ErrSeq, room, v, version)
		}
		rev = got.Revision()
	case !errors.Is(err, jetstream.ErrKeyNotFound):
		return 0, err
	case version != 0:
		return 0, fmt.Errorf("%w: settings of %q gone, not at %d", ErrSeq, room, version)
	}
	if rev == 0 {
		_, err = k.kv.Create(ctx, key, b)
	} else {
		_, err = k.kv.Update(ctx, key, b, rev)
	}
	switch {
	case err == nil:
		return version + 1, nil
	case errors.Is(err, jetstream.ErrKeyExists) || WrongLastSeq(err):
		return 0, fmt.Errorf("%w: settings of %q changed meanwhile: %w", ErrSeq, room, err)
	}
	return 0, err
}
