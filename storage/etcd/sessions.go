package etcd

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/internal/record"
)

// errConflict reports a Txn whose compare failed: another writer committed
// first, and the caller must read again.
var errConflict = errors.New("etcd: concurrent change")

// sessRev is a session, the revision it was read at and the revision that
// created it (which the user fence is compared with).
type sessRev struct {
	s       storage.Session
	rev     int64
	created int64
}

// getSession reads a session and its revision.
func (s *Store) getSession(ctx context.Context, id string) (sessRev, error) {
	resp, err := s.cli.Get(ctx, s.sessionKey(id))
	if err != nil {
		return sessRev{}, wrapErr(ctx, "get session", err)
	}
	if len(resp.Kvs) == 0 {
		return sessRev{}, storage.ErrNotFound
	}
	sess, err := record.DecodeSession(resp.Kvs[0].Value)
	return sessRev{s: sess, rev: resp.Kvs[0].ModRevision, created: resp.Kvs[0].CreateRevision}, err
}

// putSessionOps returns the operations that store sess, attached to a lease
// that outlives it (judged at ref): its expiry while it is live; once it
// is revoked, the end of its retention (Session.RetainedUntil), when the
// lease takes with it the record, the state row, the revocation row
// written here and the user index entry, moved here from the lease of its
// absolute expiry. A revoked session is written once: by its revocation
// (whose callers write nothing for a session already revoked), or by a
// CreateSession that stores it revoked.
func (s *Store) putSessionOps(ctx context.Context, sess storage.Session, ref time.Time) ([]clientv3.Op, error) {
	data, err := record.EncodeSession(sess)
	if err != nil {
		return nil, err
	}
	state, err := record.EncodeState(sess)
	if err != nil {
		return nil, err
	}
	lease, err := s.lease(ctx, sess.RetainedUntil(s.retention), ref)
	if err != nil {
		return nil, err
	}
	ops := []clientv3.Op{
		clientv3.OpPut(s.sessionKey(sess.ID), string(data), clientv3.WithLease(lease)),
		clientv3.OpPut(s.sessStateKey(sess.ID), string(state), clientv3.WithLease(lease)),
	}
	if sess.Revoked() {
		ops = append(ops,
			clientv3.OpPut(s.revSessionKey(sess.ID), encodeTime(sess.ExpiresAt()), clientv3.WithLease(lease)),
			clientv3.OpPut(s.userSessionKey(sess.UserID, sess.ID), "", clientv3.WithLease(lease)))
	}
	return ops, nil
}

// CreateSession implements storage.SessionStore: the session and its user
// index in one Txn that requires the session id to be new and the owner to
// be as read (existing and enabled): the Txn compares the user's
// ModRevision, so a DeleteUser or a disabling UpdateUser that commits first
// makes it fail, and it reads the user again. DeleteUser and
// RevokeUserSessions in turn compare the user's session index (see
// revokeUserSessions), so a session committed first is one they revoke.
func (s *Store) CreateSession(ctx context.Context, sess storage.Session) error {
	if err := storage.CheckSession(sess); err != nil {
		return fmt.Errorf("etcd: create session: %w", err)
	}
	// A new session's lease is judged against its last rotation (its
	// login), or now if it carries no time.
	ref := cmp.Or(sess.LastRotatedAt, sess.CreatedAt, time.Now())
	return s.run(ctx, "create session "+sess.ID, func(ctx context.Context) error {
		for range maxRetries {
			u, userRev, err := s.getUser(ctx, sess.UserID)
			switch {
			case errors.Is(err, storage.ErrNotFound):
				return fmt.Errorf("user %s: %w", sess.UserID, err)
			case err != nil:
				return err
			case u.Disabled:
				return fmt.Errorf("user %s: %w", sess.UserID, storage.ErrUserDisabled)
			}
			resp, err := s.commit(ctx, "create session", func() (clientv3.Txn, error) {
				ops, err := s.putSessionOps(ctx, sess, ref)
				if err != nil {
					return nil, err
				}
				if !sess.Revoked() { // a revoked one's index entry is among ops
					lease, err := s.lease(ctx, sess.AbsoluteExpiresAt, ref)
					if err != nil {
						return nil, err
					}
					ops = append(ops, clientv3.OpPut(s.userSessionKey(sess.UserID, sess.ID), "", clientv3.WithLease(lease)))
				}
				return s.cli.Txn(ctx).If(
					clientv3.Compare(clientv3.CreateRevision(s.sessionKey(sess.ID)), "=", 0),
					clientv3.Compare(clientv3.ModRevision(s.userKey(sess.UserID)), "=", userRev),
				).Then(ops...).Else(
					clientv3.OpGet(s.sessionKey(sess.ID), clientv3.WithCountOnly()),
				), nil
			})
			switch {
			case err != nil:
				return err
			case resp.Succeeded:
				return nil
			case resp.Responses[0].GetResponseRange().Count > 0:
				return fmt.Errorf("session id taken: %w", storage.ErrAlreadyExists)
			}
			// The owner changed since it was read: judge it again.
		}
		return errContention
	})
}

