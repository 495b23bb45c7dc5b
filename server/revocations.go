package server

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/tokens"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
)

// SnapshotSizeHeader is the response header of WatchRevocations that holds
// the number of events forming the initial snapshot.
const SnapshotSizeHeader = "latch-snapshot-size"

// watcherBuffer is how many events a WatchRevocations stream may lag behind
// before it is cut off (and its client reconnects to a fresh snapshot).
const watcherBuffer = 4096

// broadcaster fans revocation events out to WatchRevocations streams. A slow
// subscriber never blocks a revocation: when its buffer is full it is dropped.
type broadcaster struct {
	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool
}

type subscriber struct {
	events chan *latchv1.RevocationEvent
	gone   chan struct{} // closed when dropped or at shutdown
	reason string        // why gone was closed, set before closing
}

func newBroadcaster() *broadcaster {
	return &broadcaster{subs: make(map[*subscriber]struct{})}
}

// subscribe registers a subscriber; cancel unregisters it.
func (b *broadcaster) subscribe() (sub *subscriber, cancel func()) {
	sub = &subscriber{events: make(chan *latchv1.RevocationEvent, watcherBuffer), gone: make(chan struct{})}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		sub.reason = "server shutting down"
		close(sub.gone)
		return sub, func() {}
	}
	b.subs[sub] = struct{}{}
	return sub, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if _, ok := b.subs[sub]; ok {
			delete(b.subs, sub)
			close(sub.gone)
		}
	}
}

// publish delivers ev to every subscriber without blocking.
func (b *broadcaster) publish(ev *latchv1.RevocationEvent) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for sub := range b.subs {
		select {
		case sub.events <- ev:
		default:
			sub.reason = "watcher too slow; reconnect for a fresh snapshot"
			delete(b.subs, sub)
			close(sub.gone)
		}
	}
}

// count returns the number of subscribers.
func (b *broadcaster) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

// close ends every subscription and refuses new ones.
func (b *broadcaster) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for sub := range b.subs {
		sub.reason = "server shutting down"
		delete(b.subs, sub)
		close(sub.gone)
	}
}

// publishSession announces a revoked session. Its access tokens expire by
// the session's expiry (Config.Validate keeps refresh-ttl ≥ access-ttl).
func (s *Server) publishSession(sess storage.Session) {
	s.revs.publish(revocationEvent(storage.Revocation{SessionID: sess.ID, ExpiresAt: sess.ExpiresAt()}))
}

func revocationEvent(r storage.Revocation) *latchv1.RevocationEvent {
	return &latchv1.RevocationEvent{Jti: r.JTI, SessionId: r.SessionID, Exp: r.ExpiresAt.Unix()}
}

// callerDeadline is when a revocation stream's caller credential stops
// being valid: its expiry plus the leeway the verifier grants.
func (s *Server) callerDeadline(caller tokens.Claims) time.Time {
	return caller.ExpiresAt.Add(s.cfg.Leeway)
}

// endWatch ends a revocation stream whose caller's credential is no longer
// valid, with UNAUTHENTICATED and msg.
func (s *Server) endWatch(ctx context.Context, caller tokens.Claims, reason, msg string) error {
	s.log.LogAttrs(ctx, slog.LevelInfo, "revocation watcher ended", slog.String("event", "watch_ended"),
		slog.String("reason", reason), slog.String("user_id", caller.Subject),
		slog.String("session_id", caller.SessionID), slog.String("peer", s.clientAddr(ctx).String()))
	return s.toStatus(ctx, "WatchRevocations", failure(codes.Unauthenticated, msg))
}

// callerRevoked reports whether ev revokes caller's own token or session.
func callerRevoked(caller tokens.Claims, ev *latchv1.RevocationEvent) bool {
	return (caller.SessionID != "" && ev.GetSessionId() == caller.SessionID) ||
		(caller.ID != "" && ev.GetJti() == caller.ID)
}

// StopWatchers ends every WatchRevocations stream with UNAVAILABLE, so that
// a graceful stop does not wait for them; clients reconnect elsewhere.
func (s *Server) StopWatchers() { s.revs.close() }

// WatchRevocations implements latchv1.AuthServiceServer.
func (s *Server) WatchRevocations(_ *latchv1.WatchRevocationsRequest, stream grpc.ServerStreamingServer[latchv1.RevocationEvent]) error {
	ctx := stream.Context()
	// The caller the access table verified; zero with IntrospectOpen: no
	// caller to follow.
	caller, _ := callerFrom(ctx)
	// Subscribe before the snapshot so that nothing revoked in between is
	// missed (it may arrive twice, which is harmless).
	sub, cancel := s.revs.subscribe()
	defer cancel()
	snap, err := s.store.ListRevocations(ctx, s.now())
	if err != nil {
		return s.toStatus(ctx, "WatchRevocations", err)
	}
	// The header tells watchers how many events form the snapshot, so that
	// they know when they are in sync.
	if err := stream.SendHeader(metadata.Pairs(SnapshotSizeHeader, strconv.Itoa(len(snap)))); err != nil {
		return err
	}
	// The stream lives as long as its caller's credential: when the
	// caller's own session or token is revoked (also when its user is
	// disabled or deleted, which revokes its sessions), or its access token
	// expires, the stream ends and the caller must come back with a valid
	// token. A revocation that happened while the stream was being set up
	// is in the snapshot.
	revoked := false
	for _, r := range snap {
		ev := revocationEvent(r)
		if err := stream.Send(ev); err != nil {
			return err
		}
		revoked = revoked || callerRevoked(caller, ev)
	}
	if revoked {
		return s.endWatch(ctx, caller, "caller credential revoked", msgCallerRevoked)
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "revocation watcher subscribed", slog.String("event", "watch_started"),
		slog.Int("snapshot", len(snap)), slog.String("peer", s.clientAddr(ctx).String()))
	var expired <-chan time.Time // nil with IntrospectOpen: never fires
	if !caller.ExpiresAt.IsZero() {
		t := time.NewTimer(s.callerDeadline(caller).Sub(s.now()))
		defer t.Stop()
		expired = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return s.toStatus(ctx, "WatchRevocations", ctx.Err())
		case <-expired:
			return s.endWatch(ctx, caller, "caller credential expired", msgCallerExpired)
		case ev := <-sub.events:
			if !caller.ExpiresAt.IsZero() && !s.now().Before(s.callerDeadline(caller)) {
				return s.endWatch(ctx, caller, "caller credential expired", msgCallerExpired)
			}
			if err := stream.Send(ev); err != nil {
				return err
			}
			if callerRevoked(caller, ev) {
				return s.endWatch(ctx, caller, "caller credential revoked", msgCallerRevoked)
			}
		case <-sub.gone:
			s.log.LogAttrs(ctx, slog.LevelInfo, "revocation watcher ended", slog.String("event", "watch_ended"),
				slog.String("reason", sub.reason), slog.String("peer", s.clientAddr(ctx).String()))
			return s.toStatus(ctx, "WatchRevocations", failure(codes.Unavailable, sub.reason))
		}
	}
}
