package server

import (
	"context"
	"log/slog"

	"github.com/latchauth/latch/storage"
)

// FollowRevocations makes the server's WatchRevocations streams carry the
// revocations that other processes sharing the store commit, when the store
// implements storage.RevocationFeed (storage/etcd); otherwise it calls
// ready and returns nil at once, as a store used by one process has no one
// else's revocations to learn. ready is called once the feed is
// established: serve WatchRevocations only after that, so that no stream's
// snapshot predates the feed. It blocks until ctx is done and returns nil
// then, or returns the feed's unrecoverable error.
//
// Revocations this server commits itself are published when they commit
// and again when the feed reports them; watchers tolerate the duplicate.
// Introspect and Refresh do not depend on the feed: they read the store on
// every call.
func (s *Server) FollowRevocations(ctx context.Context, ready func()) error {
	feed, ok := s.store.(storage.RevocationFeed)
	if !ok {
		ready()
		return nil
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "following revocations of other replicas", slog.String("event", "revocation_feed_started"))
	err := feed.WatchRevocations(ctx, ready, func(r storage.Revocation) { s.revs.publish(revocationEvent(r)) })
	if ctx.Err() != nil {
		return nil
	}
	return err
}
