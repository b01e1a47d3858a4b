package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestReopen checks everything survives a Close and Open: records, metas,
// LastSeq of a room whose records expired, and a forgotten room's absence.
func TestReopen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openT(t, dir, Options{Keep: 50})
	fill(t, s, "a", 1, 80, 1)
	fill(t, s, "gone", 1, 3, 1)
	fill(t, s, "empty", 1, 3, 1)
	if err := s.SetMeta("a", Meta{Epoch: "ea", Settings: []byte(`{"locked":true}`), Touched: 5}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Expire(time.UnixMilli(0)); err != nil {
		t.Fatal(err)
	}
	if err := s.ForgetRoom("gone"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openT(t, dir, Options{Keep: 1, Retention: time.Millisecond})
	recs, err := s.Newest("a", 100)
	if err != nil {
		t.Fatal(err)
	}
	wantSeqs(t, "a after reopen", "a", recs, 31, 80)
	m, ok, err := s.Meta("a")
	if err != nil || !ok || m.Epoch != "ea" || string(m.Settings) != `{"locked":true}` || m.LastSeq != 80 || m.Touched != 5 {
		t.Errorf("Meta(a) after reopen = %+v, %v, %v", m, ok, err)
	}
	if _, ok, _ := s.Meta("gone"); ok {
		t.Error("a forgotten room came back")
	}
	// Expire with the new options empties "empty"; its Meta stays.
	if _, err := s.Expire(time.Now()); err != nil {
		t.Fatal(err)
	}
	if m, ok, _ := s.Meta("empty"); !ok || m.LastSeq != 3 {
		t.Errorf("Meta(empty) = %+v, %v; want LastSeq 3", m, ok)
	}
	if err := appendWait(s, "empty", rec("empty", 4, time.Now().UnixMilli())); err != nil {
		t.Error(err)
	}
}

func TestOpenLocked(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	openT(t, dir, Options{})
	_, err := Open(dir, Options{})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), filepath.Join(dir, fileName)) {
		t.Errorf("second Open of %s: %v, want ErrLocked naming the file", dir, err)
	}
}

// TestOpenCreates checks a missing directory is made, and that a leftover
// half-built file from a crash during creation is no obstacle.
func TestOpenCreates(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "a", "b")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, fileName+".new"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := openT(t, dir, Options{})
	fill(t, s, "a", 1, 1, 0)
	if _, err := os.Stat(filepath.Join(dir, fileName+".new")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("leftover %s.new still there: %v", fileName, err)
	}
}

// corrupt opens a closed store's file, finds the live page that holds
// marker (a page bbolt has not freed), and hands it to damage.
func corrupt(t *testing.T, path string, marker []byte, damage func(page []byte)) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: true})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pageSize := db.Info().PageSize
	found := -1
	err = db.View(func(tx *bolt.Tx) error {
		for id := 2; ; id++ {
			info, err := tx.Page(id)
			if err != nil || info == nil {
				return err
			}
			if info.Type != "free" && bytes.Contains(raw[id*pageSize:(id+1)*pageSize], marker) {
				found = id
				return nil
			}
		}
	})
	db.Close()
	if err != nil || found < 0 {
		t.Fatalf("no live page holds %q (%v)", marker, err)
	}
	damage(raw[found*pageSize : (found+1)*pageSize])
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
}

func garbage(b []byte) {
	for i := range b {
		b[i] = byte(i*7 + 0xa5)
	}
}

