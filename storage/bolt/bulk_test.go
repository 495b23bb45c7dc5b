package bolt_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/storagetest"
)

func importable(t *testing.T, n int, prefix string) []storage.Session {
	out := make([]storage.Session, n)
	for i := range out {
		out[i] = storage.Session{ID: fmt.Sprintf("%s%d", prefix, i), UserID: "u1", CurrentHash: storagetest.Digest(t),
			CreatedAt: base, LastRotatedAt: base, IdleExpiresAt: base.Add(time.Hour), AbsoluteExpiresAt: base.Add(2 * time.Hour)}
	}
	return out
}

// TestImportSessions: imported sessions are what CreateSession would have
// stored (found by id, rotatable, swept at expiry),
// and an import with one bad session stores none.
func TestImportSessions(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	batch := importable(t, 50, "imp")
	if err := s.ImportSessions(ctx, batch); err != nil {
		t.Fatalf("ImportSessions: %v", err)
	}
	for _, want := range batch {
		got, err := s.GetSession(ctx, want.ID)
		if err != nil || got.CurrentHash != want.CurrentHash || got.UserID != "u1" {
			t.Fatalf("GetSession(%s) = %+v, %v", want.ID, got, err)
		}
	}
	next := storagetest.Digest(t)
	if _, err := s.RotateRefreshToken(ctx, storage.Rotation{SessionID: batch[0].ID, Presented: batch[0].CurrentHash, Next: next, Now: base, IdleTTL: time.Hour}); err != nil {
		t.Fatalf("rotate an imported session: %v", err)
	}

	dup := importable(t, 3, "new")
	dup[2].ID = batch[7].ID // taken
	if err := s.ImportSessions(ctx, dup); !errors.Is(err, storage.ErrAlreadyExists) {
		t.Fatalf("import with a taken id = %v, want ErrAlreadyExists", err)
	}
	for _, sess := range dup[:2] {
		if _, err := s.GetSession(ctx, sess.ID); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("session %s of a failed import was stored (%v)", sess.ID, err)
		}
	}
	bad := importable(t, 2, "bad")
	bad[1].CurrentHash = storage.TokenHash{}
	if err := s.ImportSessions(ctx, bad); !errors.Is(err, storage.ErrInvalidArgument) {
		t.Fatalf("import without a digest = %v, want ErrInvalidArgument", err)
	}

	r, err := storage.SweepOnce(ctx, s, 7, base.Add(3*time.Hour))
	if err != nil || r != (storage.SweepResult{Deleted: len(batch)}) {
		t.Fatalf("sweep after expiry = %+v, %v; want %d deleted", r, err, len(batch))
	}
}
