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
		total, err := SweepOnce(ctx, s, chunk, now())
		switch {
		case err != nil && ctx.Err() == nil:
			log.LogAttrs(ctx, slog.LevelWarn, "sweep failed", slog.String("event", "sweep_failed"),
				slog.Int("deleted", total), slog.String("error", err.Error()))
		case total > 0:
			log.LogAttrs(ctx, slog.LevelInfo, "swept expired rows", slog.String("event", "sweep"), slog.Int("deleted", total))
		}
	}
}

// SweepOnce deletes every row expired at now, chunk rows per transaction,
// and returns the sum of what DeleteExpired reported: the rows it handled,
// which counts sessions re-filed at a later expiry and a full chunk for a
// call that stopped on a backend's own bound (see Sweeper), so it is at
// least the number of rows deleted, not exactly it.
//
// Between two chunks it pauses as long as the last chunk took, so that the
// sweep holds the store's write lock at most half the time and the
// requests' writes (rotations, revocations) keep committing while a large
// backlog drains.
func SweepOnce(ctx context.Context, s Sweeper, chunk int, now time.Time) (int, error) {
	total := 0
	for ctx.Err() == nil {
		start := time.Now()
		n, err := s.DeleteExpired(ctx, now, chunk)
		total += n
		if err != nil {
			return total, err
		}
		if n < chunk {
			return total, nil
		}
		pause := time.NewTimer(time.Since(start))
		select {
		case <-ctx.Done():
			pause.Stop()
		case <-pause.C:
		}
	}
	return total, ctx.Err()
}