// GetSession implements storage.SessionStore.
func (s *Store) GetSession(ctx context.Context, id string) (sess storage.Session, err error) {
	err = s.run(ctx, "get session "+id, func(ctx context.Context) error {
		sr, err := s.getSession(ctx, id)
		sess = sr.s
		return err
	})
	if err != nil {
		return storage.Session{}, err
	}
	return sess, nil
}

// RotateRefreshToken implements storage.SessionStore. It reads the session
// the rotation names, decides with storage.Rotation.Apply, and commits the
// session record with a Txn that compares its ModRevision: no other key is
// written, so a session's keys do not grow with its rotations. A failed
// compare means another rotation or revocation committed first; the
// decision is then taken again on the fresh session, which is how the
// losers of a race end up as reuse.
func (s *Store) RotateRefreshToken(ctx context.Context, r storage.Rotation) (out storage.Session, err error) {
	if err := r.Validate(); err != nil {
		return storage.Session{}, fmt.Errorf("etcd: rotate refresh token: %w", err)
	}
	err = s.run(ctx, "rotate refresh token of session "+r.SessionID, func(ctx context.Context) error {
		// exempted is the revision of a fence that exempts this session
		// (see ResetSessions), 0 while none is known: the rotation then
		// commits only while that fence is unchanged.
		var exempted int64
		for range maxRetries {
			old, err := s.getSession(ctx, r.SessionID)
			if err != nil {
				return err
			}
			next, decision := r.Apply(old.s)
			reuse := errors.Is(decision, storage.ErrRefreshTokenReused)
			if decision != nil && !reuse {
				out = old.s
				return decision
			}
			sessKey, fenceKey := s.sessionKey(old.s.ID), s.userFenceKey(old.s.UserID)
			resp, err := s.commit(ctx, "rotate refresh token", func() (clientv3.Txn, error) {
				ops, err := s.putSessionOps(ctx, next, r.Now)
				if err != nil {
					return nil, err
				}
				cmps := []clientv3.Cmp{
					clientv3.Compare(clientv3.ModRevision(sessKey), "=", old.rev),
					s.fenceCmp(old.s.UserID, old.created, exempted),
				}
				return s.cli.Txn(ctx).If(cmps...).Then(ops...).
					Else(clientv3.OpGet(sessKey, clientv3.WithKeysOnly()), clientv3.OpGet(fenceKey)), nil
			})
			if err != nil {
				return err
			}
			if resp.Succeeded {
				out = next
				return decision // nil, or the reuse whose revocation just committed
			}
			kvs := resp.Responses[0].GetResponseRange().Kvs
			unchanged := len(kvs) == 1 && kvs[0].ModRevision == old.rev
			exempted = 0
			if fence := resp.Responses[1].GetResponseRange().Kvs; unchanged && len(fence) == 1 && fence[0].ModRevision >= old.created {
				// A revocation of all the owner's sessions has begun and not
				// reached this one yet: it is revoked, and saying so here
				// finishes that revocation's work for it; unless the fence
				// exempts it.
				revokedAt, reason, exempt, err := decodeFence(fence[0].Value)
				if err != nil {
					return fmt.Errorf("user fence: %w", err)
				}
				if exempt == old.s.ID {
					exempted = fence[0].ModRevision
					continue
				}
				_, _, err = s.revokeBatch(ctx, []sessRev{old}, reason, revokedAt, nil)
				if errors.Is(err, errConflict) {
					continue
				}
				if err != nil {
					return err
				}
				return storage.ErrSessionRevoked
			}
			// Lost the race: decide again on what the winner wrote.
		}
		return errContention
	})
	return out, err
}

