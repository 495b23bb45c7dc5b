package bolt_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/bolt"
	"github.com/latchauth/latch/storage/storagetest"
)

// openTemp opens a store in a fresh temp dir and checks the file's
// consistency when the test ends.
func openTemp(t testing.TB) (*bolt.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "latch.db")
	s, err := bolt.Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Check(); err != nil && !strings.Contains(err.Error(), "database not open") {
			t.Errorf("consistency check: %v", err)
		}
		s.Close()
	})
	return s, path
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store { return openChecked(t) },
		storagetest.WithFootprint(func(t *testing.T, s storage.Store) int {
			n, err := bolt.KeyCount(s.(*bolt.Store))
			if err != nil {
				t.Fatalf("count keys: %v", err)
			}
			return n
		}),
		storagetest.WithRetention(storagetest.Retention{
			Retention: 15*time.Minute + 30*time.Second,
			Open: func(t *testing.T) storage.Store {
				return openChecked(t, bolt.WithRevokedSessionRetention(15*time.Minute+30*time.Second))
			},
			Sweep: func(t *testing.T, s storage.Store, now time.Time) {
				if _, err := storage.SweepOnce(context.Background(), s, 1000, now); err != nil {
					t.Fatalf("SweepOnce(%v): %v", now, err)
				}
			},
		}))
}

// openChecked opens a store on a new file in t.TempDir() whose consistency
// bbolt checks after the test has closed it.
func openChecked(t *testing.T, opts ...bolt.Option) *bolt.Store {
	t.Helper()
	path := filepath.Join(t.TempDir(), "latch.db")
	s, err := bolt.Open(path, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		// Run closes the store; reopen to check what it left on disk.
		r, err := bolt.Open(path)
		if err != nil {
			t.Errorf("reopen for consistency check: %v", err)
			return
		}
		defer r.Close()
		if err := r.Check(); err != nil {
			t.Errorf("consistency check: %v", err)
		}
	})
	return s
}

var base = time.Unix(1_700_000_000, 0).UTC()

// TestDurableAcrossReopen writes every kind of row, closes the file and
// checks that a new Open sees all of it.
func TestDurableAcrossReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "latch.db")
	s, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(ctx, storage.User{ID: "u1", Email: "a@example.com", Roles: []string{"admin"}}); err != nil {
		t.Fatal(err)
	}
	first := storagetest.Digest(t)
	sess := storage.Session{ID: "s1", UserID: "u1", CurrentHash: first, CreatedAt: base,
		IdleExpiresAt: base.Add(time.Hour), AbsoluteExpiresAt: base.Add(2 * time.Hour)}
	if err := s.CreateSession(ctx, sess); err != nil {
		t.Fatal(err)
	}
	next := storagetest.Digest(t)
	if _, err := s.RotateRefreshToken(ctx, storage.Rotation{SessionID: "s1", Presented: first, Next: next, Now: base.Add(time.Minute), IdleTTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DenyAccessToken(ctx, "j1", base.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.InitSigningKey(ctx, storage.SigningKey{ID: "k1", PrivateKey: []byte{1}, PublicKey: []byte{2}, CreatedAt: base}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	r, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if u, err := r.GetUserByEmail(ctx, "a@example.com"); err != nil || u.Roles[0] != "admin" {
		t.Fatalf("user after reopen: %+v, %v", u, err)
	}
	if got, err := r.GetSession(ctx, "s1"); err != nil || got.CurrentHash != next || got.PreviousHash != first || got.Generation != 1 {
		t.Fatalf("session after reopen: %+v, %v", got, err)
	}
	if revoked, err := r.AccessTokenRevoked(ctx, "j1", "s1", base.Add(2*time.Minute)); err != nil || !revoked {
		t.Fatalf("denial after reopen: %v, %v", revoked, err)
	}
	if keys, err := r.ListSigningKeys(ctx); err != nil || len(keys) != 1 || keys[0].State != storage.KeyActive {
		t.Fatalf("keys after reopen: %+v, %v", keys, err)
	}
	if err := r.Check(); err != nil {
		t.Fatal(err)
	}
}

func TestSecondOpenIsLocked(t *testing.T) {
	_, path := openTemp(t)
	_, err := bolt.Open(path, bolt.WithLockTimeout(100*time.Millisecond))
	if !errors.Is(err, bolt.ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), "another process") {
		t.Fatalf("message %q does not say what is wrong", err)
	}
}

func TestRefusesUnknownSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latch.db")
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucket([]byte("meta"))
		if err != nil {
			return err
		}
		return b.Put([]byte("schema"), []byte("99"))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = bolt.Open(path)
	if err == nil || !strings.Contains(err.Error(), "schema version") {
		t.Fatalf("Open of a schema-99 file = %v, want a schema version error", err)
	}
}

// TestCorruptRecordIsAnError writes garbage where a user record belongs:
// reads must fail with an error, not panic or return a zero user.
func TestCorruptRecordIsAnError(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "latch.db")
	s, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(ctx, storage.User{ID: "u1", Email: "a@example.com"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error { return tx.Bucket([]byte("users")).Put([]byte("u1"), []byte{9, '{'}) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err = bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if u, err := s.GetUser(ctx, "u1"); err == nil || errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("GetUser of a corrupt record = %+v, %v; want a corruption error", u, err)
	}
	if _, err := s.UpdateUser(ctx, "u1", func(*storage.User) error { return nil }); err == nil {
		t.Fatal("UpdateUser of a corrupt record succeeded")
	}
}

// --- benchmarks: rotation against the raw bbolt commit it is built on ---

func BenchmarkRawBoltUpdate(b *testing.B) {
	db, err := bbolt.Open(filepath.Join(b.TempDir(), "raw.db"), 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("b")); return err })
	var i atomic.Int64
	b.ReportAllocs()
	for b.Loop() {
		k := []byte(fmt.Sprint(i.Add(1)))
		if err := db.Update(func(tx *bbolt.Tx) error { return tx.Bucket([]byte("b")).Put(k, k) }); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRawBoltBatch(b *testing.B) {
	db, err := bbolt.Open(filepath.Join(b.TempDir(), "raw.db"), 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.MaxBatchDelay = 2 * time.Millisecond
	db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("b")); return err })
	var i atomic.Int64
	b.SetParallelism(32)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := []byte(fmt.Sprint(i.Add(1)))
			if err := db.Batch(func(tx *bbolt.Tx) error { return tx.Bucket([]byte("b")).Put(k, k) }); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRotateRefreshToken rotates many independent sessions from 64
// goroutines (SetParallelism(32) × 2 cores), as concurrent clients do.
func BenchmarkRotateRefreshToken(b *testing.B) {
	s, _ := openTemp(b)
	ctx := context.Background()
	storagetest.EnsureUser(b, s, "u")
	var n atomic.Int64
	b.SetParallelism(32)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		id := fmt.Sprintf("s%d", n.Add(1))
		cur := storagetest.Digest(b)
		if err := s.CreateSession(ctx, storage.Session{ID: id, UserID: "u", CurrentHash: cur, CreatedAt: base,
			IdleExpiresAt: base.Add(time.Hour), AbsoluteExpiresAt: base.Add(time.Hour)}); err != nil {
			b.Error(err)
			return
		}
		var gen uint64
		for pb.Next() {
			next := storagetest.Digest(b)
			if _, err := s.RotateRefreshToken(ctx, storage.Rotation{SessionID: id, Generation: gen, Presented: cur, Next: next, Now: base, IdleTTL: time.Hour}); err != nil {
				b.Error(err)
				return
			}
			cur, gen = next, gen+1
		}
	})
}

