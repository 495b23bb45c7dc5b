package bolt

import (
	"context"
	"errors"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/internal/record"
)

func getSession(tx *bbolt.Tx, id []byte) (storage.Session, error) {
	data := tx.Bucket(bucketSessions).Get(id)
	if data == nil {
		return storage.Session{}, storage.ErrNotFound
	}
	return record.DecodeSession(data)
}

// putRecord writes the session record alone: all that a rotation changes.
func putRecord(tx *bbolt.Tx, s storage.Session) error {
	data, err := record.EncodeSession(s)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketSessions).Put([]byte(s.ID), data)
}

// putSession writes the session record and its summary: for every change
// that the access-token check must see (creation, revocation).
func (s *Store) putSession(tx *bbolt.Tx, sess storage.Session) error {
	if err := putRecord(tx, sess); err != nil {
		return err
	}
	return putState(tx, sess)
}

// putState writes the session's summary. Its idle expiry is a lower bound:
// rotations move the session's forward without rewriting the summary.
// Revoked-at and the absolute expiry are exact, so State.TokenLive is
// exact, and State.Live is true only of live sessions (one it calls not
// live may still be, and only the record can tell).
func putState(tx *bbolt.Tx, sess storage.Session) error {
	data, err := record.EncodeState(sess)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketSessState).Put([]byte(sess.ID), data)
}

// putRevoked writes sess, which the caller has just revoked (it was live
// in tx), and files it in the expiry index at the time the sweeper may
// delete it, sess.RetainedUntil(s.retention), in place of the entry it had
// while live: the one at its summary's expiry (see insertSession and
// sweepSession, the only other writers of both), read before putSession
// overwrites the summary. So the session keeps one entry, and a revoked
// session goes at the first sweep after its retention, not at its expiry.
func (s *Store) putRevoked(tx *bbolt.Tx, sess storage.Session) error {
	id := []byte(sess.ID)
	expiry := tx.Bucket(bucketExpiry)
	if v := tx.Bucket(bucketSessState).Get(id); v != nil {
		st, err := record.DecodeState(v)
		if err != nil {
			return fmt.Errorf("session summary %q: %w", id, err)
		}
		if err := expiry.Delete(expiryKey(st.ExpiresAt(), kindSession, sess.ID)); err != nil {
			return err
		}
	}
	if err := s.putSession(tx, sess); err != nil {
		return err
	}
	return expiry.Put(expiryKey(sess.RetainedUntil(s.retention), kindSession, sess.ID), nil)
}

// insertSession stores a new session with its indexes.
func (s *Store) insertSession(tx *bbolt.Tx, sess storage.Session) error {
	if tx.Bucket(bucketSessions).Get([]byte(sess.ID)) != nil {
		return fmt.Errorf("session id taken: %w", storage.ErrAlreadyExists)
	}
	if err := s.putSession(tx, sess); err != nil {
		return err
	}
	if err := tx.Bucket(bucketUserSessions).Put(userSessionKey(sess.UserID, sess.ID), nil); err != nil {
		return err
	}
	return tx.Bucket(bucketExpiry).Put(expiryKey(sess.ExpiresAt(), kindSession, sess.ID), nil)
}

// CreateSession implements storage.SessionStore. The owner is checked in
// the write transaction that stores the session; DeleteUser and
// RevokeUserSessions revoke in write transactions too, and bbolt runs those
// one at a time, so each sees every session committed before it and none
// is committed for a user it deleted or disabled.
func (s *Store) CreateSession(ctx context.Context, sess storage.Session) error {
	if err := storage.CheckSession(sess); err != nil {
		return fmt.Errorf("bolt: create session: %w", err)
	}
	var refused error // reported after the commit, so that the group commits without a rerun
	err := s.group(ctx, "create session "+sess.ID, func(tx *bbolt.Tx) error {
		refused = nil // the group commit may run this more than once
		u, err := getUser(tx, sess.UserID)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			refused = fmt.Errorf("user %s: %w", sess.UserID, err)
			return nil
		case err != nil:
			return err
		case u.Disabled:
			refused = fmt.Errorf("user %s: %w", sess.UserID, storage.ErrUserDisabled)
			return nil
		}
		return s.insertSession(tx, sess)
	})
	if err == nil && refused != nil {
		err = fmt.Errorf("bolt: create session %s: %w", sess.ID, refused)
	}
	return err
}

