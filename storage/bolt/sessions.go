package bolt

import (
	"context"
	"encoding/binary"
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

func putSession(tx *bbolt.Tx, s storage.Session) error {
	data, err := record.EncodeSession(s)
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketSessions).Put([]byte(s.ID), data); err != nil {
		return err
	}
	return tx.Bucket(bucketSessState).Put([]byte(s.ID), encodeState(s))
}

// encodeState is the 24-byte summary the revocation check reads.
func encodeState(s storage.Session) []byte {
	b := make([]byte, 24)
	binary.BigEndian.PutUint64(b[0:], uint64(unixNano(s.RevokedAt)))
	binary.BigEndian.PutUint64(b[8:], uint64(unixNano(s.IdleExpiresAt)))
	binary.BigEndian.PutUint64(b[16:], uint64(unixNano(s.AbsoluteExpiresAt)))
	return b
}

// liveFromState reports whether a session summary is live at now.
func liveFromState(b []byte, now time.Time) (bool, error) {
	if len(b) != 24 {
		return false, record.ErrCorrupt
	}
	revoked := binary.BigEndian.Uint64(b[0:]) != 0
	idle := time.Unix(0, int64(binary.BigEndian.Uint64(b[8:])))
	abs := time.Unix(0, int64(binary.BigEndian.Uint64(b[16:])))
	return !revoked && now.Before(idle) && now.Before(abs), nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func sessDigestKey(id string, h storage.TokenHash) []byte {
	k := make([]byte, 0, len(id)+1+len(h))
	k = append(append(k, id...), 0)
	return append(k, h[:]...)
}

// indexDigest records that session id issued the refresh token with digest h.
func indexDigest(tx *bbolt.Tx, id string, h storage.TokenHash) error {
	if err := tx.Bucket(bucketRefresh).Put(h[:], []byte(id)); err != nil {
		return err
	}
	return tx.Bucket(bucketSessDigests).Put(sessDigestKey(id, h), nil)
}

// moveExpiry re-files the session in the expiry index.
func moveExpiry(tx *bbolt.Tx, old, cur storage.Session) error {
	b := tx.Bucket(bucketExpiry)
	if oldK, newK := expiryKey(old.ExpiresAt(), kindSession, old.ID), expiryKey(cur.ExpiresAt(), kindSession, cur.ID); string(oldK) != string(newK) {
		if err := b.Delete(oldK); err != nil {
			return err
		}
		return b.Put(newK, nil)
	}
	return nil
}

// insertSession stores a new session with its indexes.
func insertSession(tx *bbolt.Tx, sess storage.Session) error {
	if tx.Bucket(bucketSessions).Get([]byte(sess.ID)) != nil {
		return fmt.Errorf("session id taken: %w", storage.ErrAlreadyExists)
	}
	if tx.Bucket(bucketRefresh).Get(sess.CurrentHash[:]) != nil {
		return fmt.Errorf("refresh digest taken: %w", storage.ErrAlreadyExists)
	}
	if err := putSession(tx, sess); err != nil {
		return err
	}
	if err := indexDigest(tx, sess.ID, sess.CurrentHash); err != nil {
		return err
	}
	if err := indexUserSession(tx, sess.UserID, sess.ID); err != nil {
		return err
	}
	return tx.Bucket(bucketExpiry).Put(expiryKey(sess.ExpiresAt(), kindSession, sess.ID), nil)
}

// CreateSession implements storage.SessionStore.
func (s *Store) CreateSession(ctx context.Context, sess storage.Session) error {
	if err := ctxErr(ctx, "create session"); err != nil {
		return err
	}
	if !storage.ValidID(sess.ID) || !storage.ValidID(sess.UserID) || sess.CurrentHash.IsZero() {
		return fmt.Errorf("bolt: create session: id, user and refresh digest are required: %w", storage.ErrInvalidArgument)
	}
	err := s.writes.Do(func(tx *bbolt.Tx) error { return insertSession(tx, sess) })
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
		id := tx.Bucket(bucketRefresh).Get(h[:])
		if id == nil {
			return storage.ErrNotFound
		}
		sess, err = getSession(tx, id)
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
func (s *Store) RotateRefreshToken(ctx context.Context, r storage.Rotation) (storage.Session, error) {
	if err := ctxErr(ctx, "rotate refresh token"); err != nil {
		return storage.Session{}, err
	}
	if err := r.Validate(); err != nil {
		return storage.Session{}, fmt.Errorf("bolt: rotate refresh token: %w", err)
	}
	var (
		out     storage.Session
		outcome error // the domain result, reported after the commit
	)
	err := s.writes.Do(func(tx *bbolt.Tx) error {
		out, outcome = storage.Session{}, nil // the group commit may run this more than once
		id := tx.Bucket(bucketRefresh).Get(r.Presented[:])
		if id == nil {
			outcome = storage.ErrNotFound
			return nil
		}
		old, err := getSession(tx, id)
		if err != nil {
			return err
		}
		next, decision := r.Apply(old)
		switch {
		case errors.Is(decision, storage.ErrRefreshTokenReused):
			outcome = decision
			out = next
			return putSession(tx, next) // commit the revocation
		case decision != nil:
			outcome = decision
			return nil
		case tx.Bucket(bucketRefresh).Get(r.Next[:]) != nil:
			outcome = fmt.Errorf("next refresh digest taken: %w", storage.ErrAlreadyExists)
			return nil
		}
		if err := putSession(tx, next); err != nil {
			return err
		}
		if err := indexDigest(tx, next.ID, r.Next); err != nil {
			return err
		}
		if err := moveExpiry(tx, old, next); err != nil {
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

// RevokeSession implements storage.SessionStore.
func (s *Store) RevokeSession(ctx context.Context, id, reason string, now time.Time) error {
	if err := ctxErr(ctx, "revoke session"); err != nil {
		return err
	}
	if reason == "" || now.IsZero() {
		return fmt.Errorf("bolt: revoke session: reason and time are required: %w", storage.ErrInvalidArgument)
	}
	err := s.writes.Do(func(tx *bbolt.Tx) error {
		sess, err := getSession(tx, []byte(id))
		if err != nil {
			return err
		}
		if sess.Revoked() {
			return nil
		}
		sess.RevokedAt, sess.RevokeReason = now, reason
		return putSession(tx, sess)
	})
	if err != nil {
		return fmt.Errorf("bolt: revoke session %s: %w", id, err)
	}
	return nil
}
