package bolt_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/bolt"
)

// TestOpenSchema2File opens testdata/schema2.db, written by the schema-2
// code (testdata/gen-schema2: JSON session records, the sessdigests index,
// summaries and expiry entries rewritten by every rotation). Open must
// upgrade it to schema 3 in place, and every session, digest and denial
// in it must keep working: rotation, reuse detection, revocation checks,
// the sweeper, down to an empty refresh index.
func TestOpenSchema2File(t *testing.T) {
	ctx := context.Background()
	data, err := os.ReadFile(filepath.Join("testdata", "schema2.db"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "latch.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if v := rawSchema(t, path); v != "2" {
		t.Fatalf("testdata/schema2.db is at schema %q, want 2", v)
	}
	digest := func(s string) storage.TokenHash { return sha256.Sum256([]byte(s)) }
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) // the generator's clock

	s, err := bolt.Open(path)
	if err != nil {
		t.Fatalf("Open of a schema-2 file: %v", err)
	}
	live, err := s.GetSession(ctx, "live")
	if err != nil || live.CurrentHash != digest("live-2") || live.Generation != 2 || live.UserID != "u1" || live.Audience != "api" {
		t.Fatalf("GetSession(live) = %+v, %v", live, err)
	}
	if got, current, err := s.FindSessionByRefreshHash(ctx, digest("live-0")); err != nil || current || got.ID != "live" {
		t.Fatalf("FindSessionByRefreshHash(live-0) = %s, %v, %v; want live, not current", got.ID, current, err)
	}
	now := base.Add(30 * time.Minute)
	if n, err := s.CountLiveSessions(ctx, now); err != nil || n != 2 {
		t.Fatalf("CountLiveSessions = %d, %v; want 2 (live, old)", n, err)
	}
	for _, c := range []struct {
		jti, sid string
		want     bool
	}{{"j", "live", false}, {"j", "old", false}, {"j", "revoked", true}, {"jti-1", "live", true}} {
		if got, err := s.AccessTokenRevoked(ctx, c.jti, c.sid, now); err != nil || got != c.want {
			t.Fatalf("AccessTokenRevoked(%s, %s) = %v, %v; want %v", c.jti, c.sid, got, err, c.want)
		}
	}
	if _, err := s.RotateRefreshToken(ctx, storage.Rotation{Presented: digest("live-2"), Next: digest("live-3"), Now: now, IdleTTL: time.Hour}); err != nil {
		t.Fatalf("rotation of a schema-2 session: %v", err)
	}
	_, err = s.RotateRefreshToken(ctx, storage.Rotation{Presented: digest("live-0"), Next: digest("x"), Now: now, IdleTTL: time.Hour})
	if !errors.Is(err, storage.ErrRefreshTokenReused) {
		t.Fatalf("reuse of a digest issued before the upgrade: %v; want ErrRefreshTokenReused", err)
	}
	if got, err := s.AccessTokenRevoked(ctx, "j", "live", now); err != nil || !got {
		t.Fatalf("AccessTokenRevoked(live) after reuse = %v, %v; want revoked", got, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if v := rawSchema(t, path); v != "3" {
		t.Fatalf("schema after Open = %q, want 3", v)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	db.View(func(tx *bbolt.Tx) error {
		if n := tx.Bucket([]byte("sessdigests")).Stats().KeyN; n != 5 {
			t.Errorf("the session → digests index holds %d entries after the upgrade and one rotation; want schema 2's 5 (schema 3 writes none)", n)
		}
		return nil
	})
	db.Close()

	// The sweeper: at +85m the never-rotated sessions (filed at +1h) and
	// the denial go; live, filed by schema 2 at +80m but now ending at
	// +90m, is re-filed, not deleted.
	s, err = bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if r, err := s.DeleteExpired(ctx, base.Add(85*time.Minute), 100); err != nil || r != (storage.SweepResult{Deleted: 3, Refiled: 1}) {
		t.Fatalf("DeleteExpired at +85m = %+v, %v; want 3 deleted (old, revoked, jti-1), 1 re-filed (live)", r, err)
	}
	if _, err := s.GetSession(ctx, "live"); err != nil {
		t.Fatalf("live after the sweep at +85m: %v", err)
	}
	for _, id := range []string{"old", "revoked"} {
		if _, err := s.GetSession(ctx, id); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("%s after the sweep at +85m: %v; want ErrNotFound", id, err)
		}
	}
	if r, err := s.DeleteExpired(ctx, base.Add(2*time.Hour), 100); err != nil || r != (storage.SweepResult{Deleted: 1}) {
		t.Fatalf("DeleteExpired at +2h = %+v, %v; want 1 deleted (live)", r, err)
	}
	for _, d := range []string{"live-0", "live-1", "live-2", "live-3", "old-0", "revoked-0"} {
		if _, _, err := s.FindSessionByRefreshHash(ctx, digest(d)); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("FindSessionByRefreshHash(%s) after every session was swept: %v; want ErrNotFound", d, err)
		}
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	// Sweeping a session deleted every digest it issued: live-3 and live-2
	// through the link schema 3 wrote, live-0 and live-1 (schema 2, no
	// links) through the session → digests index.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bbolt.Tx) error {
		for _, b := range []string{"refresh", "sessdigests"} {
			if n := tx.Bucket([]byte(b)).Stats().KeyN; n != 0 {
				t.Errorf("%s holds %d entries after every session was swept; want 0", b, n)
			}
		}
		return nil
	})
}
