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
// that the access-token check must see (creation, revocation). Writing a
// revoked session drops the store's cached answers once the commit lands
// (see liveCache).
func (s *Store) putSession(tx *bbolt.Tx, sess storage.Session) error {
	if sess.Revoked() {
		tx.OnCommit(s.live.invalidate)
	}
	if err := putRecord(tx, sess); err != nil {
		return err
	}
	return tx.Bucket(bucketSessState).Put([]byte(sess.ID), record.EncodeState(sess))
}

// The session summary (record.EncodeState) in the sessstate bucket: its
// idle expiry is a lower bound, the one the session had when the summary
// was last written (creation, revocation, or the sweeper re-filing it);
// rotations move the session's idle expiry forward without rewriting the
// summary. Revoked-at and the absolute expiry are exact: only putSession
// changes the first, nothing changes the second. So State.TokenLive is
// exact, and State.Live (surely live) is true only of live sessions; a
// session it calls not live may still be live, and only the record can
// tell.

// A refresh-index entry maps a digest to the session that issued it, and
// links to the digest that was the session's current one when it was
// issued (its predecessor): value = session id [0x00 predecessor digest].
// Following the links from a session's current digest reaches every digest
// it issued, so deleting a session deletes them all without a second index
// written on every rotation. Session ids never contain 0x00
// (storage.ValidID). Entries written by schema 2 hold the session id alone;
// their digests are also listed in the sessdigests bucket, which schema 3
// only reads and empties.

// refreshEntry is a decoded refresh-index value.
type refreshEntry struct {
	sessionID []byte
	prev      storage.TokenHash // zero: none (the session's first digest, or a schema 2 entry)
}

func decodeRefreshEntry(v []byte) (refreshEntry, error) {
	i := bytes.IndexByte(v, 0)
	if i < 0 {
		return refreshEntry{sessionID: v}, nil
	}
	e := refreshEntry{sessionID: v[:i]}
	if len(v)-i-1 != len(e.prev) || i == 0 {
		return refreshEntry{}, record.ErrCorrupt
	}
	copy(e.prev[:], v[i+1:])
	return e, nil
}

func encodeRefreshEntry(id string, prev storage.TokenHash) []byte {
	if prev.IsZero() {
		return []byte(id)
	}
	v := make([]byte, 0, len(id)+1+len(prev))
	v = append(append(v, id...), 0)
	return append(v, prev[:]...)
}

// digestOwner returns the id of the session that issued digest h, or nil.
func digestOwner(tx *bbolt.Tx, h storage.TokenHash) ([]byte, error) {
	v := tx.Bucket(bucketRefresh).Get(h[:])
	if v == nil {
		return nil, nil
	}
	e, err := decodeRefreshEntry(v)
	if err != nil {
		return nil, err
	}
	return e.sessionID, nil
}

// sessionByDigest returns the session that issued the refresh token with
// digest h. A digest whose session is gone (which only a damaged file has:
// deleteSession deletes every digest a session issued) is ErrNotFound, like
// one never issued.
func sessionByDigest(tx *bbolt.Tx, h storage.TokenHash) (storage.Session, error) {
	id, err := digestOwner(tx, h)
	if err != nil {
		return storage.Session{}, err
	}
	if id == nil {
		return storage.Session{}, storage.ErrNotFound
	}
	return getSession(tx, id)
}

// digestTaken reports whether a stored session issued the digest h.
func digestTaken(tx *bbolt.Tx, h storage.TokenHash) (bool, error) {
	id, err := digestOwner(tx, h)
	if err != nil || id == nil {
		return false, err
	}
	return tx.Bucket(bucketSessions).Get(id) != nil, nil
}

// indexDigest records that session id issued the refresh token with digest
// h while prev was its current digest (zero for a new session).
func indexDigest(tx *bbolt.Tx, id string, h, prev storage.TokenHash) error {
	return tx.Bucket(bucketRefresh).Put(h[:], encodeRefreshEntry(id, prev))
}

