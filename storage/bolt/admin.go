package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/internal/record"
)

// userSessionKey is the usersessions index key: user id, 0x00, session id.
// storage.ValidID keeps NUL out of both ids, so a user's prefix is unambiguous.
func userSessionKey(userID, sessionID string) []byte {
	k := make([]byte, 0, len(userID)+1+len(sessionID))
	k = append(append(k, userID...), 0)
	return append(k, sessionID...)
}

// userSessions decodes every stored session of the user, newest first. An
// index entry whose session is gone is skipped: the index is maintained in
// the transactions that delete sessions, so this only guards against a
// damaged file.
func userSessions(tx *bbolt.Tx, userID string) ([]storage.Session, error) {
	prefix := userSessionKey(userID, "")
	var out []storage.Session
	c := tx.Bucket(bucketUserSessions).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		sess, err := getSession(tx, k[len(prefix):]) // decoding copies out of the transaction
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, sess)
	}
	storage.SortNewestFirst(out)
	return out, nil
}

// revokeLive revokes every session of the user that is live at now but
// the one named keep (if any), in tx, and returns them as stored.
func (s *Store) revokeLive(tx *bbolt.Tx, userID, keep, reason string, now time.Time) ([]storage.Session, error) {
	sessions, err := userSessions(tx, userID)
	if err != nil {
		return nil, err
	}
	var revoked []storage.Session
	for _, sess := range sessions {
		if !sess.Live(now) || sess.ID == keep {
			continue
		}
		sess.RevokedAt, sess.RevokeReason = now, reason
		if err := s.putRevoked(tx, sess); err != nil {
			return nil, err
		}
		revoked = append(revoked, sess)
	}
	return revoked, nil
}

// ListUsers implements storage.UserAdmin with one cursor walk over the users
// bucket, which bbolt keeps in byte order of the id.
func (s *Store) ListUsers(ctx context.Context, afterID string, limit int) (out []storage.User, err error) {
	if limit <= 0 {
		return nil, invalid("list users", "limit must be positive")
	}
	err = s.view(ctx, "list users", func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketUsers).Cursor()
		k, v := c.First()
		if afterID != "" {
			k, v = c.Seek([]byte(afterID))
			if k != nil && string(k) == afterID {
				k, v = c.Next()
			}
		}
		for ; k != nil && len(out) < limit; k, v = c.Next() {
			u, err := record.DecodeUser(v) // decoding copies out of the transaction
			if err != nil {
				return fmt.Errorf("user %q: %w", k, err)
			}
			out = append(out, u)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteUser implements storage.UserAdmin. The user's sessions stay stored,
// revoked, until the sweeper deletes them after their retention (see
// WithRevokedSessionRetention), so that revocation watchers and the
// per-request check keep denying their tokens while any can verify.
func (s *Store) DeleteUser(ctx context.Context, id string, now time.Time) (revoked []storage.Session, err error) {
	if !storage.ValidID(id) || now.IsZero() {
		return nil, invalid("delete user", "id and time are required")
	}
	err = s.update(ctx, "delete user "+id, func(tx *bbolt.Tx) error {
		u, err := getUser(tx, id)
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketEmails).Delete([]byte(u.Email)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketUsers).Delete([]byte(id)); err != nil {
			return err
		}
		revoked, err = s.revokeLive(tx, id, "", storage.ReasonUserChanged, now)
		return err
	})
	if err != nil {
		return nil, err
	}
	return revoked, nil
}

// ListUserSessions implements storage.SessionAdmin through the usersessions
// index.
func (s *Store) ListUserSessions(ctx context.Context, userID string) (out []storage.Session, err error) {
	if !storage.ValidID(userID) {
		return nil, invalid("list user sessions", "a user id is required")
	}
	err = s.view(ctx, "list user sessions "+userID, func(tx *bbolt.Tx) (err error) {
		out, err = userSessions(tx, userID)
		return err
	})
	return out, err
}

// RevokeUserSessions implements storage.SessionAdmin in one write
// transaction.
func (s *Store) RevokeUserSessions(ctx context.Context, userID, reason string, now time.Time) (revoked []storage.Session, err error) {
	if err := storage.CheckRevocation(userID, reason, now); err != nil {
		return nil, fmt.Errorf("bolt: revoke user sessions: %w", err)
	}
	err = s.update(ctx, "revoke user sessions "+userID, func(tx *bbolt.Tx) (err error) {
		revoked, err = s.revokeLive(tx, userID, "", reason, now)
		return err
	})
	return revoked, err
}

// CountLiveSessions implements storage.SessionAdmin. It walks the session
// summaries, which every stored session has (putSession writes one with
// every session), and reads a session record only when the summary cannot tell: a session
// neither revoked nor past its absolute expiry whose summary's idle expiry
// (a lower bound) has passed.
func (s *Store) CountLiveSessions(ctx context.Context, now time.Time) (n int, err error) {
	err = s.view(ctx, "count live sessions", func(tx *bbolt.Tx) error {
		n = 0
		return tx.Bucket(bucketSessState).ForEach(func(id, v []byte) error {
			m, err := record.DecodeState(v)
			switch {
			case err != nil:
				return fmt.Errorf("session summary %q: %w", id, err)
			case m.Live(now): // surely live (see putSession)
				n++
			case m.TokenLive(now):
				sess, err := getSession(tx, id)
				if err != nil {
					return fmt.Errorf("session %q: %w", id, err)
				}
				if sess.Live(now) {
					n++
				}
			}
			return nil
		})
	})
	return n, err
}

// ResetSessions implements storage.SessionAdmin in one write transaction:
// the user's new password hash, the rotation of the kept session and the
// revocation of every other live session commit together or not at all.
func (s *Store) ResetSessions(ctx context.Context, r storage.SessionReset) (kept storage.Session, revoked []storage.Session, err error) {
	if err := r.Validate(); err != nil {
		return storage.Session{}, nil, fmt.Errorf("bolt: reset sessions: %w", err)
	}
	err = s.update(ctx, "reset sessions of user "+r.UserID, func(tx *bbolt.Tx) error {
		kept, revoked = storage.Session{}, nil
		u, err := getUser(tx, r.UserID)
		if err != nil {
			return err
		}
		if u, err = r.ApplyPassword(u); err != nil {
			return err
		}
		if r.Keep != "" {
			k, err := getSession(tx, []byte(r.Keep))
			if err != nil {
				return err
			}
			if k.UserID != r.UserID {
				return storage.ErrNotFound
			}
			if kept, err = r.ApplyKeep(k); err != nil {
				return err
			}
			if err := putRecord(tx, kept); err != nil {
				return err
			}
		}
		if r.NewPasswordHash != "" {
			if err := putUser(tx, u); err != nil {
				return err
			}
		}
		revoked, err = s.revokeLive(tx, r.UserID, r.Keep, r.Reason, r.Now)
		return err
	})
	if err != nil {
		return storage.Session{}, nil, err
	}
	return kept, revoked, nil
}
