package bolt_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
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

// TestOpenRefusesOtherSchemas: a file of another layout (the unreleased
// versions 1 to 4, whose records this build does not read, or an unknown
// later one) is refused with an error naming both versions, and left
// exactly as it was.
func TestOpenRefusesOtherSchemas(t *testing.T) {
	for _, v := range []string{"1", "2", "3", "4", "6"} {
		t.Run(v, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "latch.db")
			s, err := bolt.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			storagetest.EnsureUser(t, s, "u1")
			if err := s.CreateSession(context.Background(), session(t, "u1", "s1", base)); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			rawUpdate(t, path, func(tx *bbolt.Tx) error {
				if _, err := tx.CreateBucket([]byte("refresh")); err != nil {
					return err
				}
				if err := tx.DeleteBucket([]byte("refreshkeys")); err != nil {
					return err
				}
				return tx.Bucket([]byte("meta")).Put([]byte("schema"), []byte(v))
			})
			s, err = bolt.Open(path)
			if err == nil {
				s.Close()
				t.Fatalf("Open accepted a schema %s file", v)
			}
			if msg := err.Error(); !strings.Contains(msg, fmt.Sprintf(`version %q is not "5"`, v)) || !strings.Contains(msg, "new file") {
				t.Fatalf("Open of a schema %s file: %q; want an error naming both versions and the way out", v, msg)
			}
			if got := rawSchema(t, path); got != v {
				t.Fatalf("schema after the refused Open = %q, want %q", got, v)
			}
			db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			db.View(func(tx *bbolt.Tx) error {
				if tx.Bucket([]byte("refresh")) == nil || tx.Bucket([]byte("refreshkeys")) != nil {
					t.Error("the refused Open changed the file's buckets")
				}
				return nil
			})
		})
	}
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
