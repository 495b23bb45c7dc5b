package etcd

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/internal/record"
)

// DenyAccessToken implements storage.DenyList. Denying a jti twice keeps the
// later expiry. The row's lease is judged against the store's clock (the
// method has no time of its own) plus the lease slack. A jti already denied
// until expiresAt or later is answered from the read: no Txn, so no
// revocation event reaches WatchRevocations again.
func (s *Store) DenyAccessToken(ctx context.Context, jti string, expiresAt time.Time) (changed bool, err error) {
	if !storage.ValidID(jti) || expiresAt.IsZero() {
		return false, invalid("deny access token", "jti and expiry are required")
	}
	key := s.revJTIKey(jti)
	err = s.run(ctx, "deny access token "+jti, func(ctx context.Context) error {
		for range maxRetries {
			resp, err := s.cli.Get(ctx, key)
			if err != nil {
				return clientErr(ctx, err)
			}
			var rev int64
			if len(resp.Kvs) == 1 {
				old, err := record.DecodeTime(resp.Kvs[0].Value)
				if err != nil || !expiresAt.After(old) {
					return err
				}
				rev = resp.Kvs[0].ModRevision
			}
			txn, err := s.commit(ctx, "deny", func() (clientv3.Txn, error) {
				lease, err := s.lease(ctx, expiresAt, time.Now())
				if err != nil {
					return nil, err
				}
				return s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
					Then(clientv3.OpPut(key, encodeTime(expiresAt), clientv3.WithLease(lease))), nil
			})
			if err != nil || txn.Succeeded {
				changed = err == nil
				return err
			}
		}
		return errContention
	})
	return changed, err
}

// AccessTokenRevoked implements storage.DenyList with one linearizable read
// (a Txn of two gets), so a revocation committed by any process is seen by
// the next check. It fails closed: an empty jti or session id, or a session
// that is gone, counts as revoked.
func (s *Store) AccessTokenRevoked(ctx context.Context, jti, sessionID string, now time.Time) (bool, error) {
	if jti == "" || sessionID == "" {
		return true, nil
	}
	revoked := true
	err := s.run(ctx, "access token revoked", func(ctx context.Context) error {
		resp, err := s.cli.Txn(ctx).Then(
			clientv3.OpGet(s.revJTIKey(jti), clientv3.WithCountOnly()),
			clientv3.OpGet(s.sessStateKey(sessionID)),
		).Commit()
		if err != nil {
			return clientErr(ctx, err)
		}
		kvs := resp.Responses[1].GetResponseRange().Kvs
		if resp.Responses[0].GetResponseRange().Count > 0 || len(kvs) == 0 {
			return nil // denied (an expired denial only outlives an expired token), or the session is gone
		}
		st, err := record.DecodeState(kvs[0].Value)
		revoked = !st.TokenLive(now)
		return err
	})
	return revoked || err != nil, err
}

// parseRevocation turns a key and value under revocations/ into a
// Revocation.
func (s *Store) parseRevocation(key, value []byte) (storage.Revocation, error) {
	exp, err := record.DecodeTime(value)
	if err != nil {
		return storage.Revocation{}, err
	}
	rest := strings.TrimPrefix(string(key), s.revPrefix())
	switch {
	case strings.HasPrefix(rest, "session/"):
		return storage.Revocation{SessionID: strings.TrimPrefix(rest, "session/"), ExpiresAt: exp}, nil
	case strings.HasPrefix(rest, "jti/"):
		return storage.Revocation{JTI: strings.TrimPrefix(rest, "jti/"), ExpiresAt: exp}, nil
	}
	return storage.Revocation{}, record.ErrCorrupt
}

