package bolt

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/storagetest"
)

// openStore opens a store in a fresh temp dir, closed when the test ends.
func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "latch.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// createSession stores session id of user "u", created at created with
// current digest h, an hour of idle lifetime and the given absolute one.
func createSession(t *testing.T, s *Store, id string, h storage.TokenHash, created time.Time, absolute time.Duration) {
	t.Helper()
	storagetest.EnsureUser(t, s, "u")
	if err := s.CreateSession(t.Context(), storage.Session{ID: id, UserID: "u", CurrentHash: h, CreatedAt: created,
		LastRotatedAt: created, IdleExpiresAt: created.Add(time.Hour), AbsoluteExpiresAt: created.Add(absolute)}); err != nil {
		t.Fatal(err)
	}
}
