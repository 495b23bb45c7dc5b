package bolt_test

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/bolt"
	"github.com/latchauth/latch/storage/storagetest"
)

// freelistSynced reads the file's current meta page (of the two, the one
// with the higher transaction id) and reports whether it points at a
// written freelist. Layout (bbolt 1.x): page header 16 bytes, then magic,
// version, page size, flags (4 bytes each), root bucket (16), freelist
// page id (8), high-water page id (8), txid (8).
func freelistSynced(t *testing.T, path string) bool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pageSize := int(binary.LittleEndian.Uint32(data[16+8:]))
	var freelist, txid uint64
	for _, off := range []int{0, pageSize} {
		m := data[off+16:]
		if binary.LittleEndian.Uint32(m) != 0xED0CDAED {
			t.Fatalf("meta page at %d: bad magic", off)
		}
		if id := binary.LittleEndian.Uint64(m[48:]); id >= txid {
			txid, freelist = id, binary.LittleEndian.Uint64(m[32:])
		}
	}
	return freelist != ^uint64(0)
}

// TestFreelistWrittenAtCloseOnly: while the store is open, commits do not
// write bbolt's freelist (each would otherwise rewrite all of it); a clean
// Close writes it, so that the next Open reads it instead of walking the
// whole file; and a file left without one (a crash) opens with every
// committed row and gets it back at the next Close.
func TestFreelistWrittenAtCloseOnly(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "latch.db")
	s, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	create := func(s *bolt.Store, id string) {
		t.Helper()
		storagetest.EnsureUser(t, s, "u")
		if err := s.CreateSession(ctx, storage.Session{ID: id, UserID: "u", CurrentHash: storagetest.Digest(t),
			CreatedAt: base, LastRotatedAt: base, IdleExpiresAt: base.Add(time.Hour), AbsoluteExpiresAt: base.Add(2 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	create(s, "s1")
	if freelistSynced(t, path) {
		t.Errorf("a commit while open wrote the freelist")
	}
	// A crash: the file as it is now, without Close.
	crashed := filepath.Join(t.TempDir(), "crashed.db")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(crashed, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !freelistSynced(t, path) {
		t.Errorf("Close did not write the freelist")
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	c, err := bolt.Open(crashed)
	if err != nil {
		t.Fatalf("open after a crash: %v", err)
	}
	if _, err := c.GetSession(ctx, "s1"); err != nil {
		t.Errorf("committed session lost: %v", err)
	}
	create(c, "s2")
	if err := c.Check(); err != nil {
		t.Errorf("consistency check after a crash: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if !freelistSynced(t, crashed) {
		t.Errorf("Close after a crash did not write the freelist")
	}
}
