package storage_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/bolt"
	"github.com/latchauth/latch/storage/storagetest"
)

// recordHandler hands every log record to a channel.
type recordHandler struct{ out chan<- slog.Record }

func (h recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.out <- r.Clone()
	return nil
}
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordHandler) WithGroup(string) slog.Handler      { return h }

// The sweeper's log tells the sessions it deleted from those it only
// re-filed at a later expiry (storage/bolt files a session under a lower
// bound of its expiry, which a rotation does not move).
func TestRunSweeperLogsDeletedAndRefiledApart(t *testing.T) {
	s, err := bolt.Open(filepath.Join(t.TempDir(), "latch.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := time.Unix(1_700_000_000, 0).UTC()
	const idle = time.Hour
	var digest byte
	newSession := func(id string) storage.TokenHash {
		digest++
		h := storage.TokenHash{digest}
		storagetest.EnsureUser(t, s, "user-"+id)
		if err := s.CreateSession(ctx, storage.Session{ID: id, UserID: "user-" + id, Audience: "orders",
			CurrentHash: h, CreatedAt: base, LastRotatedAt: base, IdleExpiresAt: base.Add(idle),
			AbsoluteExpiresAt: base.Add(24 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
		return h
	}
	newSession("idle")
	kept := newSession("rotated")
	digest++
	if _, err := s.RotateRefreshToken(ctx, storage.Rotation{SessionID: "rotated", Presented: kept, Next: storage.TokenHash{digest},
		Now: base.Add(50 * time.Minute), IdleTTL: idle}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DenyAccessToken(ctx, "jti-1", base.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}

	records := make(chan slog.Record, 16)
	sweepCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	now := func() time.Time { return base.Add(idle + time.Minute) } // past the idle session, before the rotated one
	go func() {
		defer close(done)
		storage.RunSweeper(sweepCtx, s, time.Millisecond, 100, now, slog.New(recordHandler{records}))
	}()
	var rec slog.Record
	select {
	case rec = <-records:
	case <-ctx.Done():
		t.Fatal("the sweeper logged nothing")
	}
	stop()
	<-done

	got := map[string]any{}
	rec.Attrs(func(a slog.Attr) bool {
		got[a.Key] = a.Value.Any()
		return true
	})
	if got["event"] != "sweep" || got["deleted"] != int64(2) || got["refiled"] != int64(1) {
		t.Fatalf("sweep log = %q %v; want event=sweep deleted=2 (idle session, jti-1) refiled=1 (rotated session)", rec.Message, got)
	}
	if _, err := s.GetSession(ctx, "rotated"); err != nil {
		t.Fatalf("the re-filed session: %v", err)
	}
	// Nothing else was logged: the next passes had nothing to do.
	for len(records) > 0 {
		r := <-records
		t.Errorf("unexpected log record %q", r.Message)
	}
}
