package bolt

import (
	"encoding/binary"
	"errors"
	"path/filepath"
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

// expiryEntries returns the expiry-index times of every session, by id.
func expiryEntries(t *testing.T, s *Store) map[string][]time.Time {
	t.Helper()
	out := map[string][]time.Time{}
	for k := range dump(t, s)[string(bucketExpiry)] {
		if k[8] == kindSession {
			out[k[9:]] = append(out[k[9:]], time.Unix(0, int64(binary.BigEndian.Uint64([]byte(k[:8])))))
		}
	}
	return out
}

// TestRevocationRefilesTheSession: whichever call revokes a session (one
// whose idle expiry a rotation has moved past the one it was filed under),
// the session keeps exactly one expiry-index entry, at RevokedAt plus the
// retention; a live session keeps its own. A retention longer than the
// session's remaining life files it at its expiry.
func TestRevocationRefilesTheSession(t *testing.T) {
	const retention = 15 * time.Minute
	s, err := Open(filepath.Join(t.TempDir(), "latch.db"), WithRevokedSessionRetention(retention))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := t.Context()
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tokens := map[string]storage.TokenHash{}
	for _, id := range []string{"single", "reuse", "live", "short"} {
		tokens[id] = storagetest.Digest(t)
		createSession(t, s, id, tokens[id], base, 24*time.Hour)
	}
	storagetest.EnsureUser(t, s, "v")
	for _, id := range []string{"all-1", "all-2"} {
		if err := s.CreateSession(ctx, storage.Session{ID: id, UserID: "v", CurrentHash: storagetest.Digest(t), CreatedAt: base,
			LastRotatedAt: base, IdleExpiresAt: base.Add(time.Hour), AbsoluteExpiresAt: base.Add(24 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	rotatedAt := base.Add(30 * time.Minute)
	for _, id := range []string{"single", "reuse", "live"} {
		next := storagetest.Digest(t)
		if _, err := s.RotateRefreshToken(ctx, storage.Rotation{SessionID: id, Presented: tokens[id], Next: next, Now: rotatedAt, IdleTTL: time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	revokedAt := base.Add(40 * time.Minute)
	if _, _, err := s.RevokeSession(ctx, "single", storage.ReasonRevoked, revokedAt); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.RevokeSession(ctx, "short", storage.ReasonRevoked, revokedAt.Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	_, err = s.RotateRefreshToken(ctx, storage.Rotation{SessionID: "reuse", Presented: tokens["reuse"], Next: storagetest.Digest(t), Now: revokedAt, IdleTTL: time.Hour})
	if !errors.Is(err, storage.ErrRefreshTokenReused) {
		t.Fatalf("reuse: %v", err)
	}
	if _, err := s.RevokeUserSessions(ctx, "v", storage.ReasonAdmin, revokedAt); err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Time{
		"single": revokedAt.Add(retention), "reuse": revokedAt.Add(retention),
		"all-1": revokedAt.Add(retention), "all-2": revokedAt.Add(retention),
		"short": base.Add(time.Hour), // revoked 10m before it idles out: filed at its expiry
		"live":  base.Add(time.Hour), // filed at creation; rotations do not move it
	}
	got := expiryEntries(t, s)
	if len(got) != len(want) {
		t.Fatalf("expiry index holds %d sessions, want %d: %v", len(got), len(want), got)
	}
	for id, at := range want {
		if len(got[id]) != 1 || !got[id][0].Equal(at) {
			t.Errorf("session %s filed at %v, want once at %v", id, got[id], at)
		}
	}
}