// listRevocations reads every revocation that matters at now, and the
// revision it read at.
func (s *Store) listRevocations(ctx context.Context, now time.Time) ([]storage.Revocation, int64, error) {
	var out []storage.Revocation
	rev, err := s.scan(ctx, s.revPrefix(), func(k, v []byte, _ int64) error {
		r, err := s.parseRevocation(k, v)
		if err != nil {
			return err
		}
		if r.ExpiresAt.After(now) {
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return out, rev, nil
}

// ListRevocations implements storage.DenyList from the revocation rows
// alone (revoked sessions keep a row there), not from every session.
func (s *Store) ListRevocations(ctx context.Context, now time.Time) (out []storage.Revocation, err error) {
	err = s.runScan(ctx, "list revocations", func(ctx context.Context) error {
		out, _, err = s.listRevocations(ctx, now)
		return err
	})
	return out, err
}

// DeleteExpired implements storage.Sweeper. Leases already delete expired
// rows (a slack after their expiry), so `latch serve` does not call it on
// etcd; it deletes, now, what expired before now: sessions (expired, or
// revoked longer ago than the retention: Session.RetainedUntil) with every
// digest and index row they own, and denied jtis. It scans every session,
// so it is for tests and maintenance tools rather than a frequent sweeper.
// Sessions are indexed at their exact expiry here, so none is re-filed.
func (s *Store) DeleteExpired(ctx context.Context, now time.Time, limit int) (res storage.SweepResult, err error) {
	if limit <= 0 {
		return storage.SweepResult{}, ctx.Err()
	}
	err = s.runScan(ctx, "delete expired", func(ctx context.Context) error {
		// Each due row is deleted, with the rows it owns, by a Txn that
		// requires it unchanged since the scan.
		var due [][]clientv3.Op
		var cmps []clientv3.Cmp
		errFull := errors.New("full")
		collect := func(prefix string, expired func(k, v []byte) ([]clientv3.Op, error)) error {
			_, err := s.scan(ctx, prefix, func(k, v []byte, rev int64) error {
				ops, err := expired(k, v)
				if err != nil || ops == nil {
					return err
				}
				due = append(due, ops)
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(string(k)), "=", rev))
				if len(due) == limit {
					return errFull
				}
				return nil
			})
			if errors.Is(err, errFull) {
				return nil
			}
			return err
		}
		err := collect(s.p+"sessions/", func(_, v []byte) ([]clientv3.Op, error) {
			sess, err := record.DecodeSession(v)
			if err != nil || !sess.RetainedUntil(s.retention).Before(now) {
				return nil, err
			}
			return []clientv3.Op{
				clientv3.OpDelete(s.userSessionKey(sess.UserID, sess.ID)), clientv3.OpDelete(s.revSessionKey(sess.ID)),
				clientv3.OpDelete(s.sessStateKey(sess.ID)), clientv3.OpDelete(s.sessionKey(sess.ID)),
			}, nil
		})
		if err == nil && len(due) < limit {
			err = collect(s.revPrefix()+"jti/", func(k, v []byte) ([]clientv3.Op, error) {
				exp, err := record.DecodeTime(v)
				if err != nil || !exp.Before(now) {
					return nil, err
				}
				return []clientv3.Op{clientv3.OpDelete(string(k))}, nil
			})
		}
		res.More = len(due) >= limit
		for i := range due {
			resp, err := s.cli.Txn(ctx).If(cmps[i]).Then(due[i]...).Commit()
			if err != nil {
				return wrapErr(ctx, "delete expired row", err)
			}
			if resp.Succeeded {
				res.Deleted++
			}
		}
		return err
	})
	return res, err
}

// WatchRevocations implements storage.RevocationFeed with an etcd watch on
// the revocation rows, from the revision current when it is called. The
// client resumes a watch across lost connections by itself; when the watch
// ends anyway (the member lost its leader), it is opened again from the
// last revision seen. When etcd has compacted that revision away, it lists
// every revocation that still matters, calls fn for each, and watches from
// the revision of that list, so nothing committed in the gap is missed.
// Deletions (expiry) are not revocations and are ignored.
func (s *Store) WatchRevocations(ctx context.Context, ready func(), fn func(storage.Revocation)) error {
	var rev int64
	for rev == 0 {
		c, cancel := s.opCtx(ctx)
		resp, err := s.cli.Get(c, s.revPrefix(), clientv3.WithPrefix(), clientv3.WithCountOnly())
		cancel()
		if err == nil {
			rev = resp.Header.Revision
			break
		}
		if err := s.pause(ctx, "revocation feed: start", err); err != nil {
			return err
		}
	}
	// Watching from rev+1 delivers everything committed after the Get
	// answered, so the feed is established now.
	ready()
	return s.follow(ctx, rev, fn)
}

// follow relays revocations committed after revision rev, resyncing from a
// full list when rev has been compacted away.
func (s *Store) follow(ctx context.Context, rev int64, fn func(storage.Revocation)) error {
	for {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := s.cli.Watch(wctx, s.revPrefix(), clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithFilterDelete())
		var werr error
		compacted := false
		for resp := range wch {
			if resp.CompactRevision != 0 {
				compacted = true
			}
			if werr = resp.Err(); werr != nil {
				break
			}
			for _, ev := range resp.Events {
				r, err := s.parseRevocation(ev.Kv.Key, ev.Kv.Value)
				if err != nil {
					s.log.LogAttrs(ctx, slog.LevelWarn, "revocation feed: unreadable row", slog.String("event", "revocation_feed_corrupt"),
						slog.String("key", strings.TrimPrefix(string(ev.Kv.Key), s.p)))
					continue
				}
				fn(r)
				rev = max(rev, ev.Kv.ModRevision)
			}
		}
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if werr == nil {
			werr = errors.New("watch closed")
		}
		if !compacted {
			// etcd still has the history after rev (a lost leader, a
			// restarted member): watch again from where we were.
			if err := s.pause(ctx, "revocation feed: watch interrupted; resuming", werr); err != nil {
				return err
			}
			continue
		}
		// The history we needed was compacted away: relay everything that
		// still matters, then watch from the revision of that list.
		if err := s.pause(ctx, "revocation feed: history compacted; resyncing", werr); err != nil {
			return err
		}
		for {
			c, cancel := s.opCtx(ctx)
			revs, at, err := s.listRevocations(c, time.Now())
			cancel()
			if err == nil {
				for _, r := range revs {
					fn(r)
				}
				rev = at
				s.log.LogAttrs(ctx, slog.LevelInfo, "revocation feed resynced", slog.String("event", "revocation_feed_resync"),
					slog.Int("revocations", len(revs)))
				break
			}
			if err := s.pause(ctx, "revocation feed: resync failed", err); err != nil {
				return err
			}
		}
	}
}

// errClosed reports a feed whose store was closed under it.
var errClosed = errors.New("etcd: store closed")

// pause logs a feed interruption and waits a second, or returns ctx.Err()
// (or errClosed once the store is closed).
func (s *Store) pause(ctx context.Context, msg string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if s.cli.Ctx().Err() != nil {
		return errClosed
	}
	s.log.LogAttrs(ctx, slog.LevelWarn, msg, slog.String("event", "revocation_feed_interrupted"), slog.String("error", err.Error()))
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