// GetSession implements storage.SessionStore.
func (s *Store) GetSession(ctx context.Context, id string) (sess storage.Session, err error) {
	err = s.view(ctx, "get session "+id, func(tx *bbolt.Tx) error {
		sess, err = getSession(tx, []byte(id))
		return err
	})
	return sess, err
}

// RotateRefreshToken implements storage.SessionStore. Concurrent rotations
// share one commit (groupcommit); bbolt runs write transactions one at a
// time, so of several rotations of one digest only the first sees it
// current.
//
// A rotation writes one row, the session record, which holds the current
// and previous digests: the file does not grow with rotations. It leaves
// the session summary (liveness is unchanged; its idle expiry is a lower
// bound) and the expiry index (its entry is a lower bound too; the sweeper
// re-files the session when it finds it later than filed) as they are, so
// that it dirties as few pages of a large file as it can.
func (s *Store) RotateRefreshToken(ctx context.Context, r storage.Rotation) (storage.Session, error) {
	if err := r.Validate(); err != nil {
		return storage.Session{}, fmt.Errorf("bolt: rotate refresh token: %w", err)
	}
	op := "rotate refresh token of session " + r.SessionID
	// A token that names no stored session, that no rotation delivered, or
	// whose session is revoked, is refused from a read transaction, without
	// queueing for the single writer: such tokens then cost a lookup, not a
	// place in a group commit. Each answer is final: sessions are never
	// recreated or unrevoked, and a token is presented by its holder after
	// the commit that made it current, so no later transaction can find it
	// current when this one does not. Everything else (rotation, reuse,
	// grace, expiry) is decided inside the write transaction, on the state
	// it commits against.
	seen, err := s.GetSession(ctx, r.SessionID)
	if err != nil {
		return storage.Session{}, err
	}
	if _, decision := r.Apply(seen); errors.Is(decision, storage.ErrNotFound) || errors.Is(decision, storage.ErrSessionRevoked) {
		return seen, fmt.Errorf("bolt: %s: %w", op, decision)
	}
	var (
		out     storage.Session
		outcome error // the domain result, reported after the commit
	)
	err = s.group(ctx, op, func(tx *bbolt.Tx) error {
		old, err := getSession(tx, []byte(r.SessionID))
		if err != nil {
			return err
		}
		out, outcome = r.Apply(old) // the group commit may run this more than once
		switch {
		case errors.Is(outcome, storage.ErrRefreshTokenReused):
			return s.putRevoked(tx, out) // commit the revocation
		case outcome != nil:
			return nil // out is old, unchanged
		}
		return putRecord(tx, out)
	})
	switch {
	case err != nil:
		return storage.Session{}, err
	case outcome != nil:
		return out, fmt.Errorf("bolt: %s: %w", op, outcome)
	}
	return out, nil
}

// RevokeSession implements storage.SessionStore. A session already
// revoked is answered from a read transaction: a repeat costs no commit or
// fsync.
func (s *Store) RevokeSession(ctx context.Context, id, reason string, now time.Time) (storage.Session, bool, error) {
	if err := storage.CheckRevocation(id, reason, now); err != nil {
		return storage.Session{}, false, fmt.Errorf("bolt: revoke session: %w", err)
	}
	seen, err := s.GetSession(ctx, id)
	if err != nil {
		return storage.Session{}, false, err
	}
	if seen.Revoked() {
		return seen, false, nil
	}
	var out storage.Session
	changed := false
	err = s.group(ctx, "revoke session "+id, func(tx *bbolt.Tx) error {
		changed = false // the group commit may run this more than once
		sess, err := getSession(tx, []byte(id))
		out = sess
		if err != nil || sess.Revoked() { // revoked meanwhile by another call
			return err
		}
		sess.RevokedAt, sess.RevokeReason = now, reason
		if err := s.putRevoked(tx, sess); err != nil {
			return err
		}
		out, changed = sess, true
		return nil
	})
	if err != nil {
		return storage.Session{}, false, err
	}
	return out, changed, nil
}