// RevokeSession implements storage.SessionStore. A session already revoked
// is answered from the read: no Txn, so no revocation event reaches
// WatchRevocations again.
func (s *Store) RevokeSession(ctx context.Context, id, reason string, now time.Time) (sess storage.Session, changed bool, err error) {
	if err := storage.CheckRevocation(id, reason, now); err != nil {
		return storage.Session{}, false, fmt.Errorf("etcd: revoke session: %w", err)
	}
	err = s.run(ctx, "revoke session "+id, func(ctx context.Context) error {
		for range maxRetries {
			sr, err := s.getSession(ctx, id)
			if err != nil || sr.s.Revoked() {
				sess = sr.s
				return err
			}
			out, _, err := s.revokeBatch(ctx, []sessRev{sr}, reason, now, nil)
			if err == nil {
				sess, changed = out[0], true
			}
			if !errors.Is(err, errConflict) {
				return err
			}
		}
		return errContention
	})
	if err != nil {
		return storage.Session{}, false, err
	}
	return sess, changed, nil
}

// txnPart is what a Txn carries besides the sessions it revokes: its
// compares and operations, built afresh for each attempt (they may ask for
// leases).
type txnPart func() ([]clientv3.Cmp, []clientv3.Op, error)

// revokeBatch revokes the sessions (read at the revisions given) in one Txn
// with extra's compares and operations (nil: none), and returns them as
// stored and the Txn's revision; errConflict if any compare failed.
func (s *Store) revokeBatch(ctx context.Context, batch []sessRev, reason string, now time.Time, extra txnPart) ([]storage.Session, int64, error) {
	out := make([]storage.Session, 0, len(batch))
	resp, err := s.commit(ctx, "revoke sessions", func() (clientv3.Txn, error) {
		var cmps []clientv3.Cmp
		var ops []clientv3.Op
		if extra != nil {
			var err error
			if cmps, ops, err = extra(); err != nil {
				return nil, err
			}
		}
		out = out[:0]
		for _, sr := range batch {
			sess := sr.s
			sess.RevokedAt, sess.RevokeReason = now, reason
			put, err := s.putSessionOps(ctx, sess, now)
			if err != nil {
				return nil, err
			}
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.sessionKey(sess.ID)), "=", sr.rev))
			ops = append(ops, put...)
			out = append(out, sess)
		}
		return s.cli.Txn(ctx).If(cmps...).Then(ops...), nil
	})
	if err != nil {
		return nil, 0, err
	}
	if !resp.Succeeded {
		return nil, 0, errConflict
	}
	return out, resp.Header.Revision, nil
}

// sessionsOf reads every stored session of the user, and returns the
// revision its index was read at: every session created later has an index
// entry whose CreateRevision is greater (see newSessionsCmp).
func (s *Store) sessionsOf(ctx context.Context, uid string) ([]sessRev, int64, error) {
	idx, err := s.cli.Get(ctx, s.userSessionPrefix(uid), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, 0, wrapErr(ctx, "list user sessions", err)
	}
	var out []sessRev
	for chunk := range slices.Chunk(idx.Kvs, s.maxTxnOps) {
		ops := make([]clientv3.Op, len(chunk))
		for i, kv := range chunk {
			ops[i] = clientv3.OpGet(s.sessionKey(string(kv.Key[len(s.userSessionPrefix(uid)):])))
		}
		resp, err := s.cli.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return nil, 0, wrapErr(ctx, "read user sessions", err)
		}
		for _, r := range resp.Responses {
			kvs := r.GetResponseRange().Kvs
			if len(kvs) == 0 {
				continue // collected by its lease before its index entry
			}
			sess, err := record.DecodeSession(kvs[0].Value)
			if err != nil {
				return nil, 0, err
			}
			out = append(out, sessRev{s: sess, rev: kvs[0].ModRevision, created: kvs[0].CreateRevision})
		}
	}
	return out, idx.Header.Revision, nil
}

