package bolt_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/bolt"
	"github.com/latchauth/latch/storage/storagetest"
)

// rawUpdate changes a closed store's file directly with bbolt.
func rawUpdate(t *testing.T, path string, fn func(*bbolt.Tx) error) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func rawSchema(t *testing.T, path string) string {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v string
	db.View(func(tx *bbolt.Tx) error { v = string(tx.Bucket([]byte("meta")).Get([]byte("schema"))); return nil })
	return v
}

func session(t testing.TB, user, id string, created time.Time) storage.Session {
	return storage.Session{ID: id, UserID: user, CurrentHash: storagetest.Digest(t), CreatedAt: created,
		IdleExpiresAt: created.Add(time.Hour), AbsoluteExpiresAt: created.Add(2 * time.Hour)}
}

// writeSchema1 writes a database as Latch with schema "1" left it: no
// user → sessions index (and, for s2, no session summary either, as before
// summaries existed).
func writeSchema1(t *testing.T, path string) {
	t.Helper()
	ctx := context.Background()
	s, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(ctx, storage.User{ID: "u1", Email: "a@example.com"}); err != nil {
		t.Fatal(err)
	}
	// u2 has a session and no user record (ImportSessions does not check
	// owners): the migration must index it all the same.
	if err := s.ImportSessions(ctx, []storage.Session{session(t, "u1", "s1", base), session(t, "u1", "s2", base.Add(time.Minute)), session(t, "u2", "s3", base)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeSession(ctx, "s3", storage.ReasonRevoked, base); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		if err := tx.DeleteBucket([]byte("usersessions")); err != nil {
			return err
		}
		if err := tx.Bucket([]byte("sessstate")).Delete([]byte("s2")); err != nil {
			return err
		}
		return tx.Bucket([]byte("meta")).Put([]byte("schema"), []byte("1"))
	})
}

// TestMigrateSchema1BuildsUserSessionIndex opens a schema-1 file: Open must
// build the index so that administration sees sessions written before it.
func TestMigrateSchema1BuildsUserSessionIndex(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "latch.db")
	writeSchema1(t, path)

	s, err := bolt.Open(path)
	if err != nil {
		t.Fatalf("Open of a schema-1 file: %v", err)
	}
	now := base.Add(2 * time.Minute)
	check := func(s *bolt.Store) {
		t.Helper()
		got, err := s.ListUserSessions(ctx, "u1")
		if err != nil || !slices.Equal(sessionIDsOf(got), []string{"s2", "s1"}) {
			t.Fatalf("ListUserSessions(u1) after migration = %v, %v; want [s2 s1]", sessionIDsOf(got), err)
		}
		if n, err := s.CountLiveSessions(ctx, now); err != nil || n != 2 {
			t.Fatalf("CountLiveSessions after migration = %d, %v; want 2", n, err)
		}
		if err := s.Check(); err != nil {
			t.Fatal(err)
		}
	}
	check(s)
	// The per-request check reads the backfilled summary of s2.
	if revoked, err := s.AccessTokenRevoked(ctx, "j", "s2", now); err != nil || revoked {
		t.Fatalf("AccessTokenRevoked(s2) after migration = %v, %v", revoked, err)
	}
	revoked, err := s.RevokeUserSessions(ctx, "u1", storage.ReasonAdmin, now)
	if err != nil || len(revoked) != 2 {
		t.Fatalf("RevokeUserSessions after migration = %v, %v; want both pre-migration sessions", sessionIDsOf(revoked), err)
	}
	if revoked, err := s.AccessTokenRevoked(ctx, "j", "s2", now); err != nil || !revoked {
		t.Fatalf("AccessTokenRevoked(s2) after log-out-everywhere = %v, %v; want revoked", revoked, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if v := rawSchema(t, path); v != "3" {
		t.Fatalf("schema after migration = %q, want 3", v)
	}
	// Reopening a migrated file changes nothing.
	s, err = bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, err := s.ListUserSessions(ctx, "u2"); err != nil || !slices.Equal(sessionIDsOf(got), []string{"s3"}) {
		t.Fatalf("ListUserSessions(u2) after reopen = %v, %v", sessionIDsOf(got), err)
	}
	// The sweeper keeps the migrated index in step.
	if r, err := s.DeleteExpired(ctx, base.Add(3*time.Hour), 100); err != nil || r.Deleted != 3 {
		t.Fatalf("DeleteExpired = %+v, %v; want 3 deleted", r, err)
	}
	if got, err := s.ListUserSessions(ctx, "u1"); err != nil || len(got) != 0 {
		t.Fatalf("ListUserSessions after the sweep = %v, %v; want none", sessionIDsOf(got), err)
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bbolt.Tx) error {
		if n := tx.Bucket([]byte("usersessions")).Stats().KeyN; n != 0 {
			t.Errorf("%d index entries left after every session was swept", n)
		}
		return nil
	})
}

