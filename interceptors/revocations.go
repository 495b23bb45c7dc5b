package interceptors

import (
	"context"
	"log/slog"
	"maps"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/interceptors/clientcreds"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// snapshotHeader is the header in which Latch announces how many events of
// a WatchRevocations stream form the initial snapshot.
const snapshotHeader = "latch-snapshot-size"

// revocations is the local copy of Latch's revocations, fed by the
// WatchRevocations stream.
type revocations struct {
	conn  grpc.ClientConnInterface
	creds *clientcreds.Credentials // nil: conn carries the credential
	now   func() time.Time
	log   *slog.Logger

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

func newRevocations(conn grpc.ClientConnInterface, creds *clientcreds.Credentials, now func() time.Time, log *slog.Logger) *revocations {
	r := &revocations{conn: conn, creds: creds, now: now, log: log, jtis: map[string]int64{}, sids: map[string]int64{},
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
	expired := func(_ string, exp int64) bool { return exp < cutoff }
	r.mu.Lock()
	defer r.mu.Unlock()
	maps.DeleteFunc(r.jtis, expired)
	maps.DeleteFunc(r.sids, expired)
}

// run keeps a WatchRevocations stream open until ctx ends, reconnecting
// with jittered exponential backoff (0.5 s to 30 s; back to 0.5 s after a
// stream that reached its snapshot). A stream Latch ends with
// UNAUTHENTICATED while the follower has its credentials is retried at
// once with a renewed token, once; only if that one is refused too does
// the backoff apply.
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
	renewed := false // the last stream was a reconnect with a renewed token
	for ctx.Err() == nil {
		sent, err := r.follow(ctx)
		r.staleSince.CompareAndSwap(0, r.now().UnixNano()) // before connected, which Status shows
		r.connected.Store(false)
		if ctx.Err() != nil {
			return
		}
		wasSynced := r.synced.Swap(false)
		if wasSynced {
			backoff = 500 * time.Millisecond // a stream that worked: reconnect soon
		}
		if r.creds != nil && sent != "" && status.Code(err) == codes.Unauthenticated && (wasSynced || !renewed) {
			// Latch refused the follower's own token (its session was
			// revoked or its user disabled): renew it and reconnect now.
			r.creds.Invalidate(sent)
			renewed = true
			r.log.LogAttrs(ctx, slog.LevelWarn, "revocation stream refused the follower's token; reconnecting with a new one",
				slog.String("event", "revocations_reauthenticating"), slog.String("error", err.Error()))
			continue
		}
		renewed = false
		wait := backoff/2 + rand.N(backoff/2+1)
		r.log.LogAttrs(ctx, slog.LevelWarn, "revocation stream down; reconnecting",
			slog.String("event", "revocations_disconnected"), slog.String("error", err.Error()), slog.Duration("retry_in", wait))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if !wasSynced {
			backoff = min(backoff*2, 30*time.Second)
		}
	}
}

// sentToken is the per-call credential of one stream: the access token the
// follower got from its clientcreds.Credentials, so that it knows which
// token Latch refused.
type sentToken struct {
	token  string
	secure bool
}

func (s sentToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + s.token}, nil
}

func (s sentToken) RequireTransportSecurity() bool { return s.secure }

// follow reads one stream: the snapshot, then live events. sent is the
// access token it sent from r.creds, if any.
func (r *revocations) follow(ctx context.Context) (sent string, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var opts []grpc.CallOption
	if r.creds != nil {
		if sent, err = r.creds.Token(sctx); err != nil {
			return "", err
		}
		opts = append(opts, grpc.PerRPCCredentials(sentToken{token: sent, secure: r.creds.RequireTransportSecurity()}))
	}
	st, err := latchv1.NewAuthServiceClient(r.conn).WatchRevocations(sctx, &latchv1.WatchRevocationsRequest{}, opts...)
	if err != nil {
		return sent, err
	}
	md, err := st.Header()
	if err != nil {
		return sent, err
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
			return sent, err
		}
		r.add(ev)
		received++
		if received == snapshot {
			markSynced()
		}
	}
}