// TestOpenCorrupt damages the file in several places. Damage to the header
// or the room metadata fails Open with an error that names the file and
// says it is damaged; damage inside the records is found by Open with
// Verify, and otherwise by the read that meets it: never an empty history
// or a wrong message.
func TestOpenCorrupt(t *testing.T) {
	t.Parallel()
	// build makes a store with a room "a" of 300 records and a marked
	// epoch, and returns its file.
	build := func(t *testing.T) string {
		dir := t.TempDir()
		s, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SetMeta("a", Meta{Epoch: "EPOCH-MARKER"}); err != nil {
			t.Fatal(err)
		}
		fill(t, s, "a", 1, 300, 0)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		return filepath.Join(dir, fileName)
	}
	wantDamaged := func(t *testing.T, err error, path string) {
		t.Helper()
		if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), path) {
			t.Errorf("got %v, want ErrDamaged naming %s", err, path)
		} else {
			t.Logf("error: %v", err)
		}
	}
	openDamaged := func(t *testing.T, path string, o Options) {
		t.Helper()
		s, err := Open(filepath.Dir(path), o)
		if err == nil {
			s.Close()
		}
		wantDamaged(t, err, path)
	}

	t.Run("header", func(t *testing.T) {
		t.Parallel()
		path := build(t)
		raw, _ := os.ReadFile(path)
		garbage(raw[:8192]) // both meta pages
		os.WriteFile(path, raw, 0o600)
		openDamaged(t, path, Options{})
	})
	t.Run("room metadata", func(t *testing.T) {
		t.Parallel()
		path := build(t)
		corrupt(t, path, []byte("EPOCH-MARKER"), garbage)
		openDamaged(t, path, Options{})
	})
	t.Run("metadata bytes", func(t *testing.T) {
		t.Parallel()
		path := build(t)
		corrupt(t, path, []byte("EPOCH-MARKER"), func(p []byte) {
			i := bytes.Index(p, []byte("EPOCH-MARKER"))
			copy(p[i:], "epoch-marker")
		})
		openDamaged(t, path, Options{})
	})
	// A page of records in the middle of the room, wholly overwritten:
	// bbolt's page header is garbage.
	t.Run("record page", func(t *testing.T) {
		t.Parallel()
		path := build(t)
		corrupt(t, path, payload("a", 150), garbage)
		openDamaged(t, path, Options{Verify: true})
		s := openT(t, filepath.Dir(path), Options{})
		_, _, err := s.Before("a", 200, 100)
		wantDamaged(t, err, path)
		_, complete, err := s.Since("a", 100, 300)
		wantDamaged(t, err, path)
		if complete {
			t.Error("Since over a damaged page says complete")
		}
		// The pages that are intact still read.
		recs, err := s.Newest("a", 50)
		if err != nil {
			t.Fatal(err)
		}
		wantSeqs(t, "Newest past the damage", "a", recs, 251, 300)
	})
	// A write that meets damage stops the store's writes, not its reads.
	t.Run("write over damage", func(t *testing.T) {
		t.Parallel()
		path := build(t)
		corrupt(t, path, payload("a", 150), garbage)
		s := openT(t, filepath.Dir(path), Options{Keep: 100})
		_, err := s.Expire(time.Now())
		wantDamaged(t, err, path)
		err = appendWait(s, "a", rec("a", 301, 0))
		if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "stopped") {
			t.Errorf("append after a failed write: %v, want the store stopped", err)
		}
		if err := s.SetMeta("b", Meta{}); err == nil {
			t.Error("SetMeta after a failed write succeeded")
		}
		if recs, err := s.Newest("a", 50); err != nil || len(recs) != 50 {
			t.Errorf("Newest after a failed write: %d records, %v", len(recs), err)
		}
	})
	// A few bytes of one message changed: bbolt reads the page, the
	// record's checksum does not match.
	t.Run("record bytes", func(t *testing.T) {
		t.Parallel()
		path := build(t)
		corrupt(t, path, payload("a", 150), func(p []byte) {
			i := bytes.Index(p, payload("a", 150))
			copy(p[i+10:], "XXXX")
		})
		openDamaged(t, path, Options{Verify: true})
		s := openT(t, filepath.Dir(path), Options{})
		_, _, err := s.Before("a", 160, 50)
		wantDamaged(t, err, path)
		if !strings.Contains(err.Error(), "record 150") {
			t.Errorf("the error does not name record 150: %v", err)
		}
	})
	t.Run("newest record", func(t *testing.T) {
		t.Parallel()
		path := build(t)
		corrupt(t, path, payload("a", 300), func(p []byte) {
			i := bytes.Index(p, payload("a", 300))
			copy(p[i+10:], "XXXX")
		})
		openDamaged(t, path, Options{})
	})
	t.Run("empty file", func(t *testing.T) {
		t.Parallel()
		path := build(t)
		os.Truncate(path, 0)
		openDamaged(t, path, Options{})
	})
	t.Run("truncated", func(t *testing.T) {
		t.Parallel()
		path := build(t)
		os.Truncate(path, 3000)
		openDamaged(t, path, Options{})
	})
	t.Run("not a store", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		path := filepath.Join(dir, fileName)
		raw := make([]byte, 64<<10)
		garbage(raw)
		os.WriteFile(path, raw, 0o600)
		openDamaged(t, path, Options{})
	})
}
