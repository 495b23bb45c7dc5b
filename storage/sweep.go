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
// and returns how many it deleted.
func SweepOnce(ctx context.Context, s Sweeper, chunk int, now time.Time) (int, error) {
	total := 0
	for ctx.Err() == nil {
		n, err := s.DeleteExpired(ctx, now, chunk)
		total += n
		if err != nil {
			return total, err
		}
		if n < chunk {
			return total, nil
		}
	}
	return total, ctx.Err()
}
