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

// DenyAccessToken implements storage.DenyList. Denying a jti twice keeps the
// later expiry. A jti already denied until expiresAt or later is answered
// from a read transaction: a repeat costs no commit or fsync.
func (s *Store) DenyAccessToken(ctx context.Context, jti string, expiresAt time.Time) (bool, error) {
	if !storage.ValidID(jti) || expiresAt.IsZero() {
		return false, invalid("deny access token", "jti and expiry are required")
	}
	op := "deny access token " + jti
	var denied bool
	err := s.view(ctx, op, func(tx *bbolt.Tx) (err error) {
		_, denied, err = deniedUntil(tx, jti, expiresAt)
		return err
	})
	if err != nil || denied {
		return false, err
	}
	changed := false
	err = s.group(ctx, op, func(tx *bbolt.Tx) error {
		changed = false // the group commit may run this more than once
		old, denied, err := deniedUntil(tx, jti, expiresAt)
		if err != nil || denied { // denied meanwhile by another call
			return err
		}
		expiry := tx.Bucket(bucketExpiry)
		if !old.IsZero() {
			if err := expiry.Delete(expiryKey(old, kindJTI, jti)); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketDenied).Put([]byte(jti), record.EncodeTime(expiresAt)); err != nil {
			return err
		}
		changed = true
		return expiry.Put(expiryKey(expiresAt, kindJTI, jti), nil)
	})
	return changed, err
}

// deniedUntil returns the expiry jti is denied until (zero if it is not
// denied), and whether that covers until.
func deniedUntil(tx *bbolt.Tx, jti string, until time.Time) (time.Time, bool, error) {
	v := tx.Bucket(bucketDenied).Get([]byte(jti))
	if v == nil {
		return time.Time{}, false, nil
	}
	exp, err := record.DecodeTime(v)
	return exp, err == nil && !until.After(exp), err
}

// AccessTokenRevoked implements storage.DenyList with one read
// transaction. It fails closed: an empty jti or session id, a session that
// is gone, or an error counts as revoked. It reads the deny list and the
// session summary, which every stored session has (putSession writes it,
// deleteSession removes it), and uses only what the summary holds exactly:
// revocation and absolute expiry.
func (s *Store) AccessTokenRevoked(ctx context.Context, jti, sessionID string, now time.Time) (bool, error) {
	if jti == "" || sessionID == "" {
		return true, nil
	}
	revoked := true
	err := s.view(ctx, "access token revoked", func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketSessState).Get([]byte(sessionID))
		if tx.Bucket(bucketDenied).Get([]byte(jti)) != nil || v == nil {
			return nil // denied (an expired denial only outlives an expired token), or the session is gone
		}
		state, err := record.DecodeState(v)
		revoked = !state.TokenLive(now)
		return err
	})
	return revoked || err != nil, err
}

// DeleteExpired implements storage.Sweeper: one write transaction that
// walks the expiry index in time order. A live session's entry there is a
// lower bound of its expiry (rotations do not move it); a revoked
// session's is the time it may be deleted, RetainedUntil with the
// retention of the store that revoked it. A session found to end later
// than filed (by this store's retention) is re-filed then, with its
// summary's idle expiry brought up to date, and counts in Refiled; each
// entry due counts against limit, deleted or re-filed.
func (s *Store) DeleteExpired(ctx context.Context, now time.Time, limit int) (res storage.SweepResult, err error) {
	if limit <= 0 {
		return storage.SweepResult{}, ctx.Err()
	}
	cutoff := record.EncodeTime(now)
	err = s.update(ctx, "delete expired", func(tx *bbolt.Tx) error {
		res = storage.SweepResult{}
		expiry := tx.Bucket(bucketExpiry)
		// Collect first: the bucket must not change under its cursor.
		var due [][]byte
		c := expiry.Cursor()
		for k, _ := c.First(); k != nil && len(due) < limit && bytes.Compare(k[:min(8, len(k))], cutoff) < 0; k, _ = c.Next() {
			due = append(due, bytes.Clone(k))
		}
		for _, k := range due {
			if len(k) < 9 {
				return record.ErrCorrupt
			}
			id := k[9:]
			var err error
			refiled := false
			switch k[8] {
			case kindSession:
				refiled, err = s.sweepSession(tx, id, cutoff)
			case kindJTI:
				err = tx.Bucket(bucketDenied).Delete(id)
			default:
				err = record.ErrCorrupt
			}
			if err == nil {
				err = expiry.Delete(k)
			}
			if err != nil {
				return err
			}
			if refiled {
				res.Refiled++
			} else {
				res.Deleted++
			}
		}
		res.More = len(due) == limit
		return nil
	})
	if err != nil {
		return storage.SweepResult{}, err
	}
	return res, nil
}

// sweepSession handles a session whose expiry-index entry is due (before
// cutoff): it deletes the session if it has really expired, or was revoked
// longer ago than the store's retention, and otherwise re-files it at the
// time it may be deleted, reporting refiled.
func (s *Store) sweepSession(tx *bbolt.Tx, id, cutoff []byte) (refiled bool, err error) {
	sess, err := getSession(tx, id)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return false, nil // a stale entry (only a damaged file has one): deleted
	case err != nil:
		return false, fmt.Errorf("session %q: %w", id, err)
	}
	if until := sess.RetainedUntil(s.retention); string(record.EncodeTime(until)) >= string(cutoff) {
		if err := putState(tx, sess); err != nil {
			return false, err
		}
		return true, tx.Bucket(bucketExpiry).Put(expiryKey(until, kindSession, sess.ID), nil)
	}
	return false, s.deleteSession(tx, sess)
}

// deleteSession removes a session that can no longer matter: its record, its summary and
// its entry in the user → sessions index (the refresh-token digests it
// keeps are in the record).
func (s *Store) deleteSession(tx *bbolt.Tx, sess storage.Session) error {
	id := []byte(sess.ID)
	if err := tx.Bucket(bucketUserSessions).Delete(userSessionKey(sess.UserID, sess.ID)); err != nil {
		return err
	}
	if err := tx.Bucket(bucketSessState).Delete(id); err != nil {
		return err
	}
	return tx.Bucket(bucketSessions).Delete(id)
}

// ListRevocations implements storage.DenyList. It reads the deny list and
// every session in one read transaction: a snapshot for watchers, taken once
// per subscription.
func (s *Store) ListRevocations(ctx context.Context, now time.Time) (out []storage.Revocation, err error) {
	err = s.view(ctx, "list revocations", func(tx *bbolt.Tx) error {
		err := tx.Bucket(bucketDenied).ForEach(func(k, v []byte) error {
			exp, err := record.DecodeTime(v)
			if err == nil && exp.After(now) {
				out = append(out, storage.Revocation{JTI: string(k), ExpiresAt: exp})
			}
			return err
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketSessions).ForEach(func(k, v []byte) error {
			sess, err := record.DecodeSession(v)
			if err == nil && sess.Revoked() && sess.ExpiresAt().After(now) {
				out = append(out, storage.Revocation{SessionID: sess.ID, ExpiresAt: sess.ExpiresAt()})
			}
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