// TestMigrationIsAtomic: a schema-1 file the migration cannot read is
// refused and left exactly as it was (still schema 1, no partial index).
func TestMigrationIsAtomic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latch.db")
	writeSchema1(t, path)
	rawUpdate(t, path, func(tx *bbolt.Tx) error { return tx.Bucket([]byte("sessions")).Put([]byte("s9"), []byte{9, '{'}) })
	if s, err := bolt.Open(path); err == nil {
		s.Close()
		t.Fatal("Open migrated a file with a corrupt session record")
	}
	if v := rawSchema(t, path); v != "1" {
		t.Fatalf("schema after a failed migration = %q, want 1", v)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bbolt.Tx) error {
		if tx.Bucket([]byte("usersessions")) != nil {
			t.Fatal("a failed migration left the index bucket behind")
		}
		return nil
	})
}

// TestAdminWritesAreAtomic: when one of a user's sessions cannot be read,
// DeleteUser and RevokeUserSessions fail and change nothing, not half of it.
func TestAdminWritesAreAtomic(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "latch.db")
	s, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(ctx, storage.User{ID: "u1", Email: "a@example.com"}); err != nil {
		t.Fatal(err)
	}
	// "a" sorts before "z": the first session would be revoked before the
	// corrupt one is reached.
	for _, id := range []string{"a", "z"} {
		if err := s.CreateSession(ctx, session(t, "u1", id, base)); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	rawUpdate(t, path, func(tx *bbolt.Tx) error { return tx.Bucket([]byte("sessions")).Put([]byte("z"), []byte{9, '{'}) })
	s, err = bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.DeleteUser(ctx, "u1", base.Add(time.Minute)); err == nil || errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("DeleteUser over a corrupt session = %v, want a corruption error", err)
	}
	if _, err := s.RevokeUserSessions(ctx, "u1", storage.ReasonAdmin, base.Add(time.Minute)); err == nil {
		t.Fatal("RevokeUserSessions over a corrupt session succeeded")
	}
	if _, err := s.GetUserByEmail(ctx, "a@example.com"); err != nil {
		t.Fatalf("failed DeleteUser removed the user: %v", err)
	}
	if got, err := s.GetSession(ctx, "a"); err != nil || got.Revoked() {
		t.Fatalf("failed admin writes revoked session a: %+v, %v", got, err)
	}
}

// TestCreateSessionRefusesNULInUserID: the index key separates user and
// session ids with NUL, so neither may contain one.
func TestCreateSessionRefusesNULInUserID(t *testing.T) {
	s, _ := openTemp(t)
	err := s.CreateSession(context.Background(), session(t, "u\x00x", "s1", base))
	if !errors.Is(err, storage.ErrInvalidArgument) {
		t.Fatalf("CreateSession with NUL in the user id = %v, want ErrInvalidArgument", err)
	}
}

func sessionIDsOf(ss []storage.Session) []string {
	ids := make([]string, len(ss))
	for i, s := range ss {
		ids[i] = s.ID
	}
	return ids
}

// BenchmarkCountLiveSessions scans 10,000 sessions (the sessions-live gauge
// calls it once per scrape); compare with BenchmarkRawBoltScan, the bare
// bbolt walk over as many keys.
func BenchmarkCountLiveSessions(b *testing.B) {
	s, _ := openTemp(b)
	ctx := context.Background()
	for u := range 100 {
		storagetest.EnsureUser(b, s, fmt.Sprintf("u%d", u))
	}
	for i := range 10_000 {
		if err := s.CreateSession(ctx, session(b, fmt.Sprintf("u%d", i%100), fmt.Sprintf("s%05d", i), base)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if n, err := s.CountLiveSessions(ctx, base); err != nil || n != 10_000 {
			b.Fatal(n, err)
		}
	}
}

func BenchmarkRawBoltScan(b *testing.B) {
	db, err := bbolt.Open(filepath.Join(b.TempDir(), "raw.db"), 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bbolt.Tx) error {
		bk, err := tx.CreateBucket([]byte("b"))
		for i := range 10_000 {
			if err == nil {
				err = bk.Put([]byte(fmt.Sprintf("s%05d", i)), make([]byte, 24))
			}
		}
		return err
	}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		db.View(func(tx *bbolt.Tx) error {
			return tx.Bucket([]byte("b")).ForEach(func(_, _ []byte) error { n++; return nil })
		})
		if n != 10_000 {
			b.Fatal(n)
		}
	}
}

// BenchmarkRevokeUserSessions revokes the 20 live sessions of one user among
// 2,000 (log out everywhere), one durable transaction per call.
func BenchmarkRevokeUserSessions(b *testing.B) {
	s, _ := openTemp(b)
	ctx := context.Background()
	for u := range 100 {
		storagetest.EnsureUser(b, s, fmt.Sprintf("u%d", u))
	}
	for i := range 2_000 {
		if err := s.CreateSession(ctx, session(b, fmt.Sprintf("u%d", i%100), fmt.Sprintf("s%05d", i), base)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := s.RevokeUserSessions(ctx, fmt.Sprintf("u%d", i%100), storage.ReasonAdmin, base); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
