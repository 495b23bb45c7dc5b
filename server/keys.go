package server

import (
	"context"
	"crypto/ecdsa"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/tokens"
)

// keyRing holds the signer of the active key and the published key set. It
// is swapped as a whole (atomic pointer) so that a future rotation never
// shows a half-updated state to a concurrent request.
type keyRing struct {
	cur atomic.Pointer[keyState]
}

type keyState struct {
	signer    *tokens.Signer
	published *tokens.KeySet
}

// loadKeyRing makes sure one signing key is active (generating it on first
// start) and loads every published key (next, active, retired).
func loadKeyRing(ctx context.Context, store storage.KeyStore, rand io.Reader, now func() time.Time) (*keyRing, error) {
	keys, err := store.ListSigningKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("server: list signing keys: %w", err)
	}
	hasActive := false
	for _, k := range keys {
		hasActive = hasActive || k.State == storage.KeyActive
	}
	if !hasActive {
		cand, err := newStoredKey(rand, now())
		if err != nil {
			return nil, err
		}
		if _, err := store.InitSigningKey(ctx, cand); err != nil {
			return nil, fmt.Errorf("server: store first signing key: %w", err)
		}
		if keys, err = store.ListSigningKeys(ctx); err != nil {
			return nil, fmt.Errorf("server: list signing keys: %w", err)
		}
	}
	st, err := buildKeyState(keys)
	if err != nil {
		return nil, err
	}
	r := &keyRing{}
	r.cur.Store(st)
	return r, nil
}

func newStoredKey(rand io.Reader, now time.Time) (storage.SigningKey, error) {
	priv, err := tokens.GenerateKey(rand)
	if err != nil {
		return storage.SigningKey{}, fmt.Errorf("server: generate signing key: %w", err)
	}
	kid, err := tokens.Thumbprint(&priv.PublicKey)
	if err != nil {
		return storage.SigningKey{}, fmt.Errorf("server: thumbprint: %w", err)
	}
	privDER, err := tokens.MarshalPrivateKey(priv)
	if err != nil {
		return storage.SigningKey{}, fmt.Errorf("server: encode signing key: %w", err)
	}
	pubDER, err := tokens.MarshalPublicKey(&priv.PublicKey)
	if err != nil {
		return storage.SigningKey{}, fmt.Errorf("server: encode public key: %w", err)
	}
	return storage.SigningKey{
		ID: kid, PrivateKey: privDER, PublicKey: pubDER,
		State: storage.KeyActive, CreatedAt: now, ActivatedAt: now,
	}, nil
}

// buildKeyState orders the published keys active first, then next, then
// retired, and builds the signer from the active one.
func buildKeyState(keys []storage.SigningKey) (*keyState, error) {
	var signer *tokens.Signer
	var active, next, retired []*ecdsa.PublicKey
	for _, k := range keys {
		pub, err := tokens.ParsePublicKey(k.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("server: signing key %s: %w", k.ID, err)
		}
		switch k.State {
		case storage.KeyActive:
			if signer != nil {
				return nil, fmt.Errorf("server: more than one active signing key")
			}
			priv, err := tokens.ParsePrivateKey(k.PrivateKey)
			if err != nil {
				return nil, fmt.Errorf("server: signing key %s: %w", k.ID, err)
			}
			if signer, err = tokens.NewSigner(priv); err != nil {
				return nil, fmt.Errorf("server: signing key %s: %w", k.ID, err)
			}
			if signer.KeyID() != k.ID {
				return nil, fmt.Errorf("server: signing key %s: stored id is not its thumbprint", k.ID)
			}
			active = append(active, pub)
		case storage.KeyNext:
			next = append(next, pub)
		case storage.KeyRetired:
			retired = append(retired, pub)
		}
	}
	if signer == nil {
		return nil, fmt.Errorf("server: no active signing key")
	}
	set, err := tokens.NewKeySet(append(append(active, next...), retired...)...)
	if err != nil {
		return nil, fmt.Errorf("server: key set: %w", err)
	}
	return &keyState{signer: signer, published: set}, nil
}

// PublicKey implements tokens.KeySource over the published keys.
func (r *keyRing) PublicKey(ctx context.Context, kid string) (*ecdsa.PublicKey, error) {
	return r.cur.Load().published.PublicKey(ctx, kid)
}

func (r *keyRing) signer() *tokens.Signer { return r.cur.Load().signer }

func (r *keyRing) jwks() tokens.JWKS { return r.cur.Load().published.JWKS() }