func BenchmarkAccessTokenRevoked(b *testing.B) {
	s, _ := openTemp(b)
	ctx := context.Background()
	storagetest.EnsureUser(b, s, "u")
	if err := s.CreateSession(ctx, storage.Session{ID: "s1", UserID: "u", CurrentHash: storagetest.Digest(b), CreatedAt: base,
		IdleExpiresAt: base.Add(time.Hour), AbsoluteExpiresAt: base.Add(time.Hour)}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if revoked, err := s.AccessTokenRevoked(ctx, "j", "s1", base); err != nil || revoked {
			b.Fatal(revoked, err)
		}
	}
}

// TestRefusesForeignAndCorruptFiles: Latch never starts on a file it did not
// write (it would silently start empty and forget every revocation).
func TestRefusesForeignAndCorruptFiles(t *testing.T) {
	dir := t.TempDir()
	foreign := filepath.Join(dir, "foreign.db")
	db, err := bbolt.Open(foreign, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("widgets")); return err }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := bolt.Open(foreign); err == nil || !strings.Contains(err.Error(), "another program") {
		t.Fatalf("Open of a foreign bbolt file = %v", err)
	}

	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, bytes.Repeat([]byte("not a database "), 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := bolt.Open(garbage); err == nil {
		t.Fatal("Open of a garbage file succeeded")
	}

	// A real Latch file cut in half.
	good := filepath.Join(dir, "good.db")
	s, err := bolt.Open(good)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if err := s.CreateUser(context.Background(), storage.User{ID: fmt.Sprint(i), Email: fmt.Sprintf("u%d@example.com", i)}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.db")
	if err := os.WriteFile(truncated, data[:len(data)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	// bbolt itself opens it (its meta pages survive) and then panics on a
	// page read in a goroutine nobody can recover; Open must refuse it.
	if s, err := bolt.Open(truncated); err == nil || !(strings.Contains(err.Error(), "truncated") || strings.Contains(err.Error(), "damaged")) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Open of a truncated file = %v, want a truncation error", err)
	}
}

// TestWriteStats: the store's write counts follow its writes. Sequential
// session creations are a commit each through the group committer; a user
// creation is a write transaction of its own (bbolt's pages, not the
// committer's); an invalid write reaches neither.
func TestWriteStats(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	before := s.WriteStats()
	if err := s.CreateUser(ctx, storage.User{ID: "u1", Email: "a@example.com"}); err != nil {
		t.Fatal(err)
	}
	afterUser := s.WriteStats()
	if afterUser.Stats != before.Stats || afterUser.PagesWritten <= before.PagesWritten || afterUser.WriteTime <= before.WriteTime {
		t.Fatalf("after CreateUser: %+v, before %+v; want bbolt's counts up, the committer's unchanged", afterUser, before)
	}
	for i := range 3 {
		if err := s.CreateSession(ctx, session(t, "u1", fmt.Sprint("s", i), base)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateSession(ctx, storage.Session{ID: "bad"}); !errors.Is(err, storage.ErrInvalidArgument) {
		t.Fatalf("invalid session: %v", err)
	}
	// A commit's counts are added just after its writers return: give the
	// last one time to land (a bound against hanging, not a measurement).
	got := s.WriteStats()
	for deadline := time.Now().Add(10 * time.Second); got.Commits < before.Commits+3 && time.Now().Before(deadline); got = s.WriteStats() {
		runtime.Gosched()
	}
	if got.Commits != before.Commits+3 || got.Writes != before.Writes+3 ||
		got.PagesWritten < afterUser.PagesWritten+3 || got.WriteTime <= afterUser.WriteTime {
		t.Fatalf("after 3 CreateSession: %+v (before them %+v); want 3 more commits of one write each, pages and time up", got, afterUser)
	}
}
