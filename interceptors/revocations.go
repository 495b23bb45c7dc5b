package interceptors

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"google.golang.org/grpc"
)

// snapshotHeader is the header in which Latch announces how many events of
// a WatchRevocations stream form the initial snapshot.
const snapshotHeader = "latch-snapshot-size"

// revocations is the local copy of Latch's revocations, fed by the
// WatchRevocations stream.
type revocations struct {
	conn grpc.ClientConnInterface
	now  func() time.Time
	log  *slog.Logger

	mu   sync.RWMutex
	jtis map[string]int64 // jti → exp (unix seconds)
	sids map[string]int64 // session id → exp

	synced     atomic.Bool // a snapshot has been fully received on the current stream
	everSynced atomic.Bool // a snapshot has been fully received on some stream
	// staleSince is when the local copy stopped being known complete
	// (unix nanos): creation, or the loss of a synced stream. 0 while in
	// sync.
	staleSince atomic.Int64
	connected  atomic.Bool // the stream is up now
	firstSync  chan struct{}
	syncOnce   sync.Once
}

func newRevocations(conn grpc.ClientConnInterface, now func() time.Time, log *slog.Logger) *revocations {
	r := &revocations{conn: conn, now: now, log: log, jtis: map[string]int64{}, sids: map[string]int64{},
		firstSync: make(chan struct{})}
	r.staleSince.Store(now().UnixNano())
	return r
}

// revoked reports whether the token with this jti and session is revoked.
func (r *revocations) revoked(jti, sid string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, j := r.jtis[jti]
	_, s := r.sids[sid]
	return j || s
}

func (r *revocations) add(ev *latchv1.RevocationEvent) {
	if ev.GetExp() <= r.now().Unix()-int64(time.Minute/time.Second) {
		return // every token it concerns has expired
	}
	r.mu.Lock()
	if ev.GetJti() != "" {
		r.jtis[ev.GetJti()] = ev.GetExp()
	}
	if ev.GetSessionId() != "" {
		r.sids[ev.GetSessionId()] = ev.GetExp()
	}
	r.mu.Unlock()
}

// purge forgets revocations whose tokens have all expired (with a minute
// of slack for verifier leeway).
func (r *revocations) purge() {
	cutoff := r.now().Unix() - int64(time.Minute/time.Second)
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, exp := range r.jtis {
		if exp < cutoff {
			delete(r.jtis, k)
		}
	}
	for k, exp := range r.sids {
		if exp < cutoff {
			delete(r.sids, k)
		}
	}
}

// run keeps a WatchRevocations stream open until ctx ends, reconnecting
// with jittered exponential backoff (0.5 s to 30 s).
func (r *revocations) run(ctx context.Context) {
	backoff := 500 * time.Millisecond
	purge := time.NewTicker(time.Minute)
	defer purge.Stop()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-purge.C:
				r.purge()
			}
		}
	}()
	for ctx.Err() == nil {
		err := r.follow(ctx)
		r.staleSince.CompareAndSwap(0, r.now().UnixNano()) // before connected, which Status shows
		r.connected.Store(false)
		if ctx.Err() != nil {
			return
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		r.log.LogAttrs(ctx, slog.LevelWarn, "revocation stream down; reconnecting",
			slog.String("event", "revocations_disconnected"), slog.String("error", errString(err)), slog.Duration("retry_in", wait))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if r.synced.Load() {
			backoff = 500 * time.Millisecond
			r.synced.Store(false)
		} else {
			backoff = min(backoff*2, 30*time.Second)
		}
	}
}

// follow reads one stream: the snapshot, then live events.
func (r *revocations) follow(ctx context.Context) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := latchv1.NewAuthServiceClient(r.conn).WatchRevocations(sctx, &latchv1.WatchRevocationsRequest{})
	if err != nil {
		return err
	}
	md, err := st.Header()
	if err != nil {
		return err
	}
	snapshot := -1
	if v := md.Get(snapshotHeader); len(v) == 1 {
		if n, err := strconv.Atoi(v[0]); err == nil && n >= 0 {
			snapshot = n
		}
	}
	r.connected.Store(true)
	received := 0
	markSynced := func() {
		r.synced.Store(true)
		r.everSynced.Store(true)
		r.staleSince.Store(0)
		r.syncOnce.Do(func() { close(r.firstSync) })
		r.log.LogAttrs(ctx, slog.LevelInfo, "revocation snapshot received", slog.String("event", "revocations_synced"),
			slog.Int("events", received))
	}
	if snapshot == 0 {
		markSynced()
	}
	for {
		ev, err := st.Recv()
		if err != nil {
			return err
		}
		r.add(ev)
		received++
		if received == snapshot {
			markSynced()
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
