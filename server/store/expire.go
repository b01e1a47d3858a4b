package store

import (
	"encoding/binary"

	bolt "go.etcd.io/bbolt"
)

const (
	// expireRooms is how many rooms one Expire transaction looks at, and
	// expireDeletes how many records it drops at most: a bigger one would
	// hold bbolt's single writer (and so the committer) for longer.
	expireRooms   = 256
	expireDeletes = 4096
)

// expire drops, room by room, the records older than cutoff (Unix ms) and
// those beyond the newest keep. Each transaction covers a few rooms and a
// bounded number of deletes; one with nothing to drop is rolled back, so a
// pass over a store with nothing to expire costs no sync.
func (d *disk) expire(cutoff int64, keep int) (removed int, err error) {
	var from []byte // the room to resume at
	for {
		var next []byte
		n := 0
		err := d.update(func(tx *bolt.Tx) error {
			msgs := tx.Bucket(bucketMsgs)
			// Names first, then changes: a cursor does not survive
			// writes to the bucket it walks.
			names := make([][]byte, 0, expireRooms)
			c := msgs.Cursor()
			k, _ := c.First()
			if from != nil {
				k, _ = c.Seek(from)
			}
			for ; k != nil && len(names) < expireRooms; k, _ = c.Next() {
				names = append(names, append([]byte(nil), k...))
			}
			if k != nil {
				next = append([]byte(nil), k...)
			}
			for _, room := range names {
				b := msgs.Bucket(room)
				if b == nil {
					continue // a record, not a room: check() refuses such files
				}
				m, full, err := d.expireRoom(room, b, cutoff, keep, expireDeletes-n)
				n += m
				if err != nil {
					return err
				}
				if full {
					next = room // resume with this room
					break
				}
				if k, _ := b.Cursor().First(); k == nil {
					if err := msgs.DeleteBucket(room); err != nil {
						return err
					}
				}
			}
			if n == 0 {
				return errNoChange
			}
			return nil
		})
		if err != nil {
			return removed, err
		}
		removed += n
		if next == nil {
			return removed, nil
		}
		from = next
	}
}

// expireRoom drops room's oldest records while they are past cutoff or
// beyond keep, at most limit of them; full reports that it stopped at the
// limit.
func (d *disk) expireRoom(room []byte, b *bolt.Bucket, cutoff int64, keep, limit int) (n int, full bool, err error) {
	c := b.Cursor()
	lk, _ := c.Last()
	if lk == nil {
		return 0, false, nil
	}
	last := binary.BigEndian.Uint64(lk)
	for k, v := c.First(); k != nil; k, v = c.First() {
		seq, ts, err := decodeRecord(k, v)
		if err != nil {
			return n, false, d.damagedRoom(room, err)
		}
		if last-seq+1 <= uint64(keep) && ts >= cutoff {
			return n, false, nil
		}
		if n == limit {
			return n, true, nil
		}
		if err := c.Delete(); err != nil {
			return n, false, err
		}
		n++
	}
	return n, false, nil
}
