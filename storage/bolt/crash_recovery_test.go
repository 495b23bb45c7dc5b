package bolt_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/bolt"
	"github.com/latchauth/latch/storage/storagetest"
)

// TestCrashedFileOpensWithEveryCommittedRow: the store does not write
// bbolt's freelist at each commit, so a file left without a clean Close (a
// crash) must still open with every committed row, pass bbolt's consistency
// check, take new writes, and close and reopen cleanly.
func TestCrashedFileOpensWithEveryCommittedRow(t *testing.T) {
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
	r, err := bolt.Open(crashed)
	if err != nil {
		t.Fatalf("reopen after recovery: %v", err)
	}
	defer r.Close()
	for _, id := range []string{"s1", "s2"} {
		if _, err := r.GetSession(ctx, id); err != nil {
			t.Errorf("session %s lost across recovery and reopen: %v", id, err)
		}
	}
	if err := r.Check(); err != nil {
		t.Errorf("consistency check after reopen: %v", err)
	}
}