// insertSession stores a new session with its indexes.
func (s *Store) insertSession(tx *bbolt.Tx, sess storage.Session) error {
	if tx.Bucket(bucketSessions).Get([]byte(sess.ID)) != nil {
		return fmt.Errorf("session id taken: %w", storage.ErrAlreadyExists)
	}
	if taken, err := digestTaken(tx, sess.CurrentHash); err != nil {
		return err
	} else if taken {
		return fmt.Errorf("refresh digest taken: %w", storage.ErrAlreadyExists)
	}
	if err := s.putSession(tx, sess); err != nil {
		return err
	}
	if err := indexDigest(tx, sess.ID, sess.CurrentHash, storage.TokenHash{}); err != nil {
		return err
	}
	if err := indexUserSession(tx, sess.UserID, sess.ID); err != nil {
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
	if err := ctxErr(ctx, "create session"); err != nil {
		return err
	}
	if !storage.ValidID(sess.ID) || !storage.ValidID(sess.UserID) || sess.CurrentHash.IsZero() {
		return fmt.Errorf("bolt: create session: id, user and refresh digest are required: %w", storage.ErrInvalidArgument)
	}
	var refused error // reported after the commit, so that the group commits without a rerun
	err := s.writes.Do(func(tx *bbolt.Tx) error {
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
	if err == nil {
		err = refused
	}
	if err != nil {
		return fmt.Errorf("bolt: create session %s: %w", sess.ID, err)
	}
	return nil
}

// GetSession implements storage.SessionStore.
func (s *Store) GetSession(ctx context.Context, id string) (storage.Session, error) {
	if err := ctxErr(ctx, "get session"); err != nil {
		return storage.Session{}, err
	}
	var sess storage.Session
	err := s.db.View(func(tx *bbolt.Tx) (err error) {
		sess, err = getSession(tx, []byte(id))
		return err
	})
	if err != nil {
		return storage.Session{}, fmt.Errorf("bolt: get session %s: %w", id, err)
	}
	return sess, nil
}

// FindSessionByRefreshHash implements storage.SessionStore.
func (s *Store) FindSessionByRefreshHash(ctx context.Context, h storage.TokenHash) (storage.Session, bool, error) {
	if err := ctxErr(ctx, "find session"); err != nil {
		return storage.Session{}, false, err
	}
	var sess storage.Session
	err := s.db.View(func(tx *bbolt.Tx) (err error) {
		sess, err = sessionByDigest(tx, h)
		return err
	})
	if err != nil {
		return storage.Session{}, false, fmt.Errorf("bolt: find session by refresh digest: %w", err)
	}
	return sess, sess.CurrentHash == h, nil
}

// RotateRefreshToken implements storage.SessionStore. Concurrent rotations
// share one commit (groupcommit); bbolt runs write transactions one at a
// time, so of several rotations of one digest only the first sees it
// current.
//
// A rotation writes two rows: the session record and the new digest's
// entry in the refresh index (which links to its predecessor). It leaves the session summary (liveness is
// unchanged; its idle expiry is a lower bound) and the expiry index (its
// entry is a lower bound too; the sweeper re-files the session when it
// finds it later than filed) as they are, so that it dirties as few pages
// of a large file as it can.
func (s *Store) RotateRefreshToken(ctx context.Context, r storage.Rotation) (storage.Session, error) {
	if err := ctxErr(ctx, "rotate refresh token"); err != nil {
		return storage.Session{}, err
	}
	if err := r.Validate(); err != nil {
		return storage.Session{}, fmt.Errorf("bolt: rotate refresh token: %w", err)
	}
	// A digest that no stored session issued is refused from a read
	// transaction, without queueing for the single writer: invalid refresh
	// tokens (guesses, or tokens of swept sessions) then cost a lookup,
	// not a place in a group commit, and a group of nothing but them no
	// commit and fsync. The answer is final: a digest is presented by the
	// holder of its token, who got that token after the commit that stored
	// the digest, so a later transaction cannot find what this one does
	// not. Everything else (reuse, expiry, revocation) is decided inside
	// the write transaction, on the state it commits against.
	var known bool
	if err := s.db.View(func(tx *bbolt.Tx) (err error) {
		known, err = digestTaken(tx, r.Presented)
		return err
	}); err != nil {
		return storage.Session{}, fmt.Errorf("bolt: rotate refresh token: %w", err)
	}
	if !known {
		return storage.Session{}, fmt.Errorf("bolt: rotate refresh token: %w", storage.ErrNotFound)
	}
	var (
		out     storage.Session
		outcome error // the domain result, reported after the commit
	)
	err := s.writes.Do(func(tx *bbolt.Tx) error {
		out, outcome = storage.Session{}, nil // the group commit may run this more than once
		old, err := sessionByDigest(tx, r.Presented)
		if errors.Is(err, storage.ErrNotFound) {
			outcome = err
			return nil
		}
		if err != nil {
			return err
		}
		next, decision := r.Apply(old)
		switch {
		case errors.Is(decision, storage.ErrRefreshTokenReused):
			outcome = decision
			out = next
			return s.putSession(tx, next) // commit the revocation
		case decision != nil:
			outcome = decision
			return nil
		}
		if taken, err := digestTaken(tx, r.Next); err != nil {
			return err
		} else if taken {
			outcome = fmt.Errorf("next refresh digest taken: %w", storage.ErrAlreadyExists)
			return nil
		}
		if err := putRecord(tx, next); err != nil {
			return err
		}
		// The link goes to the digest r.Next replaces as current: the
		// presented one, or on a grace retry the successor it drops, whose
		// own link goes to the presented one: so the chain misses none.
		if err := indexDigest(tx, next.ID, r.Next, old.CurrentHash); err != nil {
			return err
		}
		out = next
		return nil
	})
	if err != nil {
		return storage.Session{}, fmt.Errorf("bolt: rotate refresh token: %w", err)
	}
	if outcome != nil {
		return out, fmt.Errorf("bolt: rotate refresh token: %w", outcome)
	}
	return out, nil
}

// RevokeSession implements storage.SessionStore. A session already
// revoked is answered from a read transaction: a repeat costs no commit or
// fsync and leaves the store's cached answers (liveCache) in place.
func (s *Store) RevokeSession(ctx context.Context, id, reason string, now time.Time) (bool, error) {
	if err := ctxErr(ctx, "revoke session"); err != nil {
		return false, err
	}
	if reason == "" || now.IsZero() {
		return false, fmt.Errorf("bolt: revoke session: reason and time are required: %w", storage.ErrInvalidArgument)
	}
	var revoked bool
	err := s.db.View(func(tx *bbolt.Tx) error {
		sess, err := getSession(tx, []byte(id))
		revoked = sess.Revoked()
		return err
	})
	if err != nil {
		return false, fmt.Errorf("bolt: revoke session %s: %w", id, err)
	}
	if revoked {
		return false, nil
	}
	changed := false
	err = s.writes.Do(func(tx *bbolt.Tx) error {
		changed = false // the group commit may run this more than once
		sess, err := getSession(tx, []byte(id))
		if err != nil || sess.Revoked() { // revoked meanwhile by another call
			return err
		}
		sess.RevokedAt, sess.RevokeReason = now, reason
		changed = true
		return s.putSession(tx, sess)
	})
	if err != nil {
		return false, fmt.Errorf("bolt: revoke session %s: %w", id, err)
	}
	return changed, nil
}
