package etcd

import (
	"context"
	"errors"
	"fmt"
	"slices"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/internal/record"
)

// resetHead is what ResetSessions commits besides the revocations: the
// user (with its new password hash) and the kept session (rotated), as
// read at their revisions.
type resetHead struct {
	user    storage.User
	userRev int64
	kept    storage.Session
	keep    sessRev // the kept session as read; zero without one
	// exempted is the revision of a fence that covers the kept session
	// but exempts it (an earlier reset that kept it); 0 without one.
	exempted int64
}

// readResetHead reads the user and the kept session and decides, with
// storage.SessionReset's rules, what to write; a domain error writes
// nothing.
func (s *Store) readResetHead(ctx context.Context, r storage.SessionReset) (resetHead, error) {
	u, rev, err := s.getUser(ctx, r.UserID)
	if err != nil {
		return resetHead{}, err
	}
	h := resetHead{userRev: rev}
	if h.user, err = r.ApplyPassword(u); err != nil {
		return resetHead{}, err
	}
	if r.Keep == "" {
		return h, nil
	}
	if h.keep, err = s.getSession(ctx, r.Keep); err != nil {
		return resetHead{}, err
	}
	if h.keep.s.UserID != r.UserID {
		return resetHead{}, storage.ErrNotFound
	}
	// A fence written since the kept session was created revokes it,
	// unless that fence is an earlier reset's that kept this same session.
	resp, err := s.cli.Get(ctx, s.userFenceKey(r.UserID))
	if err != nil {
		return resetHead{}, wrapErr(ctx, "get user fence", err)
	}
	if kvs := resp.Kvs; len(kvs) == 1 && kvs[0].ModRevision >= h.keep.created {
		_, _, exempt, err := decodeFence(kvs[0].Value)
		if err != nil {
			return resetHead{}, fmt.Errorf("user fence: %w", err)
		}
		if exempt != r.Keep {
			return resetHead{}, storage.ErrSessionRevoked
		}
		h.exempted = kvs[0].ModRevision
	}
	h.kept, err = r.ApplyKeep(h.keep.s)
	return h, err
}

// headTxn returns the compares and operations that commit h: the user is
// unchanged since it was read (and gets its new hash), and the kept session
// is unchanged and not fenced by a revocation of all the user's sessions
// (and gets its rotation).
func (s *Store) headTxn(ctx context.Context, r storage.SessionReset, h resetHead) ([]clientv3.Cmp, []clientv3.Op, error) {
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(s.userKey(r.UserID)), "=", h.userRev)}
	var ops []clientv3.Op
	if r.NewPasswordHash != "" {
		data, err := record.EncodeUser(h.user)
		if err != nil {
			return nil, nil, err
		}
		ops = append(ops, clientv3.OpPut(s.userKey(r.UserID), string(data)))
	}
	if r.Keep != "" {
		cmps = append(cmps,
			clientv3.Compare(clientv3.ModRevision(s.sessionKey(r.Keep)), "=", h.keep.rev),
			s.fenceCmp(r.UserID, h.keep.created, h.exempted))
		if !r.KeepNext.IsZero() {
			put, err := s.putSessionOps(ctx, h.kept, r.Now)
			if err != nil {
				return nil, nil, err
			}
			ops = append(ops, put...)
		}
	}
	return cmps, ops, nil
}

// ResetSessions implements storage.SessionAdmin. When the user's other
// live sessions fit in one Txn with the user and the kept session, that is
// one Txn, which also compares the user's session index so that a session
// created meanwhile is not left out. Otherwise its first Txn commits the
// user, the kept session and the user's fence, which exempts the kept
// session (see revokeUserSessions for what a fence guarantees), and the
// other sessions the fence covers are then revoked a Txn-full at a time.
func (s *Store) ResetSessions(ctx context.Context, r storage.SessionReset) (storage.Session, []storage.Session, error) {
	if err := r.Validate(); err != nil {
		return storage.Session{}, nil, fmt.Errorf("etcd: reset sessions: %w", err)
	}
	var kept storage.Session
	var revoked []storage.Session
	err := s.run(ctx, "reset sessions of user "+r.UserID, func(ctx context.Context) (err error) {
		kept, revoked, err = s.resetSessions(ctx, r)
		return err
	})
	return kept, revoked, err
}

func (s *Store) resetSessions(ctx context.Context, r storage.SessionReset) (storage.Session, []storage.Session, error) {
	var (
		h        resetHead
		revoked  []storage.Session
		fenceRev int64 // the fence's revision once the head has committed with it
	)
	for range maxRetries {
		live, rev, err := s.sessionsOf(ctx, r.UserID)
		if err != nil {
			return storage.Session{}, nil, err
		}
		live = slices.DeleteFunc(live, func(sr sessRev) bool {
			// After the fence, a session created later is not this reset's.
			return !sr.s.Live(r.Now) || sr.s.ID == r.Keep || (fenceRev > 0 && sr.created > fenceRev)
		})
		if fenceRev > 0 {
			if len(live) == 0 {
				return h.kept, revoked, nil
			}
			done, _, err := s.revokeBatch(ctx, live[:min(len(live), s.maxTxnOps/opsPerRevokedSession)], r.Reason, r.Now, nil)
			if errors.Is(err, errConflict) {
				continue
			}
			if err != nil {
				return storage.Session{}, nil, err
			}
			revoked = append(revoked, done...)
			continue
		}
		if h, err = s.readResetHead(ctx, r); err != nil {
			return storage.Session{}, nil, err
		}
		// The head takes at most 4 compares and 4 operations. When the
		// other sessions fit with it, they are revoked in its Txn, which
		// compares the session index too; otherwise it commits the fence.
		fits := len(live)*opsPerRevokedSession+4 <= s.maxTxnOps && len(live)+4 <= s.maxTxnOps
		batch := live
		if !fits {
			batch = nil
		}
		done, txnRev, err := s.revokeBatch(ctx, batch, r.Reason, r.Now, func() ([]clientv3.Cmp, []clientv3.Op, error) {
			cmps, ops, err := s.headTxn(ctx, r, h)
			if err != nil {
				return nil, nil, err
			}
			if fits {
				return append(cmps, s.newSessionsCmp(r.UserID, rev)), ops, nil
			}
			fence, err := s.fenceOp(ctx, r.UserID, r.Reason, r.Keep, r.Now, live)
			return cmps, append(ops, fence), err
		})
		if errors.Is(err, errConflict) {
			continue // the user, a session or the index changed: read again
		}
		if err != nil {
			return storage.Session{}, nil, err
		}
		if fits {
			return h.kept, done, nil
		}
		fenceRev = txnRev
	}
	return storage.Session{}, nil, errContention
}