// newSessionsCmp holds in a Txn only while the user has no session created
// after revision rev: every entry of the user's session index was created
// at rev or before. A Txn that revokes what sessionsOf read at rev carries
// it, so that a session CreateSession commits between that read and the
// Txn is not left out: the Txn fails and the caller reads again.
func (s *Store) newSessionsCmp(uid string, rev int64) clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(s.userSessionPrefix(uid)), "<", rev+1).WithPrefix()
}

// ListUserSessions implements storage.SessionAdmin.
func (s *Store) ListUserSessions(ctx context.Context, userID string) (out []storage.Session, err error) {
	if !storage.ValidID(userID) {
		return nil, invalid("list user sessions", "user id is required")
	}
	err = s.run(ctx, "list sessions of user "+userID, func(ctx context.Context) error {
		all, _, err := s.sessionsOf(ctx, userID)
		for _, sr := range all {
			out = append(out, sr.s)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	storage.SortNewestFirst(out)
	return out, nil
}

// RevokeUserSessions implements storage.SessionAdmin. When the user's live
// sessions fit in one Txn (see WithMaxTxnOps) they are revoked in one;
// otherwise the user is fenced first (see revokeUserSessions).
func (s *Store) RevokeUserSessions(ctx context.Context, userID, reason string, now time.Time) (revoked []storage.Session, err error) {
	if err := storage.CheckRevocation(userID, reason, now); err != nil {
		return nil, fmt.Errorf("etcd: revoke user sessions: %w", err)
	}
	err = s.run(ctx, "revoke sessions of user "+userID, func(ctx context.Context) error {
		revoked, err = s.revokeUserSessions(ctx, userID, reason, now, nil)
		return err
	})
	return revoked, err
}

// finalTxn returns the compares and operations that the last revocation
// Txn of revokeUserSessions carries besides the sessions (DeleteUser's
// deletion of the user), read afresh for each attempt.
type finalTxn func(ctx context.Context) ([]clientv3.Cmp, []clientv3.Op, error)

// revokeUserSessions revokes every session of the user live at now, and
// commits final's compares and operations with the last of them.
//
// When the live sessions (and final's operations) fit in one Txn, that is
// one Txn: all or nothing, as the storage contract says. It also compares
// the user's session index (newSessionsCmp), so a session that
// CreateSession commits after the read fails the Txn and is revoked on the
// next attempt; and CreateSession compares the user's record, so no session
// is created after a DeleteUser's Txn. When they do not fit,
// it first writes the user's fence (userfences/<uid>: the time and reason)
// in a Txn of its own, then revokes the sessions a Txn-full at a time,
// reading them again before each Txn, and commits the last Txn-full with
// final. From the fence's commit on, no session the user had then can be
// rotated: RotateRefreshToken compares the fence's ModRevision with the
// session's CreateRevision in its own Txn, and revokes a fenced session
// (with the fence's time and reason) instead of rotating it. So whatever
// happens to the call after the fence, no refresh of those sessions
// succeeds, and when it returns nil every one of them is revoked.
func (s *Store) revokeUserSessions(ctx context.Context, uid, reason string, now time.Time, final finalTxn) ([]storage.Session, error) {
	var revoked []storage.Session
	fenced := false
	for range maxRetries {
		var cmps []clientv3.Cmp
		var extra []clientv3.Op
		if final != nil {
			var err error
			if cmps, extra, err = final(ctx); err != nil {
				return nil, err
			}
		}
		live, rev, err := s.sessionsOf(ctx, uid)
		if err != nil {
			return nil, err
		}
		live = slices.DeleteFunc(live, func(sr sessRev) bool { return !sr.s.Live(now) })
		if n := len(live); n*opsPerRevokedSession+len(extra) <= s.maxTxnOps && n+len(cmps)+1 <= s.maxTxnOps {
			if len(live) == 0 && final == nil {
				return revoked, nil
			}
			cmps = append(cmps, s.newSessionsCmp(uid, rev))
			done, _, err := s.revokeBatch(ctx, live, reason, now, func() ([]clientv3.Cmp, []clientv3.Op, error) {
				return cmps, extra, nil
			})
			if errors.Is(err, errConflict) {
				continue
			}
			if err != nil {
				return nil, err
			}
			return append(revoked, done...), nil
		}
		if !fenced {
			if err := s.writeFence(ctx, uid, reason, now, live); err != nil {
				return nil, err
			}
			fenced = true
		}
		if s.testHookBeforeBatch != nil {
			s.testHookBeforeBatch()
		}
		done, _, err := s.revokeBatch(ctx, live[:min(len(live), s.maxTxnOps/opsPerRevokedSession)], reason, now, nil)
		if errors.Is(err, errConflict) {
			continue // one of them changed (a rotation, or a fenced one revoked): read again
		}
		if err != nil {
			return nil, err
		}
		revoked = append(revoked, done...)
	}
	return nil, errContention
}

// writeFence records that every session the user has now is being revoked
// (see revokeUserSessions).
func (s *Store) writeFence(ctx context.Context, uid, reason string, now time.Time, live []sessRev) error {
	_, err := s.commit(ctx, "fence user sessions", func() (clientv3.Txn, error) {
		fence, err := s.fenceOp(ctx, uid, reason, "", now, live)
		if err != nil {
			return nil, err
		}
		return s.cli.Txn(ctx).Then(fence), nil
	})
	return err
}

// fenceOp writes the user's fence, exempting the session exempt (if any).
// The fence lives as long as the longest of the user's live sessions could
// (their absolute expiry never moves), plus the lease slack.
func (s *Store) fenceOp(ctx context.Context, uid, reason, exempt string, now time.Time, live []sessRev) (clientv3.Op, error) {
	until := now
	for _, sr := range live {
		if sr.s.AbsoluteExpiresAt.After(until) {
			until = sr.s.AbsoluteExpiresAt
		}
	}
	lease, err := s.lease(ctx, until, now)
	if err != nil {
		return clientv3.Op{}, err
	}
	return clientv3.OpPut(s.userFenceKey(uid), encodeFence(now, reason, exempt), clientv3.WithLease(lease)), nil
}

// encodeFence is a fence's value: the revocation time, the reason, and,
// after a NUL, the id of the one session the fence exempts (ResetSessions
// keeps the caller's own), if any. Reasons and ids hold no NUL.
func encodeFence(at time.Time, reason, exempt string) string {
	v := encodeTime(at) + reason
	if exempt != "" {
		v += "\x00" + exempt
	}
	return v
}

// fenceCmp is the compare that keeps a write to a session created at
// revision created from racing a revocation of all its owner's sessions:
// no RevokeUserSessions, DeleteUser or ResetSessions of the owner has begun
// since the session was created (see userFence), or only the one at
// revision exempted (non-zero), a ResetSessions that keeps this session.
func (s *Store) fenceCmp(uid string, created, exempted int64) clientv3.Cmp {
	if exempted > 0 {
		return clientv3.Compare(clientv3.ModRevision(s.userFenceKey(uid)), "=", exempted)
	}
	return clientv3.Compare(clientv3.ModRevision(s.userFenceKey(uid)), "<", created)
}

func decodeFence(b []byte) (at time.Time, reason, exempt string, err error) {
	if len(b) < 9 {
		return time.Time{}, "", "", record.ErrCorrupt
	}
	at, err = record.DecodeTime(b[:8])
	reason, exempt, _ = strings.Cut(string(b[8:]), "\x00")
	return at, reason, exempt, err
}

// CountLiveSessions implements storage.SessionAdmin by scanning every
// session's summary (not the session records), a page at a time.
func (s *Store) CountLiveSessions(ctx context.Context, now time.Time) (n int, err error) {
	err = s.runScan(ctx, "count live sessions", func(ctx context.Context) error {
		_, err := s.scan(ctx, s.p+"sessstate/", func(_ []byte, v []byte, _ int64) error {
			st, err := record.DecodeState(v)
			if st.Live(now) {
				n++
			}
			return err
		})
		return err
	})
	return n, err
}

// scan calls fn for every key under prefix, in pages of 500, all read at
// one revision, which it returns.
func (s *Store) scan(ctx context.Context, prefix string, fn func(k, v []byte, modRev int64) error) (int64, error) {
	end := clientv3.GetPrefixRangeEnd(prefix)
	from := prefix
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(500),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.cli.Get(ctx, from, opts...)
		if err != nil {
			return 0, wrapErr(ctx, "scan", err)
		}
		rev = resp.Header.Revision
		for _, kv := range resp.Kvs {
			if err := fn(kv.Key, kv.Value, kv.ModRevision); err != nil {
				return rev, err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return rev, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}
