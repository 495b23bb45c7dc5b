package server

import (
	"context"
	"errors"
	"time"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/tokens"
)

// KeyInfo is the public description of one signing key: never its private
// part.
type KeyInfo struct {
	// ID is the key's kid (RFC 7638 thumbprint).
	ID string
	// State is next, active or retired.
	State storage.KeyState
	// PublicJWK is the public key as published in the JWKS.
	PublicJWK tokens.JWK
	// CreatedAt, ActivatedAt and RetiredAt record transitions (zero when
	// not yet made).
	CreatedAt, ActivatedAt, RetiredAt time.Time
	// ActivatesAt is, for a next key, when the schedule will make it
	// active; RemovedAt is, for a retired key, when it stops being
	// published. Zero otherwise.
	ActivatesAt, RemovedAt time.Time
}

// errKeyLifecycleTODO is returned until the key life cycle (issue 5 §2)
// lands; it replaces this file.
var errKeyLifecycleTODO = errors.New("server: key rotation not built yet")

// RotateSigningKey rotates the signing key now. With immediate false the
// published next key becomes active (one is created and published first if
// there is none, and activation waits until it has been published for the
// JWKS cache lifetime); with immediate true a fresh key signs at once (for a
// compromised key: verifiers that cached the old set refetch on the unknown
// kid). It returns the key set after the change.
func (s *Server) RotateSigningKey(ctx context.Context, immediate bool) ([]KeyInfo, error) {
	return nil, errKeyLifecycleTODO
}

// ListSigningKeys returns every stored key's public description.
func (s *Server) ListSigningKeys(ctx context.Context) ([]KeyInfo, error) {
	return nil, errKeyLifecycleTODO
}
