package storage

import (
	"fmt"
	"time"
)

// Rotation asks a SessionStore to exchange one refresh token for the next.
type Rotation struct {
	// SessionID and Generation are what the presented refresh token says
	// (its MAC verified): the session it belongs to and its generation
	// (see Session.Generation). Next must carry Generation+1.
	SessionID  string
	Generation uint64
	// Presented is the digest of the refresh token the client sent.
	Presented TokenHash
	// Next is the digest of the freshly generated successor.
	Next TokenHash
	// Now is the time of the exchange.
	Now time.Time
	// IdleTTL is the idle lifetime the rotation renews.
	IdleTTL time.Duration
	// ReuseGrace, when positive, lets the immediately previous token be
	// presented again within this long after it was exchanged (a client
	// retrying after a lost reply). The retry mints a new successor and the
	// successor it replaces becomes a reused token; there is never more
	// than one live successor. Zero disables the grace.
	ReuseGrace time.Duration
	// Addr, when not empty, becomes the session's LastAddr: the client
	// address of this exchange.
	Addr string
}

// Validate reports a rotation that no backend should attempt.
func (r Rotation) Validate() error {
	switch {
	case !ValidID(r.SessionID):
		return fmt.Errorf("rotation without a session id: %w", ErrInvalidArgument)
	case r.Presented.IsZero() || r.Next.IsZero():
		return fmt.Errorf("rotation with empty digest: %w", ErrInvalidArgument)
	case r.Presented == r.Next:
		return fmt.Errorf("rotation to the same digest: %w", ErrInvalidArgument)
	case r.Now.IsZero() || r.IdleTTL <= 0 || r.ReuseGrace < 0:
		return fmt.Errorf("rotation without time, idle lifetime or with negative grace: %w", ErrInvalidArgument)
	}
	return nil
}

// Apply decides the exchange for s, the session r.SessionID, and returns
// the session as it must be stored. The rules, shared by every backend so
// that they cannot drift apart:
//
//   - revoked session: ErrSessionRevoked, store nothing;
//   - expired session: ErrSessionExpired, store nothing;
//   - Presented is the current token: rotate to Next, renew the idle expiry;
//   - Presented is the previous token and within ReuseGrace of its exchange:
//     replace the current token by Next (the replaced one counts as reused
//     from now on);
//   - a Generation below the session's: a token the session issued and has
//     since replaced (every rotation, a grace retry included, moves the
//     session's generation on by one, and a token's is at most one more
//     than the one it replaced): revoke the session with ReasonReuse and
//     return ErrRefreshTokenReused; the caller must store the returned
//     session (commit the revocation) and then report the error;
//   - otherwise (the session's generation or a later one, yet not its
//     current token): a token no committed rotation delivered, such as
//     the successor minted by the loser of a concurrent exchange:
//     ErrNotFound, store nothing.
func (r Rotation) Apply(s Session) (Session, error) {
	if err := s.notLive(r.Now); err != nil {
		return s, err
	}
	switch {
	case r.Presented == s.CurrentHash:
		s.PreviousHash = s.CurrentHash
		s.PreviousRotatedAt = r.Now
	case r.ReuseGrace > 0 && r.Presented == s.PreviousHash && r.Now.Sub(s.PreviousRotatedAt) <= r.ReuseGrace:
		// Retry of the last exchange: the successor it replaces is dropped
		// from CurrentHash and so becomes a reused token.
	case r.Generation < s.Generation:
		s.RevokedAt = r.Now
		s.RevokeReason = ReasonReuse
		return s, ErrRefreshTokenReused
	default:
		return s, ErrNotFound
	}
	return s.rotated(r.Next, r.Now, r.IdleTTL, r.Addr), nil
}

// notLive is why s is not live at now (ErrSessionRevoked,
// ErrSessionExpired), or nil while it is.
func (s Session) notLive(now time.Time) error {
	switch {
	case s.Revoked():
		return ErrSessionRevoked
	case !now.Before(s.ExpiresAt()):
		return ErrSessionExpired
	}
	return nil
}

// rotated is s moved on to the refresh token whose digest is next, at now:
// the next generation, its idle expiry renewed by idleTTL, and addr, when
// not empty, as its LastAddr.
func (s Session) rotated(next TokenHash, now time.Time, idleTTL time.Duration, addr string) Session {
	s.CurrentHash = next
	s.Generation++
	s.LastRotatedAt = now
	s.IdleExpiresAt = now.Add(idleTTL)
	if addr != "" {
		s.LastAddr = addr
	}
	return s
}
