package server

import (
	"context"
	"fmt"

	"github.com/latchauth/latch/tokens"
)

// KeySource returns the server's published keys (next, active and retired)
// as a tokens.KeySource for verifiers that run inside Latch, such as
// verifier.WithKeySource. Its dynamic type also has
// KeyEpoch() any (verifier.EpochKeySource), which changes whenever the
// published set does, so that verified-token caches built on it are
// invalidated by every key change. It reads the ring as it is at each call:
// a later rotation is seen at once.
func (s *Server) KeySource() tokens.KeySource { return s.keys }

// KeyEpoch returns the current published-set snapshot; the ring swaps it
// as a whole on every change, so the pointer identifies the set.
func (r *keyRing) KeyEpoch() any { return r.cur.Load() }

// TokenRevoked reports whether the access token with claims c is revoked
// in storage (its jti denied, or its session revoked, expired or gone), in
// one read: the check Introspect makes. Its signature is that of
// verifier.RevocationCheck. The answer is as durable as the store:
// a Revoke that has returned is always seen.
func (s *Server) TokenRevoked(ctx context.Context, c tokens.Claims) (bool, error) {
	revoked, err := s.store.AccessTokenRevoked(ctx, c.ID, c.SessionID, s.now())
	if err != nil {
		return false, fmt.Errorf("server: access token revocation check: %w", err)
	}
	return revoked, nil
}
