package store

import (
	"encoding/binary"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// The disk backend's queries. Each runs in one short read transaction: a
// long one would hold up bbolt's remapping of a growing file, and with it
// the committer. Values point into the mapped file only while the
// transaction is open, so results are copied out, all payloads of a call
// into one allocation.

func (d *disk) meta(room string) (m Meta, ok bool, err error) {
	err = d.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketRooms).Get([]byte(room))
		if v == nil {
			return nil
		}
		ok = true
		if m, err = decodeMeta(v); err != nil {
			return d.damagedRoom([]byte(room), err)
		}
		return nil
	})
	return m, ok, err
}

func (d *disk) newest(room string, n int) (recs []Record, err error) {
	err = d.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMsgs).Bucket([]byte(room))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		k, v := c.Last()
		recs, _, err = d.collect(room, c, k, v, n)
		return err
	})
	return recs, err
}

func (d *disk) before(room string, seq uint64, n int) (recs []Record, more bool, err error) {
	err = d.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMsgs).Bucket([]byte(room))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		var key [8]byte
		binary.BigEndian.PutUint64(key[:], seq)
		var k, v []byte
		if k, _ = c.Seek(key[:]); k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
		recs, more, err = d.collect(room, c, k, v, n)
		return err
	})
	return recs, more, err
}

// collect reads up to n records walking back from k, v, and returns them
// oldest first, with whether an older one exists.
func (d *disk) collect(room string, c *bolt.Cursor, k, v []byte, n int) ([]Record, bool, error) {
	recs := make([]Record, 0, min(n, 128))
	size := 0
	for ; k != nil && len(recs) < n; k, v = c.Prev() {
		seq, ts, err := decodeRecord(k, v)
		if err != nil {
			return nil, false, d.damagedRoom([]byte(room), err)
		}
		recs = append(recs, Record{Seq: seq, TS: ts, Payload: v[recordHeader:]})
		size += len(v) - recordHeader
	}
	slices.Reverse(recs)
	copyOut(recs, size)
	return recs, k != nil, nil
}

// copyOut moves the payloads of recs out of the mapped file into one
// buffer of size bytes.
func copyOut(recs []Record, size int) {
	buf := make([]byte, 0, size)
	for i := range recs {
		start := len(buf)
		buf = append(buf, recs[i].Payload...)
		recs[i].Payload = buf[start:len(buf):len(buf)]
	}
}

func (d *disk) since(room string, seq uint64, limit int) (recs []Record, complete bool, err error) {
	err = d.view(func(tx *bolt.Tx) error {
		var m Meta
		if v := tx.Bucket(bucketRooms).Get([]byte(room)); v != nil {
			if m, err = decodeMeta(v); err != nil {
				return d.damagedRoom([]byte(room), err)
			}
		}
		if seq >= m.LastSeq {
			complete = seq == m.LastSeq
			return nil
		}
		need := m.LastSeq - seq
		if need > uint64(limit) {
			return nil
		}
		b := tx.Bucket(bucketMsgs).Bucket([]byte(room))
		if b == nil {
			return nil // all expired
		}
		c := b.Cursor()
		var key [8]byte
		binary.BigEndian.PutUint64(key[:], seq+1)
		k, v := c.Seek(key[:])
		if k == nil || binary.BigEndian.Uint64(k) != seq+1 {
			return nil // seq+1 expired
		}
		recs = make([]Record, 0, need)
		size := 0
		for ; k != nil; k, v = c.Next() {
			s, ts, err := decodeRecord(k, v)
			if err != nil {
				return d.damagedRoom([]byte(room), err)
			}
			if s != seq+1+uint64(len(recs)) {
				return d.damagedRoom([]byte(room), fmt.Errorf("record %d follows %d", s, seq+uint64(len(recs))))
			}
			recs = append(recs, Record{Seq: s, TS: ts, Payload: v[recordHeader:]})
			size += len(v) - recordHeader
		}
		if uint64(len(recs)) != need {
			return d.damagedRoom([]byte(room), fmt.Errorf("%d records after %d, metadata says %d", len(recs), seq, need))
		}
		copyOut(recs, size)
		complete = true
		return nil
	})
	if !complete {
		recs = nil
	}
	return recs, complete, err
}

// rooms reads the metas in chunks, each in its own transaction, and calls
// fn between them, so fn may be slow or call the Store.
func (d *disk) rooms(fn func(room string, m Meta) bool) error {
	const chunk = 256
	var from []byte
	for {
		names := make([]string, 0, chunk)
		metas := make([]Meta, 0, chunk)
		err := d.view(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketRooms).Cursor()
			k, v := c.First()
			if from != nil {
				if k, v = c.Seek(from); k != nil && string(k) == string(from) {
					k, v = c.Next()
				}
			}
			for ; k != nil && len(names) < chunk; k, v = c.Next() {
				m, err := decodeMeta(v)
				if err != nil {
					return d.damagedRoom(k, err)
				}
				names = append(names, string(k))
				metas = append(metas, m)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for i := range names {
			if !fn(names[i], metas[i]) {
				return nil
			}
		}
		if len(names) < chunk {
			return nil
		}
		from = []byte(names[len(names)-1])
	}
}
