package bolt

import (
	"context"
	"maps"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/storagetest"
)

// dump returns every bucket's rows, as strings, keyed by bucket name.
func dump(t *testing.T, s *Store) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	if err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			rows := map[string]string{}
			out[string(name)] = rows
			return b.ForEach(func(k, v []byte) error { rows[string(k)] = string(v); return nil })
		})
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// A successful rotation writes exactly two rows, the session record and
// its new digest's refresh entry (linked to the digest it replaces), and
// nothing else: the point of schema 3 (each further row is a further page
// written per rotation on a large file; schema 2 also wrote a sessdigests
// entry, rewrote the summary and moved the expiry entry). A reuse detection also writes the session summary, which the
// per-request check reads.
func TestRotationWritesTwoRows(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	first := storagetest.Digest(t)
	createSession(t, s, "s1", first, base, 24*time.Hour)
	before := dump(t, s)
	next := storagetest.Digest(t)
	if _, err := s.RotateRefreshToken(ctx, storage.Rotation{Presented: first, Next: next, Now: base.Add(time.Minute), IdleTTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	after := dump(t, s)
	for name, rows := range before {
		switch name {
		case string(bucketSessions):
			if len(after[name]) != 1 || after[name]["s1"] == rows["s1"] {
				t.Errorf("sessions: want the one record rewritten")
			}
		case string(bucketRefresh):
			added := maps.Clone(after[name])
			maps.DeleteFunc(added, func(k, _ string) bool { _, ok := rows[k]; return ok })
			if len(added) != 1 || added[string(next[:])] != "s1\x00"+string(first[:]) || len(after[name]) != len(rows)+1 {
				t.Errorf("refresh: want exactly the new digest added, got %d new of %d", len(added), len(after[name]))
			}
		default:
			if !maps.Equal(rows, after[name]) {
				t.Errorf("bucket %s changed by a rotation", name)
			}
		}
	}
	// Reuse: the revocation reaches the summary.
	stateBefore := after[string(bucketSessState)]["s1"]
	if _, err := s.RotateRefreshToken(ctx, storage.Rotation{Presented: first, Next: storagetest.Digest(t), Now: base.Add(2 * time.Minute), IdleTTL: time.Hour}); err == nil {
		t.Fatal("reuse not detected")
	}
	if got := dump(t, s)[string(bucketSessState)]["s1"]; got == stateBefore {
		t.Fatal("reuse detection did not rewrite the session summary")
	}
}
