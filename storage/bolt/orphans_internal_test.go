package bolt

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/storagetest"
)

// The digests a swept session issued before its previous one are removed
// by the sweeper's paced walk of the refresh index, a few entries per call,
// resuming where the last call stopped; a live session's digests, however
// old, are never touched.
func TestOrphanDigestsSweptInPacedWalk(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "latch.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	chain := func(id string, absolute time.Duration, rotations int) []storage.TokenHash {
		t.Helper()
		hs := []storage.TokenHash{storagetest.Digest(t)}
		if err := s.CreateSession(ctx, storage.Session{ID: id, UserID: "u", CurrentHash: hs[0], CreatedAt: base,
			LastRotatedAt: base, IdleExpiresAt: base.Add(time.Hour), AbsoluteExpiresAt: base.Add(absolute)}); err != nil {
			t.Fatal(err)
		}
		for i := range rotations {
			next := storagetest.Digest(t)
			if _, err := s.RotateRefreshToken(ctx, storage.Rotation{Presented: hs[len(hs)-1], Next: next,
				Now: base.Add(time.Duration(i) * time.Second), IdleTTL: time.Hour}); err != nil {
				t.Fatal(err)
			}
			hs = append(hs, next)
		}
		return hs
	}
	chain("doomed", 2*time.Hour, 40)       // 41 digests, expires at +2h
	kept := chain("kept", 48*time.Hour, 9) // 10 digests
	count := func() int {
		var n int
		s.db.View(func(tx *bbolt.Tx) error { n = tx.Bucket(bucketRefresh).Stats().KeyN; return nil })
		return n
	}
	if n := count(); n != 51 {
		t.Fatalf("refresh index holds %d digests, want 51", n)
	}
	// Keep "kept" live past the sweep (filed at +1h, the sweeper re-files
	// it): rotate it once more, late, with a long idle lifetime.
	last := storagetest.Digest(t)
	if _, err := s.RotateRefreshToken(ctx, storage.Rotation{Presented: kept[len(kept)-1], Next: last,
		Now: base.Add(50 * time.Minute), IdleTTL: 10 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	kept = append(kept, last)
	now := base.Add(3 * time.Hour)
	var counts []int
	for range 20 {
		if _, err := s.DeleteExpired(ctx, now, 1); err != nil { // 8 entries examined per call
			t.Fatal(err)
		}
		counts = append(counts, count())
	}
	// doomed's current and previous digests go with it; the other 39 are
	// orphans, found 8 entries (of 50) at a time.
	if counts[0] <= len(kept) || counts[0] > 52-2 {
		t.Fatalf("after the first call the index holds %d digests: want the session's own two gone and most orphans left (%v)", counts[0], counts)
	}
	if got := counts[len(counts)-1]; got != len(kept) {
		t.Fatalf("after 20 calls the index holds %d digests, want %d (kept's); counts %v", got, len(kept), counts)
	}
	for i, h := range kept {
		if got, _, err := s.FindSessionByRefreshHash(ctx, h); err != nil || got.ID != "kept" {
			t.Fatalf("digest %d of the live session = %q, %v; want kept", i, got.ID, err)
		}
	}
}
