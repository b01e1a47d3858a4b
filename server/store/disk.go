package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// The file's layout. Bucket "store" holds the format marker; bucket "rooms"
// maps a room name to its encoded Meta; bucket "msgs" holds one nested
// bucket per room, mapping an 8-byte big-endian Seq to an encoded record, so
// a room's records sit together in Seq order and a page read is one short
// cursor walk.
const (
	fileName    = "store.db"
	format      = "noom-store 1"
	lockTimeout = 2 * time.Second
)

var (
	bucketStore = []byte("store")
	bucketRooms = []byte("rooms")
	bucketMsgs  = []byte("msgs")
	keyFormat   = []byte("format")
	castagnoli  = crc32.MakeTable(crc32.Castagnoli)
)

// disk is the backend over one bbolt file. bbolt serialises write
// transactions itself (the committer's, SetMeta's, Expire's, ForgetRoom's)
// and lets reads run beside them on a consistent snapshot.
type disk struct {
	db   *bolt.DB
	path string
	// The committer's scratch, reused across batches (only commit uses
	// them, and only the committer calls commit).
	arena []byte
	txs   map[string]*roomTx
}

// roomTx is one room's state within a commit.
type roomTx struct {
	b     *bolt.Bucket
	meta  Meta
	dirty bool
}

// openDisk opens or creates the store file in dir. A file that is created
// is built under a temporary name and renamed into place, so a store.db
// that exists has always been complete once: an empty or unreadable one is
// damage, never a new store.
func openDisk(dir string, verify bool) (*disk, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, classifyOpen("directory "+dir, err)
	}
	path := filepath.Join(dir, fileName)
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := create(dir, path); err != nil {
			return nil, err
		}
		// dir may be new too: make its own entry durable, if the
		// parent may be opened at all (a parent we may only pass
		// through is no reason to refuse the store).
		_ = syncDir(filepath.Dir(dir))
	case err != nil:
		return nil, classifyOpen(path, err)
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("store: %s is not a regular file", path)
	case fi.Size() == 0:
		return nil, damaged(path, errors.New("the file is empty"))
	}
	db, err := openBolt(path)
	if err != nil {
		return nil, classifyOpen(path, err)
	}
	d := &disk{db: db, path: path, txs: make(map[string]*roomTx)}
	if err := d.check(verify); err != nil {
		db.Close()
		return nil, err
	}
	return d, nil
}

