package storage_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/latchauth/latch/storage"
)

// countingSweeper pretends to hold backlog expired rows.
type countingSweeper struct {
	mu      sync.Mutex
	backlog int
	calls   []int
	fail    error
}

func (c *countingSweeper) DeleteExpired(_ context.Context, _ time.Time, limit int) (storage.SweepResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return storage.SweepResult{}, c.fail
	}
	n := min(limit, c.backlog)
	c.backlog -= n
	c.calls = append(c.calls, n)
	return storage.SweepResult{Deleted: n, More: n == limit}, nil
}

func TestSweepOnceDrainsInChunks(t *testing.T) {
	s := &countingSweeper{backlog: 25}
	r, err := storage.SweepOnce(context.Background(), s, 10, time.Now())
	if err != nil || r != (storage.SweepResult{Deleted: 25}) {
		t.Fatalf("SweepOnce = %+v, %v; want 25 deleted", r, err)
	}
	if want := []int{10, 10, 5}; len(s.calls) != 3 || s.calls[0] != want[0] || s.calls[2] != want[2] {
		t.Fatalf("chunks = %v, want %v", s.calls, want)
	}
	s = &countingSweeper{fail: errors.New("disk full")}
	if _, err := storage.SweepOnce(context.Background(), s, 10, time.Now()); err == nil {
		t.Fatal("SweepOnce hid an error")
	}
}

func TestRunSweeperStopsOnCancel(t *testing.T) {
	s := &countingSweeper{backlog: 3}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		storage.RunSweeper(ctx, s, time.Millisecond, 2, time.Now, slog.New(slog.DiscardHandler))
		close(done)
	}()
	deadline := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		left := s.backlog
		s.mu.Unlock()
		if left == 0 {
			break
		}
		select {
		case <-deadline:
			t.Fatal("sweeper never drained the backlog")
		case <-time.After(time.Millisecond):
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("RunSweeper did not return after cancel")
	}
}
