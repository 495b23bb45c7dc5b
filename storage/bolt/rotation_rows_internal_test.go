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

// A successful rotation writes exactly one row, the session record, and
// adds none: each further row would be a further page written per
// rotation on a large file, and a row per rotation would grow the file
// without bound. A reuse detection also writes the session summary, which
// the per-request check reads.
func TestRotationWritesOneRow(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	first := storagetest.Digest(t)
	createSession(t, s, "s1", first, base, 24*time.Hour)
	before := dump(t, s)
	next := storagetest.Digest(t)
	if _, err := s.RotateRefreshToken(ctx, storage.Rotation{SessionID: "s1", Presented: first, Next: next, Now: base.Add(time.Minute), IdleTTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	after := dump(t, s)
	for name, rows := range before {
		switch name {
		case string(bucketSessions):
			if len(after[name]) != 1 || after[name]["s1"] == rows["s1"] {
				t.Errorf("sessions: want the one record rewritten")
			}
		default:
			if !maps.Equal(rows, after[name]) {
				t.Errorf("bucket %s changed by a rotation", name)
			}
		}
	}
	// Reuse: the revocation reaches the summary.
	stateBefore := after[string(bucketSessState)]["s1"]
	if _, err := s.RotateRefreshToken(ctx, storage.Rotation{SessionID: "s1", Presented: first, Next: storagetest.Digest(t), Now: base.Add(2 * time.Minute), IdleTTL: time.Hour}); err == nil {
		t.Fatal("reuse not detected")
	}
	if got := dump(t, s)[string(bucketSessState)]["s1"]; got == stateBefore {
		t.Fatal("reuse detection did not rewrite the session summary")
	}
}
