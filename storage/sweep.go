package storage

import (
	"context"
	"log/slog"
	"time"
)

// RunSweeper deletes expired rows from s every interval until ctx is done.
// Each pass deletes in transactions of at most chunk rows and goes on while
// a chunk comes back full, so a large backlog is drained without one long
// write lock. Errors are logged and retried at the next tick. A non-positive
// interval or chunk disables sweeping.
func RunSweeper(ctx context.Context, s Sweeper, interval time.Duration, chunk int, now func() time.Time, log *slog.Logger) {
	if interval <= 0 || chunk <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		res, err := SweepOnce(ctx, s, chunk, now())
		switch {
		case err != nil && ctx.Err() == nil:
			log.LogAttrs(ctx, slog.LevelWarn, "sweep failed", slog.String("event", "sweep_failed"),
				slog.Int("deleted", res.Deleted), slog.Int("refiled", res.Refiled), slog.String("error", err.Error()))
		case res.Deleted > 0 || res.Refiled > 0:
			log.LogAttrs(ctx, slog.LevelInfo, "swept expired rows", slog.String("event", "sweep"),
				slog.Int("deleted", res.Deleted), slog.Int("refiled", res.Refiled))
		}
	}
}

// SweepOnce deletes every row expired at now, chunk rows per transaction,
// and returns the sums of what the DeleteExpired calls reported: the rows
// deleted and the sessions re-filed at a later expiry. Its More is set
// only when it stopped early (an error or a cancelled ctx).
//
// Between two chunks it pauses as long as the last chunk took, so that the
// sweep holds the store's write lock at most half the time and the
// requests' writes (rotations, revocations) keep committing while a large
// backlog drains.
func SweepOnce(ctx context.Context, s Sweeper, chunk int, now time.Time) (SweepResult, error) {
	var total SweepResult
	for ctx.Err() == nil {
		start := time.Now()
		r, err := s.DeleteExpired(ctx, now, chunk)
		total.Deleted += r.Deleted
		total.Refiled += r.Refiled
		if err != nil {
			total.More = true
			return total, err
		}
		if !r.More {
			return total, nil
		}
		pause := time.NewTimer(time.Since(start))
		select {
		case <-ctx.Done():
			pause.Stop()
		case <-pause.C:
		}
	}
	total.More = true
	return total, ctx.Err()
}