// create builds an empty store at path through path+".new".
func create(dir, path string) error {
	tmp := path + ".new"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return classifyOpen("directory "+dir, err)
	}
	db, err := openBolt(tmp)
	if err != nil {
		return classifyOpen("directory "+dir, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketRooms, bucketMsgs} {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		b, err := tx.CreateBucket(bucketStore)
		if err != nil {
			return err
		}
		return b.Put(keyFormat, []byte(format))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		os.Remove(tmp)
		return classifyOpen("directory "+dir, err)
	}
	return nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// openBolt opens path with bbolt, turning its panics on a damaged file
// into ErrDamaged (and closing the file, which drops its lock). Other
// errors are bbolt's, for the caller to classify.
func openBolt(path string) (db *bolt.DB, err error) {
	var file *os.File
	opt := &bolt.Options{
		Timeout: lockTimeout,
		// The hashmap freelist allocates in O(1) however fragmented
		// the file gets after expiry.
		FreelistType: bolt.FreelistMapType,
		OpenFile: func(name string, flag int, mode os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, mode)
			file = f
			return f, err
		},
	}
	defer func() {
		if r := recover(); r != nil {
			if file != nil {
				file.Close()
			}
			db, err = nil, damaged(path, fmt.Errorf("%v", r))
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return bolt.Open(path, 0o600, opt)
}

// classifyOpen names what went wrong opening what.
func classifyOpen(what string, err error) error {
	var pe *fs.PathError
	switch {
	case errors.Is(err, ErrDamaged):
		return err
	case errors.Is(err, berrors.ErrTimeout):
		return fmt.Errorf("store: %s is %w (timed out after %v waiting for its lock)", what, ErrLocked, lockTimeout)
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS):
		return fmt.Errorf("store: %s is %w: %v", what, ErrNotWritable, err)
	case isFull(err):
		return fmt.Errorf("store: %s: %w: %v", what, ErrFull, err)
	case errors.As(err, &pe), errors.Is(err, syscall.EIO):
		return fmt.Errorf("store: %s: %w", what, err)
	}
	// What is left is bbolt refusing the content: bad meta pages, a
	// checksum, a version, a short file.
	return damaged(what, err)
}

func damaged(path string, cause error) error {
	return fmt.Errorf("store: %s is %w (%v); move it away to start with an empty store, or restore a backup", path, ErrDamaged, cause)
}

// isFull reports a write that failed for want of space. bbolt formats some
// of its errors with %s (growing the file), so the errno text is matched as
// well as the errno.
func isFull(err error) bool {
	for _, e := range []syscall.Errno{syscall.ENOSPC, syscall.EFBIG, syscall.EDQUOT} {
		if errors.Is(err, e) || strings.Contains(err.Error(), e.Error()) {
			return true
		}
	}
	return errors.Is(err, berrors.ErrMaxSizeReached)
}

// guard turns a panic of bbolt on a damaged page (or a fault reading the
// mapped file) into ErrDamaged. Callers defer it.
func (d *disk) guard(err *error) {
	if r := recover(); r != nil {
		*err = damaged(d.path, fmt.Errorf("%v", r))
	}
}

func (d *disk) view(fn func(tx *bolt.Tx) error) (err error) {
	defer d.guard(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	err = d.db.View(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed // Close won the race with the caller's check
	}
	return err
}

// errNoChange rolls back a write transaction that found nothing to do, so
// it costs no sync.
var errNoChange = errors.New("no change")

func (d *disk) update(fn func(tx *bolt.Tx) error) (err error) {
	defer d.guard(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	err = d.db.Update(fn)
	switch {
	case err == nil, errors.Is(err, errNoChange):
		return nil
	case errors.Is(err, ErrDamaged):
		return err
	case errors.Is(err, berrors.ErrDatabaseNotOpen):
		return ErrClosed
	case isFull(err):
		return fmt.Errorf("store: %s: %w: %v", d.path, ErrFull, err)
	}
	return fmt.Errorf("store: %s: %w", d.path, err)
}

func (d *disk) close() error {
	if err := d.db.Close(); err != nil {
		return fmt.Errorf("store: closing %s: %w", d.path, err)
	}
	return nil
}

// check looks the file over at open: the format, every room's Meta and the
// two ends of its records. With full it also walks every page (bbolt's own
// check) and every record.
func (d *disk) check(full bool) error {
	return d.view(func(tx *bolt.Tx) error {
		sb := tx.Bucket(bucketStore)
		if sb == nil || string(sb.Get(keyFormat)) != format {
			return damaged(d.path, errors.New("no noom store format marker"))
		}
		rooms, msgs := tx.Bucket(bucketRooms), tx.Bucket(bucketMsgs)
		if rooms == nil || msgs == nil {
			return damaged(d.path, errors.New("a top-level bucket is missing"))
		}
		if full {
			for err := range tx.Check() {
				return damaged(d.path, err)
			}
		}
		err := rooms.ForEach(func(k, v []byte) error {
			m, err := decodeMeta(v)
			if err != nil {
				return d.damagedRoom(k, err)
			}
			b := msgs.Bucket(k)
			if b == nil {
				return nil
			}
			return d.checkRoom(k, b, m, full)
		})
		if err != nil {
			return err
		}
		return msgs.ForEachBucket(func(k []byte) error {
			if rooms.Get(k) == nil {
				return d.damagedRoom(k, errors.New("records without metadata"))
			}
			return nil
		})
	})
}

// checkRoom checks a room's records against its Meta: the newest is
// LastSeq, and (with full) all of them decode and follow one another.
func (d *disk) checkRoom(room []byte, b *bolt.Bucket, m Meta, full bool) error {
	c := b.Cursor()
	k, v := c.Last()
	if k == nil {
		return nil
	}
	last, _, err := decodeRecord(k, v)
	if err != nil {
		return d.damagedRoom(room, err)
	}
	if last != m.LastSeq {
		return d.damagedRoom(room, fmt.Errorf("newest record %d, metadata says %d", last, m.LastSeq))
	}
	k, v = c.First()
	first, _, err := decodeRecord(k, v)
	if err != nil {
		return d.damagedRoom(room, err)
	}
	if !full {
		return nil
	}
	want := first
	for ; k != nil; k, v = c.Next() {
		seq, _, err := decodeRecord(k, v)
		if err != nil {
			return d.damagedRoom(room, err)
		}
		if seq != want {
			return d.damagedRoom(room, fmt.Errorf("record %d where %d belongs", seq, want))
		}
		want++
	}
	return nil
}

func (d *disk) damagedRoom(room []byte, err error) error {
	return damaged(d.path, fmt.Errorf("room %q: %w", room, err))
}

// commit writes a batch in one bbolt transaction: bbolt writes the dirty
// pages, syncs, writes the meta page and syncs again, so the batch is
// durable (or absent) as a whole whatever its size.
func (d *disk) commit(batch []pending, rejected []error) error {
	// bbolt keeps the slices passed to Put until the commit, so every key
	// and value of the batch lives in one arena, sized up front so it is
	// never reallocated under bbolt's feet.
	size := 0
	for i := range batch {
		size += 8 + recordHeader + len(batch[i].rec.Payload)
	}
	if cap(d.arena) < size {
		d.arena = make([]byte, 0, size+size/4)
	}
	arena := d.arena[:0]
	clear(d.txs)
	return d.update(func(tx *bolt.Tx) error {
		rooms, msgs := tx.Bucket(bucketRooms), tx.Bucket(bucketMsgs)
		for i := range batch {
			p := &batch[i]
			rt := d.txs[p.room]
			if rt == nil {
				rt = &roomTx{}
				if v := rooms.Get([]byte(p.room)); v != nil {
					m, err := decodeMeta(v)
					if err != nil {
						return d.damagedRoom([]byte(p.room), err)
					}
					rt.meta = m
				} else {
					rt.meta.Epoch = p.epoch // a new room: AppendIn's epoch
				}
				d.txs[p.room] = rt
			}
			if want := rt.meta.LastSeq + 1; p.rec.Seq != want {
				rejected[i] = fmt.Errorf("%w: room %q got seq %d, want %d", ErrSeq, p.room, p.rec.Seq, want)
				continue
			}
			if rt.b == nil {
				b, err := msgs.CreateBucketIfNotExists([]byte(p.room))
				if err != nil {
					return err
				}
				// Keys only ever grow: fill pages to the brim
				// instead of splitting them half-empty.
				b.FillPercent = 1
				rt.b = b
			}
			start := len(arena)
			arena = binary.BigEndian.AppendUint64(arena, p.rec.Seq)
			arena = appendRecord(arena, p.rec)
			if err := rt.b.Put(arena[start:start+8], arena[start+8:]); err != nil {
				return err
			}
			rt.meta.LastSeq = p.rec.Seq
			rt.meta.Touched = max(rt.meta.Touched, p.rec.TS)
			rt.dirty = true
		}
		changed := false
		for room, rt := range d.txs {
			if rt.dirty {
				if err := rooms.Put([]byte(room), appendMeta(nil, rt.meta)); err != nil {
					return err
				}
				changed = true
			}
		}
		if !changed {
			return errNoChange
		}
		return nil
	})
}

func (d *disk) setMetas(us []MetaUpdate) error {
	return d.update(func(tx *bolt.Tx) error {
		rooms := tx.Bucket(bucketRooms)
		for _, u := range us {
			m := u.Meta
			if v := rooms.Get([]byte(u.Room)); v != nil {
				old, err := decodeMeta(v)
				if err != nil {
					return d.damagedRoom([]byte(u.Room), err)
				}
				m.LastSeq = old.LastSeq
			}
			if err := rooms.Put([]byte(u.Room), appendMeta(nil, m)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (d *disk) forget(room string) error {
	return d.update(func(tx *bolt.Tx) error {
		rooms, msgs := tx.Bucket(bucketRooms), tx.Bucket(bucketMsgs)
		if rooms.Get([]byte(room)) == nil {
			return errNoChange
		}
		if err := msgs.DeleteBucket([]byte(room)); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
			return err
		}
		return rooms.Delete([]byte(room))
	})
}

// A record's value is a CRC-32C of its key and the rest, its TS (8 bytes,
// big-endian) and the payload. The checksum turns a damaged page that bbolt
// still reads into ErrDamaged instead of a wrong message.
const recordHeader = 4 + 8

func appendRecord(dst []byte, r Record) []byte {
	var key [8]byte
	binary.BigEndian.PutUint64(key[:], r.Seq)
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.TS))
	dst = append(dst, r.Payload...)
	sum := crc32.Update(crc32.Checksum(key[:], castagnoli), castagnoli, dst[start+4:])
	binary.BigEndian.PutUint32(dst[start:], sum)
	return dst
}

// decodeRecord checks a stored record and returns its Seq and TS; its
// payload is v[recordHeader:].
func decodeRecord(k, v []byte) (seq uint64, ts int64, err error) {
	if len(k) != 8 || len(v) < recordHeader {
		return 0, 0, fmt.Errorf("record of %d+%d bytes", len(k), len(v))
	}
	sum := crc32.Update(crc32.Checksum(k, castagnoli), castagnoli, v[4:])
	if sum != binary.BigEndian.Uint32(v) {
		return 0, 0, fmt.Errorf("record %d: checksum mismatch", binary.BigEndian.Uint64(k))
	}
	return binary.BigEndian.Uint64(k), int64(binary.BigEndian.Uint64(v[4:])), nil
}

// A Meta is encoded as a version byte, LastSeq and Touched as varints, Epoch
// and Settings each with a varint length, and a CRC-32C of all that.
const metaVersion = 1

func appendMeta(dst []byte, m Meta) []byte {
	start := len(dst)
	dst = append(dst, metaVersion)
	dst = binary.AppendUvarint(dst, m.LastSeq)
	dst = binary.AppendVarint(dst, m.Touched)
	dst = binary.AppendUvarint(dst, uint64(len(m.Epoch)))
	dst = append(dst, m.Epoch...)
	dst = binary.AppendUvarint(dst, uint64(len(m.Settings)))
	dst = append(dst, m.Settings...)
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// decodeMeta decodes v, copying what it keeps out of bbolt's memory.
func decodeMeta(v []byte) (Meta, error) {
	var m Meta
	bad := errors.New("metadata: bad encoding")
	if len(v) < 5 {
		return m, bad
	}
	body := v[:len(v)-4]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(v[len(v)-4:]) {
		return m, errors.New("metadata: checksum mismatch")
	}
	if body[0] != metaVersion {
		return m, fmt.Errorf("metadata: version %d", body[0])
	}
	p := body[1:]
	var n int
	if m.LastSeq, n = binary.Uvarint(p); n <= 0 {
		return m, bad
	}
	p = p[n:]
	if m.Touched, n = binary.Varint(p); n <= 0 {
		return m, bad
	}
	p = p[n:]
	l, n := binary.Uvarint(p)
	if n <= 0 || uint64(len(p)-n) < l {
		return m, bad
	}
	m.Epoch = string(p[n : n+int(l)])
	p = p[n+int(l):]
	if l, n = binary.Uvarint(p); n <= 0 || uint64(len(p)-n) != l {
		return m, bad
	}
	if l > 0 {
		m.Settings = append([]byte(nil), p[n:]...)
	}
	return m, nil
}
