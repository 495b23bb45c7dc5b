package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/tokens"
)

// capSessions keeps user within its class's live-session cap after the
// login that created sess: the oldest live sessions beyond the cap are
// revoked (reason storage.ReasonSessionLimit), each with its revocation
// event. sess itself is never revoked here. Concurrent logins may each
// revoke the same old sessions; revoking is idempotent. A failure is logged
// and the login still succeeds: the next login enforces the cap again.
func (s *Server) capSessions(ctx context.Context, user storage.User, sess storage.Session) {
	limit := s.accountLimits(user).MaxSessions
	all, err := s.store.ListUserSessions(ctx, user.ID)
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "session cap not enforced", slog.String("event", "session_cap_failed"),
			slog.String("user_id", user.ID), slog.String("error", err.Error()))
		return
	}
	now := s.now()
	live := slices.DeleteFunc(all, func(x storage.Session) bool { return !x.Live(now) || x.ID == sess.ID })
	excess := len(live) + 1 - limit
	if excess <= 0 {
		return
	}
	// Oldest first; the session id breaks ties so that concurrent logins
	// pick the same victims.
	slices.SortFunc(live, func(a, b storage.Session) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
	})
	for _, old := range live[:excess] {
		changed, err := s.revokeSession(ctx, old, storage.ReasonSessionLimit, RevokedSession, now)
		if err != nil {
			s.log.LogAttrs(ctx, slog.LevelWarn, "session cap not enforced", slog.String("event", "session_cap_failed"),
				slog.String("user_id", user.ID), slog.String("session_id", old.ID), slog.String("error", err.Error()))
			return
		}
		if !changed {
			continue // a concurrent login revoked it first and announced it
		}
		s.log.LogAttrs(ctx, slog.LevelInfo, "oldest session revoked: live-session cap reached", slog.String("event", "session_cap_revoked"),
			slog.String("user_id", user.ID), slog.String("session_id", old.ID), slog.Int("cap", limit))
	}
}

// revokeSession revokes sess for reason and, when that changed it,
// announces it as the revocation stored it and counts it as kind ("": not
// counted). A session already gone is not an error: it is not live either.
func (s *Server) revokeSession(ctx context.Context, sess storage.Session, reason, kind string, now time.Time) (bool, error) {
	revoked, changed, err := s.store.RevokeSession(ctx, sess.ID, reason, now)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return false, fmt.Errorf("revoke session: %w", err)
	}
	if changed {
		s.announce(kind, revoked)
	}
	return changed, nil
}

// revokeSessionID revokes the session a request names, for reason at now,
// and returns it as the revocation stored it with whether this call
// revoked it: revoking a revoked session answers with it as it is (its
// first reason). The session comes from the revocation itself, not from a
// read after it, so that a committed revocation is always reported as done
// and the caller can always announce it. The caller announces a change.
// When owner is not empty, a session of anyone else is answered as an
// unknown one: the same code and message, after the same single read.
func (s *Server) revokeSessionID(ctx context.Context, id, owner, reason string, now time.Time) (storage.Session, bool, error) {
	if err := checkID("session_id", id); err != nil {
		return storage.Session{}, false, err
	}
	if owner != "" {
		sess, err := s.store.GetSession(ctx, id)
		if err == nil && sess.UserID != owner {
			err = storage.ErrNotFound
		}
		if err != nil {
			return storage.Session{}, false, storeErr(err, msgSessionNotFound, "get session")
		}
	}
	sess, changed, err := s.store.RevokeSession(ctx, id, reason, now)
	if err != nil {
		return storage.Session{}, false, storeErr(err, msgSessionNotFound, "revoke session")
	}
	return sess, changed, nil
}

// announce publishes sessions, each newly revoked, to WatchRevocations
// streams (and so to verifiers that follow them), counts them as kind
// ("": not counted) and returns their ids for the audit record.
func (s *Server) announce(kind string, sessions ...storage.Session) []string {
	ids := make([]string, len(sessions))
	for i, sess := range sessions {
		s.publishSession(sess)
		ids[i] = sess.ID
	}
	if kind != "" {
		s.metrics.Revoked(kind, len(sessions))
	}
	return ids
}

// newDeviceProof issues the device proof a successful login hands out,
// under the refresh-token secret that mints now.
func (s *Server) newDeviceProof(userID string, now time.Time) (string, error) {
	p, err := tokens.NewDeviceProof(s.refreshKeys.minting(), userID, now.Add(s.cfg.DeviceProofTTL), s.rand)
	if err != nil {
		return "", fmt.Errorf("device proof: %w", err)
	}
	return p, nil
}

// knownDevice returns the device id of proof when it is a valid device
// proof of userID, else "". A proof whose secret has been removed since is
// simply not valid any more.
func (s *Server) knownDevice(userID, proof string) string {
	if proof == "" {
		return ""
	}
	id, err := tokens.VerifyDeviceProof(s.refreshKeys.lookup, userID, proof, s.now())
	if err != nil {
		return ""
	}
	return id
}
